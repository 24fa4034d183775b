"""Import of a NIR graph (neuromorphs/NIR) as a spec: the inverse of :mod:`convert.nir_export`, and a reader
of graphs written by other tools when they fit the spec's layer families.

The graph is a chain, ``Input`` → (layer node [→ ``IF``])* → ``Output`` (the trunk: the longest path), plus skip
edges: a single ``Scale`` (the identity times a gain), ``Affine`` or ``Conv2d`` node off the trunk from an IF
node into a later IF node, which NIR sums with the trunk's input (a residual sum; :mod:`convert.layers.skip`).
A node's NIR class picks the layer family that imports it (``LayerFamily.nir_types``: ``Affine``/``Linear`` →
Dense, ``Conv2d`` → Conv2d, ``SumPool2d``/``AvgPool2d`` → AvgPool2d, ``Flatten`` → Flatten); a spiking family's
node must be followed by an ``IF`` node with ``r = 1``, one ``v_threshold`` for the whole layer and
``v_reset = 0``; an ``Affine``'s or ``Conv2d``'s bias becomes the layer's bias. Anything else (a leaky neuron, a
branch of another form, a per-neuron threshold) raises
:class:`~convert.contract.spec.SpecError` naming the node and saying what would fit.

Thresholds: NIR's IF fires at v > t, ours at v ≥ θ. In float32 arithmetic v > t ⟺ v ≥ next float32 above t,
so θ = nextafter(float32(t), +∞) (divided by the family's gain, k² for sum pooling); for a graph that this
project wrote (metadata ``snn_balance``), that is float32(θ) and the exact float64 θ comes from the metadata,
together with the spec's reset, schedule, dt, encoding, labels and provenance: spec → NIR → spec is exact.
``semantics="graph"`` ignores that metadata and returns what the nodes mean by NIR's definitions (the
``cascade`` schedule, reset to zero): the spec a third-party simulator of the graph should agree with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.spec import NetworkSpec, Skip, SpecError
from convert.layers import FAMILIES, LayerFamily
from convert.nir_export import GRAPH_RESET, GRAPH_SCHEDULE, nir_threshold

SEMANTICS = ("spec", "graph")


def _families_by_nir_type() -> dict[str, LayerFamily]:
    return {t: fam for fam in FAMILIES.values() if fam.from_nir is not None for t in fam.nir_types}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _edges(graph: Any) -> tuple[str, dict[str, list[str]], dict[str, list[str]]]:
    """The Input node's name and the successors and predecessors of every node (in edge order)."""
    nodes = graph.nodes
    inputs = [n for n, node in nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise SpecError(f"NIR graph: expected one Input node, found {len(inputs)} ({', '.join(inputs) or 'none'})")
    successors: dict[str, list[str]] = {}
    predecessors: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        for name in (src, dst):
            if name not in nodes:
                raise SpecError(f"NIR node {name!r}: an edge to a missing node")
        successors.setdefault(src, []).append(dst)
        predecessors.setdefault(dst, []).append(src)
    return inputs[0], successors, predecessors


def _topological(start: str, successors: dict, predecessors: dict) -> list[str]:
    """The nodes reachable from ``start`` in a topological order (Kahn's); a cycle names a node on it."""
    seen, stack = {start}, [start]
    while stack:
        for nxt in successors.get(stack.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    pending = {n: sum(p in seen for p in predecessors.get(n, [])) for n in seen}
    order, ready = [], [start]
    while ready:
        name = ready.pop()
        order.append(name)
        for nxt in successors.get(name, []):
            pending[nxt] -= 1
            if pending[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(seen):
        stuck = sorted(n for n in seen if pending[n] > 0)
        raise SpecError(f"NIR node {stuck[0]!r}: a cycle; only a graph without cycles imports as a spec")
    return order


def _longest_path(graph: Any, start: str, successors: dict, predecessors: dict) -> list[str]:
    """The longest path from ``start`` to the Output node (a skip branch is a shortcut, so the trunk is the
    longest way through); a tie prefers a predecessor that is no ``Scale`` and not named ``*skip``, then the
    first edge. A cycle, a dead end or a second Output names the node."""
    nodes = graph.nodes
    order = _topological(start, successors, predecessors)
    outputs = [n for n in order if type(nodes[n]).__name__ == "Output"]
    if len(outputs) != 1:
        raise SpecError(f"NIR graph: expected one Output node reachable from the input, found {len(outputs)}")
    for name in order:
        if name != outputs[0] and not successors.get(name):
            raise SpecError(f"NIR node {name!r}: no successor; only a chain Input → ... → Output imports as a spec")

    def skip_like(name: str) -> bool:
        return type(nodes[name]).__name__ == "Scale" or name.endswith("skip")

    length, back = {start: 0}, {}
    for name in order[1:]:
        preds = [p for p in predecessors[name] if p in length]
        best = max(preds, key=lambda p: (length[p], not skip_like(p), -preds.index(p)))
        length[name], back[name] = length[best] + 1, best
    path = [outputs[0]]
    while path[-1] != start:
        path.append(back[path[-1]])
    return path[::-1]


def _chain(graph: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, str, str]]]:
    """The trunk (the nodes between Input and Output, in order) and the skip branches: (source node, branch
    node, target node), each a single node off the trunk from an IF node into a later IF (or I) node. Any
    other branch, a cycle or a dead end names the node."""
    nodes = graph.nodes
    start, successors, predecessors = _edges(graph)
    path = _longest_path(graph, start, successors, predecessors)
    position = {name: i for i, name in enumerate(path)}
    skips = []
    for name in nodes:
        if name in position:
            continue
        kind = type(nodes[name]).__name__
        pred, succ = predecessors.get(name, []), successors.get(name, [])
        ok = len(pred) == 1 and len(succ) == 1 and pred[0] in position and succ[0] in position
        ok = ok and type(nodes[pred[0]]).__name__ == "IF" and type(nodes[succ[0]]).__name__ in ("IF", "I")
        ok = ok and position[pred[0]] < position[succ[0]] and kind in ("Scale", "Affine", "Linear", "Conv2d")
        if not ok:
            raise SpecError(
                f"NIR node {name!r} ({kind}): off the chain Input → ... → Output; a branch imports only as a "
                "skip edge: one Scale, Affine or Conv2d node from an IF node into a later IF node"
            )
        skips.append((pred[0], name, succ[0]))
    for name in path:
        extra = [p for p in predecessors.get(name, []) if p in position and p != path[position[name] - 1]]
        if extra:
            raise SpecError(f"NIR node {name!r}: an edge from {extra[0]!r} skips trunk nodes without a branch node")
    return [(name, nodes[name]) for name in path[1:-1]], sorted(skips, key=lambda e: position[e[2]])


def _uniform(node: Any, field: str, where: str) -> float:
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise SpecError(f"{where}: {field} takes {values.size} values; the spec has one per layer")
    return float(values[0])


def _if_threshold(node: Any, where: str, reset: str) -> float:
    """The v_threshold of an IF node in ≥ form: the next float32 above it."""
    kind = type(node).__name__
    if kind != "IF":
        extra = " (leaky neurons are not supported: the spec's neurons are IF)" if "LI" in kind else ""
        raise SpecError(f"{where}: a {kind} node; a spiking layer's node must be followed by an IF node{extra}")
    if _uniform(node, "r", where) != 1.0:
        raise SpecError(f"{where}: r = {_uniform(node, 'r', where)}; only r = 1 is supported (scale the weights)")
    v_reset = getattr(node, "v_reset", None)
    if reset == "zero" and v_reset is not None and _uniform(node, "v_reset", where) != 0.0:
        raise SpecError(f"{where}: v_reset = {_uniform(node, 'v_reset', where)}; only reset to 0 is supported")
    return float(np.nextafter(np.float32(_uniform(node, "v_threshold", where)), np.float32(np.inf)))


def _layers(graph: Any, reset: str) -> tuple[tuple[int, ...], list[Any], list[float], list[Skip]]:
    """Input shape, layers (the skip branches' biases joined to their targets'), each spiking layer's gain (for
    matching the metadata's thresholds), and the skip edges, in the graph's order of their nodes."""
    by_type = _families_by_nir_type()
    input_node = next(node for node in graph.nodes.values() if type(node).__name__ == "Input")
    input_shape = tuple(int(d) for d in np.atleast_1d(input_node.input_type["input"]))
    chain, skips = _chain(graph)
    layers, gains, neurons, i = [], [], {}, 0
    while i < len(chain):
        name, node = chain[i]
        kind = type(node).__name__
        where = f"NIR node {name!r} ({kind})"
        family = by_type.get(kind)
        if family is None:
            raise SpecError(f"{where}: no spec layer imports it; supported NIR node types: {', '.join(by_type)}")
        threshold = None
        if family.spiking:
            if i + 1 >= len(chain):
                raise SpecError(f"{where}: a spiking layer's node must be followed by an IF node, found Output")
            if_name, if_node = chain[i + 1]
            threshold = _if_threshold(if_node, f"NIR node {if_name!r} ({type(if_node).__name__})", reset)
            neurons[if_name] = len(layers)
            i += 1
        layer = family.from_nir(node, threshold, where)
        if family.spiking:
            gains.append(family.nir_gain(layer) if family.nir_gain else 1.0)
        layers.append(layer)
        i += 1
    edges = []
    for source, branch, target in skips:
        index = neurons[target]
        edge, layers[index] = _skip(layers[index], neurons[source], index, graph.nodes[branch], branch, by_type)
        edges.append(edge)
    return input_shape, layers, gains, edges


def _skip(
    layer: Any, source: int, target: int, node: Any, name: str, by_type: dict[str, LayerFamily]
) -> tuple[Skip, Any]:
    """The skip edge from layer ``source`` into ``target`` that the branch node carries (``Scale``: the identity
    times its one gain; ``Affine``/``Conv2d``: their weights), and ``layer`` with the branch's bias joined to
    its own."""
    import dataclasses

    kind = type(node).__name__
    where = f"NIR node {name!r} ({kind})"
    try:
        if kind == "Scale":
            return Skip(source, target, np.float64(_uniform(node, "scale", where))), layer
        edge = by_type[kind].from_nir(node, 1.0, where)
        conv = {"stride": edge.stride, "padding": edge.padding} if kind == "Conv2d" else {}
        skip = Skip(source, target, edge.weight, **conv)
        if edge.bias is not None and np.any(edge.bias):  # I = (W·s + S·s_j) + (b + b_S): one constant current
            layer = dataclasses.replace(
                layer, bias=edge.bias if layer.bias is None else np.asarray(layer.bias) + edge.bias
            )
        return skip, layer
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None


def _with_thresholds(layers: list[Any], thresholds: list[float]) -> list[Any]:
    import dataclasses

    it = iter(thresholds)
    return [dataclasses.replace(la, threshold=next(it)) if hasattr(la, "threshold") else la for la in layers]


def from_nir(graph: Any, semantics: str = "spec") -> NetworkSpec:
    """The spec of a ``nir.NIRGraph`` (see the module docstring); ``semantics``: ``spec`` (restore the spec
    this project exported, from the metadata) or ``graph`` (what the nodes mean by NIR's definitions)."""
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
    meta = dict(getattr(graph, "metadata", None) or {})
    header = json.loads(_text(meta["snn_balance"])) if "snn_balance" in meta and semantics == "spec" else None
    reset = header["reset"] if header else GRAPH_RESET
    input_shape, layers, gains, skips = _layers(graph, reset)
    spiking = [la for la in layers if hasattr(la, "threshold")]
    kw: dict[str, Any] = {"schedule": GRAPH_SCHEDULE, "reset": GRAPH_RESET}
    if "dt_ms" in meta:
        kw["dt_ms"] = float(np.asarray(meta["dt_ms"]))
    if header:
        exact = [float(t) for t in header.get("thresholds", [])]
        # the metadata's θ, where the IF nodes still hold the exported steps below it (an edited graph wins)
        if len(exact) == len(spiking) and all(
            nir_threshold(t, g) == np.nextafter(np.float32(la.threshold * g), np.float32(0))
            for t, g, la in zip(exact, gains, spiking, strict=True)
        ):
            layers = _with_thresholds(layers, exact)
        kw = {k: header[k] for k in ("reset", "schedule", "dt_ms", "encoding", "max_rate_hz", "labels", "provenance")}
        if "v_init" in header:  # a format-5 header: the initial potential the IF nodes cannot hold
            kw["v_init"] = header["v_init"]
    try:
        return NetworkSpec(input_shape, tuple(layers), skips=tuple(skips), **kw)
    except (TypeError, ValueError) as err:
        raise SpecError(f"NIR graph: {err}") from None


def load_nir(path: str | os.PathLike[str], semantics: str = "spec") -> NetworkSpec:
    """Read a NIR file (``nir.read``) as a spec; a missing or unreadable file names the file."""
    import nir

    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such NIR file")
    try:
        graph = nir.read(str(path))
    except Exception as err:  # h5py and nir raise many types for a damaged or foreign file
        raise SpecError(f"{path}: not a readable NIR file ({type(err).__name__}: {err})") from None
    try:
        return from_nir(graph, semantics)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None
