"""Synapse lists of each layer type: explicit (i, j, w) triples, built with vectorised numpy.

Every population is indexed in C order of its shape: neuron (c, y, x) of a (C, H, W) population has index
``c·H·W + y·W + x``. ``Flatten`` is therefore the identity on indices and has no synapses.

* ``Dense`` (W of shape (out, in)): all-to-all, ``i = pre``, ``j = post``, ``w = W[j, i]``;
* ``Conv2d`` (W of shape (O, C, kh, kw), stride s, zero padding p, cross-correlation as in torch): output
  neuron (o, y, x) receives from input (c, y·s_h − p_h + k_y, x·s_w − p_w + k_x) with weight W[o, c, k_y, k_x]
  for every tap that falls inside the input (taps on the zero padding have no neuron and no synapse); with
  ``groups`` g, W is (O, C/g, kh, kw) and W[o, i] connects input channel ⌊o/(O/g)⌋·C/g + i only;
* ``AvgPool2d`` (k, stride s): output (c, y, x) receives from the k×k window (c, y·s + k_y, x·s + k_x) with
  weight 1/k² (Diehl et al. 2015's pooling neurons).

So the input current of the layer, ``I_j = Σ_{synapses (i, j, w)} w · s_i``, equals the layer's linear map
applied to the spike vector s; :func:`fanout` gives the synapse count of every presynaptic neuron, which
the synaptic-operation count Σ_t Σ_i s_i(t)·fanout_i needs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from convert.contract import graph
from convert.contract.spec import (
    AvgPool2d,
    Conv2d,
    Dense,
    NetworkSpec,
    Neurons,
    UnknownLayerError,
    is_spiking,
)
from convert.layers import skip_map_layer
from convert.layers.skip import Skip


class Connections(NamedTuple):
    """Synapses ``i -> j`` with weights ``w`` from a population of ``n_pre`` to one of ``n_post`` neurons."""

    i: np.ndarray  # int32 presynaptic indices
    j: np.ndarray  # int32 postsynaptic indices
    w: np.ndarray  # float64 weights
    n_pre: int
    n_post: int

    def dense_matrix(self) -> np.ndarray:
        """The (n_post, n_pre) matrix M with ``M @ s`` equal to the synaptic input (duplicates summed)."""
        m = np.zeros((self.n_post, self.n_pre))
        np.add.at(m, (self.j, self.i), self.w)
        return m


def fanout(conn: Connections) -> np.ndarray:
    """Number of synapses leaving each presynaptic neuron, shape (n_pre,)."""
    return np.bincount(conn.i, minlength=conn.n_pre).astype(np.int64)


@functools.singledispatch
def connections(layer: object, input_shape: tuple[int, ...]) -> Connections:
    """The synapse list of ``layer`` fed by a population of shape ``input_shape``: refsim's one builder per
    spiking layer family (:mod:`convert.layers`); an unknown type raises ``UnknownLayerError`` naming it."""
    raise UnknownLayerError(f"refsim: no synapse builder for layer type {type(layer).__name__}")


@connections.register
def _dense(layer: Dense, input_shape: tuple[int, ...]) -> Connections:
    n_out, n_in = layer.weight.shape
    i = np.repeat(np.arange(n_in, dtype=np.int32), n_out)
    j = np.tile(np.arange(n_out, dtype=np.int32), n_in)
    w = np.asarray(layer.weight, dtype=np.float64).T.ravel()
    return Connections(i, j, w, n_in, n_out)


def _window_synapses(
    in_shape: tuple[int, int, int],
    out_shape: tuple[int, int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    channel_pairs: tuple[np.ndarray, np.ndarray],
    weight_of: np.ndarray,
) -> Connections:
    """Synapses of a windowed layer, vectorised over (channel pair, tap, output position).

    ``channel_pairs = (o, c)`` lists the (output channel, input channel) pairs that are connected (all pairs
    for a convolution, the diagonal for pooling); ``weight_of[p, ky, kx]`` is the weight of pair p's tap.
    """
    c_in, h, w = in_shape
    _, oh, ow = out_shape
    kh, kw = kernel
    o, c = (np.asarray(a, dtype=np.int64)[:, None, None, None, None] for a in channel_pairs)
    ky = np.arange(kh)[None, :, None, None, None]
    kx = np.arange(kw)[None, None, :, None, None]
    y = np.arange(oh)[None, None, None, :, None]
    x = np.arange(ow)[None, None, None, None, :]
    iy = y * stride[0] - padding[0] + ky
    ix = x * stride[1] - padding[1] + kx
    shape = np.broadcast_shapes(o.shape, ky.shape, kx.shape, y.shape, x.shape)
    inside = np.broadcast_to((iy >= 0) & (iy < h) & (ix >= 0) & (ix < w), shape)
    pre = np.broadcast_to((c * h + iy) * w + ix, shape)[inside]
    post = np.broadcast_to((o * oh + y) * ow + x, shape)[inside]
    weights = np.broadcast_to(np.asarray(weight_of, dtype=np.float64)[:, :, :, None, None], shape)[inside]
    return Connections(pre.astype(np.int32), post.astype(np.int32), weights, c_in * h * w, int(np.prod(out_shape)))


@connections.register
def _conv2d(layer: Conv2d, input_shape: tuple[int, ...]) -> Connections:
    out_shape = layer.output_shape(input_shape)
    oc, icg, kh, kw = layer.weight.shape
    o = np.repeat(np.arange(oc), icg)  # (o, i) in W's order; i's input channel by the layer's groups
    c = layer.input_channel().reshape(-1)
    return _window_synapses(
        input_shape,  # type: ignore[arg-type]
        out_shape,  # type: ignore[arg-type]
        (kh, kw),
        layer.stride,
        layer.padding,
        (o.ravel(), c.ravel()),
        np.asarray(layer.weight).reshape(oc * icg, kh, kw),
    )


@connections.register
def _avgpool2d(layer: AvgPool2d, input_shape: tuple[int, ...]) -> Connections:
    out_shape = layer.output_shape(input_shape)
    k, channels = layer.kernel_size, np.arange(input_shape[0])
    return _window_synapses(
        input_shape,  # type: ignore[arg-type]
        out_shape,  # type: ignore[arg-type]
        (k, k),
        (layer.stride, layer.stride),
        (0, 0),
        (channels, channels),
        np.full((len(channels), k, k), layer.weight_value),
    )


@connections.register
def _neurons(layer: Neurons, input_shape: tuple[int, ...]) -> Connections:
    """No synapse from the layer below: the population is fed by its skip edges only."""
    none = np.zeros(0, dtype=np.int32)
    return Connections(none, none.copy(), np.zeros(0), int(np.prod(input_shape)), int(np.prod(layer.shape)))


def skip_connections(edge: Skip, source_shape: tuple[int, ...]) -> Connections:
    """The synapse list of a skip edge (:class:`convert.layers.skip.Skip`) from a source of ``source_shape``:
    one synapse i → i of weight g per unit for the identity, else the Dense/Conv2d map's."""
    layer = skip_map_layer(edge)
    if layer is not None:
        return connections(layer, source_shape)
    n = int(np.prod(source_shape))
    idx = np.arange(n, dtype=np.int32)
    return Connections(idx, idx.copy(), np.full(n, float(edge.weight)), n, n)


def spec_edges(spec: NetworkSpec) -> list[tuple[int, tuple[str, int], np.ndarray]]:
    """Every synapse map into a spiking layer as (layer, tap, fanout of the tap's units), the edges of
    :func:`convert.contract.graph.edges`; the synaptic events into a layer are Σ over its edges of the tap's
    counts times the fan-out."""
    fans, out = spec_fanouts(spec), []
    shapes = spec.shapes
    for e in graph.edges(spec):
        if e.kind == "trunk":
            out.append((e.target, e.source, fans[e.target]))
            continue
        out.append((e.target, e.source, fanout(skip_connections(e.skip, shapes[e.skip.source + 1]))))
    return out


def spec_fanouts(spec: NetworkSpec) -> list[np.ndarray]:
    """Per spiking layer l, the fanout of every neuron of the population below it (input for l = 1)."""
    shape, out = spec.input_shape, []
    for layer in spec.layers:
        if is_spiking(layer):
            out.append(fanout(connections(layer, shape)))
        shape = layer.output_shape(shape)  # after a gate: the fan-out of its output units
    return out
