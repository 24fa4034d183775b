"""simulate(): reproducibility across batch sizes, chunkings and engines, dtypes, devices and bad input.

The semantics themselves (golden trajectories, the reference loop, the analytic oracle) are checked for every
engine by tests/conformance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fastsim.encode import PoissonSource, poisson_spikes
from fastsim.network import Network
from fastsim.simulate import simulate
from fastsim.synthetic import random_spec
from tests.fastsim.specs import dyadic_cnn, dyadic_mlp, random_images
from tests.records import assert_same_record


@pytest.mark.parametrize("readout", ["spikes", "membrane"])
@pytest.mark.parametrize("make_spec", [dyadic_cnn, dyadic_mlp])
def test_batch_sizes_give_identical_records(make_spec, readout, fastsim_rng) -> None:
    spec = dataclasses.replace(make_spec(fastsim_rng), readout=readout)
    images = random_images(fastsim_rng, 20, spec.input_shape)
    indices = np.arange(100, 120)
    records = [
        simulate(
            spec, images, steps=30, batch_size=b, seed=9, image_indices=indices, record_neurons=True, kernel="torch"
        )
        for b in (1, 7, 64)
    ]
    assert records[0].layer_counts.sum() > 0
    assert (records[0].output_counts[:, -1].sum() > 0) == (readout == "spikes")
    for rec in records[1:]:
        assert_same_record(records[0], rec)
    chunks = [
        simulate(spec, images, steps=30, batch_size=7, memory_budget=m, seed=9, image_indices=indices, kernel="torch")
        for m in (1, 10**9)
    ]
    assert chunks[0].meta["chunk_steps"] == 1 and chunks[1].meta["chunk_steps"] > 1
    assert_same_record(records[0], dataclasses.replace(chunks[0], neuron_counts=records[0].neuron_counts))
    assert_same_record(chunks[0], chunks[1])


@pytest.mark.parametrize("schedule", ["delay", "cascade"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_time_batched_engine_equals_plain_loop(schedule, reset, fastsim_rng) -> None:
    spec = dyadic_cnn(fastsim_rng, reset=reset, schedule=schedule)
    x = random_images(fastsim_rng, 6, spec.input_shape).reshape(6, -1) / 255.0
    net = Network(spec, torch.device("cpu"), torch.float32)
    checkpoints = np.array([1, 3, 10, 25])

    def source():
        return PoissonSource(x, np.arange(6), 4, 1000.0, 1.0, torch.device("cpu"), torch.float32)

    plain = net.finish(net.run_stepwise(source(), 6, 25, checkpoints), True)
    for chunk in (1, 4, 25):
        fast = net.finish(net.run(source(), 6, 25, checkpoints, chunk), True)
        for name in ("output_counts", "layer_counts", "first_spike_step", "synops"):
            assert np.array_equal(getattr(fast, name), getattr(plain, name)), (chunk, name)
    assert plain.layer_counts.sum() > 0


def test_given_spikes_equal_poisson_run(fastsim_rng) -> None:
    """Feeding the encoder's own spike trains back in reproduces the poisson run (the refsim path)."""
    spec = dyadic_mlp(fastsim_rng)
    images = random_images(fastsim_rng, 5, spec.input_shape)
    rec = simulate(spec, images, steps=12, seed=3)
    trains = poisson_spikes(images, np.arange(5), 12, seed=3)
    assert_same_record(rec, simulate(spec, spikes=trains, steps=12))


def test_record_contents(fastsim_rng) -> None:
    spec = dyadic_cnn(fastsim_rng, schedule="cascade")
    images = random_images(fastsim_rng, 4, spec.input_shape)
    rec = simulate(spec, images, steps=40, record_neurons=True, labels=[0, 1, 2, 3])
    assert rec.checkpoints.tolist() == [1, 2, 5, 10, 20, 40]
    assert rec.output_counts.shape == (4, 6, 5)
    assert np.all(np.diff(rec.output_counts, axis=1) >= 0)  # cumulative
    final = rec.neuron_counts[-1]
    assert np.array_equal(rec.output_counts[:, -1], final)
    assert np.array_equal(rec.layer_counts, np.stack([c.sum(1) for c in rec.neuron_counts], axis=1))
    # synops into the pooling layer: every conv neuron has exactly one 2x2 window (fan-out 1);
    # into the last dense layer: fan-out 5 from each of the 16 conv-2 neurons.
    assert np.array_equal(rec.synops[:, 1], rec.layer_counts[:, 0])
    assert np.array_equal(rec.synops[:, 3], 5 * rec.layer_counts[:, 2])
    fired = rec.output_counts[:, -1].sum(1) > 0
    assert np.all((rec.first_spike_step >= 0) == fired)
    assert rec.meta["simulator"] == "fastsim" and rec.meta["steps"] == 40


def test_membrane_readout_record(fastsim_rng) -> None:
    """The output layer never spikes; its potential at the checkpoints decides; the Triton kernel refuses."""
    spec = dataclasses.replace(dyadic_mlp(fastsim_rng, schedule="cascade"), readout="membrane")
    images = random_images(fastsim_rng, 6, spec.input_shape)
    rec = simulate(spec, images, steps=40, labels=np.arange(6) % 3, checkpoints=[3, 17])
    assert rec.readout == rec.meta["readout"] == "membrane"
    assert rec.output_potential.shape == (6, 3, 3) and rec.checkpoints.tolist() == [3, 17, 40]
    assert rec.output_counts.sum() == 0 and np.all(rec.first_spike_step == -1) and rec.layer_counts[:, -1].sum() == 0
    np.testing.assert_array_equal(rec.predictions(), rec.output_potential[:, -1].argmax(axis=1))
    np.testing.assert_array_equal(rec.accuracy_curve()[-1], rec.accuracy())
    spiking = simulate(dataclasses.replace(spec, readout="spikes"), images, steps=40, checkpoints=[3, 17])
    np.testing.assert_array_equal(rec.layer_counts[:, 0], spiking.layer_counts[:, 0])  # hidden layers unchanged
    np.testing.assert_array_equal(rec.synops_curve, spiking.synops_curve)  # nothing leaves the output layer
    margins = simulate(spec, images[:2], steps=10, record_margins=True).margins
    assert np.all(np.isinf(margins[-1])) and np.all(np.isfinite(margins[0]))  # the output is never checked
    with pytest.raises(ValueError, match="readout='membrane'"):
        Network(spec, torch.device("cpu"), torch.float32, kernel="triton")


def test_float32_and_float64_agree_on_normalized_network() -> None:
    """A data-normalized random MLP (non-dyadic weights): per-neuron counts equal in >= 99.9 % of cases."""
    rng = np.random.default_rng(0)
    spec = random_spec("mlp", seed=1)
    from fastsim.synthetic import mnist_like

    images = mnist_like(4, rng)
    counts = [
        simulate(spec, images, steps=60, dtype=d, record_neurons=True).neuron_counts for d in ("float32", "float64")
    ]
    a, b = (np.concatenate([c.reshape(-1) for c in cs]) for cs in counts)
    assert a.sum() > 1000  # the network is active
    assert np.mean(a == b) >= 0.999, f"{np.sum(a != b)} of {a.size} neuron counts differ"


@pytest.mark.gpu
def test_cpu_and_cuda_identical(fastsim_rng) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    for make_spec in (dyadic_cnn, dyadic_mlp):
        spec = make_spec(fastsim_rng)
        images = random_images(fastsim_rng, 9, spec.input_shape)
        assert np.array_equal(
            poisson_spikes(images, np.arange(9), 20, seed=1, device="cuda").cpu().numpy(),
            poisson_spikes(images, np.arange(9), 20, seed=1).numpy(),
        )
        for dtype, matmul in (("float32", "fp32"), ("float64", "fp32"), ("float32", "tf32x2"), ("float32", "tf32x3")):
            kw = dict(steps=20, seed=1, dtype=dtype, record_neurons=True, matmul=matmul, kernel="torch")
            assert_same_record(simulate(spec, images, **kw), simulate(spec, images, device="cuda", **kw))


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_errors(fastsim_rng) -> None:
    spec = dyadic_mlp(fastsim_rng)
    images = random_images(fastsim_rng, 2, spec.input_shape)
    with pytest.raises(ValueError, match="steps"):
        simulate(spec, images, steps=0)
    with pytest.raises(ValueError, match="steps"):
        simulate(spec, images, steps=-5)
    with pytest.raises(ValueError, match=r"input_shape is \(1, 6, 6\)"):
        simulate(spec, np.zeros((2, 28, 28), dtype=np.uint8), steps=5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        simulate(spec, np.full((2, 36), 1.5), steps=5)
    with pytest.raises(ValueError, match="exactly one"):
        simulate(spec, steps=5)
    with pytest.raises(ValueError, match="spikes"):
        simulate(spec, spikes=torch.zeros(2, 4, 36, dtype=torch.bool), steps=5)
    with pytest.raises(ValueError, match="dtype"):
        simulate(spec, images, steps=5, dtype="float16")
    with pytest.raises(ValueError, match="labels"):
        simulate(spec, images, steps=5, labels=[1, 2, 3])
    with pytest.raises(ValueError, match="batch_size"):
        simulate(spec, images, steps=5, batch_size=0)
    with pytest.raises(ValueError, match="checkpoints"):
        simulate(spec, images, steps=5, checkpoints=[3, 2])
    with pytest.raises(TypeError, match="NetworkSpec"):
        simulate({"layers": []}, images, steps=5)


def test_cuda_without_gpu_says_so(fastsim_rng, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = dyadic_mlp(fastsim_rng)
    with pytest.raises(ValueError, match=r"device='cuda'.*is_available\(\) is False"):
        simulate(spec, random_images(fastsim_rng, 1, spec.input_shape), steps=3, device="cuda")
