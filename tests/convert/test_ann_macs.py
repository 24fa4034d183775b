"""ANN multiply-accumulates per image: the synapses each family connects, checked against Brian2's synapse lists."""

from __future__ import annotations

import numpy as np
import pytest

from convert.ann import macs_per_image
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from refsim.connectivity import connections


@pytest.mark.parametrize("padding", [(0, 0), (1, 2)])
def test_macs_equal_the_synapse_lists(padding):
    rng = np.random.default_rng(0)
    front = (Conv2d(rng.normal(size=(3, 2, 3, 3)), stride=(2, 1), padding=padding), AvgPool2d(2), Flatten())
    flat = int(np.prod(front[1].output_shape(front[0].output_shape((2, 9, 8)))))
    spec = NetworkSpec((2, 9, 8), (*front, Dense(rng.normal(size=(5, flat)))))
    shapes = spec.shapes
    want = [len(connections(spec.layers[i], shapes[i]).i) for i in spec.spiking_indices]
    assert macs_per_image(spec) == want


def test_macs_of_the_paper_networks():
    rng = np.random.default_rng(1)
    mlp = NetworkSpec(
        (1, 28, 28),
        (Flatten(), Dense(rng.random((1200, 784))), Dense(rng.random((1200, 1200))), Dense(rng.random((10, 1200)))),
    )
    assert macs_per_image(mlp) == [1200 * 784, 1200 * 1200, 10 * 1200]
    cnn = NetworkSpec(
        (1, 28, 28),
        (
            Conv2d(rng.random((12, 1, 5, 5))),
            AvgPool2d(2),
            Conv2d(rng.random((64, 12, 5, 5))),
            AvgPool2d(2),
            Flatten(),
            Dense(rng.random((10, 1024))),
        ),
    )
    assert macs_per_image(cnn) == [12 * 24 * 24 * 25, 12 * 12 * 12 * 4, 64 * 8 * 8 * 12 * 25, 64 * 4 * 4 * 4, 10240]
