"""refsim.simulate on the runtime device (numpy target): batching, Brian2's Poisson input, arguments.

The semantics (golden trajectories, the reference loop, the analytic oracle) are checked for every engine,
this one included, by tests/conformance.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.records import default_checkpoints
from convert.contract.spec import Dense, NetworkSpec
from refsim.simulate import simulate
from tests.refsim.conftest import dyadic_mlp


def test_batch_size_does_not_change_the_record(rng):
    spec = dyadic_mlp(rng, schedule="cascade")
    spikes = rng.random((5, 15, 12)) < 0.4
    one = simulate(spec, spikes=spikes, steps=15, batch_size=5)
    split = simulate(spec, spikes=spikes, steps=15, batch_size=2)
    assert one.layer_counts[:, -1].sum() > 0, "the test network should make output spikes"
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
