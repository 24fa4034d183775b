"""Threshold margins: the closest approach of each membrane to its threshold, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.spec import Dense, NetworkSpec
from fastsim.simulate import simulate


@pytest.mark.parametrize(
    "schedule, expected",
    [
        # cascade checks v after the input: .35 .7 1.05 | .4 .75 1.1 | .45 .8 1.15 | .5 .85 1.2 → 0.05
        ("cascade", 0.05),
        # delay checks the voltage left from the step before: 0 .35 .7 1.05 | .4 .75 1.1 | .45 .8 1.15 | .5 .85
        ("delay", 0.05),
    ],
)
def test_single_neuron_margin(schedule, expected):
    spec = NetworkSpec(
        input_shape=(1,),
        layers=(Dense([[0.35]], threshold=1.0),),
        encoding="current",
        schedule=schedule,
        reset="subtract",
    )
    rec = simulate(spec, np.ones((1, 1)), steps=12, dtype="float64", record_neurons=True, record_margins=True)
    assert rec.margins is not None and rec.margins[0].shape == (1, 1)
    assert rec.margins[0][0, 0] == pytest.approx(expected, abs=1e-12)


def test_margin_zero_when_exactly_at_threshold():
    spec = NetworkSpec(input_shape=(1,), layers=(Dense([[0.5]], threshold=1.0),), encoding="current", reset="zero")
    rec = simulate(spec, np.ones((1, 1)), steps=5, dtype="float64", record_margins=True)
    assert rec.margins[0][0, 0] == 0.0
