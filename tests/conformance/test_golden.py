"""Golden trajectories: the hand-worked chain of :mod:`tests.conformance.golden` on every engine.

Each engine runs the chain (and its first layer alone, whose spikes do not depend on layer B) for every
schedule x reset mode x input kind; with a checkpoint after every step the cumulative output counts spell out
the output layer's spike train step by step. The reference loop itself must reproduce the table, membranes
included, so a wrong loop cannot hide behind agreeing engines.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from convert.contract.spec import Dense, NetworkSpec
from tests.conformance import reference
from tests.conformance.golden import (
    GOLDEN,
    INPUTS,
    MEMBRANE_GOLDEN,
    MODES,
    STEPS,
    Golden,
    chain,
    input_trains,
    train,
)

SILENT = "0" * STEPS
NOTHING = Golden(SILENT, (0.0,) * STEPS, SILENT, (0.0,) * STEPS)  # no input: no spike, v = 0 throughout
KINDS = ("spikes", "current", "poisson")
# an engine that compiles a project per network runs none of these by default (see conftest.py)


@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_reference_loop_reproduces_the_golden_table(schedule, reset):
    names = list(INPUTS)
    got = reference.simulate(chain(schedule, reset), input_trains(names))
    for n, name in enumerate(names):
        want = GOLDEN[(schedule, reset)][name]
        for k, (bits, volts) in enumerate(((want.a, want.v_a), (want.b, want.v_b))):
            where = f"{schedule}/{reset}, {name}, layer {'AB'[k]}"
            np.testing.assert_array_equal(got.spikes[k][n, :, 0], train(bits), err_msg=where)
            np.testing.assert_array_equal(got.v[k][n, :, 0], volts, err_msg=where)


@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_reference_loop_reproduces_the_membrane_golden_table(schedule, reset):
    names = list(INPUTS)
    got = reference.simulate(chain(schedule, reset, readout="membrane"), input_trains(names))
    for n, name in enumerate(names):
        where = f"{schedule}/{reset}, {name}"
        np.testing.assert_array_equal(got.v[1][n, :, 0], MEMBRANE_GOLDEN[(schedule, reset)][name], err_msg=where)
        assert not got.spikes[1].any(), where
        np.testing.assert_array_equal(got.spikes[0][n, :, 0], train(GOLDEN[(schedule, reset)][name].a), err_msg=where)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_golden_chain_membrane_readout(engine, schedule, reset, kind):
    """B's potential after every step is the hand-worked table; B never fires; with one output neuron every
    potential is "all equal", so every prediction is -1 (undecided, counted wrong)."""
    kw = dict(steps=STEPS, checkpoints=np.arange(1, STEPS + 1), record_neurons=True)
    table = MEMBRANE_GOLDEN[(schedule, reset)]
    if kind == "spikes":
        names = ["every step", "steps 3-4"]
        record = engine.run(chain(schedule, reset, readout="membrane"), spikes=input_trains(names), **kw)
        want = [table[name] for name in names]
    else:
        images = np.array([[1.0], [0.0]]) if kind == "current" else np.array([[255], [0]], dtype=np.uint8)
        spec = chain(schedule, reset, encoding="current" if kind == "current" else "poisson", readout="membrane")
        record = engine.run(spec, images, seed=3, **kw)
        want = [table["every step"], (0.0,) * STEPS]
    where = f"{engine.id} {schedule}/{reset} {kind}"
    assert record.readout == "membrane", where
    np.testing.assert_array_equal(record.output_potential[:, :, 0], want, err_msg=where)
    np.testing.assert_array_equal(record.output_counts, 0, err_msg=where)
    np.testing.assert_array_equal(record.first_spike_step, [-1, -1], err_msg=where)
    np.testing.assert_array_equal(record.predictions(), [-1, -1], err_msg=where)
    # A's spikes reach B's one synapse: B's synaptic events after t steps are 2 v_B(t)
    np.testing.assert_array_equal(record.synops_curve[:, :, 1], 2 * np.asarray(want), err_msg=where)


def _golden_run(engine, schedule: str, reset: str, kind: str, depth: int):
    """Run the chain on two images of input ``kind``; return the record and the expected input/layer trains."""
    table = GOLDEN[(schedule, reset)]
    kw = dict(steps=STEPS, checkpoints=np.arange(1, STEPS + 1), record_neurons=True)
    if kind == "spikes":
        names = ["every step", "steps 3-4"]
        record = engine.run(chain(schedule, reset, depth), spikes=input_trains(names), **kw)
        rows = [(INPUTS[name], table[name]) for name in names]
    else:
        # current x = 1 is s_0(t) = 1 in every step; poisson input of intensity 1 (0) spikes in every step
        # (never) under any Bernoulli encoder, so even Brian2's own generator gives this input
        images = np.array([[1.0], [0.0]]) if kind == "current" else np.array([[255], [0]], dtype=np.uint8)
        encoding = "current" if kind == "current" else "poisson"
        record = engine.run(chain(schedule, reset, depth, encoding), images, seed=3, **kw)
        rows = [(INPUTS["every step"], table["every step"]), (SILENT, NOTHING)]
    return record, rows


@pytest.mark.parametrize("depth", [1, 2], ids=["A", "AB"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_golden_chain(engine, schedule, reset, kind, depth):
    record, rows = _golden_run(engine, schedule, reset, kind, depth)
    for n, (inputs, want) in enumerate(rows):
        where = f"{engine.id} {schedule}/{reset} {kind}, image {n}"
        trains = [train(want.a), train(want.b)][:depth]
        output = np.diff(record.output_counts[n, :, 0], prepend=0)
        np.testing.assert_array_equal(output, trains[-1], err_msg=f"{where}: output spikes per step")
        first = int(np.argmax(trains[-1])) if trains[-1].any() else -1
        assert record.first_spike_step[n] == first, where
        np.testing.assert_array_equal(record.layer_counts[n], [t.sum() for t in trains], err_msg=where)
        # every input spike and every A spike reaches exactly one synapse
        np.testing.assert_allclose(record.synops[n], [train(inputs).sum(), *(t.sum() for t in trains[:-1])])
    assert record.meta["schedule"] == schedule and record.meta["reset"] == reset


@pytest.mark.parametrize("schedule", ["delay", "cascade"])
def test_membrane_starts_at_zero_for_every_image(engine, schedule):
    """v = .75 at the end of image 0; a voltage carried into image 1 would make its single input spike fire."""
    spec = NetworkSpec((1,), (Dense([[0.75]], threshold=1.0),), schedule=schedule)
    spikes = np.zeros((2, 4, 1), dtype=bool)
    spikes[0, 3, 0] = spikes[1, 0, 0] = True
    np.testing.assert_array_equal(engine.run(spec, spikes=spikes, steps=4).layer_counts, [[0], [0]])
    spikes[1, 1, 0] = True  # two input spikes within image 1 do reach the threshold
    np.testing.assert_array_equal(engine.run(spec, spikes=spikes, steps=4).layer_counts, [[0], [1]])


@pytest.mark.parametrize("schedule", ["delay", "cascade"])
def test_membrane_starts_at_v_init_for_every_image(engine, schedule):
    """v_init = ½, θ = 1, w = ¼: one input spike leaves v = .75 (no spike) in every image, also the one after an
    image that ended at .75 (not carried over); two reach 1 and fire, which from rest (v = 0) they would not."""
    spec = NetworkSpec((1,), (Dense([[0.25]], threshold=1.0),), schedule=schedule, v_init=0.5)
    spikes = np.zeros((2, 4, 1), dtype=bool)
    spikes[0, 2, 0] = spikes[1, 0, 0] = True
    np.testing.assert_array_equal(engine.run(spec, spikes=spikes, steps=4).layer_counts, [[0], [0]])
    spikes[1, 1, 0] = True
    np.testing.assert_array_equal(engine.run(spec, spikes=spikes, steps=4).layer_counts, [[0], [1]])
    rest = dataclasses.replace(spec, v_init=0.0)
    np.testing.assert_array_equal(engine.run(rest, spikes=spikes, steps=4).layer_counts, [[0], [0]])
