"""Layer operators: the synaptic input I_l = W_l · s_{l-1} of every spec layer type, and its fan-out.

Dispatch is on the spec layer's type (:func:`functools.singledispatch`, one small function per type): this
module is fastsim's one builder per layer family (:mod:`convert.layers`). An unknown type raises
:class:`~convert.contract.spec.UnknownLayerError` (a ``SpecError`` and a ``TypeError``) naming its class. Every operator
maps a batch of presynaptic activity (R, *input shape) to currents (R, *output shape) on the given device and
dtype:

* :class:`~convert.contract.spec.Dense`:     I = s · Wᵀ,  W of shape (out, in);
* :class:`~convert.contract.spec.Conv2d`:    I = W ⋆ s  (cross-correlation as torch, zero padding, stride);
* :class:`~convert.contract.spec.AvgPool2d`: I = (1/k²) · Σ_{k×k window} s  (Diehl's pooling neurons; the window sum
  of spikes is an exact integer, multiplied once by the weight 1/k² rounded to the dtype);
* :class:`~convert.contract.spec.Flatten`:   a C-order reshape (R, C, H, W) → (R, C·H·W); not a population.

With ``parts`` > 1 (float32 only), Dense and Conv2d weights are split into TF32 limbs, concatenated along the
output dimension, and the product runs with TF32 on and sums the limbs' partial currents
(:mod:`fastsim.limbs`).

``fanout(layer, input_shape)`` counts, for every presynaptic neuron i, the synapses from i into the layer
(float64, shape ``input_shape``): synaptic events into layer l are Σ_t Σ_i s_{l-1,i}(t) · fanout_i.
For convolution and pooling fanout is the transposed operator applied to ones (every structural synapse
counts, zero weights included, as a Brian2 ``Synapses`` object would hold them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, Neurons, UnknownLayerError
from fastsim.limbs import split_limbs, sum_limbs, tf32_enabled


@dataclass(frozen=True)
class DenseOp:
    """I = s · Wᵀ; ``weight_t`` is Wᵀ (in, out), contiguous, so that rows of it are a neuron's fan-out
    (``parts`` > 1: (in, parts·out), the TF32 limbs side by side)."""

    weight_t: torch.Tensor
    parts: int = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.parts == 1:
            return x @ self.weight_t
        with tf32_enabled():
            return sum_limbs(x @ self.weight_t, self.parts)


@dataclass(frozen=True)
class ConvOp:
    """I = W ⋆ s with ``F.conv2d``, or with :func:`conv_by_shifts` when ``by_shifts`` (same sum)."""

    weight: torch.Tensor  # (parts·out, in, kh, kw): with parts > 1, the TF32 limbs stacked by output channel
    stride: tuple[int, int]
    padding: tuple[int, int]
    by_shifts: bool = False
    parts: int = 1
    groups: int = 1

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight.shape[1:]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.parts > 1:
            with tf32_enabled():
                z = F.conv2d(x, self.weight, stride=self.stride, padding=self.padding, groups=self.groups)
                return sum_limbs(z, self.parts)
        if self.by_shifts and self.groups == 1:
            return conv_by_shifts(x, self.weight, self.stride, self.padding)
        return F.conv2d(x, self.weight, stride=self.stride, padding=self.padding, groups=self.groups)


def conv_by_shifts(
    x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """Convolution as a sum of shifted, weighted input planes:

        I[o, y, x] = Σ_{c, i, j} W[o, c, i, j] · s_pad[c, stride_h·y + i, stride_w·x + j],

    accumulated in (c, i, j) order. Under torch.compile this is one fused loop over the outputs, several times
    faster on a CPU than oneDNN's convolution when the fan-in C·kh·kw is small (a first layer on an image);
    eager it is slow: use it compiled only.
    """
    oc, ic, kh, kw = weight.shape
    if padding != (0, 0):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    sh, sw = stride
    ho = (x.shape[2] - kh) // sh + 1
    wo = (x.shape[3] - kw) // sw + 1
    out = None
    for c in range(ic):
        for i in range(kh):
            for j in range(kw):
                plane = x[:, c : c + 1, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
                term = plane * weight[:, c, i, j].view(1, oc, 1, 1)
                out = term if out is None else out + term
    return out


@dataclass(frozen=True)
class PoolOp:
    kernel_size: int
    stride: int
    weight: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        window_sum = F.avg_pool2d(x, self.kernel_size, self.stride, divisor_override=1)
        return window_sum * self.weight


@dataclass(frozen=True)
class FlattenOp:
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


@dataclass(frozen=True)
class NoSynapsesOp:
    """A population fed only by its skip edges (:class:`convert.layers.neurons.Neurons`): no current from the
    layer below, zeros (R, *shape) that the edges' currents are added to."""

    shape: tuple[int, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], *self.shape))


def _weight(array: np.ndarray, device: torch.device, dtype: torch.dtype, parts: int = 1) -> torch.Tensor:
    """The weights in ``dtype``; with ``parts`` > 1 their TF32 limbs stacked along dim 0 (the output)."""
    if parts > 1:
        limbs = split_limbs(np.asarray(array), parts)
        return torch.tensor(limbs.reshape(-1, *limbs.shape[2:]), device=device).contiguous()
    return torch.tensor(np.array(array), device=device).to(dtype).contiguous()


@functools.singledispatch
def operator(layer: object, input_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype, parts: int = 1):
    """The synaptic operator of ``layer`` for inputs of shape (R, *input_shape); ``parts``: TF32 limbs per
    weight (1: the weights in ``dtype``)."""
    raise UnknownLayerError(f"fastsim has no operator for layer type {type(layer).__name__}")


@operator.register
def _(layer: Dense, input_shape, device, dtype, parts: int = 1) -> DenseOp:
    return DenseOp(_weight(layer.weight, device, dtype, parts).t().contiguous(), parts)


@operator.register
def _(layer: Conv2d, input_shape, device, dtype, parts: int = 1) -> ConvOp:
    weight = _weight(layer.weight, device, dtype, parts)
    return ConvOp(weight, layer.stride, layer.padding, parts=parts, groups=layer.groups)


@operator.register
def _(layer: AvgPool2d, input_shape, device, dtype, parts: int = 1) -> PoolOp:
    weight = float(torch.tensor(layer.weight_value, dtype=dtype))
    return PoolOp(layer.kernel_size, layer.stride, weight)


@operator.register
def _(layer: Flatten, input_shape, device, dtype, parts: int = 1) -> FlattenOp:
    return FlattenOp()


@operator.register
def _(layer: Neurons, input_shape, device, dtype, parts: int = 1) -> NoSynapsesOp:
    return NoSynapsesOp(layer.shape)


def _transpose_ones(input_shape, out_channels, in_channels, kernel, stride, padding, groups: int = 1) -> np.ndarray:
    """conv_transpose2d of ones: per input pixel, the number of (output neuron, kernel tap) pairs reaching it
    (``in_channels`` per group: a grouped convolution's input channel reaches its group's outputs only)."""
    _, h_in, w_in = input_shape
    ones_w = torch.ones(out_channels, in_channels, *kernel, dtype=torch.float64)
    h_out = (h_in + 2 * padding[0] - kernel[0]) // stride[0] + 1
    w_out = (w_in + 2 * padding[1] - kernel[1]) // stride[1] + 1
    extra = (
        h_in - ((h_out - 1) * stride[0] - 2 * padding[0] + kernel[0]),
        w_in - ((w_out - 1) * stride[1] - 2 * padding[1] + kernel[1]),
    )
    ones_out = torch.ones(1, out_channels, h_out, w_out, dtype=torch.float64)
    counts = F.conv_transpose2d(ones_out, ones_w, stride=stride, padding=padding, output_padding=extra, groups=groups)
    return counts[0].numpy()


@functools.singledispatch
def fanout(layer: object, input_shape: tuple[int, ...]) -> np.ndarray:
    """Synapses from each presynaptic neuron into ``layer``, float64 of shape ``input_shape``."""
    raise UnknownLayerError(f"fastsim has no fan-out rule for layer type {type(layer).__name__}")


@fanout.register
def _(layer: Dense, input_shape) -> np.ndarray:
    return np.full(input_shape, float(layer.weight.shape[0]))


@fanout.register
def _(layer: Conv2d, input_shape) -> np.ndarray:
    oc, ic, kh, kw = layer.weight.shape
    return _transpose_ones(input_shape, oc, ic, (kh, kw), layer.stride, layer.padding, layer.groups)


@fanout.register
def _(layer: AvgPool2d, input_shape) -> np.ndarray:
    k, s = layer.kernel_size, layer.stride
    per_channel = _transpose_ones((1, *input_shape[1:]), 1, 1, (k, k), (s, s), (0, 0))
    return np.broadcast_to(per_channel, input_shape).copy()


@fanout.register
def _(layer: Neurons, input_shape) -> np.ndarray:
    return np.zeros(input_shape)
