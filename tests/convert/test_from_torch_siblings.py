"""from_torch merges a concatenation of parallel branches of rectified convolutions of one tensor into layers
(convert/from_torch/siblings.py): SqueezeNet's Fire (one level), GoogLeNet's inception (two levels, a pooled
branch, relays); the spec's ANN computes the model's outputs, and what cannot merge is left to the reader,
which names it. The engines on the merged inception's edges: tests/conformance (family Inception)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.ann import activations
from convert.contract.spec import Conv2d, MaxPool2d, SpecError
from convert.from_torch import from_torch
from convert.from_torch.siblings import merge_siblings


class Fire(nn.Module):
    """SqueezeNet's Fire module, with optional BatchNorm on the expansions."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int, bn: bool = False) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, e1, 1), nn.Conv2d(squeeze, e3, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(e1) if bn else nn.Identity()
        self.bn3 = nn.BatchNorm2d(e3) if bn else nn.Identity()

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.bn1(self.e1(x))), torch.relu(self.bn3(self.e3(x)))], 1)


class FireNet(nn.Module):
    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2)
        self.fire = Fire(8, 4, 6, 5, bn)
        self.head = nn.Conv2d(11, 10, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.fire(F.relu(self.stem(x)))
        return torch.flatten(self.pool(F.relu(self.head(x))), 1)


def _randomized(net: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine parameters away from their initial values, so that folding shows."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval().double()


@pytest.mark.parametrize("bn", [False, True])
def test_the_merged_spec_computes_the_model(bn):
    torch.manual_seed(1)
    net = _randomized(FireNet(bn), 2)
    spec = from_torch(net, (1, 15, 15))
    assert spec.provenance["merged_branches"] == ["cat"]
    convs = [layer for layer in spec.layers if isinstance(layer, Conv2d)]
    assert [c.weight.shape for c in convs] == [(8, 1, 3, 3), (4, 8, 1, 1), (11, 4, 3, 3), (10, 11, 1, 1)]
    merged = convs[2]
    # the 1x1 branch sits at the centre of the 3x3 kernel, zeros around it
    assert np.all(merged.weight[:6, :, [0, 0, 2, 2], [0, 2, 0, 2]] == 0) and merged.padding == (1, 1)
    x = torch.rand(5, 1, 15, 15, dtype=torch.float64)
    with torch.no_grad():
        want = net(x).numpy()
    got = activations(spec, x)[1].numpy().reshape(5, -1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_the_merge_is_a_pure_transform():
    """The traced module given is unchanged; the returned one computes the same outputs."""
    net = _randomized(FireNet(True), 3)
    gm = torch.fx.symbolic_trace(net)
    before = [n.name for n in gm.graph.nodes]
    merged, names, relays = merge_siblings(gm)
    assert [n.name for n in gm.graph.nodes] == before and names == ["cat"] and relays == []
    assert not any(n.target is torch.cat for n in merged.graph.nodes)
    x = torch.rand(3, 1, 15, 15, dtype=torch.float64)
    torch.testing.assert_close(merged(x), gm(x), rtol=1e-10, atol=1e-12)


def _block(cin: int, cout: int, k: int = 1, padding: int = 0) -> nn.Sequential:
    """torchvision's BasicConv2d: conv without bias, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Inception(nn.Module):
    """GoogLeNet's inception as torchvision writes it: a 1x1 branch, two 1x1 -> 3x3 branches (one 3x3 with
    padding 1, one 5x5 with padding 2: kernels of one centre), and a pool projection."""

    def __init__(self, cin: int, pooled: bool = True) -> None:
        super().__init__()
        self.b1 = _block(cin, 3)
        self.b2 = nn.Sequential(_block(cin, 2), _block(2, 4, 3, 1))
        self.b3 = nn.Sequential(_block(cin, 2), _block(2, 2, 5, 2))
        pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True) if pooled else nn.Identity()
        self.b4 = nn.Sequential(pool, _block(cin, 2))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class InceptionNet(nn.Module):
    """A stem, a stride-2 max-pool (the first inception's pooled branch reads a max-pool: a relay), two
    inceptions, the pooled classifier."""

    def __init__(self, pooled: bool = True) -> None:
        super().__init__()
        self.stem, self.pool = _block(1, 4, 3, 1), nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.i1, self.i2 = Inception(4, pooled), Inception(11, pooled)
        self.avg, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(11, 10)

    def forward(self, x):
        x = self.i2(self.i1(self.pool(self.stem(x))))
        return self.fc(torch.flatten(self.avg(x), 1))


@pytest.mark.parametrize("pooled", [True, False])
def test_a_merged_inception_computes_the_model(pooled):
    net = _randomized(InceptionNet(pooled), 4)
    spec = from_torch(net, (1, 12, 12))
    assert spec.provenance["merged_branches"] == ["cat", "cat_1"]
    relays = spec.provenance["relays"]
    assert any("relayed before the max-pool" in r for r in relays) == pooled
    assert sum("relayed at level 2" in r for r in relays) == 2
    # stem, the relay (pooled), two populations per inception, the average pool, the classifier
    assert len(spec.spiking_indices) == 1 + pooled + 2 * 2 + 1 + 1
    gated = [i for i, layer in enumerate(spec.layers) if isinstance(layer, MaxPool2d)]
    assert len(gated) == 1 + 2 * pooled  # the stem's pool, and each inception's pooled branch
    skips = [e.source for e in spec.skips]
    assert [spec.layers[g - 1 if pooled else g] for g in gated[1:]] == [spec.layers[j] for j in skips]
    x = torch.rand(4, 1, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        want = net(x).numpy()
    got = activations(spec, x)[-1].numpy().reshape(4, -1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_merged_inception_is_a_pure_transform():
    net = _randomized(InceptionNet(), 5)
    gm = torch.fx.symbolic_trace(net)
    merged, names, relays = merge_siblings(gm)
    assert names == ["cat", "cat_1"] and len(relays) == 3
    assert sum(n.target is torch.cat for n in gm.graph.nodes) == 2
    x = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(merged(x), gm(x), rtol=1e-10, atol=1e-12)


class TwoPools(nn.Module):
    """Two pooled branches: two gates on one population, which the chain cannot hold."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.a, self.b = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1)
        self.pa, self.pb = nn.MaxPool2d(3, 1, 1), nn.MaxPool2d(3, 1, 1)
        self.head = nn.Linear(6 * 26 * 26, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = torch.cat([F.relu(self.a(self.pa(x))), F.relu(self.b(self.pb(x)))], 1)
        return self.head(torch.flatten(y, 1))


class Misaligned(nn.Module):
    """Siblings of one output size whose kernels cannot share a centre (1x1 and 2x2, stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.a, self.b = nn.Conv2d(4, 3, 1, stride=2), nn.Conv2d(4, 3, 2, stride=2)
        self.head = nn.Linear(6 * 13 * 13, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1)
        return self.head(torch.flatten(y, 1))


@pytest.mark.parametrize("net", [TwoPools(), Misaligned()])
def test_what_does_not_merge_is_refused_by_name(net):
    with pytest.raises(SpecError, match=r"torch\.cat \(`cat`\)"):
        from_torch(net.eval())


def test_siblings_of_different_strides_are_not_merged():
    class Strides(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 1, stride=2), nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1)

    _, names, _ = merge_siblings(torch.fx.symbolic_trace(Strides()))
    assert names == []


def test_torchvision_googlenet_converts_to_its_own_function():
    """googlenet as it comes (num_classes=10, no auxiliary heads, the first conv for one channel) on 32x32: nine
    inceptions merged with relays, three relays before a pooled branch that reads a stride-2 max-pool; the
    spec's ANN is the model."""
    from convert.vision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(8)
    net = tv.models.googlenet(num_classes=10, aux_logits=False, init_weights=True)
    net.conv1.conv = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    net = _randomized(net, 9)
    spec = from_torch(net, (1, 32, 32))
    assert len(spec.provenance["merged_branches"]) == 9
    assert sum("before the max-pool" in r for r in spec.provenance["relays"]) == 3
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want = net(x).numpy()
    got = activations(spec, x)[-1].numpy().reshape(2, -1)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-9)


def test_a_batchnorm_after_a_cat_is_refused_with_densenets_reason():
    """DenseNet's layer: BatchNorm and ReLU read a cat of unrectified convolutions; every such cat is named,
    with why it cannot be one population."""

    class Dense(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.grow = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 3, padding=1)
            self.norm, self.head = nn.BatchNorm2d(6), nn.Linear(6 * 26 * 26, 10)

        def forward(self, x):
            x = self.stem(x)
            y = torch.cat([x, self.grow(F.relu(x))], 1)
            return self.head(torch.flatten(F.relu(self.norm(y)), 1))

    with pytest.raises(SpecError, match=r"`cat` \(torch\.cat\) is read by a BatchNorm \(and its ReLU\).*DenseNet"):
        from_torch(_randomized(Dense(), 2))


def test_an_exported_program_with_a_cat_converts_like_the_module():
    """torch.export writes the Fire module's layers as ATen calls; they are read back as modules
    (convert/from_torch/modules.py), so the cat merges as in the traced model and the spec computes the model."""
    from convert.from_torch import from_exported

    net = _randomized(FireNet(bn=True), 3)
    program = torch.export.export(net, (torch.zeros(1, 1, 28, 28, dtype=torch.float64),))
    spec = from_exported(program)
    assert spec.provenance["merged_branches"] == ["cat"] and spec.provenance["source"] == "torch.export"
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(activations(spec, x)[-1].numpy().reshape(3, -1), want, rtol=1e-10, atol=1e-12)
