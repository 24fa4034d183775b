"""The layer registry (convert/layers/): a new family is one module, one registry entry and one builder per
simulator; a layer class that is not registered is refused, naming its class, everywhere.

The toy family here, ``OneToOne`` (neuron j receives w_j · s_j from input j), is what a new family's module
holds (the dataclass, its ANN forward, its normalization hooks, its NIR node); below it are its one fastsim
builder (operator and fan-out) and its one refsim builder (the synapse list). It is registered with convert only
inside a test (``monkeypatch`` on :data:`convert.layers.FAMILIES`). Its simulator builders are registered with
singledispatch on import of this module; they concern this module's class only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from convert import ann, normalize
from convert.contract.io import load_spec, save_spec
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, Neurons, SpecError
from convert.layers import FAMILIES, family_of
from convert.layers import base as layer_base
from convert.layers.base import LayerFamily, SpikingLayer
from convert.nir_export import to_nir
from convert.stats import collect_stats
from fastsim import layers as fastsim_layers
from fastsim.network import Network
from refsim import connectivity


# ------------------------------------------------------------------------- the toy family's module
@dataclass(frozen=True, eq=False)
class OneToOne(SpikingLayer):
    """One-to-one synapses: I_j = w_j · s_j, w of shape (n,); IF neurons with ``threshold``."""

    weight: np.ndarray
    threshold: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", layer_base.frozen_weight(self.weight, "OneToOne.weight", 1))
        object.__setattr__(self, "threshold", layer_base.check_threshold(self.threshold, "OneToOne"))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape != self.weight.shape:
            raise SpecError(f"OneToOne.weight {self.weight.shape} takes {self.weight.shape}, got {input_shape}")
        return input_shape

    def __eq__(self, other: object) -> bool:
        return layer_base.layers_equal(self, other)


def _one_to_one_nir(layer: OneToOne, input_shape: tuple[int, ...]) -> Any:
    import nir

    return nir.Scale(scale=np.array(layer.weight))


ONE_TO_ONE = LayerFamily(
    OneToOne,
    forward=lambda layer, x: x * layer_base.weight_tensor(layer.weight, x),
    nir_node=_one_to_one_nir,
    arrays=("weight",),
    max_positive_input_sum=lambda layer: float(np.clip(layer.weight, 0, None).max()),
    max_positive_weight=layer_base.max_positive_weight,
    scaled=layer_base.scale_weight,
)


class Mystery(SpikingLayer):
    """A layer class that no family registers (with a threshold, as a spiking layer has)."""

    threshold = 1.0

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape


MYSTERY = LayerFamily(
    Mystery,
    forward=lambda layer, x: x,
    nir_node=lambda layer, shape: None,
    max_positive_input_sum=lambda layer: 1.0,
    max_positive_weight=lambda layer: 1.0,
)


# ------------------------------------------------------------- its one builder in each simulator
@dataclass(frozen=True)
class _ScaleOp:
    weight: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


@fastsim_layers.operator.register
def _(layer: OneToOne, input_shape, device, dtype, parts: int = 1) -> _ScaleOp:
    return _ScaleOp(torch.tensor(np.array(layer.weight), device=device).to(dtype))


@fastsim_layers.fanout.register
def _(layer: OneToOne, input_shape) -> np.ndarray:
    return np.ones(input_shape)


@connectivity.connections.register
def _(layer: OneToOne, input_shape) -> connectivity.Connections:
    n = len(layer.weight)
    index = np.arange(n, dtype=np.int32)
    return connectivity.Connections(index, index, np.asarray(layer.weight, dtype=np.float64), n, n)


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def one_to_one(monkeypatch) -> None:
    monkeypatch.setitem(FAMILIES, "OneToOne", ONE_TO_ONE)


def toy_spec(**kw) -> NetworkSpec:
    """4 inputs -> Dense 3 -> OneToOne 3, dyadic weights (exact sums in float64)."""
    dense = Dense(np.array([[0.5, 0.25, 0, 0.75], [0.25, 0.5, 0.5, 0], [1.0, -0.25, 0.25, 0.5]]))
    return NetworkSpec((4,), (dense, OneToOne(np.array([0.5, 0.75, 1.0]))), **kw)


# -------------------------------------------------------------------------------------------- tests
def test_registered_family_is_accepted_by_spec_io_ann_normalize_and_nir(one_to_one, tmp_path) -> None:
    spec = toy_spec()
    assert spec.population_sizes == [3, 3] and spec.spiking_indices == [0, 1]
    assert load_spec(save_spec(spec, tmp_path / "toy.npz")) == spec
    x = torch.tensor([[1.0, 0.5, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    acts, logits = ann.activations(spec, x)
    hidden = torch.relu(x @ torch.tensor(spec.layers[0].weight).T)
    torch.testing.assert_close(acts[0], hidden)
    torch.testing.assert_close(logits, hidden * torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64))
    model, report = normalize.model_based(spec)
    assert report.divisors[1] == 1.0 and model.layers[1] == spec.layers[1]  # max positive input sum is 1
    data, _ = normalize.data_based(spec, collect_stats(spec, x.numpy()))
    assert data.thresholds == [1.0, 1.0] and ann.activations(data, x)[0][1].max() <= 1.0 + 1e-12
    graph = to_nir(toy_spec(schedule="cascade"))  # NIR expresses the cascade schedule only
    assert type(graph.nodes["1_onetoone"]).__name__ == "Scale"


def test_new_family_runs_in_both_simulators_with_one_builder_each(one_to_one) -> None:
    """The toy's two builders above are all fastsim and refsim need: the same spikes in both (dyadic, exact)."""
    from fastsim.simulate import simulate as fastsim_simulate
    from refsim.simulate import simulate as refsim_simulate

    spec = toy_spec(reset="subtract")
    spikes = np.random.default_rng(0).random((3, 12, 4)) < 0.6
    fast = fastsim_simulate(spec, spikes=spikes, steps=12, dtype="float64", record_neurons=True)
    ref = refsim_simulate(spec, spikes=spikes, steps=12, record_neurons=True)
    assert fast.layer_counts.sum() > 0
    for a, b in zip(fast.neuron_counts, ref.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unregistered_layer_is_refused_by_convert(monkeypatch, tmp_path) -> None:
    layers = (Flatten(), Mystery())
    with pytest.raises(SpecError, match="layers\\[1\\]: unknown layer type Mystery"):
        NetworkSpec((1, 2, 2), layers)
    with monkeypatch.context() as m:  # a spec that holds one, as if its family had been removed since
        m.setitem(FAMILIES, "Mystery", MYSTERY)
        spec = NetworkSpec((1, 2, 2), layers)
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    calls = {
        "ann": lambda: ann.activations(spec, x),
        "normalize": lambda: normalize.model_based(spec),
        "normalize hook": lambda: normalize.max_positive_weight(Mystery()),
        "io": lambda: save_spec(spec, tmp_path / "m.npz"),
        "nir": lambda: to_nir(spec),
        "registry": lambda: family_of(Mystery()),
    }
    for where, call in calls.items():
        with pytest.raises(SpecError, match="unknown layer type Mystery") as info:
            call()
        assert isinstance(info.value, TypeError), where
    assert not (tmp_path / "m.npz").exists()


def test_layer_without_a_simulator_builder_is_refused_by_the_simulators(monkeypatch) -> None:
    """Registered with convert but with no fastsim or refsim builder: an error naming it, never a fallback."""
    monkeypatch.setitem(FAMILIES, "Mystery", MYSTERY)
    spec = NetworkSpec((1, 2, 2), (Flatten(), Mystery()))
    with pytest.raises(SpecError, match="fastsim has no operator for layer type Mystery"):
        Network(spec, torch.device("cpu"), torch.float64)
    with pytest.raises(SpecError, match="fastsim has no fan-out rule for layer type Mystery"):
        fastsim_layers.fanout(Mystery(), (4,))
    with pytest.raises(SpecError, match="refsim: no synapse builder for layer type Mystery"):
        connectivity.spec_fanouts(spec)


def test_benchmark_baseline_refuses_an_unknown_layer(monkeypatch) -> None:
    """fastsim.bench builds its SpikingJelly baseline from the registry: no silent fallback to a pooling layer
    (whether SpikingJelly is installed or not)."""
    from fastsim.bench import spikingjelly_loop

    with monkeypatch.context() as m:
        m.setitem(FAMILIES, "Mystery", MYSTERY)
        spec = NetworkSpec((1, 2, 2), (Flatten(), Mystery()))
        with pytest.raises(SpecError, match="Mystery has no torch module"):
            spikingjelly_loop(spec, torch.zeros(1, 4), 2, torch.float64)
    with pytest.raises(SpecError, match="unknown layer type Mystery"):
        spikingjelly_loop(spec, torch.zeros(1, 4), 2, torch.float64)


# ------------------------------------------------------------------- the built-in families' hooks
BUILT_IN = {
    "Flatten": (Flatten(), (2, 3, 3)),
    "Dense": (Dense(np.arange(12.0).reshape(3, 4) / 8 - 0.5), (4,)),
    "Conv2d": (Conv2d(np.arange(36.0).reshape(2, 2, 3, 3) / 32 - 0.5, stride=(2, 1), padding=(1, 0)), (2, 5, 6)),
    "AvgPool2d": (AvgPool2d(3, stride=2), (2, 7, 7)),
    "MaxPool2d": (MaxPool2d(2), (2, 5, 6)),
    "Neurons": (Neurons((2, 3, 3), bias=np.array([0.5, -0.25])), (4,)),
}


def test_every_registered_family_is_covered_here() -> None:
    assert set(BUILT_IN) == set(FAMILIES)
    assert [f.spiking for f in FAMILIES.values()] == [False, True, True, True, False, True]


def test_a_population_fed_only_by_skip_edges_has_no_synapses_torch_module_or_nir_node() -> None:
    layer, shape = BUILT_IN["Neurons"]
    family = family_of(layer)
    assert layer.output_shape(shape) == (2, 3, 3) and family.synapses(layer, shape) == 0
    z = family.forward(layer, torch.ones(3, 4, dtype=torch.float64))
    assert z.shape == (3, 2, 3, 3) and torch.equal(z[:, 0], torch.full((3, 3, 3), 0.5, dtype=torch.float64))
    assert family.torch_module is None and family.max_positive_bias(layer) == 0.5
    assert family.scaled(layer, 4.0) == layer  # no weights of its own: the divisor reaches its edges and bias
    with pytest.raises(SpecError, match="has no NIR node"):
        family.nir_node(layer, shape)
    with pytest.raises(SpecError, match=r"Neurons.shape: must be \(C, H, W\) or \(n,\)"):
        Neurons((2, 3))


@pytest.mark.parametrize("name", sorted(n for n in BUILT_IN if FAMILIES[n].torch_module is not None))
def test_torch_module_round_trip_and_forward(name) -> None:
    """from_module(to_module(layer)) is the layer; the module computes the family's ANN forward."""
    layer, shape = BUILT_IN[name]
    family = family_of(layer)
    module = family.to_module(layer)
    assert type(module).__name__ == family.torch_module
    assert family.from_module(module, 0) == layer
    x = torch.as_tensor(np.random.default_rng(1).random((2, *shape)))
    torch.testing.assert_close(module(x), family.forward(layer, x))
    assert family.forward(layer, x).shape[1:] == layer.output_shape(shape)


@pytest.mark.parametrize("name", ["Dense", "Conv2d"])
def test_normalization_hooks_of_weight_layers(name) -> None:
    layer, _ = BUILT_IN[name]
    family = family_of(layer)
    w = np.clip(layer.weight, 0, None).reshape(layer.weight.shape[0], -1)
    assert family.max_positive_input_sum(layer) == w.sum(1).max()
    assert family.max_positive_weight(layer) == layer.weight.max()
    np.testing.assert_array_equal(family.scaled(layer, 4.0).weight, layer.weight / 4.0)


def test_pooling_has_no_weights_to_scale() -> None:
    family = family_of(AvgPool2d(2))
    assert not family.has_weights
    assert family.max_positive_input_sum(AvgPool2d(2)) == 1.0 and family.max_positive_weight(AvgPool2d(2)) == 0.25
