from __future__ import annotations

import numpy as np
import pytest

from convert import datasets
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _mnist(split: str) -> datasets.Split:
    try:
        return datasets.load("mnist", split)
    except datasets.DatasetError as err:
        pytest.fail(f"MNIST is needed for this test: run `make data` first ({err})")


@pytest.fixture(scope="session")
def mnist_train() -> datasets.Split:
    return _mnist("train")


@pytest.fixture(scope="session")
def mnist_test() -> datasets.Split:
    return _mnist("test")


@pytest.fixture
def tiny_cnn(rng: np.random.Generator) -> NetworkSpec:
    return NetworkSpec(
        input_shape=(1, 8, 8),
        layers=(
            Conv2d(rng.normal(size=(3, 1, 3, 3))),
            AvgPool2d(2),
            Flatten(),
            Dense(rng.normal(size=(4, 27))),
        ),
    )


@pytest.fixture
def random_mnist_mlp() -> NetworkSpec:
    """784-32-16-10 with random weights (seed 5) scaled so that every layer is active on MNIST, membrane
    readout: the calibration tests' network (bias and potential correction shrink its layers' mean errors)."""
    rng = np.random.default_rng(5)
    return NetworkSpec(
        input_shape=(1, 28, 28),
        layers=(
            Flatten(),
            Dense(rng.normal(size=(32, 784)) * 0.05),
            Dense(rng.normal(size=(16, 32)) * 0.3),
            Dense(rng.normal(size=(10, 16))),
        ),
        readout="membrane",
    )
