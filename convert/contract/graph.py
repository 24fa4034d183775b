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

from dataclasses import dataclass, field

from convert.contract.spec import NetworkSpec
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
