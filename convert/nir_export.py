"""Export of a spec to NIR (neuromorphs/NIR), built from the layer families' NIR nodes.

Every layer becomes its family's node (:mod:`convert.layers`: ``Flatten`` → ``nir.Flatten``, ``Dense`` →
``nir.Linear``, ``Conv2d`` → ``nir.Conv2d``, ``AvgPool2d`` → ``nir.AvgPool2d``); every spiking layer's node is
followed by an ``IF`` node (``r = 1``, ``v_threshold = θ_l``, ``v_reset = 0``), pooling included (our pooling
neurons spike; NIR's AvgPool2d implies the weights 1/k²). NIR's IF is continuous-time; our discrete
semantics (dt, schedule, reset mode, encoding) travel in the graph's metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from convert.io import FORMAT_VERSION
from convert.layers import family_of
from convert.provenance import atomic_path
from convert.spec import NetworkSpec


def _metadata(spec: NetworkSpec) -> dict[str, Any]:
    return {
        "snn_balance_format_version": FORMAT_VERSION,
        "dt_ms": spec.dt_ms,
        "schedule": spec.schedule,
        "reset": spec.reset,
        "encoding": spec.encoding,
        "max_rate_hz": spec.max_rate_hz,
        "readout": spec.readout,
        "labels": list(spec.labels),
        "semantics": "discrete-time IF, no leak, no refractory period; see docs/semantics.md",
    }


def to_nir(spec: NetworkSpec):
    """The spec as a ``nir.NIRGraph``: input → (layer node [→ IF node]) per layer → output, a chain. With the
    ``membrane`` readout the output layer's neurons are an integrator (``nir.I``, r = 1): no threshold."""
    import nir

    shapes = spec.shapes
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(spec.input_shape)})}
    edges = []
    prev = "input"
    for i, layer in enumerate(spec.layers):
        family = family_of(layer)
        name = f"{i}_{family.name.lower()}"
        nodes[name] = family.nir_node(layer, shapes[i])
        edges.append((prev, name))
        prev = name
        if family.spiking and spec.readout == "membrane" and i == spec.spiking_indices[-1]:
            if_name = f"{i}_i"
            nodes[if_name] = nir.I(r=np.ones(shapes[i + 1]))
            edges.append((prev, if_name))
            prev = if_name
        elif family.spiking:
            out_shape = np.asarray(shapes[i + 1])
            if_name = f"{i}_if"
            nodes[if_name] = nir.IF(
                r=np.ones(out_shape), v_threshold=np.full(out_shape, layer.threshold), v_reset=np.zeros(out_shape)
            )
            edges.append((prev, if_name))
            prev = if_name
    nodes["output"] = nir.Output(output_type={"output": np.asarray(shapes[-1])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_metadata(spec))


def save_nir(spec: NetworkSpec, path: str | os.PathLike[str]) -> Path:
    """Write the NIR graph of ``spec`` (HDF5) atomically; it reads back with ``nir.read``."""
    import nir

    graph = to_nir(spec)
    with atomic_path(path, suffix=".nir") as tmp:
        nir.write(str(tmp), graph)
    return Path(path)
