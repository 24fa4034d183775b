"""Per-neuron start potentials (the spec's ``v_init_neurons``, potential correction): every engine starts neuron i
of population l at its own fraction f_i · θ_l, and they agree spike for spike."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.contract.spec import Conv2d, Dense, Flatten, NetworkSpec
from fastsim import simulate as fastsim_simulate
from refsim.simulate import simulate as refsim_simulate


def _dyadic_net(rng: np.random.Generator, schedule: str, encoding: str) -> NetworkSpec:
    """2×5×5 → conv 3@3×3 (bias) → 6 → 3, dyadic weights, biases and start fractions (k/16), so every membrane
    sum is exact in float64 in any order (Brian2 adds synapse by synapse)."""
    layers = (
        Conv2d(rng.integers(-4, 9, (3, 2, 3, 3)) / 16.0, bias=rng.integers(-2, 3, 3) / 16.0, threshold=0.5),
        Flatten(),
        Dense(rng.integers(-4, 9, (6, 27)) / 16.0, threshold=1.0),
        Dense(rng.integers(-4, 9, (3, 6)) / 16.0, threshold=0.75),
    )
    spec = NetworkSpec((2, 5, 5), layers, reset="subtract", schedule=schedule, encoding=encoding, v_init=0.5)
    starts = [rng.integers(0, 16, n) / 16.0 for n in spec.population_sizes]
    return dataclasses.replace(spec, v_init_neurons=starts)


@pytest.mark.parametrize("schedule", ["cascade", "delay"])
@pytest.mark.parametrize("encoding", ["current", "poisson"])
def test_every_engine_starts_each_neuron_at_its_own_potential(schedule, encoding) -> None:
    rng = np.random.default_rng(11)
    spec = _dyadic_net(rng, schedule, encoding)
    if encoding == "current":
        images = (rng.integers(0, 17, (5, 2, 5, 5)) / 16.0).astype(np.float64)
    else:
        images = rng.integers(0, 256, (5, 2, 5, 5)).astype(np.uint8)
    kw = dict(steps=20, record_neurons=True)
    if encoding == "poisson":  # the pinned counter-based input, given to every engine as spike trains
        from convert.encoding import poisson_spikes

        spikes = poisson_spikes(images, np.arange(len(images)), 20, 3, spec.max_rate_hz, spec.dt_ms)
        kw["spikes"] = spikes.reshape(len(images), 20, -1).astype(bool)
    else:
        kw["images"] = images
    events = fastsim_simulate(spec, dtype="float64", kernel="events", **kw)
    torch_ = fastsim_simulate(spec, dtype="float64", kernel="torch", **kw)
    brian = refsim_simulate(spec, device="runtime", **kw)
    uniform = fastsim_simulate(dataclasses.replace(spec, v_init_neurons=None), dtype="float64", **kw)
    assert sum(int(c.sum()) for c in events.neuron_counts) > 0
    for a, b, c in zip(events.neuron_counts, torch_.neuron_counts, brian.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # the per-neuron starts change something (else the test could pass with them ignored)
    assert any(not np.array_equal(a, u) for a, u in zip(events.neuron_counts, uniform.neuron_counts, strict=True))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 16), kernel=st.sampled_from(["events", "torch"]))
def test_one_layer_counts_follow_the_closed_form_with_its_own_start(seed, steps, kernel) -> None:
    """A constant current a from v(0) = f·θ with reset by subtraction: clip(floor(a·T/θ + f), 0, T) spikes in T
    steps (cascade; dyadic values, exact)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-8, 9, (5, 4)) / 8.0
    spec = NetworkSpec(
        (4,),
        (Dense(w, threshold=0.5),),
        reset="subtract",
        schedule="cascade",
        encoding="current",
        v_init_neurons=[rng.integers(0, 16, 5) / 16.0],
    )
    x = rng.integers(0, 17, (7, 4)) / 16.0
    record = fastsim_simulate(spec, x, steps=steps, record_neurons=True, dtype="float64", kernel=kernel)
    a = x @ w.T
    f = spec.v_init_neurons[0]
    expected = np.clip(np.floor(a * steps / 0.5 + f), 0, steps)
    np.testing.assert_array_equal(record.neuron_counts[0], expected)
