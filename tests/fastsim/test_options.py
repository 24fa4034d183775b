"""SimOptions: the engine options of simulate(), checked once; the keyword form is the same thing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fastsim import SimOptions, simulate
from fastsim.fused import unavailable_reason
from tests.fastsim.specs import dyadic_mlp, random_images


def test_options_are_normalized_and_frozen() -> None:
    opts = SimOptions(device="cpu", dtype="float64", batch_size=np.int64(4))
    assert opts.device == torch.device("cpu") and opts.dtype is torch.float64
    assert opts.batch_size == 4 and type(opts.batch_size) is int
    assert SimOptions(dtype=torch.float64, batch_size=4) == opts
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.dtype = torch.float32


@pytest.mark.parametrize(
    "field, value",
    [
        ("dtype", "float16"),
        ("device", "tpu"),
        ("matmul", "bf16"),
        ("kernel", "cuda"),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("memory_budget", -1),
        ("compile", "yes"),
    ],
)
def test_bad_options_name_their_field(field, value) -> None:
    with pytest.raises(ValueError, match=field):
        SimOptions(**{field: value})


def test_split_weights_need_float32() -> None:
    with pytest.raises(ValueError, match="matmul='tf32x2'.*float32"):
        SimOptions(dtype="float64", matmul="tf32x2")


def test_keywords_and_options_give_the_same_record(fastsim_rng) -> None:
    spec = dyadic_mlp(fastsim_rng)
    images = random_images(fastsim_rng, 6, spec.input_shape)
    by_keywords = simulate(spec, images, steps=15, seed=2, dtype="float64", batch_size=4, record_neurons=True)
    opts = SimOptions(dtype="float64", batch_size=4)
    by_options = simulate(spec, images, steps=15, seed=2, options=opts, record_neurons=True)
    overridden = simulate(spec, images, steps=15, seed=2, options=SimOptions(batch_size=4), dtype="float64")
    for rec in (by_options, overridden):
        assert np.array_equal(rec.output_counts, by_keywords.output_counts)
        assert np.array_equal(rec.synops, by_keywords.synops)
        assert (rec.meta["dtype"], rec.meta["batch_size"]) == ("float64", 4)
    assert by_keywords.layer_counts.sum() > 0


def test_an_unknown_keyword_is_named(fastsim_rng) -> None:
    spec = dyadic_mlp(fastsim_rng)
    with pytest.raises(TypeError, match="batchsize"):
        simulate(spec, random_images(fastsim_rng, 1, spec.input_shape), steps=2, batchsize=4)


def test_unavailable_reason_says_why(monkeypatch) -> None:
    """A reason on a CPU without Triton's interpreter; None once it may interpret."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "Triton" in unavailable_reason(torch.device("cpu"))
    pytest.importorskip("triton", reason="Triton is not installed (the gpu extra)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert unavailable_reason(torch.device("cpu")) is None


def test_the_default_kernel_is_auto_and_records_name_the_one_that_ran(fastsim_rng, monkeypatch) -> None:
    """kernel="auto" (the default, also given by name) runs the event engine on a CPU, the torch engine where
    the event engine cannot run the request (threshold margins, TF32 limbs, no numba); ``meta["kernel"]``
    names the engine that ran, never "auto", so cache keys built from it stay meaningful."""
    import fastsim.events
    from fastsim.network import resolve_kernel

    assert SimOptions().kernel == "auto"
    spec = dyadic_mlp(fastsim_rng)
    images = random_images(fastsim_rng, 3, spec.input_shape)
    default = simulate(spec, images, steps=10, dtype="float64", record_neurons=True)
    named = simulate(spec, images, steps=10, dtype="float64", record_neurons=True, kernel="auto")
    torch_run = simulate(spec, images, steps=10, dtype="float64", record_neurons=True, kernel="torch")
    assert default.meta["kernel"] == named.meta["kernel"] == "events"
    for a, b in ((default, named), (default, torch_run)):
        assert np.array_equal(a.output_counts, b.output_counts) and np.array_equal(a.synops, b.synops)
    assert simulate(spec, images, steps=4, record_margins=True).meta["kernel"] == "torch"
    assert simulate(spec, images, steps=4, matmul="tf32x2").meta["kernel"] == "torch"
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_kernel("auto", cuda, torch.float32) == "torch"
    assert resolve_kernel("triton", cuda, torch.float32) == "triton"
    monkeypatch.setattr(fastsim.events, "unavailable_reason", lambda: "numba is not installed")
    assert resolve_kernel("auto", cpu, torch.float32) == "torch"
