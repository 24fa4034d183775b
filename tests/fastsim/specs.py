"""Small specs for the fastsim tests.

``dyadic_*`` specs have weights that are multiples of 1/16 and thresholds multiples of 1/4: with 0/1 spikes
every sum is exact in float32 and float64, whatever the summation order, so records must agree exactly
between engines, batch sizes, dtypes and devices.
"""

from __future__ import annotations

import numpy as np

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec


def dyadic(rng: np.random.Generator, shape: tuple[int, ...], low: int = -4, high: int = 9) -> np.ndarray:
    return rng.integers(low, high, size=shape).astype(np.float64) / 16.0


def dyadic_cnn(rng: np.random.Generator, reset: str = "subtract", schedule: str = "delay") -> NetworkSpec:
    """(1, 10, 10) -> conv 3@3x3 pad 1 -> pool 2 -> conv 4@3x3 stride 2 -> flatten 16 -> dense 5."""
    return NetworkSpec(
        input_shape=(1, 10, 10),
        layers=(
            Conv2d(dyadic(rng, (3, 1, 3, 3)), threshold=1.0, padding=1),
            AvgPool2d(2, threshold=0.5),
            Conv2d(dyadic(rng, (4, 3, 3, 3)), threshold=0.75, stride=2),
            Flatten(),
            Dense(dyadic(rng, (5, 16)), threshold=0.5),
        ),
        reset=reset,
        schedule=schedule,
    )


def dyadic_mlp(rng: np.random.Generator, reset: str = "subtract", schedule: str = "delay") -> NetworkSpec:
    """(1, 6, 6) -> flatten -> dense 20 -> dense 3."""
    return NetworkSpec(
        input_shape=(1, 6, 6),
        layers=(
            Flatten(),
            Dense(dyadic(rng, (20, 36), -3, 6), threshold=1.0),
            Dense(dyadic(rng, (3, 20), -4, 9), threshold=1.25),
        ),
        reset=reset,
        schedule=schedule,
    )


def random_images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images with about half the pixels zero, like the dark background of MNIST."""
    img = rng.integers(0, 256, size=(n, *shape))
    img[rng.random(img.shape) < 0.5] = 0
    return img.astype(np.uint8)
