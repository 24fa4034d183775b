"""The fused Triton Dense layer equals the engine's GEMM + scan, spike for spike (Triton's interpreter on a CPU).

Triton decides when a kernel is defined whether it interprets, so the interpreted computations run in a fresh
interpreter with TRITON_INTERPRET=1 (tests/fastsim/fused_cases.py), which returns every result as arrays; the
tests below compare them. Without Triton installed (the ``gpu`` extra) they are skipped with that reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """case -> (the fused kernel's results, the torch engine's), computed under TRITON_INTERPRET=1."""
    pytest.importorskip("triton", reason="Triton is not installed (the gpu extra)")
    path = tmp_path_factory.mktemp("fused") / "cases.npz"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "tests.fastsim.fused_cases", str(path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    parts: dict[str, dict[str, dict[int, np.ndarray]]] = defaultdict(lambda: {"got": {}, "want": {}})
    with np.load(path) as z:
        for key in z.files:
            name, side, i = key.split("|")
            parts[name][side][int(i)] = z[key]
    return {name: tuple([d[i] for i in sorted(d)] for d in (p["got"], p["want"])) for name, p in parts.items()}


def _cases(results: dict, prefix: str) -> dict:
    return {name: pair for name, pair in results.items() if name.startswith(prefix + "/")}


def test_fused_dense_layer_matches_gemm_and_scan(interpreted):
    cases = _cases(interpreted, "dense")
    assert len(cases) == 12  # reset x schedule x 1, 2, 3 TF32 limbs
    for name, (got, want) in cases.items():
        assert len(got) == len(want) == 3, name
        for what, g, w in zip(("spikes", "v", "counts"), got, want, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=f"{name}: {what}")
        assert want[0].sum() > 0 and (want[0] == 0).any(), f"{name}: the layer must spike, but not always"


def test_fused_poisson_layer_draws_the_encoders_spikes(interpreted):
    cases = _cases(interpreted, "poisson")
    assert sorted(cases) == ["poisson/chunk-at-0", "poisson/chunk-at-6", "poisson/input-counts"]
    for name, (got, want) in cases.items():
        assert len(got) == len(want) > 0, name
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=name)
    for start in (0, 6):
        assert cases[f"poisson/chunk-at-{start}"][1][0].sum() > 0, "the layer spikes in each chunk"
    assert cases["poisson/input-counts"][1][0].sum() > 0


def test_engine_with_the_triton_kernel_equals_the_torch_kernel(interpreted):
    cases = _cases(interpreted, "engine")
    assert len(cases) == 4  # reset x schedule
    for name, (got, want) in cases.items():
        assert len(got) == len(want) == 7, name  # 4 record fields, 2 layers' neuron counts, the kernel name
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w, err_msg=name)
        assert want[1].sum() > 0, f"{name}: the network is active"


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
                a, b = simulate(spec, images, kernel="triton", **kw), simulate(spec, images, kernel="torch", **kw)
                for x, y in zip(a.neuron_counts, b.neuron_counts, strict=True):
                    assert np.array_equal(x, y), (reset, schedule, matmul)
                assert np.array_equal(a.output_counts, b.output_counts)
