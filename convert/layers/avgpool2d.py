"""AvgPool2d: k×k average pooling as IF neurons with fixed weights 1/k² on each window (Diehl's code).

* ANN: z = the mean of each k×k window of a (stride s, default k; no padding);
* normalization: the weights 1/k² are not scaled (d = 1): a pool of normalized activations is normalized
  (a mean cannot exceed the max of its inputs). Max positive input sum k² · 1/k² = 1; max positive weight 1/k²;
* torch: ``nn.AvgPool2d(k, s)`` (square, no padding, no ceil_mode); NIR: ``nir.AvgPool2d`` (its weights 1/k²
  are implied).
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


def _pool_size(value: Any, name: str) -> int:
    values = {value} if isinstance(value, int) else set(value)
    if len(values) != 1:
        raise SpecError(f"AvgPool2d.{name}: only square pooling is supported, got {value}")
    return int(values.pop())


def from_module(module: Any, index: int) -> AvgPool2d:
    if module.padding not in (0, (0, 0)) or module.ceil_mode:
        raise SpecError(f"module {index} (AvgPool2d): padding and ceil_mode are not supported")
    k = _pool_size(module.kernel_size, "kernel_size")
    return AvgPool2d(k, stride=_pool_size(module.stride or k, "stride"))


def to_module(layer: AvgPool2d) -> Any:
    from torch import nn

    return nn.AvgPool2d(layer.kernel_size, layer.stride)


def nir_node(layer: AvgPool2d, input_shape: tuple[int, ...]) -> Any:
    import nir

    return nir.AvgPool2d(
        kernel_size=np.array([layer.kernel_size] * 2),
        stride=np.array([layer.stride] * 2),
        padding=np.array([0, 0]),
    )


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
)
