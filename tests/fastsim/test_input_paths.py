"""The input paths of Network.run: each source type takes its path, and every path gives the plain loop's record."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fastsim.encode import CurrentSource, PoissonSource, SpikeTrainSource, poisson_spikes
from fastsim.input_paths import (
    ConstantCurrentPath,
    DenseSpikesPath,
    InKernelPoissonPath,
    SpikeRowsPath,
    input_path,
)
from fastsim.network import Network
from tests.fastsim.specs import dyadic_cnn, dyadic_mlp, random_images

CPU = torch.device("cpu")
FIELDS = ("output_counts", "layer_counts", "first_spike_step", "synops", "synops_curve", "output_potential")
STEPS, N_IMAGES = 23, 5


def _sources(kind: str, spec, rng):
    """A factory of fresh sources of one kind for ``spec`` (sources count what they serve)."""
    images = random_images(rng, N_IMAGES, spec.input_shape)
    x = images.reshape(N_IMAGES, -1) / 255.0
    if kind == "poisson":
        return lambda: PoissonSource(x, np.arange(N_IMAGES), 7, 1000.0, 1.0, CPU, torch.float32)
    if kind == "current":  # dyadic intensities (k/16): the constant current and its events are exact sums
        return lambda: CurrentSource(np.round(x * 16) / 16, CPU, torch.float32)
    trains = poisson_spikes(images, np.arange(N_IMAGES), STEPS, seed=7)
    return lambda: SpikeTrainSource(trains, CPU, torch.float32)


@pytest.mark.parametrize(
    "make_spec, kind, sparse, path",
    [
        (dyadic_mlp, "poisson", True, SpikeRowsPath),  # Dense first layer, sparse products (CPU)
        (dyadic_mlp, "poisson", False, DenseSpikesPath),
        (dyadic_cnn, "poisson", True, DenseSpikesPath),  # a convolution first
        (dyadic_mlp, "spikes", True, DenseSpikesPath),
        (dyadic_cnn, "spikes", True, DenseSpikesPath),
        (dyadic_mlp, "current", True, ConstantCurrentPath),
        (dyadic_cnn, "current", True, ConstantCurrentPath),
    ],
)
@pytest.mark.parametrize("readout", ["spikes", "membrane"])
@pytest.mark.parametrize("schedule", ["delay", "cascade"])
def test_each_path_gives_the_plain_loop(make_spec, kind, sparse, path, schedule, readout, fastsim_rng) -> None:
    """Every record field, synaptic events and (membrane readout) potentials at checkpoints inside a chunk
    included, equals the plain loop's."""
    spec = dataclasses.replace(make_spec(fastsim_rng, schedule=schedule), readout=readout)
    net = Network(spec, CPU, torch.float32, sparse=sparse)
    source = _sources(kind, spec, fastsim_rng)
    assert type(input_path(source(), net)) is path
    checkpoints = np.array([1, 4, 10, STEPS])
    with torch.inference_mode():
        plain = net.finish(net.run_stepwise(source(), N_IMAGES, STEPS, checkpoints), True)
        for chunk in (1, 10):
            fast = net.finish(net.run(source(), N_IMAGES, STEPS, checkpoints, chunk), True)
            for name in FIELDS:
                assert np.array_equal(getattr(fast, name), getattr(plain, name)), (chunk, name)
    assert plain.layer_counts.sum() > 0
    np.testing.assert_array_equal(plain.synops_curve[:, -1], plain.synops)
    assert np.all(np.diff(plain.synops_curve, axis=1) >= 0) and plain.synops_curve[:, 0].sum() > 0
    if readout == "membrane":
        assert plain.output_counts.sum() == 0 and np.all(plain.first_spike_step == -1)
        assert np.abs(plain.output_potential).sum() > 0
    else:
        assert plain.output_potential is None


def test_a_fused_first_layer_draws_poisson_input_in_its_kernel(fastsim_rng, monkeypatch) -> None:
    """With ``kernel="triton"`` Poisson input takes the in-kernel path; other sources keep theirs (the runs
    themselves are checked against the torch kernel in test_fused.py)."""
    pytest.importorskip("triton", reason="Triton is not installed (the gpu extra)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # lets a CPU network with fused layers be built
    spec = dyadic_mlp(fastsim_rng)
    net = Network(spec, CPU, torch.float32, kernel="triton")
    assert net.stages[0].fused is not None
    assert type(input_path(_sources("poisson", spec, fastsim_rng)(), net)) is InKernelPoissonPath
    assert type(input_path(_sources("current", spec, fastsim_rng)(), net)) is ConstantCurrentPath
    assert type(input_path(_sources("spikes", spec, fastsim_rng)(), net)) is DenseSpikesPath


def test_an_unknown_source_type_is_named(fastsim_rng) -> None:
    class Microphone:
        pass

    net = Network(dyadic_mlp(fastsim_rng), CPU, torch.float32)
    with pytest.raises(TypeError, match="Microphone"):
        input_path(Microphone(), net)
