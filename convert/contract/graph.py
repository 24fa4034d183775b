"""The spec as a graph: which activity every population's synapses read, in one walk over the layers.

A spec stores a chain of layers and its skip edges; its graph has three kinds of *taps* (activities a synapse
map can read): ``("input", 0)`` (the input image), ``("pop", p)`` (population p's spikes, 0-based over the
spiking layers) and ``(tap, p)`` for a tap node on population p's spikes (``("gate", p)``: the max-pool gate);
and one :class:`Edge` per synapse map into a population: the *trunk* edge of every population (from the input,
the population below, or the tap node on it, through any ``Flatten``) and a *skip* edge per
:class:`convert.layers.skip.Skip` into it (from :meth:`NetworkSpec.tap` of its ``source``). A population's input
current is the sum over its edges (docs/semantics.md). The simulators' bookkeeping of synaptic events
(fastsim's recorder, refsim's readout) reads the edges here instead of rebuilding them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convert.contract.spec import (
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    Layer,
    NetworkSpec,
    Neurons,
    SpecError,
    is_tap_node,
)
from convert.layers.skip import Skip

Tap = tuple[str, int]


@dataclass(frozen=True)
class Edge:
    """A synapse map into population ``target`` from the activity ``source``: the ``trunk`` map of
    ``spec.layers[layer]`` (its own weights) or a ``skip`` edge into it (``skip``)."""

    source: Tap
    target: int
    layer: int
    kind: str  # "trunk" or "skip"
    skip: Skip | None = field(default=None, compare=False)


def edges(spec: NetworkSpec) -> list[Edge]:
    """Every edge of ``spec``, by target population, the trunk edge before the skip edges (in their order)."""
    out = []
    for k, i in enumerate(spec.spiking_indices):
        node = spec.node_before(k)
        trunk: Tap = ("input", 0) if k == 0 else spec.tap(node if node is not None else spec.spiking_indices[k - 1])
        out.append(Edge(trunk, k, i, "trunk"))
        out.extend(Edge(spec.tap(e.source), k, i, "skip", e) for e in spec.skips_into(i))
    return out


# ------------------------------------------------------------------------------ a spec from nodes and edges
@dataclass(frozen=True, eq=False)
class Population:
    """A node of IF neurons of ``shape`` ((C, H, W) or (n,)) with its ``threshold`` and optional ``bias`` (one
    per channel, or per neuron of an (n,) population); its current is the sum of the connections into it."""

    shape: tuple[int, ...]
    threshold: float = 1.0
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        as_layer = Neurons(self.shape, self.threshold, self.bias)  # the same checks and the same frozen fields
        for name in ("shape", "threshold", "bias"):
            object.__setattr__(self, name, getattr(as_layer, name))


@dataclass(frozen=True, eq=False)
class Connection:
    """A synapse map from node ``source`` (an index into the nodes, or ``"input"``) into the population
    ``target``. ``map``: a ``Dense`` (all-to-all; from a (C, H, W) source it reads the source flattened in C
    order), ``Conv2d`` (stride, padding, groups), ``AvgPool2d`` layer with weights only (threshold 1, no bias:
    those belong to the target), a number (the identity times a gain) or a 1-d array (a gain per channel)."""

    source: int | str
    target: int
    map: Any


def from_graph(
    input_shape: tuple[int, ...], nodes: list[Any], connections: list[Connection], **settings: Any
) -> NetworkSpec:
    """The spec of a graph: ``nodes`` in an order where every connection goes forward, each a
    :class:`Population` or a tap node (a ``MaxPool2d`` gate, on the population listed right before it, which
    takes no connection), the output population last; ``connections`` into every population, summed in the
    order given (docs/semantics.md); ``settings``: the spec's other fields (reset, schedule, ...).

    The spec is the chain form: a population whose first connection comes from the node right before it (or
    the input, for the first) through a weighted map is that map's layer (a ``Flatten`` before a ``Dense``
    reading a (C, H, W) node), fed by it as its trunk; any other population is a ``Neurons`` layer; every
    other connection is a skip edge (an ``AvgPool2d`` map as the convolution it is, a grouped convolution with
    its zero blocks). :func:`to_graph` is the inverse. A :class:`SpecError` names the node or connection that
    cannot be, and why."""
    into = _by_target(connections, len(nodes))
    built = _Lowering({"input": tuple(int(d) for d in input_shape)})
    for k, node in enumerate(nodes):
        if isinstance(node, Population):
            built.population(k, node, into.get(k, []))
        elif isinstance(node, Layer) and is_tap_node(node):
            if k == 0 or not isinstance(nodes[k - 1], Population) or k in into:
                raise SpecError(
                    f"node {k} ({type(node).__name__}): a tap node reads the population listed right before it "
                    "and takes no connection"
                )
            built.add(k, node, node.output_shape(built.shape_of[k - 1]))
        else:
            raise SpecError(f"node {k}: {type(node).__name__} is neither a Population nor a tap node (MaxPool2d)")
    if not nodes or not isinstance(nodes[-1], Population):
        raise SpecError("nodes[-1]: the last node must be a Population (the output neurons)")
    return NetworkSpec(built.shape_of["input"], tuple(built.layers), skips=tuple(built.skips), **settings)


def _by_target(connections: list[Connection], n_nodes: int) -> dict[int, list[Connection]]:
    """The connections into every node, in the order given; a SpecError for one that goes nowhere or back."""
    into: dict[int, list[Connection]] = {}
    for c in connections:
        if not isinstance(c, Connection):
            raise SpecError(f"connections: {c!r} is not a convert.contract.graph.Connection")
        where = f"connection {c.source} -> {c.target}"
        if not _index(c.target) or not 0 <= c.target < n_nodes:
            raise SpecError(f"{where}: the target is not a node index (0..{n_nodes - 1})")
        if c.source != "input" and (not _index(c.source) or not 0 <= c.source < c.target):
            raise SpecError(f"{where}: the source must be 'input' or an earlier node")
        if _is_layer_map(c.map) and (getattr(c.map, "bias", None) is not None or c.map.threshold != 1.0):
            raise SpecError(
                f"{where}: a map carries weights only (threshold 1, no bias); give the threshold and the bias to "
                "the target Population"
            )
        into.setdefault(c.target, []).append(c)
    return into


def _index(value: Any) -> bool:
    """A node index: a Python int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class _Lowering:
    """The chain :func:`from_graph` builds: every node's layer index and shape, the layers and the skip edges."""

    shape_of: dict[Any, tuple[int, ...]]
    layer_of: dict[Any, int] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)

    def add(self, k: int, layer: Layer, shape: tuple[int, ...]) -> None:
        self.layers.append(layer)
        self.layer_of[k], self.shape_of[k] = len(self.layers) - 1, tuple(shape)

    def population(self, k: int, node: Population, edges_in: list[Connection]) -> None:
        """Population k: its trunk layer (or ``Neurons``) and its other connections as skip edges."""
        if not edges_in:
            raise SpecError(f"node {k} (Population): no connection comes into it")
        before, first = ("input" if k == 0 else k - 1), edges_in[0]
        trunk = first.source == before and _is_layer_map(first.map)
        if isinstance(first.map, AvgPool2d):  # a pooling layer takes no bias and no skip edge: else Neurons
            trunk = trunk and node.bias is None and len(edges_in) == 1
        if not trunk and any(c.source == "input" for c in edges_in):
            raise SpecError(f"node {k}: only the first population's first connection may read the input")
        if trunk:
            layer, source_shape = _trunk_layer(first, node), self.shape_of[before]
            if isinstance(layer, Dense) and len(source_shape) != 1:
                self.layers.append(Flatten())
                source_shape = (int(np.prod(source_shape)),)
            try:
                got = layer.output_shape(source_shape)
            except SpecError as err:
                raise SpecError(f"connection {before} -> {k}: {err}") from None
            if tuple(got) != node.shape:
                raise SpecError(f"connection {before} -> {k}: the map gives {got}, the population is {node.shape}")
        else:
            layer = Neurons(node.shape, node.threshold, node.bias)
        self.add(k, layer, node.shape)
        for c in edges_in[1:] if trunk else edges_in:
            self.skips.append(_skip(c, self.layer_of[c.source], self.layer_of[k], self.shape_of[c.source]))


def to_graph(spec: NetworkSpec) -> tuple[list[Any], list[Connection]]:
    """``spec`` as :func:`from_graph` takes it: its populations and tap nodes, and every connection (each
    population's trunk map, then its skip edges in their order), such that ``from_graph`` gives the spec back."""
    nodes: list[Any] = []
    connections: list[Connection] = []
    node_of: dict[int, int] = {}
    shapes = spec.shapes
    into = spec.skips_by_target()
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, Flatten):
            continue
        k = len(nodes)
        node_of[i] = k
        if is_tap_node(layer):
            nodes.append(layer)
            continue
        nodes.append(Population(shapes[i + 1], layer.threshold, getattr(layer, "bias", None)))
        if not isinstance(layer, Neurons):
            fields = {"threshold": 1.0, **({"bias": None} if hasattr(layer, "bias") else {})}
            connections.append(Connection("input" if k == 0 else k - 1, k, dataclasses.replace(layer, **fields)))
        for e in into.get(i, ()):
            connections.append(Connection(node_of[e.source], k, _map_of(e)))
    return nodes, connections


def _is_layer_map(m: Any) -> bool:
    return isinstance(m, (Dense, Conv2d, AvgPool2d))


def _trunk_layer(c: Connection, node: Population) -> Layer:
    """The map of a population's trunk connection as its layer, with the population's threshold and bias."""
    m = c.map
    if isinstance(m, AvgPool2d):  # (without a bias: _Lowering.population)
        return dataclasses.replace(m, threshold=node.threshold)
    return dataclasses.replace(m, threshold=node.threshold, bias=node.bias)


def _skip(c: Connection, source: int, target: int, source_shape: tuple[int, ...]) -> Skip:
    """A connection that is not a trunk as a skip edge from layer ``source`` into layer ``target``."""
    m = c.map
    where = f"connection {c.source} -> {c.target}"
    if isinstance(m, Dense):
        if len(source_shape) != 1:
            raise SpecError(f"{where}: a Dense map from a {source_shape} node can only be the trunk (after Flatten)")
        return Skip(source, target, m.weight)
    if isinstance(m, AvgPool2d):  # the pool as the convolution it is: channel c of the window, weights 1/k²
        c_in, k = source_shape[0], m.kernel_size
        w = np.zeros((c_in, c_in, k, k))
        w[np.arange(c_in), np.arange(c_in)] = m.weight_value
        return Skip(source, target, w, stride=m.stride)
    if isinstance(m, Conv2d):  # a grouped convolution with its zero blocks: the same sums
        return Skip(source, target, m.dense_weight(), stride=m.stride, padding=m.padding)
    weight = np.asarray(m, dtype=np.float64)
    if weight.ndim > 1:
        raise SpecError(f"{where}: a map must be a Dense, Conv2d or AvgPool2d layer, a gain or gains per channel")
    return Skip(source, target, weight)


def _map_of(e: Skip) -> Any:
    """A skip edge's map as a connection's: a gain, gains per channel, a Dense or a Conv2d."""
    if e.kind in ("identity", "channel"):
        return float(e.weight) if e.kind == "identity" else e.weight
    if e.kind == "dense":
        return Dense(e.weight)
    return Conv2d(e.weight, stride=e.stride, padding=e.padding)
