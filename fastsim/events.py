"""The event-driven CPU engine (``kernel="events"``): one image at a time, one step at a time, work in
proportion to the spikes.

The networks of the paper fire sparsely (data-based normalization: 0.5-1.5 % of the CNN's neurons spike per
step, model-based far fewer), so on a CPU most of a dense product multiplies zeros. This engine keeps every
image's whole state (all layers' membranes, ~55 kB for the CNN) in the core's cache and, per step and layer:

1. adds the weights of this step's presynaptic spikes into the layer's current buffer I (a *scatter* over
   the fan-out of each spike, stored as runs of consecutive postsynaptic neurons, so the adds vectorize);
2. passes over the layer's neurons once with the layer step of :func:`fastsim.step.if_update`:
   u = v + I;  c = v (``delay``) or u (``cascade``);  s = [c ≥ θ];  v' = reset(u, s);  I ← 0;
   and lists the neurons that fired, the next layer's presynaptic spikes.

Layer l's spikes of step t depend only on v_l(t−1) and layer l−1's spikes of step t, so taking the layers in
order gives the schedule's spikes in both ``delay`` and ``cascade`` (module doc of :mod:`fastsim.step`). The
only difference from the torch engine is the order in which each current I = W·s is summed (a GEMM's order
there, the spikes' order here); in float64 that is invisible in practice, in float32 it moves a neuron that
sits within rounding of its threshold (tests/fastsim/test_events.py holds it to the float64 reference).

A max-pool gate between population p and layer p + 1 counts p's spikes and, for every window holding a
spike of this step, passes it iff the window's unit with the highest count so far fired (ties to the lowest
rank); the passed output units are layer p + 1's presynaptic spikes. A skip edge scatters its source's spikes
(a population's or a gate's) into a second current buffer that the update adds to the trunk's sum before the
bias (:class:`GraphTables`; docs/semantics.md).

Poisson input is drawn inside the kernel from the counter hash of :mod:`convert.encoding`, bit for bit the
spikes of :class:`fastsim.encode.PoissonSource`; analog ``current`` input adds the constant current W·x
every step. Images run in parallel over the cores (numba ``prange``).

The tables (fan-outs, gates, skip edges) are built by :mod:`fastsim.event_tables`.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from convert.contract.spec import NetworkSpec
from convert.encoding import image_keys
from fastsim.encode import integer_thresholds
from fastsim.event_tables import EventTables, GraphTables, build_tables, internal_order, tables_for
from fastsim.recorder import BatchCounts

__all__ = ["BATCH", "EventTables", "GraphTables", "build_tables", "internal_order", "run_batch", "tables_for"]
# images per kernel call: the progress bar's step; the cores split each call's images between them (Ctrl-C
# stops a call within CHUNK steps of each image: _interruptible)
BATCH = 128


def unavailable_reason() -> str | None:
    """Why the event engine cannot run here (None when it can): it needs numba."""
    try:
        import numba  # noqa: F401
    except ImportError as err:  # pragma: no cover - numba is a dependency
        return f"the event engine needs numba ({err}); install it with `pip install numba`"
    return None


def _interruptible(kernel, args: tuple) -> None:
    """Run ``kernel(*args, stop)`` on a worker thread (the kernel releases the GIL) while this thread waits,
    so that Ctrl-C (KeyboardInterrupt, raised only in the main thread between bytecodes) arrives within a
    chunk of steps instead of after the whole batch: the wait sets ``stop``, waits for the kernel to return
    and re-raises. (The wait is an Event, not ``Thread.join``: an interrupted join marks a live thread as
    ended on Python 3.11.)"""
    stop = np.zeros(1, dtype=np.uint8)
    done = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            kernel(*args, stop)
        except BaseException as err:  # handed to the waiting thread
            failure.append(err)
        finally:
            done.set()

    threading.Thread(target=work, name="fastsim-events", daemon=True).start()
    try:
        while not done.wait(0.25):
            pass
    except BaseException:
        stop[0] = 1
        done.wait()
        raise
    if failure:
        raise failure[0]


def _start_potentials(spec: NetworkSpec, tables) -> np.ndarray:
    """Every neuron's membrane at the start of an image (float64), in the tables' internal order: internal
    neuron j of layer l is the spec's neuron ``spec_index[v_off[l] + j]`` of that population."""
    out = np.empty(int(tables.v_off[-1]), dtype=np.float64)
    for layer, v0 in enumerate(spec.initial_potentials):
        lo, hi = int(tables.v_off[layer]), int(tables.v_off[layer + 1])
        out[lo:hi] = np.asarray(v0, dtype=np.float64)[tables.spec_index[lo:hi]] if np.ndim(v0) else v0
    return out


def run_batch(
    tables: EventTables,
    spec: NetworkSpec,
    data: np.ndarray,
    spikes_given: bool,
    image_indices: np.ndarray,
    seed: int,
    steps: int,
    checkpoints: np.ndarray,
    record_neurons: bool,
) -> BatchCounts:
    """Simulate one batch for ``steps`` steps: ``data`` is the intensities (B, n_inputs) float64 in spec
    order, encoded as the spec says, or (``spikes_given``) input spike trains (B, steps, n_inputs) bool.
    Returns the counts of :class:`fastsim.recorder.BatchCounts`, with output counts at ``checkpoints``."""
    from fastsim._events_kernel import CURRENT, GIVEN, POISSON, run_images  # compiled on first use, cached on disk

    n = len(data)
    L, C = len(tables.sizes), int(tables.sizes[-1])
    K = len(checkpoints)
    order = tables.input_spec_index
    wdtype = tables.weights.dtype
    thr = np.zeros((1, 0), dtype=np.uint64)  # the inputs of the other modes: placeholders
    keys = np.zeros(n, dtype=np.uint64)
    xw = np.zeros((1, 0), dtype=wdtype)
    given = np.zeros((1, 0, 0), dtype=np.bool_)
    if spikes_given:
        mode = GIVEN
        given = np.ascontiguousarray(np.asarray(data, dtype=np.bool_)[:, :, order])
    elif spec.encoding == "current":
        mode = CURRENT
        x_int = np.ascontiguousarray(data[:, order])
        xw = x_int.astype(wdtype)  # the analog input in the simulation dtype, as the torch engine casts it
    else:
        mode = POISSON
        thr = integer_thresholds(np.ascontiguousarray(data[:, order]), spec.max_rate_hz, spec.dt_ms).astype(np.uint64)
        keys = image_keys(seed, np.asarray(image_indices, dtype=np.int64)).astype(np.uint64)
    pixel_ids = order.astype(np.uint64)  # the hash is over spec pixel indices
    output_counts = np.zeros((n, K, C), dtype=np.int64)
    layer_counts = np.zeros((n, L), dtype=np.int64)
    first = np.full(n, -1, dtype=np.int64)
    synops_curve = np.zeros((n, K, L), dtype=np.float64)
    membrane = spec.readout == "membrane"
    potential = np.zeros((n, K if membrane else 0, C), dtype=np.float64)
    total = int(tables.v_off[-1])
    neurons = np.zeros((n, total if record_neurons else 0), dtype=np.int32)
    thresholds = tables.thresholds.copy()
    if membrane:
        thresholds[-1] = np.inf
    net = (
        tables.sizes,
        tables.v_off,
        tables.pre_off,
        tables.ptr_off,
        tables.ptr,
        tables.run_post,
        tables.run_w,
        tables.run_len,
        tables.weights,
        thresholds,
        tables.fanout,
        tables.bias,
    )
    out = (output_counts, layer_counts, first, synops_curve, potential, neurons)
    ckpt = np.asarray(checkpoints, dtype=np.int64)
    zero = spec.reset == "zero"
    graph = tables.graph.as_tuple()
    v_start = _start_potentials(spec, tables).astype(wdtype)  # rounded once
    delay = spec.schedule == "delay"
    args = (mode, keys, thr, xw, given, pixel_ids, steps, ckpt, net, v_start, graph, delay, zero, out)
    _interruptible(run_images, args)
    if mode == CURRENT:  # the input's events as the recorder computes them: (c · x) @ fanout, in float64
        fan = torch.as_tensor(tables.input_fanout)
        x = torch.as_tensor(np.asarray(data, dtype=np.float64))
        for k, c in enumerate(checkpoints):
            synops_curve[:, k, 0] = ((int(c) * x) @ fan).numpy()
    synops = synops_curve[:, -1, :].copy()
    neuron_counts = None
    if record_neurons:
        neuron_counts = []
        for l in range(L):
            block = neurons[:, tables.v_off[l] : tables.v_off[l + 1]]
            spec_order = np.empty_like(block, dtype=np.int64)
            spec_order[:, tables.spec_index[tables.v_off[l] : tables.v_off[l + 1]]] = block
            neuron_counts.append(spec_order)
        neuron_counts = tuple(neuron_counts)
    out_index = tables.spec_index[tables.v_off[L - 1] :]
    inverse = np.argsort(out_index)
    return BatchCounts(
        output_counts=output_counts[:, :, inverse],
        layer_counts=layer_counts,
        first_spike_step=first,
        synops=synops,
        synops_curve=synops_curve,
        neuron_counts=neuron_counts,
        output_potential=potential[:, :, inverse] if membrane else None,
    )
