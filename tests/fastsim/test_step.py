"""The step functions and the layer scan against the hand-worked golden chain (tests/conformance/golden.py).

The chain: input spikes s_0(t) = 1 every step -> neuron A (w = 0.75, θ = 1) -> neuron B (w = 0.5, θ = 1). The
conformance suite checks what every engine records for it; here the pure step functions are checked against
the membranes too, which no SpikeRecord holds.
"""

from __future__ import annotations

import pytest
import torch

from convert.contract.spec import Dense
from fastsim.layers import operator
from fastsim.scan import if_scan
from fastsim.step import (
    IFState,
    NetworkState,
    cascade_step,
    delay_step,
    if_step,
    if_step_delayed,
    network_step,
)
from tests.conformance.golden import GOLDEN, MODES, STEPS, chain

T = STEPS


def golden(schedule: str, reset: str) -> tuple[list[int], list[float], list[int], list[float]]:
    """(spikes A, voltage A, spikes B, voltage B) of the input that spikes in every step."""
    g = GOLDEN[(schedule, reset)]["every step"]
    return [int(c) for c in g.a], [float(v) for v in g.v_a], [int(c) for c in g.b], [float(v) for v in g.v_b]


@pytest.mark.parametrize("schedule,reset", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_network_step_golden(schedule: str, reset: str, dtype: torch.dtype) -> None:
    spec = chain(schedule, reset)
    synapses = [operator(layer, (1,), torch.device("cpu"), dtype) for layer in spec.layers]
    thresholds = [torch.tensor(1.0, dtype=dtype)] * 2
    state = NetworkState((IFState(torch.zeros(1, 1, dtype=dtype)), IFState(torch.zeros(1, 1, dtype=dtype))))
    step = network_step(schedule)
    got = [[], [], [], []]
    for _ in range(T):
        (sa, sb), state = step(torch.ones(1, 1, dtype=dtype), state, synapses, thresholds, reset)
        for lst, val in zip(got, (sa, state.layers[0].v, sb, state.layers[1].v), strict=True):
            lst.append(float(val))
    spikes_a, v_a, spikes_b, v_b = golden(schedule, reset)
    assert got[0] == spikes_a
    assert got[1] == v_a
    assert got[2] == spikes_b
    assert got[3] == v_b


@pytest.mark.parametrize("schedule,reset", MODES)
def test_if_scan_equals_steps(schedule: str, reset: str) -> None:
    """The time-batched layer scan reproduces neuron A's golden trajectory from its input currents."""
    currents = torch.full((T, 1), 0.75, dtype=torch.float64)
    start = IFState(torch.zeros(1, dtype=torch.float64))
    for unroll in (1, 3, 10):
        spikes, state, counts = if_scan(currents, start, torch.tensor(1.0), reset, schedule, unroll=unroll)
        spikes_a, v_a, _, _ = golden(schedule, reset)
        assert spikes[:, 0].int().tolist() == spikes_a
        assert float(state.v) == v_a[-1]
        assert float(counts) == sum(spikes_a)


def test_if_step_orders() -> None:
    """cascade: integrate then fire; delay: fire on the old voltage, then integrate."""
    v = IFState(torch.tensor([0.5, 1.0]))
    theta, current = torch.tensor(1.0), torch.tensor([0.5, 0.25])
    s, new = if_step(current, v, theta, "subtract")
    assert s.tolist() == [True, True] and new.v.tolist() == [0.0, 0.25]
    s, new = if_step_delayed(current, v, theta, "subtract")
    assert s.tolist() == [False, True] and new.v.tolist() == [1.0, 0.25]
    s, new = if_step_delayed(current, v, theta, "zero")
    assert s.tolist() == [False, True] and new.v.tolist() == [1.0, 0.0]
    assert v.v.tolist() == [0.5, 1.0]  # pure: the input state is untouched


def test_delay_thresholds_before_synapses() -> None:
    """In ``delay`` a spike of layer 1 in step t reaches layer 2 in the same step t but cannot make
    layer 2 spike before t + 1; in ``cascade`` it crosses both layers within step t."""
    layers = (Dense([[1.0]], threshold=1.0), Dense([[1.0]], threshold=1.0))
    synapses = [operator(layer, (1,), torch.device("cpu"), torch.float64) for layer in layers]
    thresholds = [torch.tensor(1.0, dtype=torch.float64)] * 2
    zero = NetworkState(tuple(IFState(torch.zeros(1, 1, dtype=torch.float64)) for _ in range(2)))
    x = torch.ones(1, 1, dtype=torch.float64)
    (s1, s2), _ = cascade_step(x, zero, synapses, thresholds, "zero")
    assert (bool(s1), bool(s2)) == (True, True)
    (s1, s2), state = delay_step(x, zero, synapses, thresholds, "zero")
    assert (bool(s1), bool(s2)) == (False, False)
    (s1, s2), state = delay_step(x, state, synapses, thresholds, "zero")
    assert (bool(s1), bool(s2)) == (True, False)
    (s1, s2), state = delay_step(x, state, synapses, thresholds, "zero")
    assert (bool(s1), bool(s2)) == (False, True)  # layer 1 was reset to 0, losing step 1's input


def test_unknown_mode_raises() -> None:
    with pytest.raises(ValueError, match="schedule"):
        network_step("sideways")
    with pytest.raises(ValueError, match="reset"):
        if_step(torch.ones(1), IFState(torch.ones(1)), torch.tensor(0.5), "halve")
