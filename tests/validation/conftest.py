from __future__ import annotations

import numpy as np
import pytest

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec


def small_mnist_spec(rng: np.random.Generator, schedule: str = "delay", reset: str = "zero") -> NetworkSpec:
    """A small random conv net on 28x28 inputs, scaled so that every layer is active."""
    return NetworkSpec(
        input_shape=(1, 28, 28),
        layers=(
            Conv2d(np.abs(rng.normal(size=(2, 1, 5, 5))) * 0.15, stride=(3, 3)),
            AvgPool2d(2),
            Flatten(),
            Dense(rng.normal(0.2, 0.5, size=(10, 2 * 4 * 4)) * 0.8),
        ),
        schedule=schedule,
        reset=reset,
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)
