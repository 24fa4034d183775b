"""Neurons: a population of IF neurons with no synapse map of its own; its current is the sum of its skip edges.

Every other spiking family is fed by the activity right below it in the chain (its *trunk* edge). A ``Neurons``
population of ``shape`` is fed only by the skip edges into it (``NetworkSpec.skips``, from any earlier
population or gate) and its optional bias: I = ((S · s_j) + S' · s_k …) + b (docs/semantics.md). It is the node
a graph needs where one population reads several others and none of them is the chain's layer below, such as a
BatchNorm and ReLU after a concatenation (DenseNet): one population per reader and joined piece, each with its
own edges. The chain walks through it (the layer after it reads its spikes), but it reads nothing from the layer
before it.

* ANN: z = b (zeros without a bias), to which the skip edges' currents are added (:mod:`convert.ann`);
* normalization: no weights of its own; model-based normalization bounds the drive of its edges and bias, and
  data-based normalization its activity, as for any layer; its divisor scales its skip edges (λ_source / λ_l)
  and its bias (:mod:`convert.normalize`);
* no torch module and no NIR node (a NIR export refuses it; a graph of IF nodes with only branch inputs is
  not a chain);
* synapses: none of its own (its edges count theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.layers import base
from convert.layers.base import LayerFamily, SpecError, SpikingLayer


@dataclass(frozen=True, eq=False)
class Neurons(SpikingLayer):
    """IF neurons of ``shape`` ((C, H, W) or (n,)) fed only by skip edges, with ``threshold`` and an optional
    ``bias`` (one per channel of a (C, H, W) population, one per neuron of an (n,) one)."""

    shape: tuple[int, ...]
    threshold: float = 1.0
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else (self.shape,)
        if len(shape) not in (1, 3) or any(isinstance(d, bool) or int(d) != d or d < 1 for d in shape):
            raise SpecError(f"Neurons.shape: must be (C, H, W) or (n,) of positive ints, got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "bias", base.frozen_bias(self.bias, self.shape[0], "Neurons.bias"))
        object.__setattr__(self, "threshold", base.check_threshold(self.threshold, "Neurons"))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.shape

    def __eq__(self, other: object) -> bool:
        return base.layers_equal(self, other)


def forward(layer: Neurons, x: Any) -> Any:
    """The constant part of the current, b (or zeros), for every sample of x; the skip edges add theirs."""
    import torch

    z = torch.zeros((len(x), *layer.shape), dtype=x.dtype, device=x.device)
    if layer.bias is None:
        return z
    b = base.weight_tensor(layer.bias, x).to(x.device)
    return z + (b.view(1, -1, 1, 1) if len(layer.shape) == 3 else b.view(1, -1))


def nir_node(layer: Neurons, input_shape: tuple[int, ...]) -> Any:
    raise SpecError("Neurons (a population fed only by skip edges) has no NIR node; NIR exports chains")


def _nothing(layer: Neurons) -> float:
    return 0.0


def _unscaled(layer: Neurons, d: float) -> Neurons:
    """No weights of its own: the divisor only reaches its edges and its bias (convert.normalize)."""
    return layer


def synapses(layer: Neurons, input_shape: tuple[int, ...]) -> int:
    return 0


FAMILY = LayerFamily(
    Neurons,
    forward=forward,
    nir_node=nir_node,
    arrays=("bias",),
    max_positive_input_sum=_nothing,
    max_positive_weight=_nothing,
    max_positive_bias=base.max_positive_bias,
    scaled=_unscaled,
    synapses=synapses,
    field_types={"shape": (lambda v: isinstance(v, list) and all(isinstance(d, int) for d in v), "a list of integers")},
)
