"""Channel maps (split, shuffle) folded into their readers, conv → BatchNorm → 1×1 merged, and the ShuffleNet
units the two make mergeable: the spec's ANN computes the model (float64), and what is not a channel map is
still refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from convert.ann import activations
from convert.contract.spec import SpecError
from convert.from_torch import from_torch
from convert.from_torch.channel_maps import channel_index, fold_channel_maps
from convert.from_torch.linear_pairs import fold_linear_pairs, merged
from tests.convert.test_from_torch_siblings import _randomized


def assert_computes(spec, net: nn.Module, x: torch.Tensor, rtol: float, atol: float) -> None:
    """The spec's ANN computes the model's logits on ``x`` (float64: the folds' sums in another order)."""
    with torch.no_grad():
        want = net(x).numpy()
    got = activations(spec, x)[-1].numpy().reshape(len(x), -1)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's channel_shuffle, as written there."""
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """torchvision's branch: depthwise 3×3 + BatchNorm (no ReLU), then 1×1 + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class Unit(nn.Module):
    """ShuffleNetV2's unit as torchvision writes it: stride 2 (two branches of x) or stride 1 (x split in
    halves, one passed through)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.branch1 = _separable(cin, half, stride) if stride > 1 else nn.Sequential()
        first = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            nn.Conv2d(first, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(), *_separable(half, half, stride)
        )

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return shuffle(out, 2)


class TinyShuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, 2, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.units = nn.Sequential(Unit(6, 8, 2), Unit(8, 8, 1), Unit(8, 12, 2), Unit(12, 12, 1))
        self.head = nn.Sequential(nn.Conv2d(12, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.head(self.units(self.pool(self.stem(x))))
        return self.fc(x.mean([2, 3]))


def test_a_shufflenet_converts_to_its_own_function():
    net = _randomized(TinyShuffle(), 3)
    spec = from_torch(net, (1, 16, 16))
    prov = spec.provenance
    assert len(prov["merged_branches"]) == 4
    assert len(prov["merged_linear_pairs"]) == 6  # every depthwise 3×3 with the 1×1 after it
    assert sum("as its skip edge" in r for r in prov["relays"]) == 2  # the stride-2 units' one-layer branch
    assert sum("relayed at level 2" in r for r in prov["relays"]) == 2  # the stride-1 units' untouched half
    assert any("into `cat" in m for m in prov["channel_maps"])
    assert_computes(spec, net, torch.rand(3, 1, 16, 16, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_the_folds_are_pure_transforms():
    net = _randomized(TinyShuffle(), 4)
    gm = fx.symbolic_trace(net)
    before = str(gm.graph)
    x = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    from convert.from_torch import _propagate

    folded, notes = fold_linear_pairs(gm)
    assert notes and str(gm.graph) == before
    _propagate(folded, x)
    mapped, maps = fold_channel_maps(folded, x)
    assert maps and "chunk" not in str(mapped.graph) and "chunk" in str(folded.graph)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(mapped(x).numpy(), net(x).numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 3])
def test_a_convolution_and_the_pointwise_one_after_it_are_one_convolution(groups):
    torch.manual_seed(groups)
    a = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=groups, bias=True).double()
    bn = _randomized(nn.Sequential(nn.BatchNorm2d(6)), 5)[0]
    b = nn.Conv2d(6, 4, 1, bias=True).double()
    c = merged(a, bn, b)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(c(x).numpy(), b(bn(a(x))).numpy(), rtol=1e-10, atol=1e-12)
    assert c.groups == 1 and tuple(c.stride) == (2, 2) and tuple(c.padding) == (1, 1)


def test_a_shuffle_is_a_channel_map_and_a_spatial_transpose_is_not():
    x = torch.arange(2 * 6 * 3 * 3).view(2, 6, 3, 3)
    assert channel_index((2, 6, 3, 3), shuffle(x, 2)).tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_index((2, 6, 3, 3), x[:, 4:]).tolist() == [4, 5]
    assert channel_index((2, 6, 3, 3), x.transpose(2, 3)) is None
    assert channel_index((2, 6, 3, 3), x.view(2, 3, 6, 3)) is None


class ReluOfHalf(nn.Module):
    """A channel map read by a ReLU (neither a convolution nor a cat): not folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(2 * 26 * 26, 10)

    def forward(self, x):
        a, _ = F.relu(self.conv(x)).chunk(2, dim=1)
        return self.fc(torch.flatten(F.relu(a), 1))


class HalfOfUnrectified(nn.Module):
    """A cat of a split of a tensor before its ReLU: relu(x[:, idx]) is not x[:, idx], so nothing merges."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.b = nn.Conv2d(1, 4, 3), nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        x1, x2 = self.conv(x).chunk(2, dim=1)
        return self.fc(torch.flatten(torch.cat((x1, F.relu(self.b(x2))), 1), 1))


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (ReluOfHalf(), r"`chunk` \(Tensor\.chunk\) selects channels that neither a Conv2d nor a merged torch\.cat"),
        (HalfOfUnrectified(), r"ChannelSelect \(`select_getitem`\) selects channels.*torch\.cat \(`cat`\) joins"),
    ],
)
def test_what_is_not_folded_is_refused_by_name(net, match):
    with pytest.raises(SpecError, match=match):
        from_torch(net.eval())


def test_a_no_op_view_is_dropped_and_the_mean_head_read():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 10)

        def forward(self, x):
            y = F.relu(self.conv(x))
            y = y.view(y.size(0), 4, 26, 26).contiguous()
            return self.fc(y.mean(dim=(-2, -1)))

    net = Net().eval().double()
    spec = from_torch(net)
    assert any("no-op" in m for m in spec.provenance["channel_maps"])
    assert_computes(spec, net, torch.rand(2, 1, 28, 28, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_a_mean_over_channels_is_refused():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(26 * 26, 10)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(self.conv(x)).mean(1), 1))

    with pytest.raises(SpecError, match=r"only the mean over H and W"):
        from_torch(Net().eval())


def test_torchvision_shufflenet_converts_to_its_own_function():
    """shufflenet_v2_x1_0 as it comes (num_classes=10, the first conv for one channel) on 32×32: 16 units
    merged, every depthwise convolution merged with the 1×1 after it; the spec's ANN is the model."""
    from convert.vision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(8)
    net = tv.models.shufflenet_v2_x1_0(num_classes=10)
    net.conv1[0] = nn.Conv2d(1, 24, 3, 2, 1, bias=False)
    net = _randomized(net, 9)
    spec = from_torch(net, (1, 32, 32))
    assert len(spec.provenance["merged_branches"]) == 16
    assert len(spec.provenance["merged_linear_pairs"]) == 19
    assert_computes(spec, net, torch.rand(2, 1, 32, 32, dtype=torch.float64), rtol=1e-8, atol=1e-9)


def test_one_convolution_called_on_two_halves_is_folded_twice():
    """The same module reading two different maps of one tensor: two convolutions, each reading its own half."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.b, self.fc = nn.Conv2d(1, 4, 3), nn.Conv2d(2, 3, 1), nn.Linear(3 * 26 * 26, 10)

        def forward(self, x):
            x1, x2 = F.relu(self.conv(x)).chunk(2, dim=1)
            return self.fc(torch.flatten(F.relu(self.b(x1) + self.b(x2)), 1))

    net = Net().eval().double()
    gm = fx.symbolic_trace(net)
    example = torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    from convert.from_torch import _propagate

    _propagate(gm, example)
    folded, maps = fold_channel_maps(gm, example)
    assert len(maps) == 2 and "chunk" not in str(folded.graph)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), net(x).numpy(), rtol=1e-12, atol=1e-12)


def test_two_linears_without_a_relu_between_are_one():
    """A projection head (Linear → BatchNorm1d → Linear, no ReLU) is one Dense layer computing the same."""
    torch.manual_seed(3)
    bn = nn.BatchNorm1d(6)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 6), bn, nn.Linear(6, 3))
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    net = net.eval().double()
    spec = from_torch(net, (1, 4, 4))
    assert len(spec.provenance["merged_linear_pairs"]) == 1 and len(spec.spiking_indices) == 2
    assert_computes(spec, net, torch.rand(4, 1, 4, 4, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_an_exported_shufflenet_converts_like_the_traced_one():
    """The exported program's ATen views, transposes and splits are channel maps too, and its layer calls read
    back as modules: the same merges, the same function."""
    from convert.from_torch import from_exported

    net = _randomized(TinyShuffle(), 5)
    program = torch.export.export(net, (torch.zeros(1, 1, 16, 16, dtype=torch.float64),))
    spec = from_exported(program)
    traced = from_torch(net, (1, 16, 16))
    for key in ("merged_branches", "relays"):
        assert len(spec.provenance[key]) == len(traced.provenance[key])
    assert len(spec.provenance["merged_linear_pairs"]) == 6
    assert_computes(spec, net, torch.rand(3, 1, 16, 16, dtype=torch.float64), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["squeezenet1_1", "googlenet", "shufflenet_v2_x1_0"])
def test_exported_torchvision_families_with_cats_convert_to_their_own_function(name):
    """The torchvision families whose cats merge, exported with torch.export (first conv for one channel, random
    BatchNorm, float64): the program's spec computes the model."""
    from convert.from_torch import from_exported
    from convert.vision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(8)
    if name == "googlenet":
        net = tv.models.googlenet(num_classes=10, aux_logits=False, init_weights=True)
        net.conv1.conv = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    elif name == "squeezenet1_1":
        net = tv.models.squeezenet1_1(num_classes=10)
        net.features[0] = nn.Conv2d(1, 64, 3, stride=2)
    else:
        net = tv.models.shufflenet_v2_x1_0(num_classes=10)
        net.conv1[0] = nn.Conv2d(1, 24, 3, 2, 1, bias=False)
    net = _randomized(net, 9)
    spec = from_exported(torch.export.export(net, (torch.zeros(1, 1, 32, 32, dtype=torch.float64),)))
    assert spec.provenance["source"] == "torch.export" and spec.provenance["merged_branches"]
    assert_computes(spec, net, torch.rand(2, 1, 32, 32, dtype=torch.float64), rtol=1e-8, atol=1e-9)
