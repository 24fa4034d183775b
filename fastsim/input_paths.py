"""How the first spiking layer of :meth:`fastsim.network.Network.run` takes its input, per input source type.

Every later layer takes the spikes of the layer before it; the first takes the source's input s_0(t) by one of
four paths, chosen by :func:`input_path` on the source's class (:mod:`fastsim.encode`) and the first layer:

* :class:`ConstantCurrentPath`: ``current`` input is the same every step, so the first layer's currents
  W_1 · x are computed once and copied to the steps of every chunk (a broadcast view would hang torch.compile);
* :class:`InKernelPoissonPath`: Poisson input into a fused Dense first layer (``kernel="triton"``): the
  kernel draws the spikes itself from the counter hash, no input spike tensor exists;
* :class:`SpikeRowsPath`: Poisson input into a Dense first layer with sparse products (CPU): the spikes come
  as :class:`~fastsim.sparse.SpikeRows`, never as a dense tensor;
* :class:`DenseSpikesPath`: otherwise (given spike trains; Poisson input into a convolution): a dense input
  spike tensor per chunk.

Every path gives the same spikes (the sums differ only in their order, see docs/fastsim.md); an unknown source
type raises a :class:`TypeError` naming its class.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from fastsim.encode import CurrentSource, PoissonSource, SpikeTrainSource
from fastsim.scan import LayerChunk
from fastsim.step import IFState

if TYPE_CHECKING:
    from fastsim.network import Network


class InputPath(Protocol):
    def first_layer(self, net: Network, state: IFState, start: int, n: int) -> LayerChunk:
        """The first spiking layer of ``net`` over steps ``start .. start + n - 1`` from ``state``."""
        ...


@dataclass(frozen=True)
class ConstantCurrentPath:
    """``current`` input: the first layer's currents (B, *shape), computed once."""

    current: torch.Tensor

    def first_layer(self, net: Network, state: IFState, start: int, n: int) -> LayerChunk:
        # a copy, not a stride-0 view: torch.compile of the group scan does not finish on a broadcast input
        current = self.current.unsqueeze(0).expand(n, *self.current.shape).contiguous()
        return net.scan_chunk(net.stages[0], current, state)


@dataclass(frozen=True)
class InKernelPoissonPath:
    """Poisson input drawn inside the fused first layer's kernel (:meth:`fastsim.fused.FusedDense.poisson`)."""

    source: PoissonSource

    def first_layer(self, net: Network, state: IFState, start: int, n: int) -> LayerChunk:
        return net.stages[0].fused.poisson(self.source, start, n, state)


@dataclass(frozen=True)
class SpikeRowsPath:
    """Poisson input as :class:`~fastsim.sparse.SpikeRows`, into a Dense first layer's sparse product."""

    source: PoissonSource

    def first_layer(self, net: Network, state: IFState, start: int, n: int) -> LayerChunk:
        stage, batch = net.stages[0], state.v.shape[0]
        current = stage.current_from_rows(self.source.chunk_rows(start, n))
        return net.scan_chunk(stage, current.reshape(n, batch, *stage.shape), state)


@dataclass(frozen=True)
class DenseSpikesPath:
    """A dense input spike tensor (n · B, *input_shape) per chunk."""

    source: PoissonSource | SpikeTrainSource

    def first_layer(self, net: Network, state: IFState, start: int, n: int) -> LayerChunk:
        x = self.source.chunk(start, n).reshape(n * state.v.shape[0], *net.spec.input_shape)
        return net.layer_chunk(net.stages[0], x, None, state)


@functools.singledispatch
def input_path(source: object, net: Network) -> InputPath:
    """The path by which the first layer of ``net`` takes the input of ``source`` (module doc)."""
    raise TypeError(f"fastsim has no input path for source type {type(source).__name__}")


@input_path.register(CurrentSource)  # by class: the annotations name Network, imported only for type checkers
def _(source: CurrentSource, net: Network) -> InputPath:
    x = source.chunk(0, 1)[0]
    return ConstantCurrentPath(net.stages[0].drive(x.reshape(len(x), *net.spec.input_shape)))


@input_path.register(PoissonSource)
def _(source: PoissonSource, net: Network) -> InputPath:
    first = net.stages[0]
    if first.fused is not None:
        return InKernelPoissonPath(source)
    if first.has_sparse_product:
        return SpikeRowsPath(source)
    return DenseSpikesPath(source)


@input_path.register(SpikeTrainSource)
def _(source: SpikeTrainSource, net: Network) -> InputPath:
    return DenseSpikesPath(source)
