"""Small networks, one per layer family (one with biases, one with a max-pool gate, one with every kind: gate,
biases and skip edges), and their inputs of each kind.

Weights and biases are multiples of 1/16, thresholds multiples of 1/4 and analog inputs multiples of 1/8: with
0/1 spikes every membrane sum is exact in float32 and float64 whatever the order of summation (Brian2 adds
synapse by synapse, torch by matrix products), so every engine must agree with the reference loop exactly.
"""

from __future__ import annotations

import numpy as np

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, Neurons, Skip
from convert.encoding import poisson_spikes
from convert.layers.maxpool2d import with_rule


def dyadic(rng: np.random.Generator, shape: tuple[int, ...], low: int = -4, high: int = 9) -> np.ndarray:
    """Weights k/16 with k uniform in [low, high): mostly excitatory, so that every layer fires."""
    return rng.integers(low, high, size=shape).astype(np.float64) / 16.0


def _layers(family: str, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple]:
    if family == "Dense":  # 12 -> 8 -> 3
        return (12,), (Dense(dyadic(rng, (8, 12)), threshold=1.0), Dense(dyadic(rng, (3, 8)), threshold=0.75))
    if family == "Conv2d":  # (1, 6, 6) -> 3@3x3 pad 1 -> 2@3x3 stride 2: a convolutional output layer
        return (1, 6, 6), (
            Conv2d(dyadic(rng, (3, 1, 3, 3)), threshold=1.0, padding=1),
            Conv2d(dyadic(rng, (2, 3, 3, 3), -3, 9), threshold=0.75, stride=2),
        )
    if family == "AvgPool2d":  # (2, 6, 6) -> pool 2 -> overlapping pool 2 stride 1: weights 1/4 only
        return (2, 6, 6), (AvgPool2d(2, threshold=0.5), AvgPool2d(2, threshold=0.25, stride=1))
    if family == "Flatten":  # (1, 5, 5) -> 2@3x3 -> flatten (C order) -> dense 4
        return (1, 5, 5), (
            Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.75),
            Flatten(),
            Dense(dyadic(rng, (4, 18)), threshold=1.0),
        )
    if family == "CNN":  # all four: conv pad 1 -> pool 2 -> conv stride 2 pad 1 -> flatten -> dense
        return (1, 8, 8), (
            Conv2d(dyadic(rng, (3, 1, 3, 3)), threshold=1.0, padding=1),
            AvgPool2d(2, threshold=0.5),
            Conv2d(dyadic(rng, (4, 3, 3, 3)), threshold=0.75, stride=2, padding=1),
            Flatten(),
            Dense(dyadic(rng, (4, 16)), threshold=0.5),
        )
    if family == "Bias":  # biases, one per channel and one per neuron: conv pad 1 -> pool 2 -> flatten -> dense
        return (1, 6, 6), (
            Conv2d(dyadic(rng, (3, 1, 3, 3)), threshold=1.0, padding=1, bias=dyadic(rng, (3,), -3, 4)),
            AvgPool2d(2, threshold=0.5),
            Flatten(),
            Dense(dyadic(rng, (4, 27)), threshold=0.75, bias=dyadic(rng, (4,), -4, 4)),
        )
    if family == "MaxPool":  # a max-pool gate: conv pad 1 -> gate 2 (6x6 -> 3x3) -> flatten -> dense
        return (1, 6, 6), (
            Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.75, padding=1),
            MaxPool2d(2),
            Flatten(),
            Dense(dyadic(rng, (4, 18)), threshold=0.5),
        )
    if family == "MaxCountGate":  # the max-count rule on overlapping, padded and ceil-mode windows
        shape, layers = _layers("MaxPoolOverlap", rng)
        return shape, with_rule(layers, "max-count")
    if family == "MaxPoolOverlap":  # torchvision's ResNet stem: gate 3, stride 2, padding 1 (7x7 -> 4x4, windows
        # overlap by one row and column and hold padding at the border), then gate 2 in ceil mode (4x4 -> 2x2),
        # a skip edge from the first gate -> flatten -> dense
        return (1, 7, 7), (
            Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.75, padding=1),
            MaxPool2d(3, stride=2, padding=1),
            Conv2d(dyadic(rng, (2, 2, 3, 3)), threshold=0.5, padding=1, skip_source=1, skip_weight=0.5),
            MaxPool2d(3, stride=2, ceil_mode=True),
            Flatten(),
            Dense(dyadic(rng, (3, 8)), threshold=0.5),
        )
    return _torchvision_layers(family, rng)


def _torchvision_layers(family: str, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple]:
    """The families of the kinds torchvision's models brought: grouped convolution, the merged inception, a gate
    on a 1x1 map."""
    if family == "GroupedConv":  # MobileNet's separable block: conv -> depthwise 3x3 stride 2 (one channel per
        # group) -> 1x1 in two groups -> flatten -> dense
        return (1, 6, 6), (
            Conv2d(dyadic(rng, (4, 1, 3, 3)), threshold=0.75, padding=1),
            Conv2d(dyadic(rng, (4, 1, 3, 3), -2, 9), threshold=0.5, stride=2, padding=1, groups=4),
            Conv2d(dyadic(rng, (4, 2, 1, 1), -2, 9), threshold=0.5, groups=2),
            Flatten(),
            Dense(dyadic(rng, (3, 36)), threshold=0.5),
        )
    if family == "Residual":  # every kind at once: conv+bias -> gate -> conv -> conv + identity skip from the
        # gate -> conv stride 2 + 1x1 conv skip from the first conv of the block -> flatten -> dense
        return (1, 8, 8), (
            Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.75, padding=1, bias=dyadic(rng, (2,), -2, 3)),
            MaxPool2d(2),
            Conv2d(dyadic(rng, (2, 2, 3, 3)), threshold=1.0, padding=1),
            Conv2d(dyadic(rng, (2, 2, 3, 3)), threshold=0.75, padding=1, skip_source=1, skip_weight=0.5),
            Conv2d(
                dyadic(rng, (3, 2, 3, 3)),
                threshold=0.5,
                stride=2,
                padding=1,
                skip_source=2,
                skip_weight=dyadic(rng, (3, 2, 1, 1)),
                skip_stride=2,
            ),
            Flatten(),
            Dense(dyadic(rng, (3, 12)), threshold=0.5, bias=dyadic(rng, (3,), -2, 3)),
        )
    if family == "Inception":  # GoogLeNet's inception as from_torch merges it: conv -> gate 3 stride 1 padding 1
        # (ceil mode, size kept) -> the pool projection (1x1 of the gate) + the other branches' 1x1 convs of the
        # population below the gate (a skip edge) -> 3x3 level 2 with an identity relay -> flatten -> dense
        relay = np.zeros((3, 3, 3, 3))
        relay[0, 0, 1, 1] = 1.0
        relay[1:] = dyadic(rng, (2, 3, 3, 3))
        return (1, 5, 5), (
            Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.75, padding=1),
            MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            Conv2d(dyadic(rng, (3, 2, 1, 1)), threshold=0.5, skip_source=0, skip_weight=dyadic(rng, (3, 2, 1, 1))),
            Conv2d(relay, threshold=0.5, padding=1),
            Flatten(),
            Dense(dyadic(rng, (3, 75)), threshold=0.5),
        )
    if family == "GateOnePixel":  # GoogLeNet's last pool projection: a gate 3, stride 1, padding 1 on a 1x1 map,
        # every window one unit with no mates to compare -> flatten -> dense
        return (1, 3, 3), (
            Conv2d(dyadic(rng, (2, 1, 3, 3), -2, 9), threshold=0.5),
            MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            Flatten(),
            Dense(dyadic(rng, (3, 2), -2, 9), threshold=0.25),
        )
    if family == "ShuffleUnit":  # ShuffleNet's units as from_torch merges them: conv -> gate 3 stride 2 padding 1
        # -> the stride-2 unit: 1x1 of the gate, then a 3x3 stride 2 level whose other rows are a padded 3x3
        # stride 2 skip edge from the gate -> the stride-1 unit: channels [2, 0] selected (identity rows) beside a
        # 1x1, then a 3x3 level relaying them -> flatten -> dense
        trunk = np.zeros((4, 2, 3, 3))
        trunk[:2] = dyadic(rng, (2, 2, 3, 3))
        skip = np.zeros((4, 2, 3, 3))
        skip[2:] = dyadic(rng, (2, 2, 3, 3))
        select = np.zeros((4, 4, 1, 1))
        select[0, 2, 0, 0] = select[1, 0, 0, 0] = 1.0
        select[2:] = dyadic(rng, (2, 4, 1, 1))
        relay = np.zeros((4, 4, 3, 3))
        relay[0, 0, 1, 1] = relay[1, 1, 1, 1] = 1.0
        relay[2:, 2:] = dyadic(rng, (2, 2, 3, 3))
        return (1, 8, 8), (
            Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.75, padding=1),
            MaxPool2d(3, stride=2, padding=1),
            Conv2d(dyadic(rng, (2, 2, 1, 1)), threshold=0.5),
            Conv2d(
                trunk,
                threshold=0.5,
                stride=2,
                padding=1,
                skip_source=1,
                skip_weight=skip,
                skip_stride=2,
                skip_padding=1,
                bias=dyadic(rng, (4,), -2, 3),
            ),
            Conv2d(select, threshold=0.5),
            Conv2d(relay, threshold=0.5, padding=1),
            Flatten(),
            Dense(dyadic(rng, (3, 16)), threshold=0.5),
        )
    if family == "DenseBlock":  # any number of edges into one population (DenseNet's block): conv -> gate 2
        # -> 3x3 conv -> 1x1 conv + an identity skip from the gate -> 3x3 conv + bias with three skip edges: a
        # 1x1 conv from the gate, a padded 3x3 from the first conv after the gate, a 2x2 stride 2 from the
        # population below the gate -> flatten -> dense
        return (
            (1, 6, 6),
            (
                Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.5, padding=1),
                MaxPool2d(2),
                Conv2d(dyadic(rng, (2, 2, 3, 3)), threshold=0.5, padding=1),
                Conv2d(dyadic(rng, (2, 2, 1, 1)), threshold=0.5),
                Conv2d(dyadic(rng, (3, 2, 3, 3)), threshold=0.75, padding=1, bias=dyadic(rng, (3,), -2, 3)),
                Flatten(),
                Dense(dyadic(rng, (3, 27)), threshold=0.5),
            ),
            (
                Skip(1, 3, 0.5),
                Skip(1, 4, dyadic(rng, (3, 2, 1, 1))),
                Skip(2, 4, dyadic(rng, (3, 2, 3, 3)), padding=1),
                Skip(0, 4, dyadic(rng, (3, 2, 2, 2)), stride=2),
            ),
        )
    if family == "Neurons":  # populations fed only by skip edges (DenseNet's readers of a concatenation): conv
        # -> gate 2 -> conv -> Neurons + bias from a gain per channel of the gate and a 1x1 conv of the conv ->
        # Neurons from a 2x2 stride 2 conv of the population below the gate -> conv reading it + an identity skip
        # from the first Neurons -> flatten -> dense
        return (
            (1, 6, 6),
            (
                Conv2d(dyadic(rng, (2, 1, 3, 3)), threshold=0.5, padding=1),
                MaxPool2d(2),
                Conv2d(dyadic(rng, (2, 2, 3, 3)), threshold=0.5, padding=1),
                Neurons((2, 3, 3), threshold=0.5, bias=dyadic(rng, (2,), -2, 3)),
                Neurons((3, 3, 3), threshold=0.75),
                Conv2d(dyadic(rng, (2, 3, 3, 3)), threshold=0.5, padding=1),
                Flatten(),
                Dense(dyadic(rng, (3, 18)), threshold=0.5),
            ),
            (
                Skip(1, 3, dyadic(rng, (2,), 1, 9)),
                Skip(2, 3, dyadic(rng, (2, 2, 1, 1))),
                Skip(0, 4, dyadic(rng, (3, 2, 2, 2)), stride=2),
                Skip(3, 5, 0.5),
            ),
        )
    raise ValueError(f"unknown layer family {family!r}")


FAMILIES = (
    "Dense",
    "Conv2d",
    "AvgPool2d",
    "Flatten",
    "CNN",
    "Bias",
    "MaxPool",
    "Residual",
    "MaxPoolOverlap",
    "GroupedConv",
    "Inception",
    "GateOnePixel",
    "ShuffleUnit",
    "DenseBlock",
    "Neurons",
    "MaxCountGate",
)


def network(family: str, schedule: str, reset: str, encoding: str = "poisson") -> NetworkSpec:
    """The family's network; its weights depend on the family only (seeded), not on the modes."""
    shape, layers, *skips = _layers(family, np.random.default_rng(FAMILIES.index(family)))
    skips = tuple(skips[0]) if skips else ()
    return NetworkSpec(shape, layers, reset=reset, schedule=schedule, encoding=encoding, skips=skips)


def spike_input(spec: NetworkSpec, n: int, steps: int, p: float = 0.4) -> np.ndarray:
    """Random supplied input spikes, bool (n, steps, *input_shape)."""
    rng = np.random.default_rng(17)
    return rng.random((n, steps, *spec.input_shape)) < p


def current_input(spec: NetworkSpec, n: int) -> np.ndarray:
    """Analog intensities k/8 in [0, 1], about a third of them zero, shape (n, *input_shape)."""
    rng = np.random.default_rng(18)
    x = rng.integers(0, 9, size=(n, *spec.input_shape)) / 8.0
    return np.where(rng.random(x.shape) < 0.3, 0.0, x)


def poisson_images(spec: NetworkSpec, n: int, binary: bool = False) -> np.ndarray:
    """uint8 images, half the pixels dark; ``binary``: only 0 and 255 (spike never / in every step)."""
    rng = np.random.default_rng(19)
    img = rng.integers(0, 256, size=(n, *spec.input_shape))
    img[rng.random(img.shape) < 0.5] = 0
    if binary:
        img = np.where(img > 127, 255, 0)
    return img.astype(np.uint8)


def counter_spikes(spec: NetworkSpec, images: np.ndarray, indices: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """The input spikes docs/semantics.md pins for ``poisson`` images (numpy reference of the hash)."""
    return poisson_spikes(images, indices, steps, seed, spec.max_rate_hz, spec.dt_ms)
