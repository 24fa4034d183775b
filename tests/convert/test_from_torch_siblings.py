"""from_torch merges a concatenation of parallel rectified convolutions of one tensor into one layer
(convert/from_torch/siblings.py): the spec's ANN computes the model's outputs, and what cannot merge is
left to the reader, which names it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.ann import activations
from convert.contract.spec import Conv2d, SpecError
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
    merged, names = merge_siblings(gm)
    assert [n.name for n in gm.graph.nodes] == before and names == ["cat"]
    assert not any(n.target is torch.cat for n in merged.graph.nodes)
    x = torch.rand(3, 1, 15, 15, dtype=torch.float64)
    torch.testing.assert_close(merged(x), gm(x), rtol=1e-10, atol=1e-12)


class Uneven(nn.Module):
    """Branches of different depths (GoogLeNet's inception): not a merge, refused by the reader."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.a, self.b1, self.b2 = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 3, 1), nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Linear(6 * 26 * 26, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b2(F.relu(self.b1(x))))], 1)
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


@pytest.mark.parametrize("net", [Uneven(), Misaligned()])
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

    _, names = merge_siblings(torch.fx.symbolic_trace(Strides()))
    assert names == []
