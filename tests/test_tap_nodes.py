"""Tap nodes (the max-pool gate): a kind of layer that is no population but holds state on the spikes of the
population below. convert registers it by its family's ``tap``; each simulator keeps one module per kind and
one table of them (``fastsim.stages.TAP_NODES``, ``refsim.build.TAP_NODES``)."""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.graph import edges
from convert.contract.spec import Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, SpecError
from convert.layers import FAMILIES, LayerFamily, is_tap_node
from convert.layers.maxpool2d import forward
from convert.stats import weights_fingerprint


def gated() -> NetworkSpec:
    rng = np.random.default_rng(0)
    layers = (Conv2d(rng.normal(size=(2, 1, 3, 3))), MaxPool2d(2), Flatten(), Dense(rng.normal(size=(3, 8))))
    return NetworkSpec((1, 6, 6), layers)


def test_every_simulator_has_a_builder_for_every_tap_node_kind():
    from fastsim.stages import TAP_NODES as FASTSIM
    from refsim.build import TAP_NODES as REFSIM

    kinds = {fam.layer for fam in FAMILIES.values() if fam.tap is not None}
    assert kinds == {MaxPool2d}
    assert set(FASTSIM) == kinds and set(REFSIM) == kinds


def test_the_gate_is_read_as_its_familys_tap():
    spec = gated()
    assert is_tap_node(spec.layers[1]) and not is_tap_node(spec.layers[0]) and not is_tap_node(spec.layers[2])
    assert spec.tap(1) == ("gate", 0) and spec.tap(0) == ("pop", 0)
    assert spec.node_before(1) == 1 and spec.node_before(0) is None
    assert [e.source for e in edges(spec)] == [("input", 0), ("gate", 0)]
    assert not spec.is_chain


@pytest.mark.parametrize("first", [True, False])
def test_a_tap_node_that_does_not_follow_a_population_is_refused(first):
    """On the input image (pixels are no spike counts) or on another gate's output."""
    rng = np.random.default_rng(0)
    if first:
        layers, where = (MaxPool2d(2), Conv2d(rng.normal(size=(2, 1, 3, 3))), Flatten(), Dense(np.ones((3, 2)))), 0
    else:
        conv = Conv2d(rng.normal(size=(2, 1, 3, 3)))
        layers, where = (conv, MaxPool2d(2), MaxPool2d(2), Flatten(), Dense(np.ones((3, 2)))), 2
    with pytest.raises(SpecError, match=rf"layers\[{where}\] \(MaxPool2d\): a gate \(tap node\) must directly follow"):
        NetworkSpec((1, 6, 6), layers)


@pytest.mark.parametrize(("tap", "spiking"), [("pop", False), ("input", False), ("gate", True)])
def test_a_family_cannot_name_its_tap_as_a_population_or_be_one(tap, spiking):
    from convert.layers.dense import Dense as Spiking

    with pytest.raises(SpecError, match="a tap node is no population and its tap is named anew"):
        LayerFamily(Spiking if spiking else MaxPool2d, forward=forward, nir_node=lambda *a: None, tap=tap)


def test_the_statistics_key_sees_the_gates_settings_through_its_family():
    """The same weights behind a gate that differs only in ceil_mode (same shapes here) key different
    statistics: the key reads the settings through the family's ``key_fields``."""
    spec = gated()
    ceil = NetworkSpec(spec.input_shape, (spec.layers[0], MaxPool2d(2, ceil_mode=True), *spec.layers[2:]))
    assert ceil.shapes == spec.shapes
    assert weights_fingerprint(ceil) != weights_fingerprint(spec)
    assert weights_fingerprint(gated()) == weights_fingerprint(spec)


def test_a_tap_node_kind_without_an_event_step_runs_on_the_torch_engine(monkeypatch):
    """The event engine runs the tap-node kinds it has a compiled step for (fastsim.event_tables.EVENT_NODES);
    a spec with another kind gets the torch engine from kernel="auto", and kernel="events" says why not."""
    import fastsim.event_tables
    from fastsim import simulate

    spec = gated()
    images = np.random.default_rng(1).random((2, 1, 6, 6))
    assert fastsim.event_tables.unsupported_reason(spec) is None
    assert simulate(spec, images, steps=5, dtype="float64").meta["kernel"] == "events"
    monkeypatch.setattr(fastsim.event_tables, "EVENT_NODES", ())
    assert "no step for the tap node(s) MaxPool2d" in fastsim.event_tables.unsupported_reason(spec)
    record = simulate(spec, images, steps=5, dtype="float64")
    assert record.meta["kernel"] == "torch"
    with pytest.raises(ValueError, match=r"kernel=.events.: the event engine has no step for .* MaxPool2d"):
        simulate(spec, images, steps=5, dtype="float64", kernel="events")


@pytest.mark.parametrize(
    "pool", [MaxPool2d(2), MaxPool2d(3, stride=2, padding=1), MaxPool2d(3, stride=2, ceil_mode=True)]
)
def test_the_max_count_rule_passes_the_highest_count_and_the_leader_rule_more(pool):
    """Over random spike trains, at every step: the max-count gate's passed spikes so far equal its window's
    highest count so far; the leader gate's are at least that, and more somewhere (the lead changes hands)."""
    import dataclasses

    import torch

    from fastsim.gate import MaxGate

    shape = (2, 7, 7)
    spikes = torch.as_tensor(np.random.default_rng(3).random((40, 5, *shape)) < 0.3, dtype=torch.float64)
    passed = {}
    for rule in ("leader", "max-count"):
        gate = MaxGate(dataclasses.replace(pool, rule=rule), shape, ("gate", 0))
        out, _ = gate(spikes, gate.initial(5, torch.device("cpu")))
        passed[rule] = out.cumsum(0)
    counts = MaxGate(pool, shape, ("gate", 0)).windows(spikes).cumsum(0)
    highest = counts.max(-1).values
    assert torch.equal(passed["max-count"], highest)
    assert torch.all(passed["leader"] >= highest) and torch.any(passed["leader"] > highest)
