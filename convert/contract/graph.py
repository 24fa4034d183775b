"""The spec as a graph: which activity every population's synapses read, in one walk over the layers.

A spec stores a chain of layers with skip fields on some of them; its graph has three kinds of *taps*
(activities a synapse map can read): ``("input", 0)`` (the input image), ``("pop", p)`` (population p's spikes,
0-based over the spiking layers) and ``("gate", p)`` (the max-pool gate on population p's spikes); and one
:class:`Edge` per synapse map into a population: the *trunk* edge of every population (from the input, the
population below, or the gate on it, through any ``Flatten``) and a *skip* edge where a layer has one (from
:meth:`NetworkSpec.tap` of its ``skip_source``). A population's input current is the sum over its edges
(docs/semantics.md). The simulators' bookkeeping of synaptic events (fastsim's recorder, refsim's readout)
reads the edges here instead of rebuilding them.
"""

from __future__ import annotations

from dataclasses import dataclass

from convert.contract.spec import NetworkSpec
from convert.layers import skip as skip_edge

Tap = tuple[str, int]


@dataclass(frozen=True)
class Edge:
    """A synapse map into population ``target`` from the activity ``source``: the ``trunk`` map of
    ``spec.layers[layer]`` (its own weights) or its ``skip`` map (its skip fields)."""

    source: Tap
    target: int
    layer: int
    kind: str  # "trunk" or "skip"


def edges(spec: NetworkSpec) -> list[Edge]:
    """Every edge of ``spec``, by target population, the trunk edge before the skip edge."""
    out = []
    for k, i in enumerate(spec.spiking_indices):
        trunk: Tap = ("input", 0) if k == 0 else ("gate" if spec.gate_before(k) is not None else "pop", k - 1)
        out.append(Edge(trunk, k, i, "trunk"))
        layer = spec.layers[i]
        if skip_edge.has_skip(layer):
            out.append(Edge(spec.tap(layer.skip_source), k, i, "skip"))
    return out
