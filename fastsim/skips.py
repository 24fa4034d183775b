"""A skip edge on a device: what a stage adds to its trunk's current for every other edge into it.

:class:`SkipEdge` is a skip edge's synapse map (identity times a gain, or a Dense/Conv2d operator of
:mod:`fastsim.layers`) and the fan-out of its source units; it reads the activity of the tap it names
(:meth:`convert.contract.spec.NetworkSpec.tap`). :func:`skip_of` builds it from the spec's
:class:`convert.layers.skip.Skip`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from convert.contract.spec import NetworkSpec
from convert.layers import skip_map_layer
from convert.layers.skip import Skip
from fastsim.layers import fanout, operator


@dataclass(frozen=True)
class SkipEdge:
    """A skip edge into a stage: ``op`` maps the tap's activity (R, *in_shape) to currents (R, *stage shape)."""

    tap: tuple[str, int]
    op: Callable[[torch.Tensor], torch.Tensor]
    in_shape: tuple[int, ...]
    fanout: torch.Tensor  # float64 (n_source,): the skip synapses leaving each source unit

    def current(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x.reshape(len(x), *self.in_shape))


@dataclass(frozen=True)
class Gain:
    """The identity skip map times a gain g (rounded to the simulation dtype once)."""

    gain: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def skip_of(
    spec: NetworkSpec, shapes: list[tuple[int, ...]], edge: Skip, device: torch.device, dtype: torch.dtype, parts: int
) -> SkipEdge:
    """The skip edge ``edge`` of ``spec`` on the device (``shapes``: ``spec.shapes``; ``parts``: the weight limbs
    of the ``matmul`` mode)."""
    source_shape = tuple(shapes[edge.source + 1])
    layer = skip_map_layer(edge)
    if layer is None:  # the identity times a gain: one synapse per unit
        op = Gain(torch.tensor(float(edge.weight), dtype=dtype, device=device))
        fan = np.ones(int(np.prod(source_shape)))
    else:
        op, fan = operator(layer, source_shape, device, dtype, parts), fanout(layer, source_shape)
    return SkipEdge(
        tap=spec.tap(edge.source),
        op=op,
        in_shape=source_shape,
        fanout=torch.as_tensor(np.asarray(fan, dtype=np.float64).reshape(-1), device=device),
    )
