"""A spec built on a device, and the two ways of running it over one batch of images.

:class:`Network` turns a :class:`~convert.contract.spec.NetworkSpec` into one *stage* per spiking layer
(:mod:`fastsim.stages`: the operators of the preceding ``Flatten`` layers and of the layer itself, its threshold
as a 0-d tensor of the simulation dtype, its bias, and the fan-out of its presynaptic neurons).

* :meth:`Network.run` is the fast engine, *time-batched*: the network is feed-forward, so the spike train of
  layer l over a chunk of n steps depends only on the train of layer l−1 over the same steps (and on v_l at
  the chunk's start). Per chunk and layer it computes the currents of all n steps with one big operator call
  (one GEMM / convolution over n·B rows), then scans the chunk in time with the one-layer step of the
  schedule (:func:`fastsim.scan.if_scan`), or runs both in one fused Triton kernel (``kernel="triton"``,
  Dense layers, :mod:`fastsim.fused`). Spikes are exactly those of stepping the network. The first layer takes
  the input by one of four paths, chosen by the input source's class (:mod:`fastsim.input_paths`).
* :meth:`Network.run_stepwise` is the plain loop: one network step (:meth:`Network.step_updates`, the layer
  step :func:`fastsim.step.if_update` layer by layer) per time step. It is the reference the engine is tested
  against and the baseline of the benchmark.

A tap node (the max-pool gate, :class:`fastsim.gate.MaxGate`) sits between a population and the next layer
and carries its state (the gate's spike counts) from chunk to chunk; a skip edge reads the same chunk's
activity of an earlier population or tap node (a *tap*), so the time-batched engine stays exact: every layer's
train still depends only on trains of layers before it over the same steps.

``readout="membrane"`` (docs/semantics.md): the output layer integrates v_L += W_L · s_{L−1}(t) at the step
the schedule gives it, but never spikes nor resets. Both engines run it as the same layer with the threshold
+∞: the check c ≥ +∞ never holds for a finite v, so no spike and no reset, and v_L is the plain running sum.
The time-batched engine then cuts its chunks at the checkpoints, so that v_L after every checkpoint is a
chunk's final state (the fused Triton kernel does not support this readout).
"""

from __future__ import annotations

import numpy as np
import torch

from convert.contract import graph
from convert.contract.spec import NetworkSpec
from fastsim.encode import InputSource
from fastsim.fused import unavailable_reason
from fastsim.input_paths import input_path
from fastsim.jit import Compiled
from fastsim.limbs import check_mode
from fastsim.recorder import BatchCounts, Recorder
from fastsim.scan import LayerChunk, if_scan, scan_steps
from fastsim.stages import SPARSE_DENSITY, Stage, build_stages
from fastsim.step import IFState, LayerUpdate, NetworkState, if_update

KERNELS = ("torch", "triton", "events")
AUTO = "auto"  # simulate's default: the device's fastest exact kernel, chosen per run (resolve_kernel)
KERNEL_CHOICES = (AUTO, *KERNELS)


def fastest_kernel(device: str | torch.device, spec: NetworkSpec | None = None) -> str:
    """The fastest exact kernel of a device (for every spec): the event engine on a CPU, the torch engine on a
    GPU."""
    return "events" if str(device).startswith("cpu") else "torch"


def resolve_kernel(
    kernel: str,
    device: torch.device,
    dtype: torch.dtype,
    matmul: str = "fp32",
    margins: bool = False,
    spec: NetworkSpec | None = None,
) -> str:
    """The kernel a run uses: ``kernel`` itself, or for ``"auto"`` the device's :func:`fastest_kernel` where
    it can run this (the event engine sums in the simulation dtype, ``matmul="fp32"``, records no threshold
    margins, needs numba and a step for every tap-node kind of ``spec``), else ``torch``. Records name the
    resolved kernel, never ``"auto"``."""
    if kernel != AUTO:
        return kernel
    chosen = fastest_kernel(device)
    if chosen == "events":
        from fastsim.events import unavailable_reason as events_unavailable

        if matmul != "fp32" or margins or events_unavailable():
            return "torch"
        from fastsim.event_tables import unsupported_reason

        if spec is not None and unsupported_reason(spec):
            return "torch"
    return chosen


def check_kernel(kernel: str, device: torch.device, dtype: torch.dtype) -> None:
    """A ValueError that says why ``kernel`` cannot run here, if it cannot (``"auto"`` always can)."""
    if kernel == AUTO:
        return
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNEL_CHOICES)}, got {kernel!r}")
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

    SPARSE_DENSITY = SPARSE_DENSITY  # the dict of fastsim.stages (tests change its entries)

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
        self.stages: tuple[Stage, ...] = build_stages(
            spec, self.device, dtype, compile=compile, sparse=sparse, parts=parts, kernel=kernel
        )
        self.sizes = [int(np.prod(s.shape)) for s in self.stages]
        # scans one group of UNROLL steps (fastsim.scan); not the kernel= option, which picks torch or Triton
        self.group_scan = Compiled(scan_steps, dynamic=True) if compile else scan_steps

    @property
    def compiled(self) -> bool:
        return isinstance(self.group_scan, Compiled) and self.group_scan.active

    def initial_state(self, batch: int) -> NetworkState:
        """Every population at v_init · θ_l (the spec's own θ, also for a membrane readout's output layer), or
        each neuron at its own fraction · θ_l, rounded once to the simulation dtype; 0 by default."""
        return NetworkState(
            tuple(
                IFState(self._start(batch, tuple(s.shape), v0))
                for s, v0 in zip(self.stages, self.spec.initial_potentials, strict=True)
            )
        )

    def _start(self, batch: int, shape: tuple[int, ...], v0) -> torch.Tensor:
        """A population's membranes at the start: one value, or one per neuron (``v_init_neurons``)."""
        if np.ndim(v0) == 0:
            return torch.full((batch, *shape), float(v0), dtype=self.dtype, device=self.device)
        per_neuron = torch.as_tensor(np.asarray(v0), dtype=self.dtype, device=self.device).reshape(shape)
        return per_neuron.expand(batch, *shape).clone()

    def _recorder(self, batch: int, checkpoints: np.ndarray) -> Recorder:
        # graph.edges' order: by target, the trunk edge, then each skip edge in the spec's order, as the stages
        fanouts = [f for s in self.stages for f in (s.fanout, *(e.fanout for e in s.skips))]
        edges = [(e.target, e.source, f) for e, f in zip(graph.edges(self.spec), fanouts, strict=True)]
        return Recorder(batch, self.sizes, checkpoints, self.device, edges, membrane=self.membrane)

    def initial_nodes(self, batch: int) -> list[torch.Tensor | None]:
        """The state of every tap node (the gates' spike counts; None for a stage without one) at the start of
        an image."""
        return [None if s.node is None else s.node.initial(batch, self.device) for s in self.stages]

    def _taps_read(self) -> set[tuple[str, int]]:
        return {e.tap for s in self.stages for e in s.skips}

    def scan_chunk(self, stage: Stage, current: torch.Tensor, state: IFState) -> LayerChunk:
        """``stage`` over n steps from its currents (n, B, *shape): the layer step, scanned in time."""
        return if_scan(current, state, stage.threshold, self.spec.reset, self.spec.schedule, self.group_scan)

    def layer_chunk(
        self,
        stage: Stage,
        x: torch.Tensor,
        nnz: torch.Tensor | None,
        state: IFState,
        skips: tuple[torch.Tensor, ...] = (),
    ) -> LayerChunk:
        """``stage`` over n steps from its input activity x (n·B, *in_shape), time first (``nnz``: the number of
        spikes when x is binary, see :meth:`Stage.current`; ``skips``: the skip edges' currents (n·B, *shape)):
        the fused step, or currents then the scan."""
        batch = state.v.shape[0]
        n = x.shape[0] // batch
        if stage.fused is not None:
            return stage.fused(x.reshape(n, batch, -1), state)
        return self.scan_chunk(stage, stage.current(x, nnz, skips).reshape(n, batch, *stage.shape), state)

    def run(self, source: InputSource, batch: int, steps: int, checkpoints: np.ndarray, chunk_steps: int) -> Recorder:
        """Simulate ``steps`` steps of ``batch`` images from ``source`` in chunks of ``chunk_steps`` steps: the
        first layer takes its input by the source's path (:func:`fastsim.input_paths.input_path`), every
        later layer the spikes of the layer before."""
        rec = self._recorder(batch, checkpoints)
        states = list(self.initial_state(batch).layers)
        nodes, read = self.initial_nodes(batch), self._taps_read()
        path = input_path(source, self)
        for start, n in chunk_bounds(steps, chunk_steps, checkpoints if self.membrane else None):
            out = path.first_layer(self, states[0], start, n)
            rec.add_input(source, start, n)
            taps: dict[tuple[str, int], torch.Tensor] = {}  # this chunk's activity of the taps a skip reads
            for layer, stage in enumerate(self.stages):
                states[layer] = out.state
                nnz = rec.add_layer(layer, out.spikes, out.counts, start)
                if layer + 1 == len(self.stages):
                    break
                nxt, spikes = self.stages[layer + 1], out.spikes  # the next layer, from these spikes
                if ("pop", layer) in read:
                    taps[("pop", layer)] = spikes
                if nxt.node is not None:
                    spikes, nodes[layer + 1] = nxt.node(spikes.reshape(n, batch, *stage.shape), nodes[layer + 1])
                    nnz = rec.add_tap(nxt.node.tap, spikes, start)
                    taps[nxt.node.tap] = spikes
                x = spikes.reshape(n * batch, *nxt.in_shape)
                skips = nxt.skip_currents(taps, n * batch)
                out = self.layer_chunk(nxt, x, nnz, states[layer + 1], skips)
            rec.add_potential(states[-1].v, start + n)
        rec.set_input_counts(source.input_counts(steps))
        return rec

    def step_updates(
        self, x: torch.Tensor, state: NetworkState, nodes: list[torch.Tensor | None]
    ) -> tuple[tuple[LayerUpdate, ...], list[torch.Tensor | None], dict[tuple[str, int], torch.Tensor]]:
        """One step of the whole network for input x (B, *input shape): for l = 1..L, the layer step of layer l
        with this step's spikes of the layer below (through its tap node) and of its skips' taps
        (:func:`fastsim.step.if_update`). Returns the updates, the tap nodes' states after the step and the
        spikes each tap node passed (by its tap)."""
        updates: list[LayerUpdate] = []
        taps: dict[tuple[str, int], torch.Tensor] = {}
        passed: dict[tuple[str, int], torch.Tensor] = {}
        nodes = list(nodes)
        pre = x.to(self.dtype)
        for layer, stage in enumerate(self.stages):
            if layer > 0:
                pre = updates[-1].spikes.to(self.dtype)
                taps[("pop", layer - 1)] = pre
                if stage.node is not None:
                    out, nodes[layer] = stage.node(pre.unsqueeze(0), nodes[layer])
                    pre = passed[stage.node.tap] = taps[stage.node.tap] = out[0]
            current = stage.drive(pre.reshape(len(pre), *stage.in_shape), stage.skip_currents(taps, len(pre)))
            updates.append(
                if_update(current, state.layers[layer], stage.threshold, self.spec.reset, self.spec.schedule)
            )
        return tuple(updates), nodes, passed

    def run_stepwise(self, source: InputSource, batch: int, steps: int, checkpoints: np.ndarray) -> Recorder:
        """The plain loop: ``steps`` network steps (:meth:`step_updates`), recorded step by step."""
        rec = self._recorder(batch, checkpoints)
        state, nodes = self.initial_state(batch), self.initial_nodes(batch)
        for t in range(steps):
            x = source.chunk(t, 1)[0].reshape(batch, *self.spec.input_shape)
            updates, nodes, passed = self.step_updates(x, state, nodes)
            state = NetworkState(tuple(u.state for u in updates))
            rec.add_input(source, t, 1)
            for layer, u in enumerate(updates):
                s = u.spikes
                rec.add_layer(layer, s.unsqueeze(0).to(self.dtype), s.to(self.dtype), t)
            for tap, spikes in passed.items():
                rec.add_tap(tap, spikes.unsqueeze(0), t)
            rec.add_potential(state.layers[-1].v, t + 1)
        rec.set_input_counts(source.input_counts(steps))
        return rec

    def finish(self, rec: Recorder, record_neurons: bool) -> BatchCounts:
        return rec.finish(record_neurons)
