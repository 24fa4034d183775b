"""The reference loop: docs/semantics.md written out literally in numpy, independent of both simulators.

Nothing here imports fastsim, refsim or torch: the layers' linear maps are explicit sums over kernel taps, the
time loop follows the numbered steps of the two schedules, and the expected :class:`SpikeRecord` fields are
read off the spike trains. The golden tables (:mod:`tests.conformance.golden`) check this loop by hand; the
conformance tests check every engine against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, Neurons


def _taps(kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]):
    """For every kernel tap (ky, kx): the rows and columns of the (zero-padded) input that it reads for the
    output grid out_hw, as slices."""
    h, w = out_hw
    for ky in range(kernel[0]):
        for kx in range(kernel[1]):
            yield (
                ky,
                kx,
                slice(ky, ky + stride[0] * (h - 1) + 1, stride[0]),
                slice(kx, kx + stride[1] * (w - 1) + 1, stride[1]),
            )


def _pad(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))


def linear_map(layer, x: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """The input current a spiking layer (or the reshape of a Flatten) gets from x of shape (N, *in_shape)."""
    out_shape = layer.output_shape(in_shape)
    n = len(x)
    x = x.reshape(n, *in_shape)
    if isinstance(layer, Flatten):
        return x.reshape(n, *out_shape)
    if isinstance(layer, Dense):
        return x @ np.asarray(layer.weight).T
    out = np.zeros((n, *out_shape))
    if isinstance(layer, Neurons):  # fed by its skip edges only
        return out
    if isinstance(layer, Conv2d):  # groups g: output channels of group k read only the input channels of group k
        w, xp = np.asarray(layer.weight), _pad(x, layer.padding)
        g, (oc, icg) = layer.groups, w.shape[:2]
        for k in range(g):
            o, c = slice(k * oc // g, (k + 1) * oc // g), slice(k * icg, (k + 1) * icg)
            for ky, kx, rows, cols in _taps(w.shape[2:], layer.stride, out_shape[1:]):
                out[:, o] += np.einsum("oc,nchw->nohw", w[o, :, ky, kx], xp[:, c, rows, cols])
        return out
    if isinstance(layer, AvgPool2d):
        k, s = layer.kernel_size, layer.stride
        for _, _, rows, cols in _taps((k, k), (s, s), out_shape[1:]):
            out += x[:, :, rows, cols] / k**2
        return out
    raise TypeError(f"reference: no linear map for layer type {type(layer).__name__}")


def _pathways(spec: NetworkSpec) -> list[list[tuple[object, tuple[int, ...]]]]:
    """For each spiking layer, the layers (with their input shapes) from the population below up to it."""
    shapes, out, start = spec.shapes, [], 0
    for k in spec.spiking_indices:
        out.append([(spec.layers[i], shapes[i]) for i in range(start, k + 1)])
        start = k + 1
    return out


def gate_step(layer, shape: tuple[int, ...], spikes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One step of a max-pool gate (any stride, padding, ceil_mode), literally: add this step's spikes to the
    counts (N, C, H, W), then in every window the unit with the most spikes so far wins (scanning the window's
    positions inside the input row by row, a later unit must have strictly more to win: ties to the lowest
    index; padding is skipped), and its spike of this step passes. The max-count rule: the window passes one
    spike when its highest count after this step exceeds its highest count before it."""
    n = len(spikes)
    s = spikes.reshape(n, *shape)
    before = counts.copy()
    counts += s
    c, h, w = shape
    _, oh, ow = layer.output_shape(shape)
    k, stride, p = layer.kernel_size, layer.step, layer.padding
    out = np.zeros((n, c, oh, ow))
    for y in range(oh):
        for x in range(ow):
            best = np.full((n, c), -1.0)
            passed = np.zeros((n, c))
            highest_before = np.zeros((n, c))
            for ky in range(k):
                for kx in range(k):
                    iy, ix = y * stride - p + ky, x * stride - p + kx
                    if not (0 <= iy < h and 0 <= ix < w):
                        continue
                    cnt = counts[:, :, iy, ix]
                    wins = cnt > best
                    best = np.where(wins, cnt, best)
                    passed = np.where(wins, s[:, :, iy, ix], passed)
                    highest_before = np.maximum(highest_before, before[:, :, iy, ix])
            out[:, :, y, x] = passed if layer.rule == "leader" else (best > highest_before)
    return out


def skip_map(skip, x: np.ndarray, source_shape: tuple[int, ...]) -> np.ndarray:
    """The current a skip edge sends for the activity x of its source: the identity times the gain, or the
    Dense/Conv2d map of its weights (:func:`linear_map`)."""
    w = np.asarray(skip.weight)
    if w.ndim == 0:
        return x.reshape(len(x), *source_shape) * float(w)
    if w.ndim == 1:  # one gain per channel
        return x.reshape(len(x), *source_shape) * w.reshape(1, -1, 1, 1)
    edge = Dense(w) if w.ndim == 2 else Conv2d(w, stride=skip.stride, padding=skip.padding)
    return linear_map(edge, x, source_shape)


def _bias(layer, h: np.ndarray) -> np.ndarray:
    bias = getattr(layer, "bias", None)
    if bias is None:
        return h
    return h + np.asarray(bias).reshape(-1, *([1] * (h.ndim - 2)))  # per neuron (Dense) or per channel (Conv2d)


def _window_cover(shape: tuple[int, ...], kernel, stride, padding, out_hw) -> np.ndarray:
    """How many (output position, kernel tap) pairs read each input position (H, W), the adjoint of the taps
    above; taps on the zero padding read no neuron and are cut off with it."""
    count = _pad(np.zeros((1, 1, *shape[1:])), padding)
    for _, _, rows, cols in _taps(kernel, stride, out_hw):
        count[:, :, rows, cols] += 1
    return count[0, 0, padding[0] : padding[0] + shape[1], padding[1] : padding[1] + shape[2]]


def _fanout(layer, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(layer, Neurons):
        return np.zeros(int(np.prod(shape)), dtype=np.int64)
    if isinstance(layer, Dense):
        counts = np.full(int(np.prod(shape)), layer.weight.shape[0])
    elif isinstance(layer, Conv2d):
        oc, _, kh, kw = layer.weight.shape  # each input channel reaches the oc / groups channels of its group
        cover = _window_cover(shape, (kh, kw), layer.stride, layer.padding, layer.output_shape(shape)[1:])
        counts = np.broadcast_to(oc // layer.groups * cover, shape).ravel()
    elif isinstance(layer, AvgPool2d):
        k, s = layer.kernel_size, layer.stride
        cover = _window_cover(shape, (k, k), (s, s), (0, 0), layer.output_shape(shape)[1:])
        counts = np.broadcast_to(cover, shape).ravel()
    else:
        raise TypeError(f"reference: no fan-out rule for layer type {type(layer).__name__}")
    return counts.astype(np.int64)


def fanouts(spec: NetworkSpec) -> list[np.ndarray]:
    """fanout_i for each spiking layer: the synapses from unit i of the activity below (the population, or the
    max-pool gate's output units) into it.

    Dense: every output neuron. Conv2d: every output channel of i's group, once per (output position, tap)
    whose window covers i. AvgPool2d: once per window covering i, in i's channel. Flatten renumbers nothing
    (C order)."""
    return [_fanout(*pathway[-1]) for pathway in _pathways(spec)]


def skip_fanouts(spec: NetworkSpec) -> list[tuple[int, object, np.ndarray]]:
    """For every skip edge: its target population k, the edge, and the fan-out of its source units: one
    synapse per unit for the identity, else as :func:`fanouts` for the skip's Dense/Conv2d map."""
    shapes, out = spec.shapes, []
    for k, i in enumerate(spec.spiking_indices):
        for skip in spec.skips_into(i):
            shape, w = shapes[skip.source + 1], np.asarray(skip.weight)
            if w.ndim <= 1:  # the identity, with one gain or one per channel
                out.append((k, skip, np.ones(int(np.prod(shape)), dtype=np.int64)))
            else:
                edge = Dense(w) if w.ndim == 2 else Conv2d(w, stride=skip.stride, padding=skip.padding)
                out.append((k, skip, _fanout(edge, shape)))
    return out


@dataclass(frozen=True)
class Trajectory:
    """Per spiking layer: spike trains (N, T, n_l) bool and membranes after each step (N, T, n_l); per spiking
    layer behind a max-pool gate, the gate's passed spikes (N, T, n_pooled) (None where no gate is)."""

    spikes: list[np.ndarray]
    v: list[np.ndarray]
    gated: list[np.ndarray | None]


def _gate_buffers(spec: NetworkSpec, n: int, steps: int) -> tuple[list, list]:
    """Per spiking layer k behind a max-pool gate: the gate's spike counts (N, *shape of population k − 1)
    and its passed spikes (N, T, n_pooled); None for a layer without a gate."""
    shapes, pops = spec.shapes, spec.spiking_indices
    counts, gated = [], []
    for k, pathway in enumerate(_pathways(spec)):
        if not any(isinstance(layer, MaxPool2d) for layer, _ in pathway):
            counts.append(None)
            gated.append(None)
            continue
        counts.append(np.zeros((n, *shapes[pops[k - 1] + 1])))
        gated.append(np.zeros((n, steps, int(np.prod(shapes[pops[k - 1] + 2])))))
    return counts, gated


class _Loop:
    """The state of the loop over one batch: membranes, the gates' counts and passed spikes."""

    def __init__(self, spec: NetworkSpec, n: int, steps: int) -> None:
        self.spec, self.n = spec, n
        self.pathways, self.shapes, self.pops, self.thetas = (
            _pathways(spec),
            spec.shapes,
            spec.spiking_indices,
            spec.thresholds,
        )
        # v_l(0) = v_init · θ_l (0 by default), the spec's θ also for a membrane readout's output layer
        sizes = zip(spec.population_sizes, self.thetas, strict=True)
        self.v = [np.full((n, size), spec.v_init * theta) for size, theta in sizes]
        self.counts, self.gated = _gate_buffers(spec, n, steps)
        self.membrane = spec.readout == "membrane"  # the output layer integrates, never fires, never resets

    def fire(self, k: int) -> np.ndarray:
        if self.membrane and k == len(self.v) - 1:
            return np.zeros_like(self.v[k], dtype=bool)
        return self.v[k] >= self.thetas[k]

    def reset(self, k: int, s: np.ndarray) -> None:
        after = 0.0 if self.spec.reset == "zero" else self.v[k] - self.thetas[k]
        self.v[k] = np.where(s, after, self.v[k])

    def integrate(self, k: int, below: np.ndarray, after: dict[int, np.ndarray], t: int) -> None:
        """v_k += I_k(t) = ((W_k · s_below [through the gate] + S_k · s_j) + S'_k · s_j' …) + b_k: the trunk's
        synaptic sum, each skip edge's in the spec's order, then the bias (docs/semantics.md). ``after``: this
        step's activity after each layer so far."""
        h = below
        for layer, shape in self.pathways[k]:
            if isinstance(layer, MaxPool2d):
                h = gate_step(layer, shape, h, self.counts[k])
                self.gated[k][:, t] = h.reshape(self.n, -1)
                after[self.pops[k - 1] + 1] = h
            else:
                h = linear_map(layer, h, shape)
        layer = self.spec.layers[self.pops[k]]
        for skip in self.spec.skips_into(self.pops[k]):
            j = skip.source
            h = h + skip_map(skip, after[j], self.shapes[j + 1]).reshape(h.shape)
        self.v[k] = self.v[k] + _bias(layer, h).reshape(self.n, -1)

    def step(self, x_t: np.ndarray, t: int) -> list[np.ndarray]:
        """One step of the spec's schedule; returns every layer's spikes."""
        layers = range(len(self.v))
        if self.spec.schedule == "delay":
            # 1. thresholds of all layers on the voltage of t-1; 2. synapses of all layers; 3. resets
            s = [self.fire(k) for k in layers]
            after = {self.pops[k]: sk.astype(np.float64) for k, sk in enumerate(s)}
            below = [x_t, *(sk.astype(np.float64) for sk in s[:-1])]
            for k in layers:
                self.integrate(k, below[k], after, t)
            for k in layers:
                self.reset(k, s[k])
            return s
        if self.spec.schedule == "cascade":
            # for l = 1..L in order: integrate, threshold, reset
            s, below_k, after = [], x_t, {}
            for k in layers:
                self.integrate(k, below_k, after, t)
                s.append(self.fire(k))
                self.reset(k, s[k])
                below_k = after[self.pops[k]] = s[k].astype(np.float64)
            return s
        raise ValueError(f"reference: unknown schedule {self.spec.schedule!r}")


def simulate(spec: NetworkSpec, inputs: np.ndarray) -> Trajectory:
    """Run the loop of docs/semantics.md on ``inputs`` (N, T, n_inputs): s_0(t), 0/1 spikes or analog values."""
    x = np.asarray(inputs, dtype=np.float64)
    n, steps = x.shape[:2]
    loop = _Loop(spec, n, steps)
    trains = [np.zeros((n, steps, size), dtype=bool) for size in spec.population_sizes]
    volts = [np.zeros((n, steps, size)) for size in spec.population_sizes]
    for t in range(steps):
        s = loop.step(x[:, t], t)
        for k in range(len(s)):
            trains[k][:, t] = s[k]
            volts[k][:, t] = loop.v[k]
    return Trajectory(trains, volts, loop.gated)


@dataclass(frozen=True)
class Expected:
    """The SpikeRecord fields that the reference trajectory implies."""

    output_counts: np.ndarray
    layer_counts: np.ndarray
    neuron_counts: list[np.ndarray]
    first_spike_step: np.ndarray
    synops: np.ndarray
    synops_curve: np.ndarray
    output_potential: np.ndarray | None
    steps: int


def expected_record(spec: NetworkSpec, inputs: np.ndarray, checkpoints: np.ndarray) -> Expected:
    """What an engine must record for ``inputs`` (N, T, n_inputs) with the given checkpoints (step counts)."""
    inputs = np.asarray(inputs, dtype=np.float64)
    trajectory = simulate(spec, inputs)
    trains = trajectory.spikes
    at = np.asarray(checkpoints) - 1  # the step after which checkpoint k is read
    out = trains[-1].cumsum(axis=1)[:, at]
    fired = trains[-1].any(axis=2)
    first = np.where(fired.any(axis=1), fired.argmax(axis=1), -1)
    # the activity each layer's trunk reads: the input, the population below, or the gate on it
    trunk = [inputs, *(g if g is not None else t for g, t in zip(trajectory.gated[1:], trains[:-1], strict=True))]
    below = [tr.sum(axis=1) for tr in trunk]
    synops = np.stack([b @ f for b, f in zip(below, fanouts(spec), strict=True)], axis=1)
    so_far = [tr.cumsum(axis=1)[:, at] for tr in trunk]  # (N, K, n_l-1)
    curve = np.stack([b @ f for b, f in zip(so_far, fanouts(spec), strict=True)], axis=2)
    for k, skip, fan in skip_fanouts(spec):  # a skip edge adds its source's events
        kind, p = spec.tap(skip.source)
        source = trains[p] if kind == "pop" else trajectory.gated[p + 1]
        synops[:, k] += source.sum(axis=1) @ fan
        curve[:, :, k] += source.cumsum(axis=1)[:, at] @ fan
    return Expected(
        output_counts=out,
        layer_counts=np.stack([t.sum(axis=(1, 2)) for t in trains], axis=1),
        neuron_counts=[t.sum(axis=1) for t in trains],
        first_spike_step=first,
        synops=synops,
        synops_curve=curve,
        output_potential=trajectory.v[-1][:, at] if spec.readout == "membrane" else None,
        steps=inputs.shape[1],
    )


def assert_record_matches(record, want: Expected, context: str = "") -> None:
    """Every field of an engine's SpikeRecord (recorded with ``record_neurons``) equals the reference's."""
    np.testing.assert_array_equal(record.output_counts, want.output_counts, err_msg=f"{context} output_counts")
    np.testing.assert_array_equal(record.layer_counts, want.layer_counts, err_msg=f"{context} layer_counts")
    assert record.neuron_counts is not None, f"{context}: record_neurons=True gives per-neuron counts"
    for k, (got, ref) in enumerate(zip(record.neuron_counts, want.neuron_counts, strict=True)):
        np.testing.assert_array_equal(got, ref, err_msg=f"{context} neuron_counts of spiking layer {k}")
    np.testing.assert_array_equal(record.first_spike_step, want.first_spike_step, err_msg=f"{context} first spike")
    np.testing.assert_allclose(record.synops, want.synops, rtol=1e-6, atol=0, err_msg=f"{context} synops")
    assert record.synops_curve is not None, f"{context}: every engine records synops_curve"
    np.testing.assert_allclose(record.synops_curve, want.synops_curve, rtol=1e-6, atol=0, err_msg=f"{context} curve")
    if record.checkpoints[-1] == want.steps:
        np.testing.assert_array_equal(record.synops_curve[:, -1], record.synops, err_msg=f"{context} curve's end")
    if want.output_potential is None:
        assert record.readout == "spikes" and record.output_potential is None, context
    else:  # dyadic networks: every sum is exact, so the potentials too
        assert record.readout == "membrane", context
        np.testing.assert_array_equal(record.output_potential, want.output_potential, err_msg=f"{context} v_L")
