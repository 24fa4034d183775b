"""The input layer: Poisson, supplied spikes or analog current, presented image after image.

Image n of a batch occupies the global steps g = n·T … n·T + T − 1 (T = ``steps``), step t = g mod T.

* ``poisson``: a Brian2 ``PoissonGroup`` with rates ``x_i · max_rate_hz`` read from a ``TimedArray`` indexed
  by (time, pixel) whose rows last T·dt; Brian2 spikes iff ``rand() < rate·dt``, so with 1000 Hz and 1 ms the
  spike probability is the intensity x_i (Brian2's own random generator, seeded by the caller);
* ``spikes``: the exact supplied spike trains s_0,i(t) (bool, images × steps × inputs, e.g. from
  ``convert.encoding.poisson_spikes``). Two sources deliver them:
  ``generator``, a ``SpikeGeneratorGroup`` (runtime), and ``timed_array``, a group with threshold
  ``s(t, i) > 0.5`` on a 0/1 ``TimedArray`` of shape (images·steps, inputs). Standalone projects use the
  latter: in brian2 2.9 ``run_args`` cannot replace a SpikeGeneratorGroup's spikes (its arrays are read-only
  and of fixed size in the generated code) but can replace a TimedArray's values;
* ``current``: s_0,i(t) = x_i every step. The input group "fires" every step where x_i > 0 and the first
  synapses add ``w · x_pre``, so the analog input flows through the same synapses and schedule as spikes
  (x_i = 0 would add nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from refsim.brian import load as brian_load

MODES = ("poisson", "spikes", "current")
SPIKE_SOURCES = ("generator", "timed_array")
INPUT_NAME = "refsim_input"
VALUES_NAME = "refsim_input_values"


@dataclass(frozen=True)
class InputBatch:
    """One batch of images as the input layer sees it.

    ``data`` is (B, n_inputs) float64 intensities for ``poisson`` and ``current``, or (B, T, n_inputs) bool
    spikes for ``spikes``.
    """

    mode: str
    data: np.ndarray

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"InputBatch.mode must be one of {MODES}, got {self.mode!r}")
        want = 3 if self.mode == "spikes" else 2
        if self.data.ndim != want:
            raise ValueError(f"InputBatch.data: {self.mode} input needs a {want}-d array, got {self.data.shape}")

    @property
    def n_images(self) -> int:
        return len(self.data)

    @property
    def n_inputs(self) -> int:
        return int(self.data.shape[-1])

    def padded(self, n_images: int) -> InputBatch:
        """This batch followed by blank images (no input) up to ``n_images`` images."""
        extra = n_images - self.n_images
        if extra < 0:
            raise ValueError(f"InputBatch.padded: batch of {self.n_images} images exceeds {n_images}")
        if extra == 0:
            return self
        blank = np.zeros((extra, *self.data.shape[1:]), dtype=self.data.dtype)
        return replace(self, data=np.concatenate([self.data, blank]))


@dataclass
class InputLayer:
    """The Brian2 objects of the input layer and what the first synapses add per input event."""

    group: Any
    driver: Any  # the TimedArray that run_args replaces, or the SpikeGeneratorGroup
    source: str  # 'poisson', 'current', 'generator' or 'timed_array'
    payload: str  # the synaptic increment: 'w' for spikes, 'w * x_pre' for the analog current
    namespace: dict[str, Any] = field(default_factory=dict)  # names the first synapses' code refers to

    def run_args(self, batch: InputBatch, steps: int, max_rate_hz: float) -> dict[Any, Any]:
        """``device.run`` arguments that replace this layer's input by ``batch`` (same shape)."""
        if self.source == "generator":
            raise ValueError("run_args: a SpikeGeneratorGroup cannot be rerun with new spikes in brian2 2.9")
        return {self.driver: _timed_values(batch, steps, max_rate_hz, self.source)}


def _timed_values(batch: InputBatch, steps: int, max_rate_hz: float, source: str) -> Any:
    brian_load()
    from brian2 import Hz

    if source == "poisson":
        return batch.data * max_rate_hz * Hz
    if source == "current":
        return batch.data
    return batch.data.reshape(-1, batch.n_inputs).astype(np.float64)


def spike_lists(spikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(neuron indices, global step) of every spike of a (B, T, n) array, sorted by step then neuron."""
    b, t, n = spikes.shape
    steps, neurons = np.nonzero(spikes.reshape(b * t, n))
    return neurons.astype(np.int32), steps.astype(np.int64)


def build_input(batch: InputBatch, steps: int, dt: Any, max_rate_hz: float, spike_source: str) -> InputLayer:
    """The input group of ``batch`` on the defaultclock of step ``dt`` (a TimedArray row per image or step)."""
    brian_load()
    from brian2 import NeuronGroup, PoissonGroup, SpikeGeneratorGroup, TimedArray

    n = batch.n_inputs
    if batch.mode in ("poisson", "current"):
        source = batch.mode
        values = TimedArray(_timed_values(batch, steps, max_rate_hz, source), dt=steps * dt, name=VALUES_NAME)
        if source == "poisson":
            group = PoissonGroup(n, rates="x_in(t, i)", namespace={"x_in": values}, name=INPUT_NAME)
            return InputLayer(group, values, source, "w")
        group = NeuronGroup(
            n,
            "x = x_in(t, i) : 1",
            threshold="x > 0",
            reset="",
            namespace={"x_in": values},
            name=INPUT_NAME,
        )
        return InputLayer(group, values, source, "w * x_pre", {"x_in": values})
    if spike_source not in SPIKE_SOURCES:
        raise ValueError(f"spike_source must be one of {SPIKE_SOURCES}, got {spike_source!r}")
    if spike_source == "generator":
        indices, global_steps = spike_lists(batch.data)
        group = SpikeGeneratorGroup(n, indices, global_steps * dt, sorted=True, name=INPUT_NAME)
        return InputLayer(group, group, "generator", "w")
    values = TimedArray(_timed_values(batch, steps, max_rate_hz, "timed_array"), dt=dt, name=VALUES_NAME)
    group = NeuronGroup(n, "", threshold="s_in(t, i) > 0.5", reset="", namespace={"s_in": values}, name=INPUT_NAME)
    return InputLayer(group, values, "timed_array", "w")
