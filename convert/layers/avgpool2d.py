"""AvgPool2d: k×k average pooling as IF neurons with fixed weights 1/k² on each window (Diehl's code).

* ANN: z = the mean of each k×k window of a (stride s, default k; no padding);
* normalization: the weights 1/k² are not scaled (d = 1): a pool of normalized activations is normalized
  (a mean cannot exceed the max of its inputs). Max positive input sum k² · 1/k² = 1; max positive weight 1/k²;
* torch: ``nn.AvgPool2d(k, s)`` (square, no padding, no ceil_mode); NIR: ``nir.SumPool2d`` (weights 1), whose
  IF node gets the threshold k² · θ (gain k²): v ≥ θ with weights 1/k² is v' = k² v ≥ k² θ, exact in binary
  floating point when k² is a power of two (k = 2, 4, ...). Norse and sinabs map ``SumPool2d`` but not
  ``AvgPool2d``. Both ``SumPool2d`` (θ = v_threshold / k²) and ``AvgPool2d`` (θ = v_threshold) import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.layers import base
from convert.layers.base import LayerFamily, SpecError, SpikingLayer


@dataclass(frozen=True)
class AvgPool2d(SpikingLayer):
    """k×k average pooling as IF neurons with weights 1/k² (Diehl's code); stride defaults to k."""

    kernel_size: int
    threshold: float = 1.0
    stride: int | None = None

    def __post_init__(self) -> None:
        if int(self.kernel_size) != self.kernel_size or self.kernel_size < 1:
            raise SpecError(f"AvgPool2d.kernel_size must be a positive int, got {self.kernel_size!r}")
        object.__setattr__(self, "kernel_size", int(self.kernel_size))
        stride = self.kernel_size if self.stride is None else self.stride
        if int(stride) != stride or stride < 1:
            raise SpecError(f"AvgPool2d.stride must be a positive int, got {self.stride!r}")
        object.__setattr__(self, "stride", int(stride))
        object.__setattr__(self, "threshold", base.check_threshold(self.threshold, "AvgPool2d"))

    @property
    def weight_value(self) -> float:
        return 1.0 / self.kernel_size**2

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise SpecError(f"AvgPool2d takes (C, H, W), got {input_shape}")
        k, s = self.kernel_size, self.stride
        h, w = (input_shape[1] - k) // s + 1, (input_shape[2] - k) // s + 1
        if h < 1 or w < 1:
            raise SpecError(f"AvgPool2d: kernel {k} does not fit input {input_shape}")
        return (input_shape[0], h, w)


def forward(layer: AvgPool2d, x: Any) -> Any:
    import torch.nn.functional as F

    return F.avg_pool2d(x, layer.kernel_size, stride=layer.stride)


def from_module(module: Any, index: int) -> AvgPool2d:
    if module.padding not in (0, (0, 0)) or module.ceil_mode:
        raise SpecError(f"module {index} (AvgPool2d): padding and ceil_mode are not supported")
    k = base.square_size(module.kernel_size, "AvgPool2d.kernel_size")
    return AvgPool2d(k, stride=base.square_size(module.stride or k, "AvgPool2d.stride"))


def to_module(layer: AvgPool2d) -> Any:
    from torch import nn

    return nn.AvgPool2d(layer.kernel_size, layer.stride)


def nir_node(layer: AvgPool2d, input_shape: tuple[int, ...]) -> Any:
    import nir

    return nir.SumPool2d(
        kernel_size=np.array([layer.kernel_size] * 2),
        stride=np.array([layer.stride] * 2),
        padding=np.array([0, 0]),
    )


def nir_gain(layer: AvgPool2d) -> float:
    """Sum pooling delivers k² times the average pooling's input current."""
    return float(layer.kernel_size**2)


def from_nir(node: Any, threshold: float | None, where: str) -> AvgPool2d:
    k = base.nir_pair(node.kernel_size, where, "kernel_size")
    s = base.nir_pair(node.stride, where, "stride")
    if base.nir_pair(node.padding, where, "padding") != (0, 0):
        raise SpecError(f"{where}: padding {node.padding}; pooling without padding only")
    if k[0] != k[1] or s[0] != s[1]:
        raise SpecError(f"{where}: kernel {k}, stride {s}; only square pooling is supported")
    if threshold is not None and type(node).__name__ == "SumPool2d":
        threshold = threshold / k[0] ** 2
    return AvgPool2d(k[0], threshold=threshold, stride=s[0])


def max_positive_input_sum(layer: AvgPool2d) -> float:
    return 1.0


def max_positive_weight(layer: AvgPool2d) -> float:
    return layer.weight_value


def synapses(layer: AvgPool2d, input_shape: tuple[int, ...]) -> int:
    """Each output neuron sums its k × k window (weights 1/k²)."""
    return int(np.prod(layer.output_shape(input_shape))) * layer.kernel_size**2


FAMILY = LayerFamily(
    AvgPool2d,
    forward=forward,
    nir_node=nir_node,
    torch_module="AvgPool2d",
    from_module=from_module,
    to_module=to_module,
    max_positive_input_sum=max_positive_input_sum,
    max_positive_weight=max_positive_weight,
    synapses=synapses,
    nir_gain=nir_gain,
    nir_types=("SumPool2d", "AvgPool2d"),
    from_nir=from_nir,
)
