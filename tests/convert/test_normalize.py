"""Normalization: hand-computed factors and property-based invariants (Hypothesis)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from convert import normalize
from convert.ann import activations, as_input
from convert.contract.io import load_spec, save_spec
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, SpecError
from convert.stats import collect_stats

W1 = [[1.0, 2.0, -1.0], [0.5, -3.0, 1.0]]
W2 = [[2.0, -1.0], [1.0, 1.0]]
W3 = [[1.0, 0.0], [0.0, 3.0]]
X = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def hand_spec() -> NetworkSpec:
    return NetworkSpec(input_shape=(3,), layers=(Dense(W1), Dense(W2), Dense(W3)))


def test_model_based_by_hand():
    _, report = normalize.model_based(hand_spec())
    assert report.divisors == (3.0, 2.0, 3.0)
    _, report = normalize.model_based(hand_spec(), normalize_output=False)
    assert report.divisors == (3.0, 2.0, 1.0)


def test_data_based_by_hand_paper_and_diehl_code():
    spec = hand_spec()
    stats = collect_stats(spec, X)
    assert stats.max == (2.0, 4.0, 6.0)
    _, paper = normalize.data_based(spec, stats)
    assert paper.divisors == (2.0, 2.0, 1.5)
    _, code = normalize.data_based(spec, stats, previous="applied")
    assert code.divisors == (2.0, 2.0, 3.0)


def test_robust_by_hand():
    spec = hand_spec()
    stats = collect_stats(spec, X)
    _, full = normalize.robust(spec, stats, percentile=100)
    assert full.divisors == (2.0, 2.0, 1.5)
    _, median = normalize.robust(spec, stats, percentile=50)
    np.testing.assert_allclose(median.divisors, (1.0, 1.75, 4.25 / 1.75))


def test_baseline_sets_threshold_keeps_weights():
    spec, report = normalize.baseline(hand_spec(), 4.0)
    assert spec.thresholds == [4.0, 4.0, 4.0]
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(spec.layers, hand_spec().layers, strict=True))
    with pytest.raises(SpecError, match="threshold"):
        normalize.baseline(hand_spec(), -1.0)


def test_stats_from_other_weights_rejected():
    stats = collect_stats(hand_spec(), X)
    other = NetworkSpec(input_shape=(3,), layers=(Dense(np.array(W1) * 2), Dense(W2), Dense(W3)))
    with pytest.raises(SpecError, match="different weights"):
        normalize.data_based(other, stats)


def test_pool_passes_factor_through():
    rng = np.random.default_rng(0)
    spec = NetworkSpec(
        input_shape=(1, 6, 6),
        layers=(Conv2d(np.abs(rng.normal(size=(2, 1, 3, 3)))), AvgPool2d(2), Flatten(), Dense(rng.normal(size=(3, 8)))),
    )
    x = rng.uniform(size=(10, 1, 6, 6))
    stats = collect_stats(spec, x)
    _, report = normalize.data_based(spec, stats)
    assert report.divisors[1] == 1.0
    # the dense layer's divisor is relative to the conv layer's scale, not to the pool's activation
    assert report.divisors[2] == pytest.approx(report.layers[2]["scale"] / report.layers[0]["scale"])


# ------------------------------------------------------------------------------------ property tests
@st.composite
def networks(draw):
    """Random small ReLU networks (dense or conv), with or without biases, log-uniform scales, optional dead
    rows (a dead row's bias is negative too)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scales = [10.0 ** draw(st.floats(-3, 3)) for _ in range(3)]
    dead_row = draw(st.booleans())
    biased = draw(st.booleans())

    def bias(n: int, scale: float, dead: bool = False):
        if not biased:
            return None
        b = rng.normal(size=n) * scale
        if dead:
            b[0] = -abs(b[0])
        return b

    arch = draw(st.sampled_from(["dense", "conv", "graph"]))
    if arch == "graph":  # every kind: a max-pool gate, an identity skip from it, a strided 1x1-conv skip
        c1, c2, n_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(2, 4))
        stem = rng.normal(size=(c1, 1, 3, 3)) * scales[0]
        if dead_row:
            stem[0] = -np.abs(stem[0])
        layers = (
            Conv2d(stem, padding=1, bias=bias(c1, scales[0], dead_row)),
            MaxPool2d(2),  # 8x8 -> 4x4
            Conv2d(rng.normal(size=(c1, c1, 3, 3)) * scales[1], padding=1, bias=bias(c1, scales[0] * scales[1])),
            Conv2d(
                rng.normal(size=(c1, c1, 3, 3)),
                padding=1,
                skip_source=1,
                skip_weight=np.array(rng.uniform(0.5, 2.0)) / scales[1],
            ),
            Conv2d(
                rng.normal(size=(c2, c1, 3, 3)) * scales[2],
                stride=2,
                padding=1,
                skip_source=3,
                skip_weight=rng.normal(size=(c2, c1, 1, 1)) * scales[2],
                skip_stride=2,
            ),
            Flatten(),
            Dense(rng.normal(size=(n_out, c2 * 4)), bias=bias(n_out, float(np.prod(scales)))),
        )
        spec = NetworkSpec(input_shape=(1, 8, 8), layers=layers)
        return spec, rng.uniform(size=(draw(st.integers(5, 40)), 1, 8, 8))
    if arch == "dense":
        n0, n1, n2, n3 = 9, draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(2, 4))
        ws = [rng.normal(size=s) * c for s, c in zip([(n1, n0), (n2, n1), (n3, n2)], scales, strict=True)]
        if dead_row:
            ws[0][0] = -np.abs(ws[0][0])
        cum = np.cumprod(scales)  # a bias in the scale of its layer's activations
        layers = (
            Flatten(),
            Dense(ws[0], bias=bias(n1, cum[0], dead_row)),
            Dense(ws[1], bias=bias(n2, cum[1])),
            Dense(ws[2], bias=bias(n3, cum[2])),
        )
    else:
        c_in, c1, n_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(2, 4))
        conv = rng.normal(size=(c1, c_in, 3, 3)) * scales[0]
        if dead_row:
            conv[0] = -np.abs(conv[0])
        dense = rng.normal(size=(n_out, c1 * 4)) * scales[1]
        layers = (
            Conv2d(conv, bias=bias(c1, scales[0], dead_row)),
            AvgPool2d(2),
            Flatten(),
            Dense(dense, bias=bias(n_out, scales[0] * scales[1])),
        )
    in_shape = (1, 3, 3) if isinstance(layers[0], Flatten) else (layers[0].weight.shape[1], 6, 6)
    spec = NetworkSpec(input_shape=in_shape, layers=layers)
    x = rng.uniform(size=(draw(st.integers(5, 40)), *in_shape))
    return spec, x


def _normalize_all(spec, x):
    stats = collect_stats(spec, x)
    return {
        "baseline": normalize.baseline(spec, 2.0),
        "model": normalize.model_based(spec),
        "data": normalize.data_based(spec, stats),
        "data-applied": normalize.data_based(spec, stats, previous="applied"),
        "robust": normalize.robust(spec, stats, 99.9),
        "robust-90": normalize.robust(spec, stats, 90.0),
    }


def _acts(spec, x):
    with torch.inference_mode():
        return activations(spec, as_input(spec, x))


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(networks())
def test_positive_homogeneity(net):
    spec, x = net
    _, logits = _acts(spec, x)
    for name, (new, report) in _normalize_all(spec, x).items():
        _, new_logits = _acts(new, x)
        c = 1.0 / np.prod(report.divisors)
        scale = float(logits.abs().max()) * c + 1e-300
        np.testing.assert_allclose(new_logits.numpy(), logits.numpy() * c, rtol=1e-9, atol=1e-12 * scale, err_msg=name)
        top2 = torch.topk(logits, 2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 1e-9 * logits.abs().max()
        assert torch.equal(new_logits.argmax(1)[clear], logits.argmax(1)[clear]), name


@SETTINGS
@given(networks())
def test_model_based_bounds_positive_input(net):
    """After Algorithm 1 (with a bias: plus the positive bias), no neuron can get more than θ = 1 in a step
    from inputs that spike at most once per step: max_j Σ_i max(W_ji, 0) + max(b_j, 0) = 1."""
    spec, _ = net
    new, report = normalize.model_based(spec)
    for li, i in enumerate(new.spiking_indices):
        layer = new.layers[i]
        if hasattr(layer, "weight"):
            per_neuron = np.clip(layer.weight, 0, None).reshape(layer.weight.shape[0], -1).sum(axis=1)
            if layer.bias is not None:
                per_neuron = per_neuron + np.clip(layer.bias, 0, None)
            for skip in new.skips_into(i):  # a skip's source fires at most once per step too
                w = np.clip(skip.weight, 0, None)
                per_neuron = per_neuron + (float(w) if w.ndim == 0 else w.reshape(w.shape[0], -1).sum(axis=1))
            s = float(per_neuron.max())
        else:  # pooling: weights 1/k² summing to 1, no bias
            s = normalize.max_positive_input_sum(layer)
        info = report.layers[li]
        if info.get("max_positive_drive", info["max_positive_input_sum"]) == 0:
            assert s == 0 and "note" in info
        else:
            assert s == pytest.approx(1.0, rel=1e-12)
    assert new.thresholds == [1.0] * len(new.thresholds)


@SETTINGS
@given(networks())
def test_data_based_unit_scale_on_calibration_data(net):
    spec, x = net
    new, report = normalize.data_based(spec, collect_stats(spec, x))
    acts, _ = _acts(new, x)
    for li, i in enumerate(spec.spiking_indices):
        info = report.layers[li]
        if isinstance(spec.layers[i], AvgPool2d):
            assert float(acts[li].max()) <= 1.0 + 1e-9
            continue
        if info["scale"] == 0:
            assert float(acts[li].max()) == 0.0
            continue
        value = max(float(acts[li].max()), info["max_weight"] / info["scale"])
        assert value == pytest.approx(1.0, rel=1e-9)


@SETTINGS
@given(networks(), st.sampled_from([50.0, 90.0, 99.0, 99.9]))
def test_robust_bounds_the_tail(net, p):
    spec, x = net
    stats = collect_stats(spec, x)
    new, _ = normalize.robust(spec, stats, p)
    acts, _ = _acts(new, x)
    for li, i in enumerate(spec.spiking_indices):
        if isinstance(spec.layers[i], AvgPool2d):
            continue
        a = acts[li].flatten()
        n_pos = int((a > 0).sum())
        if n_pos == 0:
            continue
        above = int((a > 1 + 1e-9).sum())
        assert above / n_pos <= (100 - p) / 100 + 1 / n_pos


@SETTINGS
@given(networks(), st.lists(st.floats(-2, 2), min_size=4, max_size=4))
def test_scale_equivariance_and_idempotence(net, log_c):
    spec, x = net
    layers = list(spec.layers)
    weighted = [i for i, layer in enumerate(layers) if hasattr(layer, "weight")]
    cumulative = 1.0  # a ReLU network computes c · f(x) when layer l's weights are scaled by c_l, its bias by Π c_k
    factors = dict(zip(weighted, log_c, strict=False))
    cum_at = []  # Π c_k up to each layer: a skip edge from j into l is scaled by cum_at[l] / cum_at[j]
    for i, layer in enumerate(layers):
        if i in weighted:  # a layer past the drawn factors keeps its weights (c = 1), its bias follows Π c_k
            lc = factors.get(i, 0.0)
            cumulative *= 10.0**lc
            b = None if layer.bias is None else layer.bias * cumulative
            kind = Dense if isinstance(layer, Dense) else Conv2d
            layers[i] = dataclasses.replace(layer, weight=layer.weight * 10.0**lc, bias=b)
            assert isinstance(layers[i], kind)
        cum_at.append(cumulative)
    skips = tuple(e.scaled(cum_at[e.target] / cum_at[e.source]) for e in spec.skips)
    scaled = NetworkSpec(input_shape=spec.input_shape, layers=tuple(layers), skips=skips)

    def close(a, b):
        for la, lb in zip(a.layers, b.layers, strict=True):
            if hasattr(la, "weight"):
                np.testing.assert_allclose(la.weight, lb.weight, rtol=1e-9, atol=1e-300)
                assert (la.bias is None) == (lb.bias is None)
                if la.bias is not None:
                    np.testing.assert_allclose(la.bias, lb.bias, rtol=1e-9, atol=1e-300)
        for ea, eb in zip(a.skips, b.skips, strict=True):
            assert (ea.source, ea.target) == (eb.source, eb.target)
            np.testing.assert_allclose(ea.weight, eb.weight, rtol=1e-9, atol=1e-300)

    s1, s2 = collect_stats(spec, x), collect_stats(scaled, x)
    m1, mrep = normalize.model_based(spec)
    close(m1, normalize.model_based(m1)[0])  # idempotent, dead layers included
    _, rob = normalize.robust(spec, s1, 99.0)
    # a layer that can never fire is left unscaled by design (its weights are arbitrary as far as the
    # network's function goes), so equivariance is claimed for live networks only
    if any("note" in info for info in rob.layers + mrep.layers):
        event("a dead layer: idempotence checked, equivariance not claimed")
        return
    close(m1, normalize.model_based(scaled)[0])
    close(normalize.robust(spec, s1, 99.0)[0], normalize.robust(scaled, s2, 99.0)[0])
    # data-based is equivariant where the activations, not the weights, set every scale
    _, r1 = normalize.data_based(spec, s1)
    _, r2 = normalize.data_based(scaled, s2)
    if all(info.get("max_activation", 1) >= info.get("max_weight", 0) for info in r1.layers + r2.layers):
        event("live, activations set every scale: data-based equivariance checked")
        close(normalize.data_based(spec, s1)[0], normalize.data_based(scaled, s2)[0])
    else:
        event("live, a weight sets a scale: data-based equivariance not claimed")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_purity_and_round_trip(net):
    spec, x = net
    before = [np.array(layer.weight) for layer in spec.layers if hasattr(layer, "weight")]
    results = _normalize_all(spec, x)
    after = [layer.weight for layer in spec.layers if hasattr(layer, "weight")]
    for b, a in zip(before, after, strict=True):
        assert np.array_equal(a, b) and not a.flags.writeable
    with tempfile.TemporaryDirectory() as tmp:
        for name, (new, report) in results.items():
            assert all(not la.weight.flags.writeable for la in new.layers if hasattr(la, "weight"))
            assert new.provenance["divisors"] == list(report.divisors)
            assert load_spec(save_spec(new, Path(tmp) / f"{name}.npz")) == new
