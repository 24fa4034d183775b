"""Every engine against the reference loop: schedule x reset x input kind x layer family.

The record (output counts at every checkpoint, per-layer and per-neuron counts, first spike, synaptic events)
must equal what :func:`tests.conformance.reference.expected_record` reads off the literal loop of
docs/semantics.md, exactly: the networks are dyadic (:mod:`tests.conformance.networks`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conformance import reference
from tests.conformance.networks import (
    FAMILIES,
    counter_spikes,
    current_input,
    network,
    poisson_images,
    spike_input,
)

STEPS, N = 12, 3
CHECKPOINTS = np.array([1, 2, 5, 9, STEPS])
SEED, INDICES = 5, np.array([7, 1000, 31])
MODES = [(s, r) for s in ("delay", "cascade") for r in ("zero", "subtract")]
KINDS = ("spikes", "current", "poisson")
# what an engine that compiles a project per network (30-90 s each) runs by default: the network holding all
# four layer families, on the schedule, reset and input kind that tests/refsim/test_standalone.py leaves out,
# the biased network on the cascade schedule (its bias runs between the pathway and the thresholder), and the
# network with every kind (max-pool gate, skip edges, biases) on both schedules
COVER = {
    ("delay", "zero", "current", "CNN"),
    ("cascade", "subtract", "spikes", "Bias"),
    ("delay", "subtract", "spikes", "Residual"),  # every kind: gate, skips, biases, in each schedule
    ("cascade", "zero", "poisson", "Residual"),
    ("cascade", "subtract", "current", "Inception"),  # a skip from below a gate into the population after it
    ("delay", "zero", "poisson", "ShuffleUnit"),  # a padded stride-2 conv skip from a gate
    ("cascade", "zero", "spikes", "DenseBlock"),  # three skip edges into one population
    ("delay", "subtract", "current", "Neurons"),  # populations fed only by skip edges
    ("cascade", "subtract", "spikes", "MaxCountGate"),  # the max-count rule on overlapping, padded windows
}


def _case(engine, schedule: str, reset: str, kind: str, family: str, readout: str = "spikes"):
    """(spec, inputs s_0 (N, T, n_in) for the reference, engine arguments) of one case of the matrix."""
    if kind == "current":
        spec = dataclasses.replace(network(family, schedule, reset, encoding="current"), readout=readout)
        x = current_input(spec, N)
        return spec, np.repeat(x.reshape(N, 1, -1), STEPS, axis=1), {"images": x}
    spec = dataclasses.replace(network(family, schedule, reset), readout=readout)
    if kind == "spikes":
        spikes = spike_input(spec, N, STEPS)
        return spec, spikes.reshape(N, STEPS, -1), {"spikes": spikes}
    # poisson images; an engine without the counter-based generator gets 0/255 images, for which every
    # Bernoulli encoder is deterministic (its own generator is checked in test_poisson_input_is_the_counter_hash)
    images = poisson_images(spec, N, binary=not engine.counter_poisson)
    spikes = counter_spikes(spec, images, INDICES, STEPS, SEED)
    return spec, spikes, {"images": images, "seed": SEED, "image_indices": INDICES}


def _run(engine, spec, inputs, args, labels=None):
    """The engine's record of a case (``args`` as :func:`_case` gives them) and what the reference loop implies."""
    args = dict(args)
    images = args.pop("images", None)
    if labels is not None:
        args["labels"] = labels
    record = engine.run(spec, images, steps=STEPS, checkpoints=CHECKPOINTS, record_neurons=True, **args)
    return record, reference.expected_record(spec, inputs, CHECKPOINTS)


@pytest.mark.conformance_cover(("schedule", "reset", "kind", "family"), COVER)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_engine_matches_the_reference_loop(engine, schedule, reset, kind, family):
    spec, inputs, args = _case(engine, schedule, reset, kind, family)
    labels = np.arange(N) % spec.n_classes
    record, want = _run(engine, spec, inputs, args, labels)
    assert np.all(want.layer_counts.sum(axis=0) > 0), "every layer of the test network must spike"
    reference.assert_record_matches(record, want, f"{engine.id} {schedule}/{reset} {kind} {family}")
    np.testing.assert_array_equal(record.checkpoints, CHECKPOINTS)
    np.testing.assert_array_equal(record.labels, labels)
    np.testing.assert_array_equal(record.image_indices, args.get("image_indices", np.arange(N)))


# the membrane readout on the two-layer networks (a Dense output; a convolution flattened into a Dense output);
# compiling engines run none by default (tests/refsim/test_readout.py compiles one membrane-readout project)
MEMBRANE_FAMILIES = ("Dense", "Flatten")
MEMBRANE_COVER: set[tuple[str, str, str, str]] = set()


@pytest.mark.conformance_cover(("schedule", "reset", "kind", "family"), MEMBRANE_COVER)
@pytest.mark.parametrize("family", MEMBRANE_FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_membrane_readout_matches_the_reference_loop(engine, schedule, reset, kind, family):
    """readout="membrane": the output layer's potential at every checkpoint equals the reference loop's
    exactly (dyadic sums), it never spikes, and the predictions are the argmax of the potential."""
    spec, inputs, args = _case(engine, schedule, reset, kind, family, readout="membrane")
    record, want = _run(engine, spec, inputs, args, np.arange(N) % spec.n_classes)
    assert np.all(want.layer_counts[:, :-1].sum(axis=0) > 0), "every hidden layer of the test network must spike"
    assert np.abs(want.output_potential[:, -1]).sum() > 0, "the output layer must receive input"
    reference.assert_record_matches(record, want, f"{engine.id} membrane {schedule}/{reset} {kind} {family}")
    assert record.output_counts.sum() == 0 and np.all(record.first_spike_step == -1)
    for c in range(len(CHECKPOINTS)):
        v = want.output_potential[:, c]
        decided = v.max(axis=1) > v.min(axis=1)
        np.testing.assert_array_equal(record.predictions(c), np.where(decided, v.argmax(axis=1), -1))


def test_poisson_input_is_the_counter_hash(engine, request):
    """Images with intensities strictly between 0 and 1 give exactly the spikes of convert.encoding."""
    if not engine.counter_poisson:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=f"{engine.id} draws poisson input from Brian2's generator when given images "
                "(refsim/simulate.py); supply the spikes for the pinned input",
            )
        )
    spec = network("Dense", "cascade", "subtract")
    images = poisson_images(spec, N)
    record = engine.run(spec, images, steps=STEPS, seed=SEED, image_indices=INDICES, record_neurons=True)
    want = reference.expected_record(spec, counter_spikes(spec, images, INDICES, STEPS, SEED), record.checkpoints)
    reference.assert_record_matches(record, want, engine.id)


def test_checkpoint_rules_are_one_shell(engine):
    """Every engine takes checkpoints by the one rule of convert.contract.records.checked_checkpoints: those that stop
    before ``steps`` get ``steps`` appended (the record's ``steps`` is the whole run, and its counts there are
    the reference's), and unordered or out-of-range checkpoints are refused before anything runs."""
    spec, inputs, args = _case(engine, "delay", "zero", "spikes", "Dense")
    record = engine.run(spec, steps=STEPS, checkpoints=[2, 5], record_neurons=True, **args)
    np.testing.assert_array_equal(record.checkpoints, [2, 5, STEPS])
    assert record.steps == STEPS
    reference.assert_record_matches(record, reference.expected_record(spec, inputs, record.checkpoints), engine.id)
    for bad in ([5, 2], [0, 5], [STEPS + 1], []):
        with pytest.raises(ValueError, match="checkpoints must be increasing"):
            engine.run(spec, steps=STEPS, checkpoints=bad, **args)


# an initial membrane potential (the spec's v_init: v_l(0) = v_init · θ_l, a multiple of 1/8 here, so exact) on
# a chain, the CNN and the network with every kind; compiling engines run it on the every-kind network once
V_INIT_FAMILIES = ("Dense", "CNN", "Residual")
V_INIT_COVER = {("delay", "subtract", "poisson", "Residual")}


@pytest.mark.conformance_cover(("schedule", "reset", "kind", "family"), V_INIT_COVER)
@pytest.mark.parametrize("family", V_INIT_FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_initial_membrane_matches_the_reference_loop(engine, schedule, reset, kind, family):
    spec, inputs, args = _case(engine, schedule, reset, kind, family)
    spec = dataclasses.replace(spec, v_init=0.5)
    record, want = _run(engine, spec, inputs, args)
    at_rest = reference.expected_record(dataclasses.replace(spec, v_init=0.0), inputs, CHECKPOINTS)
    assert not np.array_equal(want.layer_counts, at_rest.layer_counts), "v_init must change this case's counts"
    reference.assert_record_matches(record, want, f"{engine.id} v_init=0.5 {schedule}/{reset} {kind} {family}")


@pytest.mark.parametrize(("schedule", "reset"), MODES)
def test_membrane_readout_starts_at_v_init(engine, schedule, reset):
    """A membrane output layer starts at v_init · θ of its spec's θ too (it never fires; its potential is read)."""
    spec, inputs, args = _case(engine, schedule, reset, "spikes", "Dense", readout="membrane")
    spec = dataclasses.replace(spec, v_init=0.25)
    record, want = _run(engine, spec, inputs, args)
    reference.assert_record_matches(record, want, f"{engine.id} membrane v_init=0.25 {schedule}/{reset}")
    at_rest = reference.expected_record(dataclasses.replace(spec, v_init=0.0), inputs, CHECKPOINTS)
    assert not np.array_equal(want.output_potential, at_rest.output_potential), "v_init must change the potential"
