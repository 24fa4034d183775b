"""Golden spike times of hand-computed networks on Brian2's runtime device, every schedule x reset mode.

The chain: one input -> layer 1 (w = 0.75, θ = 1) -> layer 2 (w = 0.5, θ = 1), 8 steps per image.
Image 0 gets an input spike in every step, image 1 in steps 3 and 4 only. Worked by hand from
docs/semantics.md, e.g. ``delay``/``zero``, image 0 (v after each step):

    t   thresholds (on v from t-1)   synapses            resets
    0   -                            v1 = .75
    1   -                            v1 = 1.5
    2   s1 (v1 = 1.5)                v1 = 2.25, v2 = .5  v1 = 0
    3   -                            v1 = .75
    4   -                            v1 = 1.5
    5   s1                           v1 = 2.25, v2 = 1   v1 = 0
    6   s2 (v2 = 1)                  v1 = .75            v2 = 0
    7   -                            v1 = 1.5

``cascade``/``subtract``, image 0: t1 v1 = 1.5 -> s1, .5; v2 = .5 | t2 v1 = 1.25 -> s1, .25; v2 = 1 -> s2, 0 |
t3 v1 = 1 -> s1, 0; v2 = .5 | t4 v1 = .75 | t5 v1 = 1.5 -> s1, .5; v2 = 1 -> s2 | t6 v1 = 1.25 -> s1, .25;
v2 = .5 | t7 v1 = 1 -> s1; v2 = 1 -> s2.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.spec import Dense, NetworkSpec
from refsim.build import build_layer
from refsim.inputs import InputBatch
from refsim.runners import RuntimeRunner
from refsim.simulate import simulate

STEPS = 8
# (schedule, reset) -> per image: (layer-1 spike steps, layer-2 spike steps)
GOLDEN = {
    ("delay", "zero"): [([2, 5], [6]), ([5], [])],
    ("delay", "subtract"): [([2, 3, 4, 6, 7], [4, 7]), ([5], [])],
    ("cascade", "zero"): [([1, 3, 5, 7], [3, 7]), ([4], [])],
    ("cascade", "subtract"): [([1, 2, 3, 5, 6, 7], [2, 5, 7]), ([4], [])],
}


def chain(schedule: str, reset: str) -> NetworkSpec:
    layers = (Dense([[0.75]], threshold=1.0), Dense([[0.5]], threshold=1.0))
    return NetworkSpec((1,), layers, schedule=schedule, reset=reset)


def golden_input() -> np.ndarray:
    spikes = np.zeros((2, STEPS, 1), dtype=bool)
    spikes[0, :, 0] = True
    spikes[1, [3, 4], 0] = True
    return spikes


@pytest.mark.parametrize(("schedule", "reset"), list(GOLDEN))
@pytest.mark.parametrize("spike_source", ["generator", "timed_array"])
def test_golden_spike_steps(schedule, reset, spike_source):
    result = RuntimeRunner(chain(schedule, reset), STEPS, spike_source=spike_source).run(
        InputBatch("spikes", golden_input())
    )
    for layer, table in enumerate(result.tables):
        for image, expected in enumerate(GOLDEN[(schedule, reset)]):
            got = sorted(table.step[table.image == image].tolist())
            assert got == expected[layer], f"layer {layer + 1}, image {image}"
    np.testing.assert_array_equal(result.input_counts, [[8], [2]])


@pytest.mark.parametrize(("schedule", "reset"), list(GOLDEN))
def test_golden_record(schedule, reset):
    record = simulate(chain(schedule, reset), spikes=golden_input(), steps=STEPS, checkpoints=np.arange(1, STEPS + 1))
    golden = GOLDEN[(schedule, reset)]
    for image, (l1, l2) in enumerate(golden):
        per_step = np.zeros(STEPS, dtype=int)
        per_step[l2] = 1
        np.testing.assert_array_equal(record.output_counts[image, :, 0], np.cumsum(per_step))
        assert record.first_spike_step[image] == (l2[0] if l2 else -1)
        np.testing.assert_array_equal(record.layer_counts[image], [len(l1), len(l2)])
        # synaptic events: every input spike and every layer-1 spike reaches exactly one synapse
        np.testing.assert_array_equal(record.synops[image], [[8, 2][image], len(l1)])
    assert record.meta["simulator"] == "refsim" and record.meta["schedule"] == schedule


@pytest.mark.parametrize("schedule", ["delay", "cascade"])
def test_membrane_is_zero_at_every_image_start(schedule):
    """v = .75 at the end of image 0; a carried voltage would make image 1's single input spike fire."""
    spec = NetworkSpec((1,), (Dense([[0.75]], threshold=1.0),), schedule=schedule)
    spikes = np.zeros((2, 4, 1), dtype=bool)
    spikes[0, 3, 0] = spikes[1, 0, 0] = True
    record = simulate(spec, spikes=spikes, steps=4)
    np.testing.assert_array_equal(record.layer_counts, [[0], [0]])
    spikes[1, 1, 0] = True  # two spikes within image 1 do reach the threshold
    record = simulate(spec, spikes=spikes, steps=4)
    np.testing.assert_array_equal(record.layer_counts, [[0], [1]])


def test_unknown_layer_type_is_named():
    class Strange:
        pass

    with pytest.raises(TypeError, match="Strange"):
        build_layer(Strange(), None)
