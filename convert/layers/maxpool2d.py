"""MaxPool2d: k×k max-pooling as a *gate* on the spikes of the population below; not a neuron population.

The gate passes, in every step t, the spike of the window's unit with the highest spike count so far, the
spikes of step t included (Rueckauer et al. 2017), ties to the unit with the lowest index (docs/semantics.md:
max-pooling). It has no neurons, weights or threshold; the next spiking layer's synapses leave from its
output units, one per window, in C order of the pooled shape.

* windows do not overlap: stride = kernel size (the only form supported; an overlapping pool is refused,
  because a unit would then be the winner of one window and not of another), no padding, floor mode
  (rows and columns past the last whole window are dropped, as torch does);
* the gate must directly follow a spiking layer (the input's pixels are no spike counts to compare);
* ANN: z = the max of each window; ReLU commutes with it, so it needs no ReLU of its own;
* normalization: max(a / λ) = max(a) / λ, so the gate passes the scale λ of the layer below unchanged;
* torch: ``nn.MaxPool2d(k)`` (stride k or None, no padding, dilation 1, no ceil_mode) and ``F.max_pool2d``;
  NIR has no max-pooling node: exporting a spec with a gate is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.layers.base import Layer, LayerFamily, SpecError, square_size


@dataclass(frozen=True)
class MaxPool2d(Layer):
    """k×k max-pooling gate over non-overlapping windows (stride k); not a neuron population."""

    kernel_size: int

    def __post_init__(self) -> None:
        k = self.kernel_size
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise SpecError(f"MaxPool2d.kernel_size must be a positive int, got {k!r}")
        object.__setattr__(self, "kernel_size", int(k))

    @property
    def stride(self) -> int:
        return self.kernel_size

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise SpecError(f"MaxPool2d takes (C, H, W), got {input_shape}")
        k = self.kernel_size
        h, w = input_shape[1] // k, input_shape[2] // k
        if h < 1 or w < 1:
            raise SpecError(f"MaxPool2d: kernel {k} does not fit input {input_shape}")
        return (input_shape[0], h, w)


def forward(layer: MaxPool2d, x: Any) -> Any:
    import torch.nn.functional as F

    return F.max_pool2d(x, layer.kernel_size, stride=layer.kernel_size)


def pool_from(kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool, where: str) -> MaxPool2d:
    """The gate of a torch max-pooling with these settings; a SpecError naming ``where`` for one it cannot be."""
    k = square_size(kernel, "MaxPool2d.kernel_size")
    s = k if stride is None or stride == [] or stride == () else square_size(stride, "MaxPool2d.stride")
    if padding not in (0, (0, 0), [0, 0]) or dilation not in (1, (1, 1), [1, 1]) or ceil_mode:
        raise SpecError(f"{where} (max-pooling): padding, dilation and ceil_mode are not supported")
    if s != k:
        raise SpecError(
            f"{where} (max-pooling): stride {s} with kernel {k}: overlapping windows are not supported; "
            "the spiking max-pool gate needs stride = kernel_size"
        )
    return MaxPool2d(k)


def from_module(module: Any, index: int) -> MaxPool2d:
    return pool_from(
        module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, f"module {index}"
    )


def to_module(layer: MaxPool2d) -> Any:
    from torch import nn

    return nn.MaxPool2d(layer.kernel_size)


def nir_node(layer: MaxPool2d, input_shape: tuple[int, ...]) -> Any:
    raise SpecError(
        "MaxPool2d: NIR has no max-pooling node, so a spec with a max-pool gate cannot be exported to NIR; "
        "use average pooling (AvgPool2d) in the network to export it"
    )


def synapses(layer: MaxPool2d, input_shape: tuple[int, ...]) -> int:
    """A gate has no synapses."""
    return 0


FAMILY = LayerFamily(
    MaxPool2d,
    forward=forward,
    nir_node=nir_node,
    torch_module="MaxPool2d",
    from_module=from_module,
    to_module=to_module,
)


def window_index(shape: tuple[int, int, int], k: int) -> np.ndarray:
    """For every unit of a (C, H, W) population, the C-order index of its window in the pooled shape, or -1 for
    a unit past the last whole window."""
    c, h, w = shape
    ph, pw = h // k, w // k
    y, x = np.arange(h) // k, np.arange(w) // k
    inside = (np.arange(h) < ph * k)[:, None] & (np.arange(w) < pw * k)[None, :]
    win = (np.arange(c)[:, None, None] * ph + y[None, :, None]) * pw + x[None, None, :]
    return np.where(inside[None], win, -1).reshape(-1)


def window_rank(shape: tuple[int, int, int], k: int) -> np.ndarray:
    """For every unit, its position (ky·k + kx) within its window: the lower, the earlier it wins a tie (the
    C-order index grows with it inside one window)."""
    c, h, w = shape
    r = (np.arange(h) % k)[:, None] * k + (np.arange(w) % k)[None, :]
    return np.broadcast_to(r, (c, h, w)).reshape(-1).copy()
