"""Skip edges as the spec's own list: any number into one layer, the chain form (``skip_*`` fields) read into
it, the file format (version 7 only where a layer takes more than one), and every consumer summing them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from convert import normalize
from convert.ann import activations, macs_per_image
from convert.contract.fingerprint import spec_fingerprint
from convert.contract.graph import edges
from convert.contract.io import FORMAT_VERSION, load_spec, save_spec
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, Skip, SpecError
from tests.conformance.networks import network


def two_skips(**kw) -> NetworkSpec:
    """conv -> gate -> conv -> conv with two skip edges (an identity from the gate, a 1x1 conv from the conv
    below the gate) -> flatten -> dense."""
    rng = np.random.default_rng(3)
    layers = (
        Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1),
        MaxPool2d(2),
        Conv2d(rng.normal(size=(2, 2, 3, 3)), padding=1),
        Conv2d(rng.normal(size=(2, 2, 3, 3)), padding=1, bias=np.array([0.25, -0.5])),
        Flatten(),
        Dense(rng.normal(size=(3, 18))),
    )
    skips = (Skip(1, 3, 0.5), Skip(0, 3, rng.normal(size=(2, 2, 2, 2)), stride=2))
    return NetworkSpec((1, 6, 6), layers, skips=skips, **kw)


def test_the_chain_form_is_read_into_the_list_of_edges():
    chain = network("Residual", "delay", "zero")
    assert all(getattr(layer, "skip_source", None) is None for layer in chain.layers)
    assert [(e.source, e.target, e.kind) for e in chain.skips] == [(1, 3, "identity"), (2, 4, "conv")]
    given = NetworkSpec(chain.input_shape, chain.layers, reset="zero", schedule="delay", skips=chain.skips)
    assert given == chain and spec_fingerprint(given) == spec_fingerprint(chain)
    layers, rest = chain.chain_form()  # and back: the first edge into a layer as its fields
    assert rest == () and layers[3].skip_source == 1 and layers[4].skip_stride == (2, 2)
    assert NetworkSpec(chain.input_shape, layers, reset="zero", schedule="delay") == chain


def test_several_skip_edges_into_one_layer_sum_in_order_before_the_bias():
    spec = two_skips()
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    acts, logits = activations(spec, x)
    f = torch.nn.functional
    layers = spec.layers
    a0 = torch.relu(f.conv2d(x, torch.tensor(layers[0].weight), padding=1))
    g = f.max_pool2d(a0, 2)
    a2 = torch.relu(f.conv2d(g, torch.tensor(layers[2].weight), padding=1))
    trunk = f.conv2d(a2, torch.tensor(layers[3].weight), padding=1)
    s1 = g * 0.5
    s2 = f.conv2d(a0, torch.tensor(spec.skips[1].weight), stride=2)
    a3 = torch.relu(((trunk + s1) + s2) + torch.tensor(layers[3].bias).view(1, -1, 1, 1))
    # float64, one order of the edges; torch's convolutions may sum their taps in another order than these
    torch.testing.assert_close(acts[2], a3.reshape(4, -1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logits, a3.reshape(4, -1) @ torch.tensor(layers[5].weight).T, rtol=1e-12, atol=1e-12)
    # the trunk's 3x3 padded on 3x3 (7 taps land per axis), the identity's 18 units, the 2x2 stride 2 on 6x6
    assert macs_per_image(spec)[2] == 2 * 2 * 7 * 7 + 18 + 2 * 2 * 6 * 6
    graph = edges(spec)
    assert [(e.source, e.target, e.kind) for e in graph if e.target == 2] == [
        (("pop", 1), 2, "trunk"),
        (("gate", 0), 2, "skip"),
        (("pop", 0), 2, "skip"),
    ]


def test_model_based_normalization_bounds_the_drive_of_every_edge():
    spec = two_skips()
    new, report = normalize.model_based(spec)
    layer = new.layers[3]
    drive = np.clip(layer.weight, 0, None).reshape(2, -1).sum(axis=1) + np.clip(layer.bias, 0, None)
    for edge in new.skips_into(3):
        w = np.clip(edge.weight, 0, None)
        drive = drive + (float(w) if w.ndim == 0 else w.reshape(2, -1).sum(axis=1))
    assert float(drive.max()) == pytest.approx(1.0, rel=1e-12)
    # the network's function up to the output scale: the same predictions
    x = torch.rand(16, 1, 6, 6, dtype=torch.float64)
    assert torch.equal(activations(spec, x)[1].argmax(1), activations(new, x)[1].argmax(1))


def test_one_skip_per_layer_is_written_as_before_and_several_as_version_7(tmp_path):
    one = network("Residual", "delay", "zero")
    save_spec(one, tmp_path / "one.npz")
    header = json.loads(bytes(np.load(tmp_path / "one.npz")["header"]).decode())
    assert header["format_version"] == 4 and "skips" not in header
    assert header["layers"][3]["skip_source"] == 1  # the chain form's fields, as versions 4 to 6 hold them
    spec = two_skips()
    for precision in ("float64", "float32"):
        path = save_spec(spec, tmp_path / f"two-{precision}.npz", precision=precision)
        z = np.load(path)
        header = json.loads(bytes(z["header"]).decode())
        assert header["format_version"] == 7 == FORMAT_VERSION
        assert [(e["source"], e["target"]) for e in header["skips"]] == [(1, 3), (0, 3)]
        assert all("skip_source" not in entry for entry in header["layers"])
        back = load_spec(path)
        if precision == "float64":
            assert back == spec and spec_fingerprint(back) == spec_fingerprint(spec)
        else:
            assert back.skips[1].weight.dtype == np.float32
            np.testing.assert_array_equal(back.skips[1].weight, spec.skips[1].weight.astype(np.float32))


def _rewrite_header(path, change):
    z = dict(np.load(path))
    header = json.loads(bytes(z["header"]).decode())
    change(header)
    z["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **z)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda h: h["skips"][0].pop("stride"), "header.skips[0]: missing field 'stride'"),
        (lambda h: h["skips"][1].update(weight="nowhere"), "header.skips[1].weight: array 'nowhere' missing"),
        (lambda h: h["skips"][0].update(source=4), "a skip edge must come from an earlier layer"),
        (lambda h: h["skips"][0].update(target=4), "only a Dense, Conv2d or Neurons layer takes a skip edge"),
        (lambda h: h["layers"][3].update(skip_source=1), "unknown field 'skip_source'"),
    ],
)
def test_a_damaged_version_7_file_names_the_edge(tmp_path, change, message):
    path = save_spec(two_skips(), tmp_path / "s.npz")
    _rewrite_header(path, change)
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_spec(path)


def test_a_bad_skip_edge_is_refused_with_what_is_wrong():
    base = two_skips()
    layers = base.layers
    with pytest.raises(SpecError, match="NaN or infinite"):
        Skip(1, 3, np.array(np.nan))
    with pytest.raises(SpecError, match="only a convolutional"):
        Skip(1, 3, 0.5, stride=2)
    with pytest.raises(SpecError, match="source: must be the index"):
        Skip(-1, 3, 0.5)
    with pytest.raises(SpecError, match=r"a layer of shape \(2, 3, 3\) takes 0-d or 1-d or 4-d"):
        NetworkSpec((1, 6, 6), layers, skips=(Skip(2, 3, np.ones((18, 18))),))
    with pytest.raises(SpecError, match="the skip map gives shape"):
        NetworkSpec((1, 6, 6), layers, skips=(Skip(0, 3, 1.0),))  # 2x6x6 into 2x3x3
    with pytest.raises(SpecError, match=r"the skip source must be a spiking layer or a tap node \(a MaxPool2d gate\)"):
        NetworkSpec((1, 6, 6), layers, skips=(Skip(4, 5, np.ones((3, 18))),))
    pooled = (Conv2d(np.ones((1, 1, 1, 1))), AvgPool2d(2), Conv2d(np.ones((1, 1, 1, 1))))
    with pytest.raises(SpecError, match="only a Dense, Conv2d or Neurons layer takes a skip edge"):
        NetworkSpec((1, 4, 4), pooled, skips=(Skip(0, 1, np.ones((1, 1, 2, 2)), stride=2),))
    with pytest.raises(SpecError, match="every skip edge must be"):
        NetworkSpec((1, 6, 6), layers, skips=((1, 3, 0.5),))


def test_the_nir_export_holds_every_skip_edge():
    pytest.importorskip("nir")
    from convert.nir_export import to_nir
    from convert.nir_import import from_nir

    rng = np.random.default_rng(1)
    layers = tuple(Dense(rng.normal(size=shape)) for shape in ((5, 4), (5, 5), (5, 5), (3, 5)))
    skips = (Skip(0, 3, rng.normal(size=(3, 5))), Skip(1, 3, rng.normal(size=(3, 5))), Skip(0, 2, 0.5))
    spec = NetworkSpec((4,), layers, schedule="cascade", skips=skips)
    assert [(e.source, e.target) for e in spec.skips] == [(0, 2), (0, 3), (1, 3)]  # stable, by target
    graph = to_nir(spec)
    into = {}
    for src, dst in graph.edges:
        into.setdefault(dst, []).append(src)
    assert sorted(into["3_if"]) == ["3_dense", "3_skip", "3_skip1"]
    assert (into["3_skip"], into["3_skip1"], into["2_skip"]) == (["0_if"], ["1_if"], ["0_if"])
    assert from_nir(graph) == spec  # the metadata restores the spec exactly


def test_a_model_summing_three_tensors_converts_to_two_skip_edges_into_one_layer():
    from torch import nn

    from convert.from_torch import from_torch

    class ThreeWay(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(1, 4, 3, padding=1)
            self.c1 = nn.Conv2d(4, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1)
            self.c3 = nn.Conv2d(4, 4, 3, padding=1)
            self.p = nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            h0 = torch.relu(self.c0(x))
            h1 = torch.relu(self.c1(h0))
            h2 = torch.relu(self.c2(h1))
            z = torch.relu(self.c3(h2) + h1 + self.p(h0))  # the trunk, an identity, a 1x1 branch
            return self.fc(z.flatten(1))

    torch.manual_seed(0)
    model = ThreeWay().double().eval()
    spec = from_torch(model, (1, 6, 6))
    assert [(e.source, e.target, e.kind) for e in spec.skips] == [(1, 3, "identity"), (0, 3, "conv")]
    x = torch.rand(8, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(activations(spec, x)[1], model(x), rtol=1e-10, atol=1e-10)


def test_a_population_fed_only_by_skip_edges_converts_saves_and_normalizes(tmp_path):
    """``Neurons`` (no synapse map of its own): written as version 7, fingerprinted, normalized by every method
    with the network's function kept (a positive scale per population), and bounded by model-based
    normalization through its edges."""
    from convert import methods
    from convert.contract.spec import Neurons
    from convert.stats import collect_stats

    spec = network("Neurons", "delay", "subtract")
    assert [type(la).__name__ for la in spec.layers].count("Neurons") == 2
    path = save_spec(spec, tmp_path / "n.npz")
    header = json.loads(bytes(np.load(path)["header"]).decode())
    assert header["format_version"] == 7 and header["layers"][3] == {
        "type": "Neurons",
        "shape": [2, 3, 3],
        "threshold": 0.5,
        "bias": "layers.3.bias",
    }
    assert load_spec(path) == spec and spec_fingerprint(load_spec(path)) == spec_fingerprint(spec)

    new, _ = normalize.model_based(spec)
    for i in (3, 4):  # Σ⁺ of every edge into it (and its bias) is 1 after model-based normalization
        drive = np.clip(new.layers[i].bias, 0, None).reshape(-1, 1) if new.layers[i].bias is not None else 0.0
        for edge in new.skips_into(i):
            w = np.clip(edge.weight, 0, None)
            drive = drive + (w.reshape(len(w), -1).sum(axis=1, keepdims=True) if w.ndim else float(w))
        assert float(np.max(drive)) == pytest.approx(1.0, rel=1e-12)

    rng = np.random.default_rng(0)
    images = rng.random((64, 1, 6, 6))
    stats = collect_stats(spec, images)
    x = torch.as_tensor(images)
    want = activations(spec, x)[1].argmax(1)
    for name in ("model", "data", "robust", "calibrated-pc"):
        out, _ = methods.get(name).apply(spec, stats, images=images, steps=8, percentile=99.9)
        assert isinstance(out.layers[3], Neurons) and len(out.skips) == len(spec.skips)
        if name in ("model", "data"):  # a positive scale per population: the same function up to the scale
            assert torch.equal(activations(out, x)[1].argmax(1), want)


def test_a_spec_rebuilt_from_its_fields_is_the_same_spec():
    """``type(spec)(**spec.__dict__)`` holds only the fields (no cached state rides along), and the edges by
    target are the edges into each layer."""
    spec = two_skips()
    assert type(spec)(**spec.__dict__) == spec
    assert spec.skips_by_target() == {3: spec.skips_into(3)} and spec.skips_into(2) == ()
