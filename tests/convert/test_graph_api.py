"""A spec from nodes and edges (:func:`convert.contract.graph.from_graph`) and back (:func:`to_graph`).

The graph's meaning is checked against an oracle written here from the definition alone: every population's
activation is ReLU(Σ over its connections, in order, of the map of the source's activation + b), a tap node
(the gate) the max of each window of the population before it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.ann import activations
from convert.contract.fingerprint import spec_fingerprint
from convert.contract.graph import Connection, Population, from_graph, to_graph
from convert.contract.spec import AvgPool2d, Conv2d, Dense, MaxPool2d, SpecError
from tests.conformance.networks import FAMILIES, network

SETTINGS = ("reset", "schedule", "dt_ms", "encoding", "max_rate_hz", "labels", "provenance", "readout", "v_init")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_spec_goes_to_a_graph_and_back_unchanged(family):
    spec = network(family, "cascade", "subtract")
    nodes, connections = to_graph(spec)
    again = from_graph(spec.input_shape, nodes, connections, **{f: getattr(spec, f) for f in SETTINGS})
    assert spec_fingerprint(again) == spec_fingerprint(spec)
    assert len(nodes) == sum(type(layer).__name__ != "Flatten" for layer in spec.layers)
    assert len(connections) == len(spec.skips) + sum(
        type(layer).__name__ in ("Dense", "Conv2d", "AvgPool2d") for layer in spec.layers
    )


def tensor(a) -> torch.Tensor:
    return torch.tensor(np.array(a, dtype=np.float64))


def oracle(nodes, connections, x: torch.Tensor) -> list[torch.Tensor]:
    """Every node's activation (the last population's before its ReLU: the logits), from the definition."""
    act: dict = {"input": x}
    pre = None
    for k, node in enumerate(nodes):
        if isinstance(node, MaxPool2d):
            act[k] = F.max_pool2d(act[k - 1], node.kernel_size, node.step, node.padding, ceil_mode=node.ceil_mode)
            continue
        z = torch.zeros((len(x), *node.shape), dtype=torch.float64)
        for c in (c for c in connections if c.target == k):
            a, m = act[c.source], c.map
            if isinstance(m, Dense):
                z = z + a.flatten(1) @ tensor(m.weight).T
            elif isinstance(m, Conv2d):
                z = z + F.conv2d(a, tensor(m.weight), stride=m.stride, padding=m.padding, groups=m.groups)
            elif isinstance(m, AvgPool2d):
                z = z + F.avg_pool2d(a, m.kernel_size, m.stride)
            elif np.ndim(m) == 1:
                z = z + a * tensor(m).view(1, -1, 1, 1)
            else:
                z = z + a * float(m)
        if node.bias is not None:
            b = tensor(node.bias)
            z = z + (b.view(1, -1, 1, 1) if len(node.shape) == 3 else b)
        pre, act[k] = z, torch.relu(z)
    return [act[k].flatten(1) for k, n in enumerate(nodes) if isinstance(n, Population)][:-1] + [pre.flatten(1)]


@st.composite
def graphs(draw):
    """Convolutional populations of (2, 4, 4), each reading any earlier ones through a convolution (plain or
    grouped), an average pool of stride 1, a gain or gains per channel (the first connection may be any of
    them, or come from further back: then the population is a Neurons layer), then a Dense output."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n = draw(st.integers(1, 4))
    nodes: list = []
    connections: list = []

    def conv_map(c_in: int, groups: int = 1):
        return Conv2d(rng.normal(size=(2, c_in // groups, 3, 3)), padding=1, groups=groups)

    for k in range(n):
        nodes.append(Population((2, 4, 4), threshold=1.0, bias=rng.normal(size=2) if draw(st.booleans()) else None))
        if k == 0:
            connections.append(Connection("input", 0, conv_map(1)))
            continue
        sources = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=3))
        for j in sources:
            kind = draw(st.sampled_from(["conv", "grouped", "pool", "gain", "channel"]))
            m = {
                "conv": lambda: conv_map(2),
                "grouped": lambda: conv_map(2, groups=2),
                "pool": lambda: AvgPool2d(1, stride=1),
                "gain": lambda: float(rng.normal()),
                "channel": lambda: rng.normal(size=2),
            }[kind]()
            connections.append(Connection(j, k, m))
    nodes.append(Population((3,), bias=rng.normal(size=3)))
    connections.append(Connection(n - 1, n, Dense(rng.normal(size=(3, 32)))))
    return nodes, connections


@settings(max_examples=40, deadline=None)
@given(graphs())
def test_the_spec_of_a_graph_computes_the_graph(graph):
    nodes, connections = graph
    spec = from_graph((1, 4, 4), nodes, connections)
    x = torch.as_tensor(np.random.default_rng(1).random((5, 1, 4, 4)))
    acts, logits = activations(spec, x)
    want = oracle(nodes, connections, x)
    for got, expected in zip([*acts[:-1], logits], want, strict=True):
        torch.testing.assert_close(got.flatten(1), expected, rtol=1e-12, atol=1e-12)


def test_a_gate_node_and_a_skip_from_it():
    rng = np.random.default_rng(2)
    nodes = [Population((2, 4, 4)), MaxPool2d(2), Population((2, 2, 2)), Population((3,))]
    connections = [
        Connection("input", 0, Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1)),
        Connection(1, 2, Conv2d(rng.normal(size=(2, 2, 3, 3)), padding=1)),
        Connection(1, 2, 0.5),  # the gate's output, summed in as an identity
        Connection(2, 3, Dense(rng.normal(size=(3, 8)))),
    ]
    spec = from_graph((1, 4, 4), nodes, connections)
    assert [type(layer).__name__ for layer in spec.layers] == ["Conv2d", "MaxPool2d", "Conv2d", "Flatten", "Dense"]
    assert [(e.source, e.target, e.kind) for e in spec.skips] == [(1, 2, "identity")]
    x = torch.as_tensor(rng.random((3, 1, 4, 4)))
    acts, logits = activations(spec, x)
    want = oracle(nodes, connections, x)
    torch.testing.assert_close(logits, want[-1], rtol=1e-12, atol=1e-12)


def test_a_population_whose_first_connection_skips_a_node_is_neurons():
    rng = np.random.default_rng(3)
    nodes = [Population((2, 4, 4)), Population((2, 4, 4)), Population((2, 4, 4)), Population((3,))]
    connections = [
        Connection("input", 0, Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1)),
        Connection(0, 1, 2.0),
        Connection(0, 2, Conv2d(rng.normal(size=(2, 2, 1, 1)))),  # from node 0, not the node before it
        Connection(1, 2, 0.25),
        Connection(2, 3, Dense(rng.normal(size=(3, 32)))),
    ]
    spec = from_graph((1, 4, 4), nodes, connections)
    assert type(spec.layers[2]).__name__ == "Neurons"
    assert type(spec.layers[1]).__name__ == "Neurons"  # a gain is no trunk map either
    assert [(e.source, e.target) for e in spec.skips] == [(0, 1), (0, 2), (1, 2)]


@pytest.mark.parametrize(
    ("nodes", "connections", "message"),
    [
        ([Population((3,))], [], "no connection comes into it"),
        ([Population((3,))], [Connection("input", 1, Dense(np.ones((3, 4))))], "the target is not a node index"),
        (
            [Population((3,)), Population((3,))],
            [Connection("input", 0, Dense(np.ones((3, 4)))), Connection(1, 1, 1.0)],
            "the source must be 'input' or an earlier node",
        ),
        ([Population((3,))], [Connection("input", 0, Dense(np.ones((3, 4)), bias=np.ones(3)))], "carries weights only"),
        (
            [Population((3,))],
            [Connection("input", 0, Dense(np.ones((3, 5))))],
            r"connection input -> 0: .*takes \(5,\)",
        ),
        (
            [Population((2,))],
            [Connection("input", 0, Dense(np.ones((3, 4))))],
            r"gives \(3,\), the population is \(2,\)",
        ),
        (
            [Population((3,)), Population((3,))],
            [Connection("input", 0, Dense(np.ones((3, 4)))), Connection("input", 1, Dense(np.ones((3, 4))))],
            "only the first population's first connection may read the input",
        ),
        ([MaxPool2d(2)], [], "a tap node reads the population listed right before it"),
        ([Population((3,)), "Dense"], [Connection("input", 0, Dense(np.ones((3, 4))))], "neither a Population"),
    ],
)
def test_a_graph_that_cannot_be_is_refused_with_the_node_and_why(nodes, connections, message):
    with pytest.raises(SpecError, match=message):
        from_graph((4,), nodes, connections)


def test_a_dense_skip_from_a_map_of_channels_is_refused():
    rng = np.random.default_rng(4)
    nodes = [Population((2, 4, 4)), Population((2, 4, 4)), Population((3,))]
    connections = [
        Connection("input", 0, Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1)),
        Connection(0, 1, Conv2d(rng.normal(size=(2, 2, 3, 3)), padding=1)),
        Connection(1, 2, Dense(rng.normal(size=(3, 32)))),
        Connection(0, 2, Dense(rng.normal(size=(3, 32)))),
    ]
    with pytest.raises(
        SpecError, match=r"connection 0 -> 2: a Dense map from a \(2, 4, 4\) node can only be the trunk"
    ):
        from_graph((1, 4, 4), nodes, connections)
