"""Flatten: reshape (C, H, W) to (C·H·W,) in C order; not a neuron population.

ANN: z = a reshaped to (N, C·H·W). Neuron (c, y, x) keeps its index c·H·W + y·W + x, so the simulators build
nothing for it. torch: ``nn.Flatten()``; NIR: ``nir.Flatten`` over all the sample dimensions (NIR's shapes
have no batch dimension: ``start_dim=0``); a NIR Flatten imports if it flattens every sample dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.layers.base import Layer, LayerFamily, SpecError


@dataclass(frozen=True)
class Flatten(Layer):
    """Reshape (C, H, W) to (C·H·W,) in C order; not a neuron population."""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)


def forward(layer: Flatten, x: Any) -> Any:
    return x.reshape(len(x), -1)


def from_module(module: Any, index: int) -> Flatten:
    return Flatten()


def to_module(layer: Flatten) -> Any:
    from torch import nn

    return nn.Flatten()


def nir_node(layer: Flatten, input_shape: tuple[int, ...]) -> Any:
    import nir

    return nir.Flatten(input_type={"input": np.asarray(input_shape)}, start_dim=0, end_dim=-1)


def from_nir(node: Any, threshold: float | None, where: str) -> Flatten:
    shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    ndim = None if shape is None else len(np.atleast_1d(shape))
    end_ok = node.end_dim == -1 or (ndim is not None and node.end_dim == ndim - 1)
    if node.start_dim != 0 or not end_ok:
        raise SpecError(
            f"{where}: start_dim={node.start_dim}, end_dim={node.end_dim}; the spec's Flatten flattens every sample "
            "dimension (start_dim=0, end_dim=-1; NIR shapes have no batch dimension)"
        )
    return Flatten()


FAMILY = LayerFamily(
    Flatten,
    forward=forward,
    nir_node=nir_node,
    torch_module="Flatten",
    from_module=from_module,
    to_module=to_module,
    nir_types=("Flatten",),
    from_nir=from_nir,
)
