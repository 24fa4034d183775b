"""Layer operators and fan-out, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten
from fastsim.layers import fanout, operator

CPU = torch.device("cpu")


def jacobian_fanout(op, input_shape) -> np.ndarray:
    """Count the nonzero entries of the operator's Jacobian per input: its structural synapses."""
    x = torch.zeros(1, *input_shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(op, x).reshape(-1, int(np.prod(input_shape)))
    return (jac != 0).sum(0).double().reshape(input_shape).numpy()


@pytest.mark.parametrize(
    "layer,input_shape",
    [
        (Conv2d(np.ones((4, 2, 3, 3)), stride=1, padding=0), (2, 6, 6)),
        (Conv2d(np.ones((3, 2, 3, 2)), stride=(2, 1), padding=(1, 1)), (2, 7, 5)),
        (Conv2d(np.ones((2, 1, 5, 5)), stride=2, padding=2), (1, 9, 8)),
        (AvgPool2d(2), (3, 5, 6)),
        (AvgPool2d(3, stride=2), (2, 7, 8)),
        (Dense(np.ones((7, 12))), (12,)),
    ],
)
def test_fanout_matches_brute_force(layer, input_shape) -> None:
    op = operator(layer, input_shape, CPU, torch.float64)
    got = fanout(layer, input_shape)
    assert got.shape == input_shape
    assert np.array_equal(got, jacobian_fanout(op, input_shape))


def test_operators_compute_the_layer_maths() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 5))
    x = torch.as_tensor(rng.random((2, 5)))
    assert torch.allclose(operator(Dense(w), (5,), CPU, torch.float64)(x), x @ torch.as_tensor(w).T)
    spikes = torch.as_tensor(rng.random((2, 1, 3, 3)) < 0.5).double()
    pooled = operator(AvgPool2d(3), (1, 3, 3), CPU, torch.float64)(spikes)
    assert torch.equal(pooled.reshape(2), spikes.sum((1, 2, 3)) * (1.0 / 9.0))
    flat = operator(Flatten(), (1, 3, 3), CPU, torch.float64)(spikes)
    assert torch.equal(flat, spikes.reshape(2, 9))


def test_unknown_layer_names_its_class() -> None:
    class Recurrent:
        pass

    with pytest.raises(TypeError, match="Recurrent"):
        operator(Recurrent(), (3,), CPU, torch.float32)
    with pytest.raises(TypeError, match="Recurrent"):
        fanout(Recurrent(), (3,))
