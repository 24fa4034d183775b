"""convert.contract.graph: the edges into every population, read off the chain and its skip fields."""

from __future__ import annotations

from convert.contract.graph import Edge, edges
from tests.conformance.networks import network


def test_a_chain_has_one_trunk_edge_per_population():
    spec = network("CNN", "delay", "zero")
    assert edges(spec) == [
        Edge(("input", 0), 0, 0, "trunk"),
        Edge(("pop", 0), 1, 1, "trunk"),
        Edge(("pop", 1), 2, 2, "trunk"),
        Edge(("pop", 2), 3, 4, "trunk"),  # through the Flatten at index 3
    ]


def test_gates_and_skip_edges_are_taps_of_their_own():
    spec = network("Residual", "delay", "zero")  # conv -> gate -> conv -> conv + skip(gate) -> conv + skip(conv 1)
    assert edges(spec) == [
        Edge(("input", 0), 0, 0, "trunk"),
        Edge(("gate", 0), 1, 2, "trunk"),
        Edge(("pop", 1), 2, 3, "trunk"),
        Edge(("gate", 0), 2, 3, "skip"),
        Edge(("pop", 2), 3, 4, "trunk"),
        Edge(("pop", 1), 3, 4, "skip"),
        Edge(("pop", 3), 4, 6, "trunk"),
    ]
    readers = [e.source for e in edges(spec)]
    assert [e.target for e in edges(spec) if e.source == ("gate", 0)] == [1, 2]
    assert ("pop", 0) not in readers  # the gate reads population 0; no synapse map does
