"""Conv2d: 2-d convolution synapses, I = W ⋆ s + b (cross-correlation as torch, zero padding, stride);
W of shape (out_c, in_c / groups, kh, kw), an optional bias b (out_c,) added to every neuron of its channel
every step; IF neurons with threshold θ.

* ``groups`` g (as torch): the channels split into g groups, output channel o reading only the in_c / g input
  channels of its group ⌊o / (out_c / g)⌋ (W[o, i] is input channel ⌊o / (out_c / g)⌋ · in_c / g + i); g =
  in_c = out_c is a depthwise convolution. g = 1 is left out of files and fingerprints (a plain convolution's
  file and cache keys are as before the field existed);

* ANN: z = W ⋆ a + b (``F.conv2d``); output H' = ⌊(H + 2 p_h − kh) / s_h⌋ + 1, likewise W';
* normalization: as Dense with W reshaped to (out_c, in_c·kh·kw): max positive input sum per output channel
  (Algorithm 1 of Diehl et al. 2015), max positive weight, W ← W / d;
* torch: ``nn.Conv2d(in_c, out_c, (kh, kw), stride, padding, groups=g, bias=...)`` (no dilation, zero
  padding); NIR: ``nir.Conv2d`` with its bias and groups (and it imports from one: dilation 1, integer
  padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.layers import base, skip
from convert.layers.base import LayerFamily, SpecError, SpikingLayer


@dataclass(frozen=True, eq=False)
class Conv2d(SpikingLayer):
    """2-d convolution (cross-correlation, as torch), W of shape (out_c, in_c, kh, kw); zero padding."""

    weight: np.ndarray
    threshold: float = 1.0
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: np.ndarray | None = None
    skip_source: int | None = None  # a residual edge (convert.layers.skip)
    skip_weight: np.ndarray | None = None
    skip_stride: tuple[int, int] = (1, 1)
    skip_padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", base.frozen_weight(self.weight, "Conv2d.weight", 4))
        object.__setattr__(self, "bias", base.frozen_bias(self.bias, self.weight.shape[0], "Conv2d.bias"))
        object.__setattr__(self, "threshold", base.check_threshold(self.threshold, "Conv2d"))
        skip.check_fields(self, "Conv2d", (4,))
        object.__setattr__(self, "stride", base.pair(self.stride, "Conv2d.stride", 1))
        object.__setattr__(self, "padding", base.pair(self.padding, "Conv2d.padding", 0))
        g = self.groups
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1 or self.weight.shape[0] % g:
            raise SpecError(
                f"Conv2d.groups must be a positive int that divides the {self.weight.shape[0]} output channels, "
                f"got {g!r}"
            )
        object.__setattr__(self, "groups", int(g))

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    def dense_weight(self) -> np.ndarray:
        """W as an ungrouped convolution's (out_c, in_c, kh, kw): zeros where an output does not read a channel."""
        if self.groups == 1:
            return self.weight
        oc, icg, kh, kw = self.weight.shape
        full = np.zeros((oc, self.in_channels, kh, kw), dtype=self.weight.dtype)
        full[np.arange(oc)[:, None], self.input_channel()] = self.weight
        return full

    def input_channel(self) -> np.ndarray:
        """(out_c, in_c / g): the input channel W[o, i] reads (module docstring)."""
        oc, icg = self.weight.shape[:2]
        group = np.arange(oc) // (oc // self.groups)
        return group[:, None] * icg + np.arange(icg)[None, :]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        oc, _, kh, kw = self.weight.shape
        ic = self.in_channels
        if len(input_shape) != 3 or input_shape[0] != ic:
            groups = f" in {self.groups} groups" if self.groups > 1 else ""
            raise SpecError(f"Conv2d.weight {self.weight.shape}{groups} takes ({ic}, H, W), got {input_shape}")
        h = (input_shape[1] + 2 * self.padding[0] - kh) // self.stride[0] + 1
        w = (input_shape[2] + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if h < 1 or w < 1:
            raise SpecError(f"Conv2d: kernel {kh}x{kw} does not fit input {input_shape}")
        return (oc, h, w)

    def __eq__(self, other: object) -> bool:
        return base.layers_equal(self, other)


def forward(layer: Conv2d, x: Any) -> Any:
    import torch.nn.functional as F

    bias = None if layer.bias is None else base.weight_tensor(layer.bias, x)
    weight = base.weight_tensor(layer.weight, x)
    return F.conv2d(x, weight, bias, stride=layer.stride, padding=layer.padding, groups=layer.groups)


def from_module(module: Any, index: int) -> Conv2d:
    if module.dilation != (1, 1) or module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise SpecError(f"module {index} (Conv2d): dilation, string padding and non-zero padding are not supported")
    weight, bias = base.module_weight(module), base.module_bias(module)
    return Conv2d(weight, stride=module.stride, padding=module.padding, bias=bias, groups=module.groups)


def to_module(layer: Conv2d) -> Any:
    if layer.skip_source is not None:
        raise SpecError("Conv2d with a skip edge: a residual sum is no single torch module")
    import torch
    from torch import nn

    weight = torch.tensor(np.array(layer.weight))
    oc, _, kh, kw = weight.shape
    has_bias = layer.bias is not None
    module = nn.utils.skip_init(
        nn.Conv2d,
        layer.in_channels,
        oc,
        (kh, kw),
        layer.stride,
        layer.padding,
        groups=layer.groups,
        bias=has_bias,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        module.weight.copy_(weight)
        if has_bias:
            module.bias.copy_(torch.tensor(np.array(layer.bias), dtype=weight.dtype))
    return module


def nir_node(layer: Conv2d, input_shape: tuple[int, ...]) -> Any:
    import nir

    return nir.Conv2d(
        input_shape=tuple(input_shape[1:]),
        weight=np.array(layer.weight),
        stride=layer.stride,
        padding=layer.padding,
        dilation=(1, 1),
        groups=layer.groups,
        bias=np.zeros(layer.weight.shape[0]) if layer.bias is None else np.array(layer.bias),
    )


def from_nir(node: Any, threshold: float | None, where: str) -> Conv2d:
    if base.nir_pair(node.dilation, where, "dilation") != (1, 1):
        raise SpecError(f"{where}: dilation {node.dilation}; only 1 is supported")
    return Conv2d(
        np.asarray(node.weight),
        threshold=threshold,
        stride=base.nir_pair(node.stride, where, "stride"),
        padding=base.nir_pair(node.padding, where, "padding"),
        bias=base.nir_bias(node, np.asarray(node.weight).shape[0], where),
        groups=int(node.groups),
    )


def _valid_taps(size: int, kernel: int, stride: int, pad: int, out: int) -> int:
    """Σ over output positions of the kernel taps that land inside the (unpadded) input, along one axis."""
    return sum(1 for o in range(out) for d in range(kernel) if 0 <= o * stride - pad + d < size)


def synapses(layer: Conv2d, input_shape: tuple[int, ...]) -> int:
    """out_c × (in_c / groups) × (valid taps along y) × (valid taps along x): padded taps connect nothing."""
    oc, ic, kh, kw = layer.weight.shape
    _, ho, wo = layer.output_shape(input_shape)
    ty = _valid_taps(input_shape[1], kh, layer.stride[0], layer.padding[0], ho)
    tx = _valid_taps(input_shape[2], kw, layer.stride[1], layer.padding[1], wo)
    return int(oc * ic * ty * tx)


FAMILY = LayerFamily(
    Conv2d,
    forward=forward,
    nir_node=nir_node,
    torch_module="Conv2d",
    from_module=from_module,
    to_module=to_module,
    arrays=("weight", "bias", "skip_weight"),
    max_positive_input_sum=base.max_positive_input_sum,
    max_positive_weight=base.max_positive_weight,
    max_positive_bias=base.max_positive_bias,
    scaled=base.scale_weight,
    synapses=synapses,
    nir_types=("Conv2d",),
    from_nir=from_nir,
    defaults={"groups": 1},
    field_types={"groups": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")},
)
