"""refsim.simulate on the runtime device (numpy target) against an independent reference loop."""

from __future__ import annotations

import numpy as np
import pytest

from convert.encoding import poisson_spikes
from convert.records import default_checkpoints
from convert.spec import Dense, NetworkSpec
from refsim.simulate import simulate
from tests.refsim.conftest import dyadic_cnn, dyadic_mlp, reference_fanouts, reference_run

SCHEDULE_RESET = [(s, r) for s in ("delay", "cascade") for r in ("zero", "subtract")]


def assert_matches_reference(record, spec, inputs, steps):
    """Every field of ``record`` equals what the reference loop's spike trains give."""
    trains = reference_run(spec, inputs)
    checkpoints = record.checkpoints
    out = trains[-1].cumsum(axis=1)[:, checkpoints - 1]
    np.testing.assert_array_equal(record.output_counts, out)
    np.testing.assert_array_equal(record.layer_counts, np.stack([t.sum(axis=(1, 2)) for t in trains], axis=1))
    for got, train in zip(record.neuron_counts, trains, strict=True):
        np.testing.assert_array_equal(got, train.sum(axis=1))
    fired = trains[-1].any(axis=2)
    first = np.where(fired.any(axis=1), fired.argmax(axis=1), -1)
    np.testing.assert_array_equal(record.first_spike_step, first)
    below = [inputs.sum(axis=1), *(t.sum(axis=1) for t in trains[:-1])]
    synops = np.stack([b @ f for b, f in zip(below, reference_fanouts(spec), strict=True)], axis=1)
    np.testing.assert_allclose(record.synops, synops, rtol=1e-12)


@pytest.mark.parametrize(("schedule", "reset"), SCHEDULE_RESET)
@pytest.mark.parametrize("make_spec", [dyadic_mlp, dyadic_cnn], ids=["mlp", "cnn"])
def test_supplied_spikes_match_the_reference_loop(make_spec, schedule, reset, rng):
    spec = make_spec(rng, reset=reset, schedule=schedule)
    steps, n = 25, 4
    images = rng.integers(0, 256, size=(n, *spec.input_shape), dtype=np.uint8)
    spikes = poisson_spikes(images, np.arange(n), steps, seed=7)
    record = simulate(spec, spikes=spikes, steps=steps, record_neurons=True, batch_size=3)
    assert record.layer_counts[:, -1].sum() > 0, "the test network should make output spikes"
    assert_matches_reference(record, spec, spikes.reshape(n, steps, -1).astype(float), steps)


@pytest.mark.parametrize(("schedule", "reset"), [("delay", "subtract"), ("cascade", "zero")])
def test_current_encoding_matches_the_reference_loop(schedule, reset, rng):
    spec = dyadic_mlp(rng, reset=reset, schedule=schedule, encoding="current")
    steps, n = 20, 3
    x = rng.integers(0, 9, size=(n, 12)) / 8.0  # dyadic intensities: exact sums
    record = simulate(spec, x, steps=steps, record_neurons=True)
    assert record.meta["input"] == "current"
    assert_matches_reference(record, spec, np.repeat(x[:, None, :], steps, axis=1), steps)


@pytest.mark.parametrize("schedule", ["delay", "cascade"])
@pytest.mark.parametrize("j", [0.05, 0.3, 0.55, 0.8, 1.7])
def test_constant_input_rate_oracle(j, schedule):
    """IF neuron, reset by subtraction, constant input J per step, θ = 0.8: the analytic count T·J/θ within 1.

    Under ``delay`` the threshold test of step t sees the input up to t - 1, so the last step's input is
    never tested: T - 1 steps count. A neuron fires at most once per step, so J > θ saturates.
    """
    theta, steps = 0.8, 150
    spec = NetworkSpec((1,), (Dense([[j]], threshold=theta),), reset="subtract", encoding="current", schedule=schedule)
    record = simulate(spec, np.ones((1, 1)), steps=steps)
    tested = steps - 1 if schedule == "delay" else steps
    assert abs(record.layer_counts[0, 0] - tested * min(j / theta, 1.0)) <= 1


def test_batch_size_does_not_change_the_record(rng):
    spec = dyadic_mlp(rng, schedule="cascade")
    spikes = rng.random((5, 15, 12)) < 0.4
    one = simulate(spec, spikes=spikes, steps=15, batch_size=5)
    split = simulate(spec, spikes=spikes, steps=15, batch_size=2)
    for name in ("output_counts", "layer_counts", "first_spike_step", "synops"):
        np.testing.assert_array_equal(getattr(one, name), getattr(split, name))


def test_poisson_input_is_seeded_and_has_the_intensity_as_probability(rng):
    spec = NetworkSpec((40,), (Dense(np.full((2, 40), 1 / 16)),))
    x = np.tile(np.linspace(0, 1, 40), (3, 1))
    a = simulate(spec, x, steps=300, seed=5, record_neurons=True)
    b = simulate(spec, x, steps=300, seed=5, record_neurons=True)
    c = simulate(spec, x, steps=300, seed=6, record_neurons=True)
    np.testing.assert_array_equal(a.synops, b.synops)
    assert not np.array_equal(a.synops, c.synops)
    rate = a.synops[:, 0].sum() / (2 * 3 * 300)  # synops = input spikes x fanout 2
    assert abs(rate - x[0].sum()) < 0.02 * x[0].sum()
    assert a.meta["input"] == "poisson" and a.meta["seed"] == 5


def test_defaults_labels_and_indices(rng):
    spec = dyadic_mlp(rng)
    spikes = rng.random((3, 12, 12)) < 0.5
    record = simulate(spec, spikes=spikes, steps=12, labels=[2, 0, 1], image_indices=[10, 11, 12])
    np.testing.assert_array_equal(record.checkpoints, default_checkpoints(12))
    np.testing.assert_array_equal(record.labels, [2, 0, 1])
    np.testing.assert_array_equal(record.image_indices, [10, 11, 12])
    assert record.neuron_counts is None
    plain = simulate(spec, spikes=spikes, steps=12)
    np.testing.assert_array_equal(plain.labels, [-1, -1, -1])
    np.testing.assert_array_equal(plain.image_indices, [0, 1, 2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((1, 12)), "spikes": np.zeros((1, 5, 12), bool)}, "exactly one"),
        ({}, "exactly one"),
        ({"spikes": np.zeros((1, 4, 12), bool)}, "steps=5"),
        ({"images": np.zeros((1, 11))}, "12"),
        ({"images": np.zeros((1, 12)), "device": "gpu"}, "device"),
        ({"images": np.zeros((1, 12)), "labels": [1, 2]}, "labels"),
        ({"images": np.zeros((1, 12)), "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_named(kwargs, match, rng):
    with pytest.raises(ValueError, match=match):
        simulate(dyadic_mlp(rng), steps=5, **kwargs)


def test_spikes_need_a_poisson_spec(rng):
    spec = dyadic_mlp(rng, encoding="current")
    with pytest.raises(ValueError, match="encoding"):
        simulate(spec, spikes=np.zeros((1, 5, 12), bool), steps=5)
