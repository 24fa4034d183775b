"""The NIR export (convert/nir_export.py) and import (convert/nir_import.py): node types the third-party importers
map, thresholds in NIR's v > t form, what NIR cannot express refused or warned about, an exact spec → NIR →
spec round trip, and graphs written by other tools loaded or refused naming the node."""

from __future__ import annotations

import dataclasses
import warnings

import nir
import numpy as np
import pytest

from convert.__main__ import main
from convert.contract.io import load_spec, save_spec
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec, SpecError
from convert.nir_export import NIRExportError, NIRSemanticsWarning, nir_threshold, save_nir, to_nir
from convert.nir_import import from_nir, load_nir


def cascade(spec: NetworkSpec, **kw) -> NetworkSpec:
    return dataclasses.replace(spec, schedule="cascade", **kw)


def chain(graph) -> list[tuple[str, object]]:
    following = dict(graph.edges)
    out, name = [], "input"
    while name in following:
        name = following[name]
        out.append((name, graph.nodes[name]))
    return out


def with_thresholds(spec: NetworkSpec, thresholds: list[float]) -> NetworkSpec:
    it = iter(thresholds)
    layers = tuple(
        dataclasses.replace(la, threshold=next(it)) if hasattr(la, "threshold") else la for la in spec.layers
    )
    return dataclasses.replace(spec, layers=layers)


def test_export_uses_node_types_the_importers_map(tiny_cnn):
    spec = with_thresholds(cascade(tiny_cnn), [0.5, 0.75, 1.25])
    nodes = chain(to_nir(spec))
    assert [type(n).__name__ for _, n in nodes] == [
        "Conv2d",
        "IF",
        "SumPool2d",
        "IF",
        "Flatten",
        "Affine",
        "IF",
        "Output",
    ]
    conv, affine, flatten = nodes[0][1], nodes[5][1], nodes[4][1]
    np.testing.assert_array_equal(conv.weight, spec.layers[0].weight)
    np.testing.assert_array_equal(affine.weight, spec.layers[3].weight)
    assert not np.any(conv.bias) and not np.any(affine.bias) and affine.bias.shape == (4,)
    assert flatten.start_dim == 0 and flatten.end_dim == -1  # NIR shapes have no batch dimension
    ifs = [n for _, n in nodes if isinstance(n, nir.IF)]
    assert all(not np.any(n.v_reset) and np.all(n.r == 1) for n in ifs)
    # pooling: sum pooling (weights 1) with the threshold scaled by k² = 4
    assert [float(np.unique(n.v_threshold)[0]) for n in ifs] == [
        float(nir_threshold(0.5)),
        float(nir_threshold(0.75 * 4)),
        float(nir_threshold(1.25)),
    ]


@pytest.mark.parametrize("theta", [1.0, 0.75, 0.1, 3.3, 1e-3])
def test_threshold_is_the_float32_below_theta_so_v_equal_theta_fires(theta):
    """NIR fires at v > t; t = the next float32 below θ makes v = θ (float32) fire and anything below not."""
    t = nir_threshold(theta)
    assert t.dtype == np.float32 and t < np.float32(theta)
    assert np.float32(theta) > t  # v = θ fires
    assert not np.nextafter(t, np.float32(0)) > t  # the float32 below does not
    assert np.nextafter(t, np.float32(np.inf)) == np.float32(theta)


def test_pooling_neurons_at_exactly_theta_fire_in_float32():
    """Four input spikes into a 2×2 average pool sum to 4 = 4θ: NIR's v > t holds for the exported t."""
    t = nir_threshold(1.0, gain=4.0)
    assert np.float32(1) + np.float32(1) + np.float32(1) + np.float32(1) > t
    assert not np.float32(3) > t


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"schedule": "delay"}, "schedule 'delay'"),
        ({"reset": "subtract"}, "reset 'subtract'"),
        ({"v_init": 0.5}, "v_init 0.5"),
    ],
)
def test_what_nir_cannot_express_is_refused_with_no_file_written(tiny_cnn, tmp_path, changes, named):
    spec = dataclasses.replace(cascade(tiny_cnn), **changes)
    with pytest.raises(NIRExportError, match=named) as info:
        save_nir(spec, tmp_path / "s.nir")
    assert "--lossy" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_lossy_export_warns_and_records_the_spec_semantics(tiny_cnn, tmp_path):
    spec = dataclasses.replace(tiny_cnn, schedule="delay", reset="subtract", dt_ms=0.5, v_init=0.5)
    with pytest.warns(NIRSemanticsWarning, match="schedule 'delay'.*reset 'subtract'.*v_init 0.5"):
        save_nir(spec, tmp_path / "s.nir", lossy=True)
    graph = nir.read(str(tmp_path / "s.nir"))
    assert load_nir(tmp_path / "s.nir") == spec  # the spec itself comes back from the metadata
    as_graph = load_nir(tmp_path / "s.nir", semantics="graph")  # what the nodes mean in NIR
    assert (as_graph.schedule, as_graph.reset, as_graph.dt_ms, as_graph.v_init) == ("cascade", "zero", 0.5, 0.0)
    assert len(graph.metadata["graph_semantics"]) > 0


def test_cascade_zero_spec_exports_without_warning(tiny_cnn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_nir(cascade(tiny_cnn))


def test_round_trip_is_exact(tiny_cnn, tmp_path):
    """Thresholds that float32 cannot hold (0.1, 1/3), float64 weights, labels and provenance all come back."""
    spec = with_thresholds(cascade(tiny_cnn, labels=("a", "b", "c", "d"), provenance={"m": 1}), [0.1, 1 / 3, 2.7])
    save_nir(spec, tmp_path / "s.nir")
    back = load_nir(tmp_path / "s.nir")
    assert back == spec and back.thresholds == [0.1, 1 / 3, 2.7]
    # without the metadata: thresholds rounded to float32, the semantics NIR's
    graph = nir.read(str(tmp_path / "s.nir"))
    graph.metadata = {}
    bare = from_nir(graph)
    assert bare.thresholds == [float(np.float32(t)) for t in (0.1, 1 / 3, 2.7)]
    assert all(
        np.array_equal(a.weight, b.weight)
        for a, b in zip(bare.layers, spec.layers, strict=True)
        if hasattr(a, "weight")
    )


def _foreign(*nodes) -> nir.NIRGraph:
    """A graph as another tool writes it: from_list, no metadata."""
    return nir.NIRGraph.from_list(*nodes, type_check=False)


def test_graph_of_another_tool_loads(rng):
    w = rng.normal(size=(3, 8))
    graph = _foreign(
        nir.Input(input_type={"input": np.array([2, 4, 4])}),
        nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.IF(r=np.ones((2, 2, 2)), v_threshold=np.full((2, 2, 2), 0.5)),
        nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        nir.Linear(weight=w),
        nir.IF(r=np.ones(3), v_threshold=np.full(3, 2.0)),
        nir.Output(output_type={"output": np.array([3])}),
    )
    spec = from_nir(graph)
    assert [type(la) for la in spec.layers] == [AvgPool2d, Flatten, Dense]
    assert spec.input_shape == (2, 4, 4) and (spec.schedule, spec.reset) == ("cascade", "zero")
    np.testing.assert_array_equal(spec.layers[2].weight, w)
    # v > t in float32 is v ≥ the next float32 above t
    assert spec.thresholds == [float(np.nextafter(np.float32(t), np.float32(np.inf))) for t in (0.5, 2.0)]


def _graph_with(node, shape=(3,), weight_shape=(3, 4)):
    return _foreign(
        nir.Input(input_type={"input": np.array([weight_shape[1]])}),
        nir.Affine(weight=np.ones(weight_shape), bias=np.zeros(weight_shape[0])),
        node,
        nir.Output(output_type={"output": np.array(shape)}),
    )


@pytest.mark.parametrize(
    ("graph", "named", "says"),
    [
        (
            _graph_with(nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3))),
            "lif",
            "leaky",
        ),
        (_graph_with(nir.IF(r=np.full(3, 2.0), v_threshold=np.ones(3))), "if", "r = 1"),
        (_graph_with(nir.IF(r=np.ones(3), v_threshold=np.array([1.0, 2.0, 1.0]))), "if", "one per layer"),
        (_graph_with(nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.full(3, -1.0))), "if", "reset to 0"),
        (
            _foreign(
                nir.Input(input_type={"input": np.array([3])}),
                nir.Scale(scale=np.ones(3)),
                nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
                nir.Output(output_type={"output": np.array([3])}),
            ),
            "scale",
            "no spec layer imports it",
        ),
        (_graph_with(nir.Scale(scale=np.ones(3))), "scale", "must be followed by an IF node"),
        (
            _foreign(
                nir.Input(input_type={"input": np.array([4])}),
                nir.Affine(weight=np.ones((3, 4)), bias=np.ones(2)),
                nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
                nir.Output(output_type={"output": np.array([3])}),
            ),
            "affine",
            r"bias of shape \(2,\)",
        ),
        (
            _foreign(
                nir.Input(input_type={"input": np.array([2, 2, 2])}),
                nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=1),
                nir.Output(output_type={"output": np.array([2, 4])}),
            ),
            "flatten",
            "start_dim=0",
        ),
    ],
)
def test_graph_that_does_not_fit_names_the_node(graph, named, says):
    with pytest.raises(SpecError, match=says) as info:
        from_nir(graph)
    assert f"'{named}'" in str(info.value)


def test_branching_graph_names_the_node():
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([4])}),
            "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
            "b": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
    )
    with pytest.raises(SpecError, match="'b' .*off the chain.*only as a skip edge"):
        from_nir(graph)


def test_cli_export_and_import(tiny_cnn, tmp_path, capsys):
    spec_path = save_spec(tiny_cnn, tmp_path / "s.npz")  # delay schedule: refused unless --lossy
    assert main(["export-nir", "--spec", str(spec_path), "--out", str(tmp_path / "s.nir")]) == 2
    assert "NIR cannot express schedule 'delay'" in capsys.readouterr().err
    assert not (tmp_path / "s.nir").exists()
    assert main(["export-nir", "--lossy", "--spec", str(spec_path), "--out", str(tmp_path / "s.nir")]) == 0
    assert "warning: NIR export runs with different semantics" in capsys.readouterr().out
    assert main(["import-nir", "--nir", str(tmp_path / "s.nir"), "--out", str(tmp_path / "back.npz")]) == 0
    assert load_spec(tmp_path / "back.npz") == tiny_cnn
    assert main(["import-nir", "--nir", str(tmp_path / "none.nir"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "no such NIR file" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()


def test_conv_settings_come_back(rng):
    spec = NetworkSpec(
        (2, 7, 7), (Conv2d(rng.normal(size=(3, 2, 3, 3)), stride=(2, 1), padding=(1, 0)),), schedule="cascade"
    )
    back = from_nir(to_nir(spec))
    assert back == spec and back.layers[0].stride == (2, 1) and back.layers[0].padding == (1, 0)


def test_biases_export_and_import(tiny_cnn, tmp_path):
    """Affine and Conv2d carry the layers' biases: the spec comes back exactly, and a graph without the
    metadata (as another tool writes it) reads them off the nodes."""
    rng = np.random.default_rng(5)
    layers = [
        dataclasses.replace(layer, bias=rng.normal(size=layer.weight.shape[0])) if hasattr(layer, "weight") else layer
        for layer in tiny_cnn.layers
    ]
    spec = cascade(dataclasses.replace(tiny_cnn, layers=tuple(layers)))
    save_nir(spec, tmp_path / "b.nir")
    assert load_nir(tmp_path / "b.nir") == spec
    graph = nir.read(str(tmp_path / "b.nir"))
    graph.metadata = {}
    bare = from_nir(graph)
    for a, b in zip(bare.layers, spec.layers, strict=True):
        if hasattr(a, "weight"):
            np.testing.assert_array_equal(a.bias, b.bias)


# ------------------------------------------------------------------------------------------ skip edges
def residual_spec(schedule: str = "cascade") -> NetworkSpec:
    """Every skip map NIR carries: the identity times a gain, a strided 1×1 convolution and a dense skip, with
    biases; dyadic weights (exact in float32)."""
    rng = np.random.default_rng(5)

    def w(*shape):
        return rng.integers(-4, 5, size=shape) / 8.0

    layers = (
        Conv2d(w(2, 1, 3, 3), threshold=0.75, padding=1, bias=w(2)),
        AvgPool2d(2, threshold=1.0),
        Conv2d(w(2, 2, 3, 3), threshold=1.0, padding=1),
        Conv2d(w(2, 2, 3, 3), threshold=0.75, padding=1, skip_source=1, skip_weight=0.5),
        Conv2d(
            w(3, 2, 3, 3), threshold=0.5, stride=2, padding=1, skip_source=2, skip_weight=w(3, 2, 1, 1), skip_stride=2
        ),
        Flatten(),
        Dense(w(4, 12), threshold=0.5, bias=w(4)),
        Dense(w(3, 4), threshold=0.5, skip_source=6, skip_weight=w(3, 4)),
    )
    return NetworkSpec((1, 8, 8), layers, schedule=schedule, reset="zero")


def test_skip_edges_export_as_branch_nodes_into_the_if_node():
    spec = residual_spec()
    graph = to_nir(spec)
    into = {}
    for src, dst in graph.edges:
        into.setdefault(dst, []).append(src)
    assert into["3_if"] == ["3_conv2d", "3_skip"]  # NIR sums a node's inputs: the trunk and the skip
    assert into["3_skip"] == ["1_if"] and type(graph.nodes["3_skip"]).__name__ == "Scale"
    assert into["4_skip"] == ["2_if"] and type(graph.nodes["4_skip"]).__name__ == "Conv2d"
    assert into["7_skip"] == ["6_if"] and type(graph.nodes["7_skip"]).__name__ == "Affine"
    np.testing.assert_array_equal(graph.nodes["4_skip"].weight, spec.skips_into(4)[0].weight)
    assert np.all(graph.nodes["3_skip"].scale == 0.5)


@pytest.mark.parametrize("semantics", ["spec", "graph"])
def test_graph_with_sums_round_trips(semantics, tmp_path):
    spec = residual_spec()
    save_nir(spec, tmp_path / "r.nir")
    back = load_nir(tmp_path / "r.nir", semantics=semantics)
    if semantics == "spec":
        assert back == spec
    else:  # the nodes' own meaning: thresholds are the float32 steps, the skips the same
        assert [la.skip_source if hasattr(la, "skip_source") else None for la in back.layers] == [
            la.skip_source if hasattr(la, "skip_source") else None for la in spec.layers
        ]
        for a, b in zip(back.layers, spec.layers, strict=True):
            if getattr(b, "skip_source", None) is not None:
                np.testing.assert_array_equal(a.skip_weight, b.skip_weight)
                assert (a.skip_stride, a.skip_padding) == (b.skip_stride, b.skip_padding)


def test_a_foreign_graph_with_a_sum_imports_with_the_branch_bias_folded():
    """A graph another tool wrote: the skip's node names say nothing, its Affine carries a bias, and the edges
    come in any order; the trunk is the longest path and the branch bias joins the layer's."""
    rng = np.random.default_rng(1)
    w1, w2, w3, ws = rng.normal(size=(4, 3)), rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    if_node = lambda: nir.IF(r=np.ones(4), v_threshold=np.ones(4), v_reset=np.zeros(4))  # noqa: E731
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([3])}),
            "fc1": nir.Affine(weight=w1, bias=np.zeros(4)),
            "lif1": if_node(),
            "side": nir.Affine(weight=ws, bias=np.full(4, 0.25)),
            "fc2": nir.Affine(weight=w2, bias=np.zeros(4)),
            "lif2": if_node(),
            "fc3": nir.Affine(weight=w3, bias=np.full(4, 0.5)),
            "lif3": if_node(),
            "out": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[
            ("lif1", "side"),
            ("in", "fc1"),
            ("side", "lif3"),
            ("fc1", "lif1"),
            ("lif1", "fc2"),
            ("fc2", "lif2"),
            ("lif2", "fc3"),
            ("fc3", "lif3"),
            ("lif3", "out"),
        ],
    )
    spec = from_nir(graph)
    assert [type(la).__name__ for la in spec.layers] == ["Dense"] * 3
    top = spec.layers[2]
    (skip,) = spec.skips
    assert (skip.source, skip.target) == (0, 2)
    np.testing.assert_array_equal(top.weight, w3)
    np.testing.assert_array_equal(skip.weight, ws)
    np.testing.assert_array_equal(top.bias, np.full(4, 0.75))


@pytest.mark.parametrize(
    ("edges", "says"),
    [
        # a branch of two nodes
        (
            [
                ("in", "a"),
                ("a", "if1"),
                ("if1", "b"),
                ("b", "if2"),
                ("if1", "s1"),
                ("s1", "s2"),
                ("s2", "if2"),
                ("if2", "out"),
            ],
            "NIR node 's2' .*followed by an IF node",  # the longer way is the trunk
        ),
        # a branch from the input (no spikes to sum)
        ([("in", "a"), ("a", "if1"), ("if1", "b"), ("b", "if2"), ("in", "s1"), ("s1", "if2"), ("if2", "out")], "'s1'"),
        # a cycle
        ([("in", "a"), ("a", "if1"), ("if1", "b"), ("b", "if2"), ("if2", "b"), ("if2", "out")], "a cycle"),
    ],
)
def test_a_branch_that_is_no_skip_edge_names_the_node(edges, says):
    nodes = {
        "in": nir.Input(input_type={"input": np.array([4])}),
        "a": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
        "b": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
        "s1": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
        "s2": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
        "if1": nir.IF(r=np.ones(4), v_threshold=np.ones(4), v_reset=np.zeros(4)),
        "if2": nir.IF(r=np.ones(4), v_threshold=np.ones(4), v_reset=np.zeros(4)),
        "out": nir.Output(output_type={"output": np.array([4])}),
    }
    used = {n for e in edges for n in e}
    graph = nir.NIRGraph(nodes={k: v for k, v in nodes.items() if k in used}, edges=edges)
    with pytest.raises(SpecError, match=says):
        from_nir(graph)
