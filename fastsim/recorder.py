"""Recording one batch: spike counts, output counts and potentials at checkpoints, first output spike,
synaptic events in all and at every checkpoint.

The engine hands the recorder each layer's spikes chunk by chunk, time first: ``(n, B, *shape)`` 0/1 for
steps ``start .. start+n-1`` (the plain stepwise loop hands chunks of one step), and the input source after
each chunk (:meth:`Recorder.add_input`). From them, with c_k the checkpoints (numbers of steps simulated):

* ``neuron_counts[l]`` (B, n_l) = Σ_t s_l(t);   ``layer_counts`` (B, L) = Σ_i neuron_counts[l][:, i];
* ``output_counts`` (B, K, C): Σ_{t < c_k} s_L(t) at every checkpoint;
* ``first_spike_step`` (B,): min{t : Σ_i s_L,i(t) > 0}, 0-based, -1 if the output layer never spiked;
* ``synops`` (B, L): Σ_t Σ_i s_{l-1,i}(t) · fanout_{l,i} = neuron_counts[l-1] · fanout_l, with the input
  counts Σ_t s_0,i(t) for l = 1 (for analog ``current`` input: steps · x_i);
* ``synops_curve`` (B, K, L): the same sums over t < c_k. A checkpoint inside a chunk takes the counts of the
  chunk's first c_k − start steps; the input counts come from the source (``input_counts(c_k)``). The last
  checkpoint is the whole run and is computed by the very expression of ``synops``, so the two are equal;
* ``output_potential`` (B, K, C), ``membrane`` readout only: v_L after c_k steps, handed over by the engine
  at the end of every chunk that ends on a checkpoint (:meth:`Recorder.add_potential`; the engine cuts its
  chunks at the checkpoints for this readout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class BatchCounts:
    """What one batch contributes to a :class:`convert.records.SpikeRecord` (numpy arrays)."""

    output_counts: np.ndarray
    layer_counts: np.ndarray
    first_spike_step: np.ndarray
    synops: np.ndarray
    synops_curve: np.ndarray
    neuron_counts: tuple[np.ndarray, ...] | None
    output_potential: np.ndarray | None


class Recorder:
    """``fanouts[l]`` (float64, one entry per neuron of the population below spiking layer l): the synapse
    counts of the synaptic-event sums; ``membrane``: record the output potential at the checkpoints."""

    def __init__(
        self,
        batch: int,
        sizes: list[int],
        checkpoints: np.ndarray,
        device: torch.device,
        fanouts: list[torch.Tensor],
        membrane: bool = False,
    ) -> None:
        self.batch = batch
        self.checkpoints = np.asarray(checkpoints, dtype=np.int64)
        self.fanouts = fanouts
        zeros = dict(dtype=torch.int64, device=device)
        k = len(self.checkpoints)
        self.input_counts: torch.Tensor | None = None
        # float64 accumulators: exact for counts below 2^53, and a float chunk's sums add in one pass
        self.neuron_counts = [torch.zeros(batch, n, dtype=torch.float64, device=device) for n in sizes]
        self.running = torch.zeros(batch, sizes[-1], **zeros)
        self.output_counts = torch.zeros(batch, k, sizes[-1], **zeros)
        self.first = torch.full((batch,), -1, **zeros)
        self.synops_curve = torch.zeros(batch, k, len(sizes), dtype=torch.float64, device=device)
        self.potential = torch.zeros(batch, k, sizes[-1], dtype=torch.float64, device=device) if membrane else None

    def _inside(self, start: int, n: int) -> np.ndarray:
        """Indices of the checkpoints in (start, start + n]: those the chunk of steps start..start+n-1 ends."""
        return np.flatnonzero((self.checkpoints > start) & (self.checkpoints <= start + n))

    def set_input_counts(self, counts: torch.Tensor) -> None:
        """Σ_t s_0,i(t) per image and input (B, n_inputs), float64 (analog input: steps · x_i)."""
        self.input_counts = counts.reshape(self.batch, -1).to(torch.float64)

    def add_input(self, source, start: int, n: int) -> None:
        """After the input of steps start..start+n-1 was served: the input's synaptic events at the checkpoints
        in the chunk, from ``source.input_counts(c)`` (Σ_{t < c} s_0(t))."""
        for k in self._inside(start, n):
            counts = source.input_counts(int(self.checkpoints[k])).reshape(self.batch, -1).to(torch.float64)
            self.synops_curve[:, k, 0] = counts @ self.fanouts[0]

    def add_layer(self, layer: int, spikes: torch.Tensor, counts: torch.Tensor, start: int) -> torch.Tensor:
        """Spikes (n, B, *shape) of steps start..start+n-1 as 0/1 floats and their sums over the n steps
        (B, *shape), exact (sums of at most n ones); returns the number of spikes (0-d)."""
        chunk_counts = counts.reshape(self.batch, -1)
        n = spikes.shape[0]
        before = self.neuron_counts[layer]
        self.neuron_counts[layer] = before + chunk_counts
        if layer + 1 < len(self.neuron_counts):  # the synaptic events this layer sends into the next
            for k in self._inside(start, n):
                upto = int(self.checkpoints[k]) - start
                if upto == n:
                    cum = self.neuron_counts[layer]
                else:
                    cum = before + spikes[:upto].sum(0).reshape(self.batch, -1).to(torch.float64)
                self.synops_curve[:, k, layer + 1] = cum @ self.fanouts[layer + 1]
        else:
            self._add_output(spikes.reshape(n, self.batch, -1).to(torch.int64), start)
        return chunk_counts.sum()

    def add_potential(self, v: torch.Tensor, end: int) -> None:
        """The output layer's membrane (B, *shape) after ``end`` steps; kept if ``end`` is a checkpoint."""
        if self.potential is not None:
            for k in np.flatnonzero(self.checkpoints == end):
                self.potential[:, k] = v.reshape(self.batch, -1).to(torch.float64)

    def _add_output(self, flat: torch.Tensor, start: int) -> None:
        n = flat.shape[0]
        inside = self._inside(start, n)
        if len(inside):
            cum = self.running + flat.cumsum(0)  # (n, B, C)
            rows = torch.as_tensor(self.checkpoints[inside] - start - 1, device=flat.device)
            self.output_counts[:, torch.as_tensor(inside, device=flat.device)] = cum[rows].transpose(0, 1)
            self.running = cum[-1]
        else:
            self.running = self.running + flat.sum(0)
        fired = flat.any(-1)  # (n, B)
        step = start + fired.to(torch.int32).argmax(0)  # first step with a spike
        self.first = torch.where((self.first < 0) & fired.any(0), step, self.first)

    def finish(self, record_neurons: bool) -> BatchCounts:
        pre = [self.input_counts] + self.neuron_counts[:-1]
        synops = torch.stack([p @ f for p, f in zip(pre, self.fanouts, strict=True)], dim=1)
        counts = [c.to(torch.int64) for c in self.neuron_counts]
        layer_counts = torch.stack([c.sum(1) for c in counts], dim=1)
        return BatchCounts(
            output_counts=self.output_counts.cpu().numpy(),
            layer_counts=layer_counts.cpu().numpy(),
            first_spike_step=self.first.cpu().numpy(),
            synops=synops.cpu().numpy(),
            synops_curve=self.synops_curve.cpu().numpy(),
            neuron_counts=tuple(c.cpu().numpy() for c in counts) if record_neurons else None,
            output_potential=None if self.potential is None else self.potential.cpu().numpy(),
        )
