"""A spec built on a device, and the two ways of running it over one batch of images.

:class:`Network` turns a :class:`~convert.spec.NetworkSpec` into one *stage* per spiking layer: the operators
of the preceding ``Flatten`` layers and of the layer itself (:mod:`fastsim.layers`), its threshold as a 0-d
tensor of the simulation dtype, and the fan-out of its presynaptic neurons.

* :meth:`Network.run` is the fast engine, *time-batched*: the network is feed-forward, so the spike train of
  layer l over a chunk of n steps depends only on the train of layer l−1 over the same steps (and on v_l at
  the chunk's start). Per chunk and layer it computes the currents of all n steps with one big operator call
  (one GEMM / convolution over n·B rows), then scans the chunk in time with the one-layer step of the
  schedule (:func:`fastsim.scan.if_scan`). Spikes are exactly those of stepping the network.
* :meth:`Network.run_stepwise` is the plain loop: one :func:`fastsim.step.network_step` per time step. It is
  the reference the engine is tested against and the baseline of the benchmark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from convert.spec import Conv2d, NetworkSpec, is_spiking
from fastsim.bandconv import BandConv
from fastsim.fused import FusedDense, unavailable_reason
from fastsim.jit import Compiled
from fastsim.layers import ConvOp, DenseOp, PoolOp, fanout, operator
from fastsim.limbs import check_mode
from fastsim.recorder import BatchCounts, Recorder
from fastsim.scan import if_scan, scan_steps
from fastsim.sparse import SpikeRows, spike_matmul
from fastsim.step import IFState, NetworkState, network_step

KERNELS = ("torch", "triton")


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


@dataclass(frozen=True)
class Stage:
    """One spiking layer: ``ops`` map presynaptic activity (R, *in_shape) to currents (R, *shape).

    When the layer is :class:`~fastsim.layers.DenseOp` and its input is binary spikes with density at most
    ``sparse_density``, the currents come from the sparse product (:func:`fastsim.sparse.spike_matmul`);
    when it is a convolution with a ``band`` form and few spikes per row, from the banded table sum
    (:class:`fastsim.bandconv.BandConv`).
    """

    ops: tuple[Callable[[torch.Tensor], torch.Tensor], ...]
    threshold: torch.Tensor
    in_shape: tuple[int, ...]
    shape: tuple[int, ...]
    fanout: torch.Tensor
    sparse_density: float
    band: BandConv | None = None
    fused: FusedDense | None = None

    @property
    def dense_op(self) -> DenseOp | None:
        return self.ops[-1] if isinstance(self.ops[-1], DenseOp) and self.sparse_density > 0 else None

    def synapse(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def current(self, x: torch.Tensor | SpikeRows, nnz: torch.Tensor | None = None) -> torch.Tensor:
        """Currents (R, *shape) for activity x: a tensor (R, *in_shape) (binary when ``nnz`` is given) or
        :class:`SpikeRows` (R, n_in)."""
        op = self.dense_op
        if isinstance(x, SpikeRows):
            if op is not None and x.density <= self.sparse_density:
                return spike_matmul(x, op.weight_t)
            x = x.to_dense(self.threshold.dtype).view(x.n_rows, *self.in_shape)
        elif op is not None and nnz is not None and int(nnz) <= self.sparse_density * x.numel():
            return spike_matmul(SpikeRows.from_dense(x), op.weight_t)
        elif self.band is not None and nnz is not None and int(nnz) <= self.band.max_spikes_per_row() * len(x):
            return self.band(x)
        return self.synapse(x)


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
        check_kernel(kernel, self.device, dtype)
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
                threshold = torch.tensor(layer.threshold, dtype=dtype, device=self.device)
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
        return Recorder(batch, self.sizes, checkpoints, self.device)

    def _first_input(self, source, start: int, n: int, batch: int):
        """The input chunk: sparse rows when the first layer can use them, else a dense tensor."""
        if self.stages[0].dense_op is not None and hasattr(source, "chunk_rows"):
            return source.chunk_rows(start, n), None
        return source.chunk(start, n).reshape(n * batch, *self.spec.input_shape), None

    def run(self, source, batch: int, steps: int, checkpoints: np.ndarray, chunk_steps: int) -> Recorder:
        """Simulate ``steps`` steps of ``batch`` images from ``source`` in chunks of ``chunk_steps`` steps."""
        rec = self._recorder(batch, checkpoints)
        states = list(self.initial_state(batch).layers)
        first_current = None
        if source.constant:
            x0 = source.chunk(0, 1)[0].reshape(batch, *self.spec.input_shape)
            first_current = self.stages[0].synapse(x0)
        # a fused first layer draws Poisson input inside its kernel: no input spike tensor
        in_kernel = self.stages[0].fused is not None and hasattr(source, "kernel_inputs")
        for start in range(0, steps, chunk_steps):
            n = min(chunk_steps, steps - start)
            if not source.constant and not in_kernel:
                x, nnz = self._first_input(source, start, n, batch)
            for layer, stage in enumerate(self.stages):
                if stage.fused is not None and (first_current is None or layer > 0):
                    v_flat = states[layer].v.reshape(batch, -1)
                    if in_kernel and layer == 0:
                        out, v, counts = stage.fused.poisson(source, start, n, v_flat)
                    else:
                        dense = x.to_dense(self.dtype) if isinstance(x, SpikeRows) else x
                        out, v, counts = stage.fused(dense.reshape(n, batch, -1), v_flat)
                    spikes, states[layer] = out.view(n, batch, *stage.shape), IFState(v.view(batch, *stage.shape))
                    counts = counts.view(batch, *stage.shape)
                else:
                    if first_current is not None and layer == 0:
                        current = first_current.unsqueeze(0).expand(n, *first_current.shape)
                    else:
                        current = stage.current(x, nnz).reshape(n, batch, *stage.shape)
                    spikes, states[layer], counts = if_scan(
                        current, states[layer], stage.threshold, self.spec.reset, self.spec.schedule, self.group_scan
                    )
                nnz = rec.add_layer(layer, spikes, counts, start)
                x = spikes.reshape(n * batch, *stage.shape)
        rec.set_input_counts(source.input_counts(steps))
        return rec

    def run_stepwise(self, source, batch: int, steps: int, checkpoints: np.ndarray) -> Recorder:
        """The plain loop: ``steps`` calls of the schedule's network step, recorded step by step."""
        rec = self._recorder(batch, checkpoints)
        state = self.initial_state(batch)
        step = network_step(self.spec.schedule)
        synapses = [s.synapse for s in self.stages]
        thresholds = [s.threshold for s in self.stages]
        for t in range(steps):
            x = source.chunk(t, 1)[0].reshape(batch, *self.spec.input_shape)
            spikes, state = step(x, state, synapses, thresholds, self.spec.reset)
            for layer, s in enumerate(spikes):
                rec.add_layer(layer, s.unsqueeze(0).to(self.dtype), s.to(self.dtype), t)
        rec.set_input_counts(source.input_counts(steps))
        return rec

    def finish(self, rec: Recorder, record_neurons: bool) -> BatchCounts:
        return rec.finish([s.fanout for s in self.stages], record_neurons)
