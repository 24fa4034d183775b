"""The computations of test_fused.py that must run with ``TRITON_INTERPRET=1`` on a CPU.

Triton decides when a kernel is defined (at the import of fastsim) whether it interprets, so these run in a
fresh interpreter: ``python -m tests.fastsim.fused_cases OUT.npz`` computes every case and saves each result
as ``<case>|got|<i>`` and ``<case>|want|<i>`` arrays (the fused kernel's and the torch engine's); the test
loads them and asserts. Nothing is judged here.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import torch

BLOCK = (16, 16, 16)
T, B, K, N = 6, 5, 41, 37


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def dense_cases(rng: np.random.Generator) -> dict[str, tuple[list, list]]:
    """The fused Dense layer against the GEMM (float64, dyadic: exact) and the scan, every mode and limb count."""
    from fastsim.fused import dense_if_chunk
    from fastsim.limbs import split_limbs
    from fastsim.scan import scan_steps

    cases = {}
    for reset, schedule, parts in itertools.product(("zero", "subtract"), ("delay", "cascade"), (1, 2, 3)):
        w = np.round(rng.normal(size=(N, K)) * 8) / 16  # dyadic: every sum below is exact
        limbs = split_limbs(w.T, parts) if parts > 1 else w.T[None].astype(np.float32)
        spikes = torch.tensor(rng.random((T, B, K)) < 0.3, dtype=torch.float32)
        v0 = torch.tensor(np.round(rng.normal(size=(B, N)) * 4) / 8, dtype=torch.float32)
        theta = 0.75
        out, v, counts = dense_if_chunk(
            spikes, torch.tensor(limbs), v0, theta, reset, schedule, tf32=parts > 1, block=BLOCK
        )
        currents = (spikes.double() @ torch.tensor(w.T)).float().reshape(T, B * N)
        want = scan_steps(currents, v0.reshape(-1), torch.tensor(theta), reset, schedule)
        got = (out.reshape(T, -1), v.reshape(-1), counts.reshape(-1))
        cases[f"dense/{reset}/{schedule}/limbs{parts}"] = ([_np(g) for g in got], [_np(x) for x in want])
    return cases


def poisson_cases(rng: np.random.Generator) -> dict[str, tuple[list, list]]:
    """The first layer drawing its Poisson input inside the kernel: the same spikes as PoissonSource, over two
    chunks (the step counter carries on), and the same input counts."""
    from fastsim.encode import PoissonSource, integer_thresholds
    from fastsim.fused import dense_if_chunk, poisson_dense_if_chunk

    x = rng.random((B, K)) * (rng.random((B, K)) < 0.5)  # intensities, half the pixels dark
    x[0, :3] = 1.0  # always spikes (threshold 2^32)
    src = PoissonSource(x, np.array([3, 9, 0, 41, 7]), 11, 1000.0, 1.0, torch.device("cpu"), torch.float32)
    w = np.round(rng.normal(size=(N, K)) * 8) / 16
    limbs = torch.tensor(w.T[None].astype(np.float32))
    v0 = torch.zeros(B, N)
    thr = torch.tensor(integer_thresholds(x, 1000.0, 1.0))
    counts_in = torch.zeros(B, K)
    cases = {}
    for start in (0, T):
        spikes = src.chunk(start, T)
        want = dense_if_chunk(spikes, limbs, v0, 0.75, "subtract", "delay", tf32=False, block=BLOCK)
        got = poisson_dense_if_chunk(
            src._keys, thr, counts_in, start, T, limbs, v0, 0.75, "subtract", "delay", tf32=False, block=BLOCK
        )
        cases[f"poisson/chunk-at-{start}"] = ([_np(g) for g in got], [_np(s) for s in want])
    cases["poisson/input-counts"] = ([_np(counts_in.double())], [_np(src.input_counts(2 * T))])
    return cases


def engine_cases() -> dict[str, tuple[list, list]]:
    """The whole engine with kernel="triton" against the torch kernel (dyadic MLP: exact sums)."""
    from fastsim.simulate import simulate
    from tests.fastsim.specs import dyadic_mlp, random_images

    fields = ("output_counts", "layer_counts", "first_spike_step", "synops")
    cases = {}
    for reset, schedule in itertools.product(("zero", "subtract"), ("delay", "cascade")):
        spec = dyadic_mlp(np.random.default_rng(1), reset, schedule)
        images = random_images(np.random.default_rng(2), 6, spec.input_shape)
        kw = dict(steps=25, seed=3, record_neurons=True, batch_size=4)
        a, b = simulate(spec, images, kernel="triton", **kw), simulate(spec, images, kernel="torch", **kw)
        got = [*(getattr(a, f) for f in fields), *a.neuron_counts, np.array(a.meta["kernel"])]
        want = [*(getattr(b, f) for f in fields), *b.neuron_counts, np.array("triton")]
        cases[f"engine/{reset}/{schedule}"] = (got, want)
    return cases


def main(path: str) -> None:
    rng = np.random.default_rng(0)
    cases = {**dense_cases(rng), **poisson_cases(rng), **engine_cases()}
    arrays = {}
    for name, (got, want) in cases.items():
        arrays.update({f"{name}|got|{i}": g for i, g in enumerate(got)})
        arrays.update({f"{name}|want|{i}": w for i, w in enumerate(want)})
    np.savez(path, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
