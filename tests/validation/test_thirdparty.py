"""Third-party engines (validation/harness/thirdparty/): the spec's NIR graph run in Norse, snnTorch and sinabs, against
fastsim on the spec the graph encodes, on small networks with exact (dyadic) arithmetic.

With the adapter every library must reproduce fastsim's per-neuron counts exactly; as imported, each one's
verdict is the one docs/interop.md reports (tests/validation/test_interop.py checks the two agree)."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from tests.validation.thirdparty_nets import NETWORKS, STEPS, fastsim_counts, input_spikes, library_verdict
from validation.harness.agreement import agreement, parse_engine
from validation.harness.engines import run
from validation.harness.thirdparty import LIBRARIES, ThirdPartyError, graph_spec


def installed(name: str):
    return pytest.param(
        name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"{name} not installed")
    )


LIBS = [installed(name) for name in LIBRARIES]


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("name", LIBS)
def test_adapter_reproduces_fastsim_exactly(name, network):
    spec = NETWORKS[network]()
    spikes = input_spikes(spec, steps=STEPS)
    ref = fastsim_counts(spec, spikes)
    rec = run(name, spec, spikes=spikes, steps=STEPS, adapter=True)
    assert ref.layer_counts.sum() > 0 and ref.neuron_counts[-1].sum() > 0  # the test exercises every layer
    for a, b in zip(ref.neuron_counts, rec.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ref.output_counts, rec.output_counts)
    np.testing.assert_array_equal(ref.first_spike_step, rec.first_spike_step)
    assert rec.meta["engine"] == f"{name}:adapter" and rec.meta["adapter"]
    # in batches of 2: each batch starts from rest and leaves the graph as it found it
    batched = run(name, spec, spikes=spikes, steps=STEPS, adapter=True, batch_size=2)
    for a, b in zip(ref.neuron_counts, batched.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pooling_neurons_exactly_at_threshold_fire():
    """The CNN's pooling neurons reach exactly 4 · 1/4 = θ; with NIR's v > θ they would never fire."""
    spec = NETWORKS["cnn"]()
    ref = fastsim_counts(spec, input_spikes(spec, steps=STEPS))
    assert ref.neuron_counts[1].sum() > 0


@pytest.mark.parametrize("name", [installed("norse")])
def test_norse_as_imported_runs_batchless_and_exactly(name):
    assert library_verdict(name, "cnn", adapter=False) == "exact"


@pytest.mark.parametrize("name", [installed("snntorch")])
def test_snntorch_as_imported_fails_naming_the_adapter(name):
    spec = NETWORKS["mlp"]()
    with pytest.raises(ThirdPartyError, match="fails as imported: TypeError.*snntorch:adapter works around"):
        run(name, spec, spikes=input_spikes(spec, steps=STEPS), steps=STEPS)


@pytest.mark.parametrize("name", [installed("sinabs")])
def test_sinabs_as_imported_differs(name):
    """sinabs' IF resets by subtraction, clips at -θ and may emit several spikes a step."""
    assert library_verdict(name, "mlp", adapter=False) == "differs"


@pytest.mark.parametrize("name", [installed("spikingjelly")])
def test_spikingjelly_as_imported_matches_where_no_membrane_sits_on_the_stored_threshold(name):
    """SpikingJelly fires at v ≥ v_threshold (NIR: >); the small networks' membranes never equal the float32 just
    below θ, so the counts match."""
    assert library_verdict(name, "cnn", adapter=False) == "exact"


@pytest.mark.parametrize("name", [installed("norse")])
def test_agreement_runs_every_engine_on_the_graphs_semantics(name):
    """A delay-schedule spec: fastsim runs the cascade schedule the graph encodes, and the report says so."""
    spec = dataclasses.replace(NETWORKS["mlp"](), schedule="delay")
    images = np.random.default_rng(0).random((4, 1, 4, 4))
    report, recs = agreement(spec, images, np.zeros(4, np.int64), STEPS, ("fastsim:float64", f"{name}:adapter"))
    assert report["nir"]["schedule"] == "cascade" and "schedule 'delay'" in report["nir"]["not_expressed"][0]
    assert report["identical"]["exact_fraction"] == 1.0
    assert report["nir"][f"{name}:adapter"]["library"] == name
    with pytest.raises(ValueError, match="identical inputs only"):
        agreement(spec, images, np.zeros(4, np.int64), STEPS, ("fastsim", name), poisson_images=2)


def test_graph_spec_is_cascade_zero_with_float32_thresholds():
    spec = dataclasses.replace(NETWORKS["mlp"](), schedule="delay", reset="subtract")
    layers = (spec.layers[0], dataclasses.replace(spec.layers[1], threshold=0.1), spec.layers[2])
    spec = dataclasses.replace(spec, layers=layers)
    graph, lost = graph_spec(spec)
    assert (graph.schedule, graph.reset) == ("cascade", "zero") and len(lost) == 2
    assert graph.thresholds == [float(np.float32(0.1)), 0.5]


def test_engine_names():
    assert parse_engine("sinabs") == ("sinabs", {"adapter": False})
    assert parse_engine("norse:adapter") == ("norse", {"adapter": True})
    with pytest.raises(ValueError, match="takes no option but `adapter`"):
        parse_engine("snntorch:float32")
    with pytest.raises(ValueError, match=r"\{norse\|snntorch\|sinabs\|spikingjelly\}\[:adapter\]"):
        parse_engine("lava")
    with pytest.raises(ValueError, match="given input spikes only"):
        run("norse", NETWORKS["mlp"](), np.zeros((1, 1, 4, 4)), steps=3)
