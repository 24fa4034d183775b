"""A spec built on a device, and the two ways of running it over one batch of images.

:class:`Network` turns a :class:`~convert.spec.NetworkSpec` into one *stage* per spiking layer: the operators
of the preceding ``Flatten`` layers and of the layer itself (:mod:`fastsim.layers`), its threshold as a 0-d
tensor of the simulation dtype, and the fan-out of its presynaptic neurons.

* :meth:`Network.run` is the fast engine, *time-batched*: the network is feed-forward, so the spike train of
  layer l over a chunk of n steps depends only on the train of layer l−1 over the same steps (and on v_l at
  the chunk's start). Per chunk and layer it computes the currents of all n steps with one big operator call
  (one GEMM / convolution over n·B rows), then scans the chunk in time with the one-layer step of the
  schedule (:func:`fastsim.scan.if_scan`), or runs both in one fused Triton kernel (``kernel="triton"``,
  Dense layers, :mod:`fastsim.fused`). Spikes are exactly those of stepping the network. The first layer takes
  the input by one of four paths, chosen by the input source's class (:mod:`fastsim.input_paths`).
* :meth:`Network.run_stepwise` is the plain loop: one :func:`fastsim.step.network_step` per time step. It is
  the reference the engine is tested against and the baseline of the benchmark.

``readout="membrane"`` (docs/semantics.md): the output layer integrates v_L += W_L · s_{L−1}(t) at the step
the schedule gives it, but never spikes nor resets. Both engines run it as the same layer with the threshold
+∞: the check c ≥ +∞ never holds for a finite v, so no spike and no reset, and v_L is the plain running sum.
The time-batched engine then cuts its chunks at the checkpoints, so that v_L after every checkpoint is a
chunk's final state (the fused Triton kernel does not support this readout).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from convert.spec import Conv2d, NetworkSpec, is_spiking
from fastsim.bandconv import BandConv
from fastsim.encode import InputSource
from fastsim.fused import FusedDense, unavailable_reason
from fastsim.input_paths import input_path
from fastsim.jit import Compiled
from fastsim.layers import ConvOp, DenseOp, PoolOp, fanout, operator
from fastsim.limbs import check_mode
from fastsim.recorder import BatchCounts, Recorder
from fastsim.scan import LayerChunk, if_scan, scan_steps
from fastsim.sparse import SpikeRows, spike_matmul
from fastsim.step import IFState, NetworkState, network_step

KERNELS = ("torch", "triton", "events")


def check_kernel(kernel: str, device: torch.device, dtype: torch.dtype) -> None:
    """A ValueError that says why ``kernel`` cannot run here, if it cannot."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "triton":
        reason = unavailable_reason(device)
        if reason:
            raise ValueError(f"kernel='triton': {reason}; use kernel='torch'")
        if dtype != torch.float32:
            raise ValueError(f"kernel='triton' computes in float32; got dtype {dtype}")
    if kernel == "events":
        if device.type != "cpu":
            raise ValueError(f"kernel='events' is the CPU engine; on {device.type} use kernel='torch' or 'triton'")
        from fastsim.events import unavailable_reason as events_unavailable

        reason = events_unavailable()
        if reason:
            raise ValueError(f"kernel='events': {reason}; or use kernel='torch'")


def chunk_bounds(steps: int, chunk_steps: int, cut_at: np.ndarray | None = None) -> list[tuple[int, int]]:
    """(start, n) of the chunks of ``chunk_steps`` steps covering ``steps`` steps, each also cut at the step
    counts ``cut_at`` (the checkpoints, for a membrane readout)."""
    bounds = set(range(0, steps, chunk_steps)) | {steps}
    if cut_at is not None:
        bounds |= {int(c) for c in cut_at if 0 < c < steps}
    edges = sorted(bounds)
    return [(a, b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)]


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

    def with_bias(self, current: torch.Tensor) -> torch.Tensor:
        """I = (W · s) + b, the synaptic sum first (docs/semantics.md: bias); the identity without a bias."""
        return current if self.bias is None else current + self.bias

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's whole input current for activity x (R, *in_shape): the synapses, then the bias."""
        return self.with_bias(self.synapse(x))

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

    def current(self, x: torch.Tensor, nnz: torch.Tensor | None = None) -> torch.Tensor:
        """Currents (R, *shape) for activity x (R, *in_shape), the bias included: binary spikes, ``nnz`` of them
        (0-d), or any activity with ``nnz`` None (then always ``ops``)."""
        if nnz is not None:
            if self.has_sparse_product and int(nnz) <= self.sparse_density * x.numel():
                return self.with_bias(self.sparse_product(SpikeRows.from_dense(x)))
            if self.band is not None and int(nnz) <= self.band.max_spikes_per_row() * len(x):
                return self.with_bias(self.band(x))
        return self.drive(x)

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


class Network:
    """``spec`` on ``device`` in ``dtype``; ``compile=True`` fuses the layer scan, pooling and (on a CPU)
    convolutions with a small fan-in with torch.compile.

    ``matmul``: ``fp32`` (weights in ``dtype``) or ``tf32x2`` / ``tf32x3`` (float32 only: weights split into
    TF32 limbs for tensor cores, :mod:`fastsim.limbs`).

    ``kernel``: ``torch`` (GEMM, then the scan) or ``triton`` (Dense layers as one fused Triton kernel per
    chunk, :mod:`fastsim.fused`; float32, a CUDA device or ``TRITON_INTERPRET=1``).

    ``sparse``: use the sparse product for Dense layers whose input spikes are sparse (CPU only; on a GPU
    the dense GEMM wins). The density limit is where the sparse product stops being faster on a 2-core
    Zen 4 box (measured: float32 ≈ 15 %, float64 ≈ 6 %).
    """

    SPARSE_DENSITY = {torch.float32: 0.15, torch.float64: 0.06}
    SHIFT_CONV_MAX_FAN_IN = 32  # compiled: convolutions with C·kh·kw up to this run as conv_by_shifts

    def __init__(
        self,
        spec: NetworkSpec,
        device: torch.device,
        dtype: torch.dtype,
        compile: bool = False,
        sparse: bool = True,
        matmul: str = "fp32",
        kernel: str = "torch",
    ) -> None:
        self.spec, self.device, self.dtype = spec, torch.device(device), dtype
        parts = check_mode(matmul, dtype)
        self.membrane = spec.readout == "membrane"
        if self.membrane and kernel == "triton":
            raise ValueError("kernel='triton' does not support the spec's readout='membrane'; use kernel='torch'")
        check_kernel(kernel, self.device, dtype)
        output = spec.spiking_indices[-1]
        shapes = spec.shapes
        sparse = sparse and parts == 1  # split weights: every product goes through the limbs
        sparse_density = self.SPARSE_DENSITY[dtype] if sparse and self.device.type == "cpu" else 0.0
        stages, pending, in_shape = [], [], spec.input_shape
        for i, layer in enumerate(spec.layers):
            pending.append(self._adapt(operator(layer, shapes[i], self.device, dtype, parts), compile))
            if is_spiking(layer):
                fan = fanout(layer, shapes[i]).reshape(-1)
                band = None
                if sparse_density > 0 and isinstance(layer, Conv2d) and len(pending) == 1:
                    band = BandConv.build(layer, shapes[i], dtype, self.device)
                theta = np.inf if self.membrane and i == output else layer.threshold  # membrane: never fires
                threshold = torch.tensor(theta, dtype=dtype, device=self.device)
                bias = layer_bias(layer, shapes[i + 1], dtype, self.device)
                if bias is not None and kernel == "triton":
                    raise ValueError("kernel='triton' does not support a layer bias; use kernel='torch' or 'events'")
                stages.append(
                    Stage(
                        ops=tuple(pending),
                        threshold=threshold,
                        in_shape=tuple(in_shape),
                        shape=tuple(shapes[i + 1]),
                        fanout=torch.as_tensor(fan, dtype=torch.float64, device=self.device),
                        sparse_density=sparse_density,
                        band=band,
                        fused=self._fused(pending[-1], float(threshold), parts) if kernel == "triton" else None,
                        bias=bias,
                    )
                )
                pending, in_shape = [], shapes[i + 1]
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.sizes = [int(np.prod(s.shape)) for s in self.stages]
        # scans one group of UNROLL steps (fastsim.scan); not the kernel= option, which picks torch or Triton
        self.group_scan = Compiled(scan_steps, dynamic=True) if compile else scan_steps

    def _fused(self, op, threshold: float, parts: int) -> FusedDense | None:
        """The fused Triton step for a Dense layer (:mod:`fastsim.fused`), None for other layers;
        ``threshold``: the layer's threshold rounded to the simulation dtype."""
        if not isinstance(op, DenseOp):
            return None
        n_in, n_out = op.weight_t.shape[0], op.weight_t.shape[1] // parts
        limbs = op.weight_t.view(n_in, parts, n_out).permute(1, 0, 2).contiguous()
        return FusedDense(limbs, threshold, self.spec.reset, self.spec.schedule)

    def _adapt(self, op, compile: bool):
        """The fastest form of an operator here. Compiled: pooling, and convolutions with a small fan-in
        (as :func:`~fastsim.layers.conv_by_shifts`, on a CPU), fuse well; GEMMs and larger convolutions stay
        library calls. Every form computes the same sums (up to their order)."""
        if not compile:
            return op
        if isinstance(op, PoolOp):
            return Compiled(op, dynamic=True)
        if (
            isinstance(op, ConvOp)
            and op.parts == 1
            and self.device.type == "cpu"
            and op.fan_in <= self.SHIFT_CONV_MAX_FAN_IN
        ):
            return Compiled(dataclasses.replace(op, by_shifts=True), dynamic=True, fallback=op)
        return op

    @property
    def compiled(self) -> bool:
        return isinstance(self.group_scan, Compiled) and self.group_scan.active

    def initial_state(self, batch: int) -> NetworkState:
        return NetworkState(
            tuple(IFState(torch.zeros(batch, *s.shape, dtype=self.dtype, device=self.device)) for s in self.stages)
        )

    def _recorder(self, batch: int, checkpoints: np.ndarray) -> Recorder:
        fanouts = [s.fanout for s in self.stages]
        return Recorder(batch, self.sizes, checkpoints, self.device, fanouts, membrane=self.membrane)

    def scan_chunk(self, stage: Stage, current: torch.Tensor, state: IFState) -> LayerChunk:
        """``stage`` over n steps from its currents (n, B, *shape): the layer step, scanned in time."""
        return if_scan(current, state, stage.threshold, self.spec.reset, self.spec.schedule, self.group_scan)

    def layer_chunk(self, stage: Stage, x: torch.Tensor, nnz: torch.Tensor | None, state: IFState) -> LayerChunk:
        """``stage`` over n steps from its input activity x (n·B, *in_shape), time first (``nnz``: the number of
        spikes when x is binary, see :meth:`Stage.current`): the fused step, or currents then the scan."""
        batch = state.v.shape[0]
        n = x.shape[0] // batch
        if stage.fused is not None:
            return stage.fused(x.reshape(n, batch, -1), state)
        return self.scan_chunk(stage, stage.current(x, nnz).reshape(n, batch, *stage.shape), state)

    def run(self, source: InputSource, batch: int, steps: int, checkpoints: np.ndarray, chunk_steps: int) -> Recorder:
        """Simulate ``steps`` steps of ``batch`` images from ``source`` in chunks of ``chunk_steps`` steps: the
        first layer takes its input by the source's path (:func:`fastsim.input_paths.input_path`), every
        later layer the spikes of the layer before."""
        rec = self._recorder(batch, checkpoints)
        states = list(self.initial_state(batch).layers)
        path = input_path(source, self)
        for start, n in chunk_bounds(steps, chunk_steps, checkpoints if self.membrane else None):
            out = path.first_layer(self, states[0], start, n)
            rec.add_input(source, start, n)
            for layer, stage in enumerate(self.stages):
                states[layer] = out.state
                nnz = rec.add_layer(layer, out.spikes, out.counts, start)
                if layer + 1 < len(self.stages):  # the next layer, from these spikes
                    x = out.spikes.reshape(n * batch, *stage.shape)
                    out = self.layer_chunk(self.stages[layer + 1], x, nnz, states[layer + 1])
            rec.add_potential(states[-1].v, start + n)
        rec.set_input_counts(source.input_counts(steps))
        return rec

    def run_stepwise(self, source: InputSource, batch: int, steps: int, checkpoints: np.ndarray) -> Recorder:
        """The plain loop: ``steps`` calls of the schedule's network step, recorded step by step."""
        rec = self._recorder(batch, checkpoints)
        state = self.initial_state(batch)
        step = network_step(self.spec.schedule)
        synapses = [s.drive for s in self.stages]
        thresholds = [s.threshold for s in self.stages]
        for t in range(steps):
            x = source.chunk(t, 1)[0].reshape(batch, *self.spec.input_shape)
            spikes, state = step(x, state, synapses, thresholds, self.spec.reset)
            rec.add_input(source, t, 1)
            for layer, s in enumerate(spikes):
                rec.add_layer(layer, s.unsqueeze(0).to(self.dtype), s.to(self.dtype), t)
            rec.add_potential(state.layers[-1].v, t + 1)
        rec.set_input_counts(source.input_counts(steps))
        return rec

    def finish(self, rec: Recorder, record_neurons: bool) -> BatchCounts:
        return rec.finish(record_neurons)
