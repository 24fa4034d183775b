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
