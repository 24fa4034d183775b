"""The reference loop: docs/semantics.md written out literally in numpy, independent of both simulators.

Nothing here imports fastsim, refsim or torch: the layers' linear maps are explicit sums over kernel taps, the
time loop follows the numbered steps of the two schedules, and the expected :class:`SpikeRecord` fields are
read off the spike trains. The golden tables (:mod:`tests.conformance.golden`) check this loop by hand; the
conformance tests check every engine against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convert.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec


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
    if isinstance(layer, Conv2d):
        w, xp = np.asarray(layer.weight), _pad(x, layer.padding)
        for ky, kx, rows, cols in _taps(w.shape[2:], layer.stride, out_shape[1:]):
            out += np.einsum("oc,nchw->nohw", w[:, :, ky, kx], xp[:, :, rows, cols])
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


def _drive(pathway, below: np.ndarray) -> np.ndarray:
    """The spiking layer's input current: the synaptic sum W · s, then its bias b (docs/semantics.md)."""
    h = below
    for layer, shape in pathway:
        h = linear_map(layer, h, shape)
    layer, shape = pathway[-1]
    bias = getattr(layer, "bias", None)
    if bias is not None:  # one constant per neuron (Dense) or per output channel (Conv2d)
        h = h + np.asarray(bias).reshape(-1, *([1] * (h.ndim - 2)))
    return h.reshape(len(below), -1)


def _window_cover(shape: tuple[int, ...], kernel, stride, padding, out_hw) -> np.ndarray:
    """How many (output position, kernel tap) pairs read each input position (H, W), the adjoint of the taps
    above; taps on the zero padding read no neuron and are cut off with it."""
    count = _pad(np.zeros((1, 1, *shape[1:])), padding)
    for _, _, rows, cols in _taps(kernel, stride, out_hw):
        count[:, :, rows, cols] += 1
    return count[0, 0, padding[0] : padding[0] + shape[1], padding[1] : padding[1] + shape[2]]


def fanouts(spec: NetworkSpec) -> list[np.ndarray]:
    """fanout_i for each spiking layer: the synapses from neuron i of the population below into it.

    Dense: every output neuron. Conv2d: every output channel, once per (output position, tap) whose window
    covers i. AvgPool2d: once per window covering i, in i's channel. Flatten renumbers nothing (C order)."""
    out = []
    for pathway in _pathways(spec):
        layer, shape = pathway[-1]
        if isinstance(layer, Dense):
            counts = np.full(int(np.prod(shape)), layer.weight.shape[0])
        elif isinstance(layer, Conv2d):
            oc, _, kh, kw = layer.weight.shape
            cover = _window_cover(shape, (kh, kw), layer.stride, layer.padding, layer.output_shape(shape)[1:])
            counts = np.broadcast_to(oc * cover, shape).ravel()
        elif isinstance(layer, AvgPool2d):
            k, s = layer.kernel_size, layer.stride
            cover = _window_cover(shape, (k, k), (s, s), (0, 0), layer.output_shape(shape)[1:])
            counts = np.broadcast_to(cover, shape).ravel()
        else:
            raise TypeError(f"reference: no fan-out rule for layer type {type(layer).__name__}")
        out.append(counts.astype(np.int64))
    return out


@dataclass(frozen=True)
class Trajectory:
    """Per spiking layer: spike trains (N, T, n_l) bool and membranes after each step (N, T, n_l)."""

    spikes: list[np.ndarray]
    v: list[np.ndarray]


def simulate(spec: NetworkSpec, inputs: np.ndarray) -> Trajectory:
    """Run the loop of docs/semantics.md on ``inputs`` (N, T, n_inputs): s_0(t), 0/1 spikes or analog values."""
    x = np.asarray(inputs, dtype=np.float64)
    n, steps = x.shape[:2]
    pathways = _pathways(spec)
    thetas = spec.thresholds
    v = [np.zeros((n, size)) for size in spec.population_sizes]
    trains = [np.zeros((n, steps, size), dtype=bool) for size in spec.population_sizes]
    volts = [np.zeros((n, steps, size)) for size in spec.population_sizes]

    membrane = spec.readout == "membrane"  # the output layer integrates, never fires, never resets
    last = len(thetas) - 1

    def fire(k: int) -> np.ndarray:
        if membrane and k == last:
            return np.zeros_like(v[k], dtype=bool)
        return v[k] >= thetas[k]

    def reset(k: int, s: np.ndarray) -> None:
        after = 0.0 if spec.reset == "zero" else v[k] - thetas[k]
        v[k] = np.where(s, after, v[k])

    for t in range(steps):
        if spec.schedule == "delay":
            # 1. thresholds of all layers on the voltage of t-1; 2. synapses of all layers; 3. resets
            s = [fire(k) for k in range(len(v))]
            below = [x[:, t], *(sk.astype(np.float64) for sk in s[:-1])]
            for k, pathway in enumerate(pathways):
                v[k] = v[k] + _drive(pathway, below[k])
            for k in range(len(v)):
                reset(k, s[k])
        elif spec.schedule == "cascade":
            # for l = 1..L in order: integrate, threshold, reset
            s, below_k = [], x[:, t]
            for k, pathway in enumerate(pathways):
                v[k] = v[k] + _drive(pathway, below_k)
                s.append(fire(k))
                reset(k, s[k])
                below_k = s[k].astype(np.float64)
        else:
            raise ValueError(f"reference: unknown schedule {spec.schedule!r}")
        for k in range(len(v)):
            trains[k][:, t] = s[k]
            volts[k][:, t] = v[k]
    return Trajectory(trains, volts)


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
    below = [inputs.sum(axis=1), *(t.sum(axis=1) for t in trains[:-1])]
    synops = np.stack([b @ f for b, f in zip(below, fanouts(spec), strict=True)], axis=1)
    so_far = [inputs.cumsum(axis=1)[:, at], *(t.cumsum(axis=1)[:, at] for t in trains[:-1])]  # (N, K, n_l-1)
    curve = np.stack([b @ f for b, f in zip(so_far, fanouts(spec), strict=True)], axis=2)
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
