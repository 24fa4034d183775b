"""The sparse path for convolutions: an unrolled Wᵀ summed over the spiking inputs equals the convolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convert.spec import Conv2d, Dense, Flatten, NetworkSpec
from fastsim.network import CONV_SPARSE_RATIO, Network, unrolled_conv_t


@pytest.mark.parametrize("stride, padding", [((1, 1), (0, 0)), ((2, 1), (1, 2))])
def test_unrolled_matrix_is_the_convolution(fastsim_rng, stride, padding):
    layer = Conv2d(fastsim_rng.normal(size=(4, 3, 3, 3)), stride=stride, padding=padding)
    shape = (3, 7, 6)
    x = torch.tensor(fastsim_rng.random((5, *shape)) < 0.2, dtype=torch.float64)
    unrolled = unrolled_conv_t(layer, shape, torch.float64, "cpu")
    conv = torch.nn.functional.conv2d(x, torch.tensor(layer.weight), stride=stride, padding=padding)
    np.testing.assert_allclose((x.reshape(5, -1) @ unrolled).numpy(), conv.reshape(5, -1).numpy(), rtol=1e-12)
    # every entry is one weight or zero: exact in float32 too
    u32 = unrolled_conv_t(layer, shape, torch.float32, "cpu")
    assert torch.equal(u32, unrolled.to(torch.float32))


def test_stage_takes_the_sparse_path_and_matches(fastsim_rng):
    w = np.round(fastsim_rng.normal(size=(6, 4, 5, 5)) * 16) / 16  # dyadic: every sum is exact
    spec = NetworkSpec(
        input_shape=(4, 10, 10),
        layers=(Conv2d(w), Flatten(), Dense(np.round(fastsim_rng.normal(size=(3, 216)) * 16) / 16)),
    )
    net = Network(spec, torch.device("cpu"), torch.float32)
    stage = net.stages[0]
    assert stage.unrolled_t is not None and stage.fan_in == 100
    x = (torch.rand(8, 4, 10, 10, generator=torch.Generator().manual_seed(0)) < 0.05).to(torch.float32)
    nnz = x.sum()
    assert int(nnz) <= CONV_SPARSE_RATIO * stage.fan_in * len(x)  # so current() goes the sparse way
    assert torch.equal(stage.current(x, nnz).reshape(8, -1), stage.synapse(x).reshape(8, -1))
