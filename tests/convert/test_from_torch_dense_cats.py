"""DenseNet's cats read by BatchNorm → ReLU (convert/from_torch/dense_cats.py): one population per reader and
piece, fed by skip edges; the spec computes the model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.ann import activations
from convert.contract.spec import MaxPool2d, Neurons, SpecError
from convert.from_torch import from_torch


def _randomized(net: nn.Module, seed: int) -> nn.Module:
    """float64, eval mode, BatchNorm statistics and affine parameters drawn (not the identity)."""
    g = torch.Generator().manual_seed(seed)
    net = net.double().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.3, 0.3, generator=g)
    return net


class Layer(nn.Module):
    """torchvision's dense layer: BN → ReLU → 1×1 conv → BN → ReLU → 3×3 conv of the cat of what came before."""

    def __init__(self, c: int, growth: int = 3, width: int = 4) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, width, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(width), nn.Conv2d(width, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class TinyDenseNet(nn.Module):
    """A stem (conv, BN, ReLU, max-pool), a block of two layers, a transition (BN, ReLU, 1×1 conv, 2×2 average
    pool), a block of two layers, the final BN and ReLU, a global average pool and the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.norm0 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.block1 = nn.ModuleList([Layer(4), Layer(7)])
        self.norm_t, self.conv_t = nn.BatchNorm2d(10), nn.Conv2d(10, 5, 1, bias=False)
        self.block2 = nn.ModuleList([Layer(5), Layer(8)])
        self.norm5, self.fc = nn.BatchNorm2d(11), nn.Linear(11, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.norm0(self.conv0(x))), 2)
        features = [x]
        for layer in self.block1:
            features.append(layer(features))
        x = F.avg_pool2d(self.conv_t(F.relu(self.norm_t(torch.cat(features, 1)))), 2)
        features = [x]
        for layer in self.block2:
            features.append(layer(features))
        x = F.relu(self.norm5(torch.cat(features, 1)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def test_a_dense_block_converts_to_populations_fed_by_skip_edges():
    net = _randomized(TinyDenseNet(), 1)
    spec = from_torch(net, (1, 12, 12))
    assert len(spec.provenance["split_cats"]) == 6  # the two blocks' layer cats, the transition's, the last
    neurons = [layer for layer in spec.layers if isinstance(layer, Neurons)]
    # one per reader and piece: block 1 (1 + 2 + 3 with the transition), block 2 (1 + 2 + 3 with the head)
    assert len(neurons) == 12 and sum(isinstance(la, MaxPool2d) for la in spec.layers) == 1
    # a piece behind the transition reads it through its pool: one 2×2 stride-2 edge per transition population
    pooled = [e for e in spec.skips if e.weight.ndim == 4 and e.stride == (2, 2)]
    assert len(pooled) == 3 * 3  # three readers of the second block's first piece, three transition pieces
    assert any(e.kind == "channel" for e in spec.skips)  # the max-pooled stem through each reader's BatchNorm
    x = torch.rand(8, 1, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        want = net(x)
    torch.testing.assert_close(activations(spec, x)[1], want, rtol=1e-10, atol=1e-12)


def test_torchvisions_densenet121_converts_to_its_own_function():
    from validation.paper.torchvision_models import build

    with warnings.catch_warnings():  # torchvision's compiled operators may not load beside the CPU torch
        warnings.simplefilter("ignore")
        model, size = build("densenet121", 0)
    net = _randomized(model, 3)
    spec = from_torch(net, (1, size, size))
    assert len(spec.spiking_indices) == 657 and len(spec.skips) == 1876
    x = torch.rand(2, 1, size, size, dtype=torch.float64)
    with torch.no_grad():
        want = net(x)
    np.testing.assert_allclose(activations(spec, x)[1].numpy(), want.numpy(), rtol=1e-9, atol=1e-12)


def test_a_dilated_reader_of_the_cat_is_left_to_the_reader():
    """A dilated convolution reading the rectified cat is no plain convolution per piece: the cat is not split,
    and the reader refuses it with its reason (never a silently different function)."""
    net = TinyDenseNet()
    net.block1[1].conv1 = nn.Conv2d(7, 4, 3, padding=2, dilation=2, bias=False)
    with pytest.raises(SpecError, match=r"is read by a BatchNorm"):
        from_torch(_randomized(net, 4), (1, 12, 12))
