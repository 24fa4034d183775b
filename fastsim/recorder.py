"""Recording one batch: spike counts, output counts at checkpoints, first output spike, synaptic events.

The engine hands the recorder each layer's spikes chunk by chunk, time first: ``(n, B, *shape)`` 0/1 for
steps ``start .. start+n-1`` (the plain stepwise loop hands chunks of one step). From them:

* ``neuron_counts[l]`` (B, n_l) = Σ_t s_l(t);   ``layer_counts`` (B, L) = Σ_i neuron_counts[l][:, i];
* ``output_counts`` (B, K, C): Σ_{t < c_k} s_L(t) at every checkpoint c_k (a number of steps simulated);
* ``first_spike_step`` (B,): min{t : Σ_i s_L,i(t) > 0}, 0-based, -1 if the output layer never spiked;
* ``synops`` (B, L): Σ_t Σ_i s_{l-1,i}(t) · fanout_{l,i} = neuron_counts[l-1] · fanout_l, with the input
  counts Σ_t s_0,i(t) for l = 1 (for analog ``current`` input: steps · x_i).
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
    neuron_counts: tuple[np.ndarray, ...] | None


class Recorder:
    def __init__(self, batch: int, sizes: list[int], checkpoints: np.ndarray, device: torch.device) -> None:
        self.batch = batch
        self.checkpoints = np.asarray(checkpoints, dtype=np.int64)
        zeros = dict(dtype=torch.int64, device=device)
        self.input_counts: torch.Tensor | None = None
        # float64 accumulators: exact for counts below 2^53, and a float chunk's sums add in one pass
        self.neuron_counts = [torch.zeros(batch, n, dtype=torch.float64, device=device) for n in sizes]
        self.running = torch.zeros(batch, sizes[-1], **zeros)
        self.output_counts = torch.zeros(batch, len(self.checkpoints), sizes[-1], **zeros)
        self.first = torch.full((batch,), -1, **zeros)

    def set_input_counts(self, counts: torch.Tensor) -> None:
        """Σ_t s_0,i(t) per image and input (B, n_inputs), float64 (analog input: steps · x_i)."""
        self.input_counts = counts.reshape(self.batch, -1).to(torch.float64)

    def add_layer(self, layer: int, spikes: torch.Tensor, counts: torch.Tensor, start: int) -> torch.Tensor:
        """Spikes (n, B, *shape) of steps start..start+n-1 as 0/1 floats and their sums over the n steps
        (B, *shape), exact (sums of at most n ones); returns the number of spikes (0-d)."""
        chunk_counts = counts.reshape(self.batch, -1)
        self.neuron_counts[layer] += chunk_counts
        if layer == len(self.neuron_counts) - 1:
            self._add_output(spikes.reshape(spikes.shape[0], self.batch, -1).to(torch.int64), start)
        return chunk_counts.sum()

    def _add_output(self, flat: torch.Tensor, start: int) -> None:
        n = flat.shape[0]
        inside = np.flatnonzero((self.checkpoints > start) & (self.checkpoints <= start + n))
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

    def finish(self, fanouts: list[torch.Tensor], record_neurons: bool) -> BatchCounts:
        pre = [self.input_counts] + self.neuron_counts[:-1]
        synops = torch.stack([p @ f for p, f in zip(pre, fanouts, strict=True)], dim=1)
        counts = [c.to(torch.int64) for c in self.neuron_counts]
        layer_counts = torch.stack([c.sum(1) for c in counts], dim=1)
        return BatchCounts(
            output_counts=self.output_counts.cpu().numpy(),
            layer_counts=layer_counts.cpu().numpy(),
            first_spike_step=self.first.cpu().numpy(),
            synops=synops.cpu().numpy(),
            neuron_counts=tuple(c.cpu().numpy() for c in counts) if record_neurons else None,
        )
