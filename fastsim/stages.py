"""The stages of a spec on a device: one per spiking layer, what both fastsim engines build the network from.

A stage holds the operators of the preceding ``Flatten`` layers and of the spiking layer itself
(:mod:`fastsim.layers`), the layer's threshold as a 0-d tensor of the simulation dtype, its bias (a constant
current per neuron, or None), the fan-out of its presynaptic neurons and the fast forms of its product (the
sparse product, the banded convolution, the fused Triton step). :class:`fastsim.network.Network` runs the
stages (the time-batched engine and the plain loop); :func:`fastsim.events.build_tables` probes their operators
for the event engine's tables. Both import this module, and neither imports the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from convert.contract.spec import Conv2d, MaxPool2d, NetworkSpec, is_spiking
from fastsim.bandconv import BandConv
from fastsim.fused import FusedDense
from fastsim.gate import MaxGate
from fastsim.jit import Compiled
from fastsim.layers import ConvOp, DenseOp, PoolOp, fanout, operator
from fastsim.skips import SkipEdge, skip_of
from fastsim.sparse import SpikeRows, spike_matmul

# the input-spike density up to which a Dense layer's sparse product beats the dense one on a CPU (measured on
# a 2-core Zen 4 box: float32 ≈ 15 %, float64 ≈ 6 %)
SPARSE_DENSITY = {torch.float32: 0.15, torch.float64: 0.06}
SHIFT_CONV_MAX_FAN_IN = 32  # compiled: convolutions with C·kh·kw up to this run as conv_by_shifts
#: the tap nodes: kinds of layer that are no population but a stateful map on the spikes of the population below
#: (``node(layer, in_shape, tap)``: ``initial(batch, device)``, ``node(spikes, state) -> (passed, state)``, its
#: ``shape`` and ``tap``), each one module (the max-pool gate: :mod:`fastsim.gate`)
TAP_NODES: dict[type, Callable] = {MaxPool2d: MaxGate}


@dataclass(frozen=True)
class Stage:
    """One spiking layer: ``ops`` map presynaptic activity (R, *in_shape) to currents (R, *shape).

    Where the currents come from (:meth:`current`): the sparse product (:func:`fastsim.sparse.spike_matmul`)
    when the layer :attr:`has_sparse_product` and its input is binary spikes with density at most
    ``sparse_density``; the banded table sum (:class:`fastsim.bandconv.BandConv`) when it is a convolution with
    a ``band`` form and few spikes per row; otherwise ``ops``. ``fused``: the layer's fused Triton step
    (``kernel="triton"``, Dense layers), which replaces currents and scan.
    """

    ops: tuple[Callable[[torch.Tensor], torch.Tensor], ...]
    threshold: torch.Tensor
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    fanout: torch.Tensor
    sparse_density: float
    band: BandConv | None = None
    fused: FusedDense | None = None
    bias: torch.Tensor | None = None  # (*shape): the constant current b added to every step's W · s
    node: MaxGate | None = None  # a tap node (TAP_NODES) on the population below, before ``ops``
    skips: tuple[SkipEdge, ...] = ()  # the other incoming edges (residual sums), in the spec's order

    def with_bias(self, current: torch.Tensor, skips: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """I = ((W · s + S · s_j) + S' · s_k …) + b: the synaptic sums first, the trunk's then each skip edge's
        in order, then the bias (docs/semantics.md); the identity without skip currents and a bias."""
        for skip in skips:
            current = current + skip
        return current if self.bias is None else current + self.bias

    def skip_currents(self, taps: dict[tuple[str, int], torch.Tensor], rows: int) -> tuple[torch.Tensor, ...]:
        """Every skip edge's current from this chunk's (or step's) activity of its tap, ``rows`` rows each."""
        return tuple(e.current(taps[e.tap].reshape(rows, -1)) for e in self.skips)

    def drive(self, x: torch.Tensor, skips: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """The layer's whole input current for activity x (R, *in_shape) and the skip edges' currents ``skips``:
        the synapses, then the bias."""
        return self.with_bias(self.synapse(x), skips)

    @property
    def has_sparse_product(self) -> bool:
        """A Dense layer with sparse products on (CPU): sparse enough input spikes go through
        :meth:`sparse_product`."""
        return self.sparse_density > 0 and isinstance(self.ops[-1], DenseOp)

    def sparse_product(self, rows: SpikeRows) -> torch.Tensor:
        """I = S · Wᵀ as a sum of rows of Wᵀ (for a layer that :attr:`has_sparse_product`)."""
        return spike_matmul(rows, self.ops[-1].weight_t)

    def synapse(self, x: torch.Tensor) -> torch.Tensor:
        """The synaptic sum W · s alone (no bias: :meth:`drive` adds it)."""
        for op in self.ops:
            x = op(x)
        return x

    def current(
        self, x: torch.Tensor, nnz: torch.Tensor | None = None, skips: tuple[torch.Tensor, ...] = ()
    ) -> torch.Tensor:
        """Currents (R, *shape) for activity x (R, *in_shape), the skip edges' currents ``skips`` and the bias
        included: binary spikes, ``nnz`` of them (0-d), or any activity with ``nnz`` None (then always ``ops``)."""
        if nnz is not None:
            if self.has_sparse_product and int(nnz) <= self.sparse_density * x.numel():
                return self.with_bias(self.sparse_product(SpikeRows.from_dense(x)), skips)
            if self.band is not None and int(nnz) <= self.band.max_spikes_per_row() * len(x):
                return self.with_bias(self.band(x), skips)
        return self.drive(x, skips)

    def current_from_rows(self, rows: SpikeRows) -> torch.Tensor:
        """Currents (R, *shape) for input spikes given as :class:`SpikeRows` (R, n_in), the bias included."""
        if self.has_sparse_product and rows.density <= self.sparse_density:
            return self.with_bias(self.sparse_product(rows))
        return self.drive(rows.to_dense(self.threshold.dtype).view(rows.n_rows, *self.in_shape))


def layer_bias(layer: object, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """A layer's bias as a (*shape) tensor, one value per neuron (a convolution's per-channel bias broadcast over
    its positions), in the simulation dtype; None without a bias."""
    bias = getattr(layer, "bias", None)
    if bias is None:
        return None
    b = torch.as_tensor(np.array(bias), dtype=dtype, device=device)
    if len(shape) == 3:  # (C,) → (C, H, W)
        b = b.view(-1, 1, 1).expand(*shape)
    return b.reshape(shape).contiguous()


def fused_step(op, threshold: float, parts: int, spec: NetworkSpec) -> FusedDense | None:
    """The fused Triton step for a Dense layer (:mod:`fastsim.fused`), None for other layers;
    ``threshold``: the layer's threshold rounded to the simulation dtype."""
    if not isinstance(op, DenseOp):
        return None
    n_in, n_out = op.weight_t.shape[0], op.weight_t.shape[1] // parts
    limbs = op.weight_t.view(n_in, parts, n_out).permute(1, 0, 2).contiguous()
    return FusedDense(limbs, threshold, spec.reset, spec.schedule)


def adapt(op, compile: bool, device: torch.device):
    """The fastest form of an operator here. Compiled: pooling, and convolutions with a small fan-in
    (as :func:`~fastsim.layers.conv_by_shifts`, on a CPU), fuse well; GEMMs and larger convolutions stay
    library calls. Every form computes the same sums (up to their order)."""
    if not compile:
        return op
    if isinstance(op, PoolOp):
        return Compiled(op, dynamic=True)
    if isinstance(op, ConvOp) and op.parts == 1 and device.type == "cpu" and op.fan_in <= SHIFT_CONV_MAX_FAN_IN:
        return Compiled(dataclasses.replace(op, by_shifts=True), dynamic=True, fallback=op)
    return op


def build_stages(
    spec: NetworkSpec,
    device: torch.device,
    dtype: torch.dtype,
    *,
    compile: bool = False,
    sparse: bool = True,
    parts: int = 1,
    kernel: str = "torch",
) -> tuple[Stage, ...]:
    """One :class:`Stage` per spiking layer of ``spec`` (the arguments as :class:`fastsim.network.Network`'s;
    ``parts``: the weight limbs of the ``matmul`` mode). A membrane readout's output layer gets the threshold
    +∞ (it never fires)."""
    output = spec.spiking_indices[-1]
    membrane = spec.readout == "membrane"
    shapes = spec.shapes
    sparse = sparse and parts == 1  # split weights: every product goes through the limbs
    sparse_density = SPARSE_DENSITY[dtype] if sparse and device.type == "cpu" else 0.0
    stages, pending, in_shape, node = [], [], spec.input_shape, None
    for i, layer in enumerate(spec.layers):
        if type(layer) in TAP_NODES:  # a stateful map on the population below, not an operator
            node, in_shape = TAP_NODES[type(layer)](layer, tuple(shapes[i]), spec.tap(i)), shapes[i + 1]
            continue
        pending.append(adapt(operator(layer, shapes[i], device, dtype, parts), compile, device))
        if not is_spiking(layer):
            continue
        fan = fanout(layer, shapes[i]).reshape(-1)
        band = None
        if sparse_density > 0 and isinstance(layer, Conv2d) and len(pending) == 1:
            band = BandConv.build(layer, shapes[i], dtype, device)
        theta = np.inf if membrane and i == output else layer.threshold  # membrane: never fires
        threshold = torch.tensor(theta, dtype=dtype, device=device)
        bias = layer_bias(layer, shapes[i + 1], dtype, device)
        if bias is not None and kernel == "triton":
            raise ValueError("kernel='triton' does not support a layer bias; use kernel='torch' or 'events'")
        skips = tuple(skip_of(spec, shapes, e, device, dtype, parts) for e in spec.skips_into(i))
        if (node is not None or skips) and kernel == "triton":
            raise ValueError("kernel='triton' does not support max-pool gates or skip edges; use kernel='torch'")
        stages.append(
            Stage(
                ops=tuple(pending),
                threshold=threshold,
                in_shape=tuple(in_shape),
                shape=tuple(shapes[i + 1]),
                fanout=torch.as_tensor(fan, dtype=torch.float64, device=device),
                sparse_density=sparse_density,
                band=band,
                fused=fused_step(pending[-1], float(threshold), parts, spec) if kernel == "triton" else None,
                bias=bias,
                node=node,
                skips=skips,
            )
        )
        pending, in_shape, node = [], shapes[i + 1], None
    return tuple(stages)
