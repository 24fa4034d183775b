"""Spike monitors -> :class:`convert.contract.records.SpikeRecord`: pure numpy on (image, step, neuron) spike tables.

With T steps per image, a spike at global step g belongs to image ``g // T`` at step ``g % T`` (0-based).
For image n, spiking layer l (l = 1 … L) and output neuron k:

* ``output_counts[n, c, k]`` = #{spikes of k in steps t < checkpoints[c]} (cumulative counts);
* ``layer_counts[n, l−1]`` = total spikes of layer l; ``neuron_counts[l−1][n, j]`` per neuron;
* ``first_spike_step[n]`` = min t over output spikes, −1 without any;
* ``synops[n, l−1]`` = Σ_t Σ_i s_{l−1,i}(t) · fanout_i = Σ_i count_{l−1,i} · fanout_i (layer 0 is the input;
  for the ``current`` encoding count_{0,i} = T · x_i, the analog input of every step), summed over the
  layer's edges: behind a max-pool gate the gate's passed spikes take the place of s_{l−1}, and a skip edge
  adds its source's counts times its own fan-out;
* ``synops_curve[n, c, l−1]``: the same sum over the steps t < checkpoints[c] (``current``: checkpoints[c] · x_i),
  one checkpoint at a time by the expression of ``synops``, so that the last equals it;
* ``output_potential[n, c, k]`` (membrane readout) = v_L,k after checkpoints[c] steps, read off the
  ``StateMonitor`` trace (N, T, n_out) at step checkpoints[c] − 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from convert.contract.records import SpikeRecord


class SpikeTable(NamedTuple):
    """Every spike of one population: its image, its 0-based step within the image and its neuron."""

    image: np.ndarray
    step: np.ndarray
    neuron: np.ndarray

    @classmethod
    def from_monitor(cls, monitor: Any, steps: int, dt_s: float) -> SpikeTable:
        """Read a Brian2 ``SpikeMonitor`` (runtime or standalone results)."""
        g = np.round(np.asarray(monitor.t_[:], dtype=np.float64) / dt_s).astype(np.int64)
        return cls(g // steps, g % steps, np.asarray(monitor.i_[:], dtype=np.int64))

    def before(self, upto: int) -> SpikeTable:
        """The spikes of the steps t < ``upto`` of every image."""
        keep = self.step < upto
        return SpikeTable(self.image[keep], self.step[keep], self.neuron[keep])


class InputActivity(NamedTuple):
    """The input of N images over ``steps`` steps: its spike table, or the ``analog`` intensities (N, n_in)
    injected every step (``current``)."""

    steps: int
    n_images: int
    n_inputs: int
    analog: np.ndarray | None = None
    table: SpikeTable | None = None

    def counts(self, upto: int) -> np.ndarray:
        """Σ_{t < upto} s_0,i(t) per image and input (N, n_in) float64 (``current``: upto · x_i)."""
        if self.analog is not None:
            return np.asarray(self.analog, dtype=np.float64) * upto
        return per_neuron_counts(self.table.before(upto), self.n_images, self.n_inputs).astype(np.float64)


def per_neuron_counts(table: SpikeTable, n_images: int, n_neurons: int) -> np.ndarray:
    """Spike counts (n_images, n_neurons); spikes of images beyond ``n_images`` (padding) are dropped."""
    keep = table.image < n_images
    flat = table.image[keep] * n_neurons + table.neuron[keep]
    return np.bincount(flat, minlength=n_images * n_neurons).reshape(n_images, n_neurons).astype(np.int64)


def output_readout(
    table: SpikeTable, n_images: int, n_classes: int, steps: int, checkpoints: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative output counts (N, C, K) at the checkpoints and the first output spike step (N,)."""
    keep = table.image < n_images
    image, step, neuron = table.image[keep], table.step[keep], table.neuron[keep]
    per_step = np.zeros((n_images, steps, n_classes), dtype=np.int64)
    np.add.at(per_step, (image, step, neuron), 1)
    cumulative = np.cumsum(per_step, axis=1)
    first = np.full(n_images, steps, dtype=np.int64)
    np.minimum.at(first, image, step)
    first[first == steps] = -1
    return cumulative[:, np.asarray(checkpoints) - 1], first


def to_record(
    inputs: InputActivity,
    layer_tables: list[SpikeTable],
    layer_sizes: list[int],
    edges: list[tuple[int, tuple[str, int], np.ndarray]],
    steps: int,
    checkpoints: np.ndarray,
    labels: np.ndarray,
    image_indices: np.ndarray,
    record_neurons: bool = False,
    meta: dict[str, Any] | None = None,
    readout: str = "spikes",
    potential: np.ndarray | None = None,
    tap_tables: dict[tuple[str, int], tuple[SpikeTable, int]] | None = None,
) -> SpikeRecord:
    """The record of ``len(labels)`` images from their input activity, the spiking layers' tables and, for the
    ``membrane`` readout, the output potential after every step (N, steps, n_out). ``edges``: every synapse map
    into a spiking layer as (layer, tap, fan-out), :func:`refsim.connectivity.spec_edges`; ``tap_tables``:
    the spikes each tap node (the max-pool gate) passed and its number of units, by its tap."""
    n = len(labels)
    checkpoints = np.asarray(checkpoints, dtype=np.int64)
    if checkpoints.size == 0 or checkpoints.min() < 1 or checkpoints.max() > steps:
        raise ValueError(f"checkpoints must lie in 1..{steps}, got {checkpoints.tolist()}")
    if readout == "membrane" and potential is None:
        raise ValueError("potential: a membrane readout needs the output layer's potential trace")
    tap_tables = tap_tables or {}

    def tap_counts(tap: tuple[str, int], upto: int) -> np.ndarray:
        kind, p = tap
        if kind == "input":
            return np.asarray(inputs.counts(upto), dtype=np.float64)[:n]
        table, size = (layer_tables[p], layer_sizes[p]) if kind == "pop" else tap_tables[tap]
        return per_neuron_counts(table.before(upto), n, size).astype(np.float64)

    def synops_upto(upto: int) -> np.ndarray:
        out = np.zeros((n, len(layer_sizes)))
        for layer, tap, fan in edges:
            out[:, layer] += tap_counts(tap, upto) @ np.asarray(fan, dtype=np.float64)
        return out

    counts = [per_neuron_counts(t, n, size) for t, size in zip(layer_tables, layer_sizes, strict=True)]
    output_counts, first = output_readout(layer_tables[-1], n, layer_sizes[-1], steps, checkpoints)
    return SpikeRecord(
        checkpoints=checkpoints,
        output_counts=output_counts,
        layer_counts=np.stack([c.sum(axis=1) for c in counts], axis=1),
        first_spike_step=first,
        synops=synops_upto(steps),
        labels=np.asarray(labels, dtype=np.int64),
        image_indices=np.asarray(image_indices, dtype=np.int64),
        neuron_counts=tuple(counts) if record_neurons else None,
        meta=dict(meta or {}),
        readout=readout,
        synops_curve=np.stack([synops_upto(int(c)) for c in checkpoints], axis=1),
        output_potential=None if potential is None else np.asarray(potential, dtype=np.float64)[:n, checkpoints - 1],
    )
