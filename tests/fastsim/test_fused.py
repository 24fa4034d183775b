"""The fused Triton Dense layer equals the engine's GEMM + scan, spike for spike (Triton's interpreter on a CPU).

Triton decides at import whether it interprets, so the checks run in a subprocess with TRITON_INTERPRET=1.
Without Triton installed (the ``gpu`` extra) the test is skipped with that reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import itertools, numpy as np, torch
    from fastsim.fused import dense_if_chunk, poisson_dense_if_chunk
    from fastsim.limbs import split_limbs
    from fastsim.scan import scan_steps

    rng = np.random.default_rng(0)
    T, B, K, N = 6, 5, 41, 37
    checked = 0
    for reset, schedule, parts in itertools.product(("zero", "subtract"), ("delay", "cascade"), (1, 2, 3)):
        w = np.round(rng.normal(size=(N, K)) * 8) / 16  # dyadic: every sum below is exact
        limbs = split_limbs(w.T, parts) if parts > 1 else w.T[None].astype(np.float32)
        spikes = torch.tensor(rng.random((T, B, K)) < 0.3, dtype=torch.float32)
        v0 = torch.tensor(np.round(rng.normal(size=(B, N)) * 4) / 8, dtype=torch.float32)
        theta = 0.75
        out, v, counts = dense_if_chunk(spikes, torch.tensor(limbs), v0, theta, reset, schedule,
                                        tf32=parts > 1, block=(16, 16, 16))
        currents = (spikes.double() @ torch.tensor(w.T)).float().reshape(T, B * N)
        want_s, want_v, want_c = scan_steps(currents, v0.reshape(-1), torch.tensor(theta), reset, schedule)
        assert torch.equal(out.reshape(T, -1), want_s), (reset, schedule, parts)
        assert torch.equal(v.reshape(-1), want_v), (reset, schedule, parts)
        assert torch.equal(counts.reshape(-1), want_c), (reset, schedule, parts)
        assert want_s.sum() > 0 and (want_s == 0).any()
        checked += 1
    print("checked", checked)

    # the first layer drawing its Poisson input inside the kernel: the same spikes as PoissonSource
    from fastsim.encode import PoissonSource, integer_thresholds
    x = rng.random((B, K)) * (rng.random((B, K)) < 0.5)  # intensities, half the pixels dark
    x[0, :3] = 1.0  # always spikes (threshold 2^32)
    src = PoissonSource(x, np.array([3, 9, 0, 41, 7]), 11, 1000.0, 1.0, torch.device("cpu"), torch.float32)
    w = np.round(rng.normal(size=(N, K)) * 8) / 16
    limbs = torch.tensor(w.T[None].astype(np.float32))
    v0 = torch.zeros(B, N)
    thr = torch.tensor(integer_thresholds(x, 1000.0, 1.0))
    counts_in = torch.zeros(B, K)
    for start in (0, T):  # two chunks: the step counter carries on
        spikes = src.chunk(start, T)
        want = dense_if_chunk(spikes, limbs, v0, 0.75, "subtract", "delay", tf32=False, block=(16, 16, 16))
        got = poisson_dense_if_chunk(src._keys, thr, counts_in, start, T, limbs, v0, 0.75, "subtract", "delay",
                                     tf32=False, block=(16, 16, 16))
        for a, b in zip(got, want):
            assert torch.equal(a, b), start
        assert spikes.sum() > 0
    assert torch.equal(counts_in.double(), src.input_counts(2 * T)), "input counts"
    print("poisson ok")

    # the whole engine with kernel="triton" gives the torch kernel's record (dyadic MLP: exact sums)
    from fastsim.simulate import simulate
    from tests.fastsim.specs import dyadic_mlp, random_images
    for reset, schedule in itertools.product(("zero", "subtract"), ("delay", "cascade")):
        spec = dyadic_mlp(np.random.default_rng(1), reset, schedule)
        images = random_images(np.random.default_rng(2), 6, spec.input_shape)
        kw = dict(steps=25, seed=3, record_neurons=True, batch_size=4)
        a, b = simulate(spec, images, kernel="triton", **kw), simulate(spec, images, **kw)
        assert a.meta["kernel"] == "triton"
        for x, y in zip(a.neuron_counts, b.neuron_counts, strict=True):
            assert np.array_equal(x, y), (reset, schedule)
        assert np.array_equal(a.output_counts, b.output_counts) and np.array_equal(a.synops, b.synops)
        assert np.array_equal(a.first_spike_step, b.first_spike_step) and a.layer_counts.sum() > 0
    print("engine ok")
    """
)


def test_fused_dense_layer_matches_gemm_and_scan():
    pytest.importorskip("triton", reason="Triton is not installed (the gpu extra)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600, cwd=root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checked 12" in done.stdout and "poisson ok" in done.stdout and "engine ok" in done.stdout


def test_triton_kernel_refuses_what_it_cannot_run(monkeypatch):
    from fastsim.simulate import simulate
    from fastsim.synthetic import random_spec

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    spec = random_spec("mlp", seed=0)
    with pytest.raises(ValueError, match="kernel='triton': .*use kernel='torch'"):
        simulate(spec, np.zeros((1, 784)), steps=2, kernel="triton")  # CPU without the interpreter
    with pytest.raises(ValueError, match="kernel must be one of"):
        simulate(spec, np.zeros((1, 784)), steps=2, kernel="cuda")


@pytest.mark.gpu
def test_fused_kernel_on_the_gpu_matches_the_torch_kernel():
    """Compiled for the GPU: the fused Dense layers give the torch kernel's records (dyadic weights, exact)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    pytest.importorskip("triton", reason="Triton is not installed (the gpu extra)")
    from fastsim.simulate import simulate
    from tests.fastsim.specs import dyadic_mlp, random_images

    for reset in ("zero", "subtract"):
        for schedule in ("delay", "cascade"):
            spec = dyadic_mlp(np.random.default_rng(1), reset, schedule)
            images = random_images(np.random.default_rng(2), 300, spec.input_shape)
            for matmul in ("fp32", "tf32x2"):
                kw = dict(steps=60, seed=3, record_neurons=True, device="cuda", matmul=matmul)
                a, b = simulate(spec, images, kernel="triton", **kw), simulate(spec, images, **kw)
                for x, y in zip(a.neuron_counts, b.neuron_counts, strict=True):
                    assert np.array_equal(x, y), (reset, schedule, matmul)
                assert np.array_equal(a.output_counts, b.output_counts)
