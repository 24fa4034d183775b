"""Brian2 network building: both spike sources of the runtime device on the golden chain; unknown layers.

The golden chain and its hand-worked spike trains live in tests/conformance/golden.py, where every engine's
record is checked against them. Here the runtime device's two ways of delivering supplied spikes (a
SpikeGeneratorGroup and a TimedArray-driven group, which standalone projects use) must give those spike steps.
"""

from __future__ import annotations

import numpy as np
import pytest

from refsim.build import build_layer
from refsim.inputs import InputBatch
from refsim.runners import RuntimeRunner
from tests.conformance.golden import GOLDEN, INPUTS, MODES, STEPS, chain, input_trains

NAMES = list(INPUTS)  # image 0: an input spike in every step; image 1: in steps 3 and 4


def spike_steps(bits: str) -> list[int]:
    return [t for t, c in enumerate(bits) if c == "1"]


@pytest.mark.parametrize(("schedule", "reset"), MODES)
@pytest.mark.parametrize("spike_source", ["generator", "timed_array"])
def test_golden_spike_steps(schedule, reset, spike_source):
    result = RuntimeRunner(chain(schedule, reset), STEPS, spike_source=spike_source).run(
        InputBatch("spikes", input_trains(NAMES))
    )
    for layer, table in enumerate(result.tables):
        for image, name in enumerate(NAMES):
            want = GOLDEN[(schedule, reset)][name]
            got = sorted(table.step[table.image == image].tolist())
            assert got == spike_steps((want.a, want.b)[layer]), f"layer {layer + 1}, image {image}"
    np.testing.assert_array_equal(result.input_counts, [[8], [2]])


def test_unknown_layer_type_is_named():
    class Strange:
        pass

    with pytest.raises(TypeError, match="Strange"):
        build_layer(Strange(), None)
