"""Grouped and depthwise convolution (Conv2d.groups): the field, its file and fingerprint, from_torch, the
per-channel thresholds and the input fold. The engines against the reference loop: tests/conformance
(family GroupedConv)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.ann import activations
from convert.channel_thresholds import _fold
from convert.contract.fingerprint import spec_fingerprint
from convert.contract.io import load_spec, save_spec, to_dict
from convert.contract.spec import Conv2d, Dense, Flatten, NetworkSpec, SpecError
from convert.from_torch import from_torch
from refsim.connectivity import connections


def _spec(groups: int = 1) -> NetworkSpec:
    rng = np.random.default_rng(0)
    return NetworkSpec(
        (1, 6, 6),
        (
            Conv2d(rng.normal(size=(4, 1, 3, 3)), padding=1),
            Conv2d(rng.normal(size=(4, 4 // groups, 3, 3)), stride=2, padding=1, groups=groups),
            Flatten(),
            Dense(rng.normal(size=(3, 36))),
        ),
    )


@pytest.mark.parametrize(
    ("groups", "match"), [(3, "divides the 4 output"), (0, "positive int"), (True, "positive int"), (1.5, "int")]
)
def test_bad_groups_are_refused_by_name(groups, match):
    with pytest.raises(SpecError, match=f"Conv2d.groups.*{match}"):
        Conv2d(np.ones((4, 1, 3, 3)), groups=groups)


def test_the_input_must_have_groups_times_the_weights_channels():
    with pytest.raises(SpecError, match=r"in 2 groups takes \(4, H, W\), got \(2, 5, 5\)"):
        Conv2d(np.ones((4, 2, 3, 3)), groups=2).output_shape((2, 5, 5))


def test_groups_one_is_left_out_of_files_and_fingerprints(tmp_path):
    """A plain convolution's file and cache key are what they were before the field existed; a grouped one's
    differ and read back equal."""
    plain, grouped = _spec(1), _spec(4)
    save_spec(plain, tmp_path / "plain.npz")
    save_spec(grouped, tmp_path / "grouped.npz")
    assert all("groups" not in layer for layer in to_dict(plain)[0]["layers"])
    assert to_dict(grouped)[0]["layers"][1]["groups"] == 4
    assert load_spec(tmp_path / "grouped.npz") == grouped
    assert load_spec(tmp_path / "grouped.npz").layers[1].groups == 4
    second = dataclasses.replace(grouped.layers[1], weight=np.tile(grouped.layers[1].weight, (1, 4, 1, 1)), groups=1)
    ungrouped = dataclasses.replace(grouped, layers=(grouped.layers[0], second, *grouped.layers[2:]))
    assert spec_fingerprint(ungrouped) != spec_fingerprint(grouped)


def test_dense_weight_and_brian2_synapses_follow_the_groups():
    layer = Conv2d(np.arange(1, 4 * 2 * 9 + 1, dtype=float).reshape(4, 2, 3, 3), groups=2)
    full = layer.dense_weight()
    assert full.shape == (4, 4, 3, 3)
    assert np.all(full[:2, 2:] == 0) and np.all(full[2:, :2] == 0)
    np.testing.assert_array_equal(full[2:, 2:], layer.weight[2:])
    conns = connections(layer, (4, 5, 5))
    x = np.random.default_rng(1).random((4, 5, 5))
    want = F.conv2d(torch.tensor(x)[None], torch.tensor(layer.weight), groups=2).numpy().ravel()
    np.testing.assert_allclose(conns.dense_matrix() @ x.ravel(), want, rtol=1e-12)
    assert len(conns.i) == 4 * 2 * 9 * 9  # out channels x (in / groups) x taps x positions (no padding)


class Separable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6)
        self.bn = nn.BatchNorm2d(6)
        self.pw = nn.Conv2d(6, 4, 1, groups=2)
        self.fc = nn.Linear(4 * 5 * 5, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.bn(self.dw(x)))
        return self.fc(torch.flatten(F.relu(self.pw(x)), 1))


def test_from_torch_reads_depthwise_and_grouped_convolutions():
    torch.manual_seed(0)
    net = Separable().eval().double()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.3, 0.3)
        net.bn.running_var.uniform_(0.5, 2.0)
    spec = from_torch(net, (1, 10, 10))
    assert [getattr(layer, "groups", None) for layer in spec.layers] == [1, 6, 2, None, None]
    x = torch.rand(3, 1, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(activations(spec, x)[1].numpy(), want, rtol=1e-10, atol=1e-12)


def test_the_input_normalization_folds_into_a_grouped_first_layer():
    torch.manual_seed(1)
    mean, std = torch.tensor([0.2, 0.5]), torch.tensor([0.3, 0.25])

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, groups=2)
            self.fc = nn.Linear(4 * 4 * 4, 5)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(self.conv(x)), 1))

    net = Net().eval().double()
    spec = from_torch(net, (2, 6, 6), normalize_input=(mean.tolist(), std.tolist()))
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        want = net((x - mean.double().view(1, 2, 1, 1)) / std.double().view(1, 2, 1, 1)).numpy()
    np.testing.assert_allclose(activations(spec, x)[1].numpy(), want, rtol=1e-10, atol=1e-12)


def test_a_grouped_consumer_takes_its_producers_channel_scales():
    """Dividing producer channel c by λ_c and multiplying the consumer's columns that read c by λ_c leaves the
    consumer's current unchanged, also where the consumer is grouped."""
    rng = np.random.default_rng(2)
    producer = Conv2d(rng.normal(size=(4, 1, 3, 3)), padding=1)
    consumer = Conv2d(rng.normal(size=(6, 2, 3, 3)), groups=2)
    lams = np.array([0.5, 2.0, 4.0, 0.25])
    x = torch.rand(2, 1, 7, 7, dtype=torch.float64)
    from convert.ann import layer_forward

    def current(p, c):
        return layer_forward(c, layer_forward(p, x)).numpy()  # linear: no ReLU needed for the identity

    got = current(_fold(producer, lams, axis=0), _fold(consumer, lams, axis=1, divide=False))
    np.testing.assert_allclose(got, current(producer, consumer), rtol=1e-10)
