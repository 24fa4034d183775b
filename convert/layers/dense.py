"""Dense: all-to-all synapses, I = W · s + b with W of shape (out, in) and an optional bias b (out,), a
constant current added every step (docs/semantics.md); IF neurons with threshold θ.

* ANN: z = W a + b for an input batch a (N, in);
* normalization (Diehl et al. 2015): max positive input sum max_j Σ_i max(W_ji, 0) (Algorithm 1), max
  positive weight max(0, max W) (Algorithm 2), scaling by d: W ← W / d (the bias is divided by the product of
  the divisors up to this layer, :mod:`convert.normalize`);
* torch: ``nn.Linear(in, out, bias=...)``; NIR: ``nir.Affine(weight=W, bias=b)`` (Norse, snnTorch and sinabs
  all map ``Affine``; sinabs maps no ``Linear``); ``nir.Linear`` and ``nir.Affine`` import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.layers import base, skip
from convert.layers.base import LayerFamily, SpecError, SpikingLayer


@dataclass(frozen=True, eq=False)
class Dense(SpikingLayer):
    """All-to-all synapses: the layer input I = W · s + b, W of shape (out, in), b of shape (out,) or None;
    IF neurons with ``threshold``."""

    weight: np.ndarray
    threshold: float = 1.0
    bias: np.ndarray | None = None
    skip_source: int | None = None  # a residual edge (convert.layers.skip)
    skip_weight: np.ndarray | None = None
    skip_stride: tuple[int, int] = (1, 1)
    skip_padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", base.frozen_weight(self.weight, "Dense.weight", 2))
        object.__setattr__(self, "bias", base.frozen_bias(self.bias, self.weight.shape[0], "Dense.bias"))
        object.__setattr__(self, "threshold", base.check_threshold(self.threshold, "Dense"))
        skip.check_fields(self, "Dense", (2,))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape != (self.weight.shape[1],):
            raise SpecError(f"Dense.weight {self.weight.shape} takes ({self.weight.shape[1]},), got {input_shape}")
        return (self.weight.shape[0],)

    def __eq__(self, other: object) -> bool:
        return base.layers_equal(self, other)


def forward(layer: Dense, x: Any) -> Any:
    z = x @ base.weight_tensor(layer.weight, x).T
    return z if layer.bias is None else z + base.weight_tensor(layer.bias, x)


def from_module(module: Any, index: int) -> Dense:
    return Dense(base.module_weight(module), bias=base.module_bias(module))


def to_module(layer: Dense) -> Any:
    if layer.skip_source is not None:
        raise SpecError("Dense with a skip edge: a residual sum is no single torch module")
    import torch
    from torch import nn

    weight = torch.tensor(np.array(layer.weight))
    has_bias = layer.bias is not None
    module = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=has_bias, dtype=weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        if has_bias:
            module.bias.copy_(torch.tensor(np.array(layer.bias), dtype=weight.dtype))
    return module


def nir_node(layer: Dense, input_shape: tuple[int, ...]) -> Any:
    import nir

    bias = np.zeros(layer.weight.shape[0], layer.weight.dtype) if layer.bias is None else np.array(layer.bias)
    return nir.Affine(weight=np.array(layer.weight), bias=bias)


def from_nir(node: Any, threshold: float | None, where: str) -> Dense:
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise SpecError(f"{where}: weight of shape {weight.shape}; only 2-d (out, in) weights are supported")
    return Dense(weight, threshold=threshold, bias=base.nir_bias(node, weight.shape[0], where))


def synapses(layer: Dense, input_shape: tuple[int, ...]) -> int:
    """All-to-all: out × in."""
    return int(layer.weight.size)


FAMILY = LayerFamily(
    Dense,
    forward=forward,
    nir_node=nir_node,
    torch_module="Linear",
    from_module=from_module,
    to_module=to_module,
    arrays=("weight", "bias", "skip_weight"),
    max_positive_input_sum=base.max_positive_input_sum,
    max_positive_weight=base.max_positive_weight,
    max_positive_bias=base.max_positive_bias,
    scaled=base.scale_weight,
    synapses=synapses,
    nir_types=("Affine", "Linear"),
    from_nir=from_nir,
)
