"""Export of a spec to NIR (neuromorphs/NIR), built from the layer families' NIR nodes, in the node types that
Norse, snnTorch, sinabs and SpikingJelly import.

Every layer becomes its family's node (:mod:`convert.layers`: ``Flatten`` → ``nir.Flatten(start_dim=0)``,
``Dense`` → ``nir.Affine`` with its bias (zero without), ``Conv2d`` → ``nir.Conv2d`` with its bias, ``AvgPool2d`` →
``nir.SumPool2d``); every spiking layer's node is followed by an ``IF`` node (``r = 1``, ``v_reset = 0``) whose
``v_threshold`` is

    t_l = the largest float32 below float32(g_l · θ_l)        (``np.nextafter(..., 0)``, stored as float32)

with g_l the family's gain (k² for sum pooling standing in for average pooling, else 1). NIR's IF fires at
v > t; our neurons fire at v ≥ θ. For the float32 arithmetic of the three libraries, v > t_l holds exactly when
v ≥ g_l θ_l (θ_l rounded to float32); without the step down, the pooling neurons, which sit exactly at the
threshold (four input spikes · 1/4 = θ), would never fire.

What NIR's IF cannot express is refused unless ``lossy=True`` (then written with a :class:`NIRSemanticsWarning`):

* ``schedule="delay"``: a NIR graph of IF nodes has no step order; Norse, snnTorch, sinabs and SpikingJelly run
  it layer by layer within a step, i.e. the ``cascade`` schedule. NIR's ``Delay`` node would not help: with zero
  reset the delay schedule drops the input that arrives in a spike's step, which no delayed cascade does, and
  none of the four importers maps ``Delay``;
* ``reset="subtract"``: NIR's IF resets to ``v_reset``; there is no reset by subtraction;
* ``v_init`` ≠ 0: an IF node has no initial potential (the metadata keeps it for the round trip);
* ``v_init_neurons``: nor one per neuron (dropped, also from the metadata, which holds no arrays).

The graph's metadata holds ``snn_balance`` (JSON: the spec's header, with its exact float64 thresholds), from
which :func:`convert.nir_import.from_nir` restores the spec exactly, and ``graph_semantics`` (what the nodes
mean by NIR's definitions: ``cascade`` schedule, reset to zero).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.io import to_dict
from convert.contract.provenance import atomic_path
from convert.contract.spec import NetworkSpec
from convert.layers import family_of, skip_map_layer
from convert.layers.skip import Skip

#: the schedule and reset a NIR graph of IF nodes means (and the three libraries run)
GRAPH_SCHEDULE = "cascade"
GRAPH_RESET = "zero"


class NIRExportError(ValueError):
    """The spec holds semantics NIR cannot express; the message names them and the way out."""


class NIRSemanticsWarning(UserWarning):
    """A lossy export: the graph runs with NIR's semantics, not all of the spec's (named in the message)."""


def nir_threshold(theta: float, gain: float = 1.0) -> np.float32:
    """The IF ``v_threshold`` meaning ``v ≥ gain · θ`` in float32: the next float32 below float32(gain · θ)."""
    return np.nextafter(np.float32(gain * theta), np.float32(0))


def unexpressed(spec: NetworkSpec) -> list[str]:
    """What of ``spec`` a NIR graph cannot carry (empty for a cascade, zero-reset spec)."""
    out = []
    if spec.schedule != GRAPH_SCHEDULE:
        out.append(
            f"schedule {spec.schedule!r}: NIR graphs of IF nodes run layer by layer within a step "
            f"({GRAPH_SCHEDULE!r}) in Norse, snnTorch, sinabs and SpikingJelly"
        )
    if spec.reset != GRAPH_RESET:
        out.append(f"reset {spec.reset!r}: NIR's IF resets to v_reset (here 0) and has no reset by subtraction")
    if spec.v_init != 0.0:
        out.append(f"v_init {spec.v_init:g}: NIR's IF nodes hold no initial potential; other simulators start at 0")
    if spec.v_init_neurons is not None:
        out.append("v_init_neurons: NIR's IF nodes hold no per-neuron start potentials (dropped, also in the metadata)")
    return out


def _metadata(spec: NetworkSpec, lost: list[str]) -> dict[str, Any]:
    header, _ = to_dict(dataclasses.replace(spec, v_init_neurons=None))  # the metadata holds no arrays
    header["thresholds"] = spec.thresholds  # exact float64 values (the IF nodes hold float32 steps below)
    return {
        "snn_balance": json.dumps(header),
        "graph_semantics": json.dumps(
            {
                "schedule": GRAPH_SCHEDULE,
                "reset": GRAPH_RESET,
                "threshold": "v > v_threshold, v_threshold = next float32 below the spec's θ (fires at v ≥ θ)",
                "dt_ms": spec.dt_ms,
                "not_expressed": lost,
            }
        ),
        "dt_ms": spec.dt_ms,
        "schedule": spec.schedule,
        "reset": spec.reset,
        "encoding": spec.encoding,
        "max_rate_hz": spec.max_rate_hz,
        "readout": spec.readout,
    }


def to_nir(spec: NetworkSpec, *, lossy: bool = False):
    """The spec as a ``nir.NIRGraph``: input → (layer node [→ IF node]) per layer → output, a chain. With the
    ``membrane`` readout the output layer's neurons are an integrator (``nir.I``, r = 1): no threshold.

    A spec with semantics NIR cannot express (:func:`unexpressed`) raises :class:`NIRExportError`, unless
    ``lossy``: then the graph NIR can express is returned with a :class:`NIRSemanticsWarning`."""
    import nir

    families = [family_of(layer) for layer in spec.layers]  # an unregistered layer is named before anything else
    lost = unexpressed(spec)
    if lost and not lossy:
        raise NIRExportError(
            "NIR cannot express " + "; ".join(lost) + ". Convert with --schedule cascade --reset zero for a graph "
            "that runs as the spec does, or export with --lossy (lossy=True) to write the cascade, zero-reset graph "
            "anyway (the spec's own semantics stay in the metadata)"
        )
    if lost:
        warnings.warn(
            "NIR export runs with different semantics than the spec: " + "; ".join(lost),
            NIRSemanticsWarning,
            stacklevel=2,
        )
    shapes = spec.shapes
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(spec.input_shape)})}
    edges = []
    prev = "input"
    for i, (layer, family) in enumerate(zip(spec.layers, families, strict=True)):
        name = f"{i}_{family.name.lower()}"
        nodes[name] = family.nir_node(layer, shapes[i])
        edges.append((prev, name))
        prev = name
        if family.spiking and spec.readout == "membrane" and i == spec.spiking_indices[-1]:
            nodes[f"{i}_i"] = nir.I(r=np.ones(tuple(shapes[i + 1]), np.float32))
            edges.append((prev, f"{i}_i"))
            prev = f"{i}_i"
        elif family.spiking:
            out_shape = tuple(shapes[i + 1])
            gain = family.nir_gain(layer) if family.nir_gain else 1.0
            if_name = f"{i}_if"
            nodes[if_name] = nir.IF(
                r=np.ones(out_shape, np.float32),
                v_threshold=np.full(out_shape, nir_threshold(layer.threshold, gain), np.float32),
                v_reset=np.zeros(out_shape, np.float32),
            )
            edges.append((prev, if_name))
            prev = if_name
        for k, edge in enumerate(spec.skips_into(i)):  # more edges into the neuron: NIR sums a node's inputs
            skip_name = f"{i}_skip" if k == 0 else f"{i}_skip{k}"  # from the source's IF node (a gate has no
            nodes[skip_name] = _skip_node(edge, shapes[edge.source + 1])  # NIR node: refused above)
            edges += [(f"{edge.source}_if", skip_name), (skip_name, prev)]
    nodes["output"] = nir.Output(output_type={"output": np.asarray(shapes[-1])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_metadata(spec, lost))


def _skip_node(edge: Skip, source_shape: tuple[int, ...]) -> Any:
    """The NIR node of a skip edge's map: ``Scale`` for the identity times g, else the Dense/Conv2d node."""
    import nir

    layer = skip_map_layer(edge)
    if layer is None:
        return nir.Scale(scale=np.full(tuple(source_shape), float(edge.weight)))
    return family_of(layer).nir_node(layer, source_shape)


def save_nir(spec: NetworkSpec, path: str | os.PathLike[str], *, lossy: bool = False) -> Path:
    """Write the NIR graph of ``spec`` (HDF5) atomically; it reads back with ``nir.read``. Raises
    :class:`NIRExportError` before writing anything if NIR cannot express the spec and not ``lossy``."""
    import nir

    graph = to_nir(spec, lossy=lossy)
    with atomic_path(path, suffix=".nir") as tmp:
        nir.write(str(tmp), graph)
    return Path(path)
