"""Random specs with realistic activity, and MNIST-like images, for benchmarks and tests.

``random_spec`` draws He-scaled Gaussian weights for the paper's two architectures (or any layer list) and
balances them with convert's data-based normalization (Diehl et al. 2015, Algorithm 2;
:func:`convert.normalize.data_based` on :func:`convert.stats.collect_stats`, which runs convert's ANN,
:mod:`convert.ann`) on calibration images: with a_l the ReLU activations of the ANN (no bias),
scale_l = max(max_i a_l,i, max positive weight) and W_l ← W_l / (scale_l / scale_{l-1}) (scale_0 = 1),
thresholds 1. Pooling layers keep 1/k² and pass the scale on.
"""

from __future__ import annotations

import numpy as np

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from convert.normalize import data_based
from convert.stats import collect_stats

ARCHITECTURES = ("mlp", "cnn")


def mlp_layers(rng: np.random.Generator, sizes=(784, 1200, 1200, 10)) -> list:
    """Flatten, then Dense layers of the given sizes (784-1200-1200-10: the paper's MLP)."""
    layers: list = [Flatten()]
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers.append(Dense(rng.normal(0.0, np.sqrt(2.0 / n_in), (n_out, n_in))))
    return layers


def cnn_layers(rng: np.random.Generator, c1: int = 12, c2: int = 64, classes: int = 10) -> list:
    """28x28-12c5-2s-64c5-2s-10 (the paper's CNN): conv, avg-pool, conv, avg-pool, flatten, dense."""
    return [
        Conv2d(rng.normal(0.0, np.sqrt(2.0 / 25), (c1, 1, 5, 5))),
        AvgPool2d(2),
        Conv2d(rng.normal(0.0, np.sqrt(2.0 / (25 * c1)), (c2, c1, 5, 5))),
        AvgPool2d(2),
        Flatten(),
        Dense(rng.normal(0.0, np.sqrt(2.0 / (16 * c2)), (classes, 16 * c2))),
    ]


def normalize(spec: NetworkSpec, x: np.ndarray) -> NetworkSpec:
    """Data-based normalization of ``spec`` on calibration inputs x (uint8 images, or floats in [0, 1] of
    shape (N, n_inputs)); thresholds 1. Only the maximum activations matter here, so no activation sample
    is kept for percentiles."""
    normalized, _ = data_based(spec, collect_stats(spec, x, max_samples=0))
    return normalized


def mnist_like(n: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """uint8 images (n, size, size) resembling MNIST's statistics: a thick random stroke on black
    (about a fifth of the pixels nonzero, half of those saturated)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((n, size, size))
    for img in out:
        for _ in range(3):
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            ry, rx = rng.uniform(size * 0.1, size * 0.3, 2)
            ring = np.abs(np.hypot((yy - cy) / ry, (xx - cx) / rx) - 1.0)
            np.maximum(img, np.clip(1.6 - 6.0 * ring, 0.0, 1.0), out=img)
    return np.round(out * 255).astype(np.uint8)


def random_spec(
    architecture: str = "mlp",
    seed: int = 0,
    calibration: np.ndarray | None = None,
    reset: str = "subtract",
    schedule: str = "delay",
    encoding: str = "poisson",
) -> NetworkSpec:
    """A data-normalized random spec of the paper's MLP or CNN; ``calibration``: uint8 images (N, 28, 28)."""
    rng = np.random.default_rng(seed)
    if architecture == "mlp":
        layers = mlp_layers(rng)
    elif architecture == "cnn":
        layers = cnn_layers(rng)
    else:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    provenance = {"source": "fastsim.synthetic", "architecture": architecture, "seed": seed}
    spec = NetworkSpec(
        (1, 28, 28), tuple(layers), reset=reset, schedule=schedule, encoding=encoding, provenance=provenance
    )
    images = calibration if calibration is not None else mnist_like(256, rng)
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    return normalize(spec, x)
