"""Recording one batch: spike counts, output counts and potentials at checkpoints, first output spike,
synaptic events in all and at every checkpoint.

The engine hands the recorder each layer's spikes chunk by chunk, time first: ``(n, B, *shape)`` 0/1 for
steps ``start .. start+n-1`` (the plain stepwise loop hands chunks of one step), and the input source after
each chunk (:meth:`Recorder.add_input`). From them, with c_k the checkpoints (numbers of steps simulated):

* ``neuron_counts[l]`` (B, n_l) = Σ_t s_l(t);   ``layer_counts`` (B, L) = Σ_i neuron_counts[l][:, i];
* ``output_counts`` (B, K, C): Σ_{t < c_k} s_L(t) at every checkpoint;
* ``first_spike_step`` (B,): min{t : Σ_i s_L,i(t) > 0}, 0-based, -1 if the output layer never spiked;
* ``synops`` (B, L): Σ_t Σ_i s_{l-1,i}(t) · fanout_{l,i} = neuron_counts[l-1] · fanout_l, with the input
  counts Σ_t s_0,i(t) for l = 1 (for analog ``current`` input: steps · x_i); behind a max-pool gate, the
  gate's passed spikes replace s_{l−1}, and a skip edge adds its source's counts times its own fan-out;
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
    """What one batch contributes to a :class:`convert.contract.records.SpikeRecord` (numpy arrays)."""

    output_counts: np.ndarray
    layer_counts: np.ndarray
    first_spike_step: np.ndarray
    synops: np.ndarray
    synops_curve: np.ndarray
    neuron_counts: tuple[np.ndarray, ...] | None
    output_potential: np.ndarray | None


class Recorder:
    """``edges``: every synapse map into a spiking layer as (layer l, tap, fanout) (the edges of
    :func:`convert.contract.graph.edges`; ``fanout`` float64, one entry per unit of the tap: the synapse counts
    of the synaptic-event sums); ``membrane``: record the output potential at the checkpoints.

    Synaptic events are counted per *tap*, an activity some layer reads: ``("input", 0)``, ``("pop", p)`` (the
    spikes of population p) or ``("gate", p)`` (the spikes the gate on population p passes). Every tap has its
    consumers (layer, fanout); the events into layer l are the sum over its incoming edges of the tap's counts
    times the edge's fan-out (integers in float64: exact below 2^53 whatever the order)."""

    def __init__(
        self,
        batch: int,
        sizes: list[int],
        checkpoints: np.ndarray,
        device: torch.device,
        edges: list[tuple[int, tuple[str, int], torch.Tensor]],
        membrane: bool = False,
    ) -> None:
        self.batch = batch
        self.checkpoints = np.asarray(checkpoints, dtype=np.int64)
        zeros = dict(dtype=torch.int64, device=device)
        k = len(self.checkpoints)
        self.consumers: dict[tuple[str, int], list[tuple[int, torch.Tensor]]] = {}
        for layer, tap, fan in edges:  # (target population, tap, the tap's fan-out), convert.contract.graph
            self.consumers.setdefault(tap, []).append((layer, fan))
        self.input_counts: torch.Tensor | None = None
        # float64 accumulators: exact for counts below 2^53, and a float chunk's sums add in one pass
        self.neuron_counts = [torch.zeros(batch, n, dtype=torch.float64, device=device) for n in sizes]
        self.node_counts: dict[tuple[str, int], torch.Tensor] = {}  # the spikes each tap node passed, by tap
        self.running = torch.zeros(batch, sizes[-1], **zeros)
        self.output_counts = torch.zeros(batch, k, sizes[-1], **zeros)
        self.first = torch.full((batch,), -1, **zeros)
        self.synops_curve = torch.zeros(batch, k, len(sizes), dtype=torch.float64, device=device)
        self.potential = torch.zeros(batch, k, sizes[-1], dtype=torch.float64, device=device) if membrane else None

    def _inside(self, start: int, n: int) -> np.ndarray:
        """Indices of the checkpoints in (start, start + n]: those the chunk of steps start..start+n-1 ends."""
        return np.flatnonzero((self.checkpoints > start) & (self.checkpoints <= start + n))

    def _curve(self, tap: tuple[str, int], k: int, cum: torch.Tensor) -> None:
        """The synaptic events a tap with counts ``cum`` (B, n) so far sends at checkpoint k, to every consumer."""
        for layer, fan in self.consumers.get(tap, ()):
            self.synops_curve[:, k, layer] += cum @ fan

    def set_input_counts(self, counts: torch.Tensor) -> None:
        """Σ_t s_0,i(t) per image and input (B, n_inputs), float64 (analog input: steps · x_i)."""
        self.input_counts = counts.reshape(self.batch, -1).to(torch.float64)

    def add_input(self, source, start: int, n: int) -> None:
        """After the input of steps start..start+n-1 was served: the input's synaptic events at the checkpoints
        in the chunk, from ``source.input_counts(c)`` (Σ_{t < c} s_0(t))."""
        for k in self._inside(start, n):
            counts = source.input_counts(int(self.checkpoints[k])).reshape(self.batch, -1).to(torch.float64)
            self._curve(("input", 0), k, counts)

    def _add_tap(
        self, tap: tuple[str, int], before: torch.Tensor, after: torch.Tensor, spikes: torch.Tensor, start: int
    ) -> None:
        """A tap's events at the checkpoints of a chunk of its spikes (n, B, ...), from its counts ``before`` and
        ``after`` the chunk (B, n_units) (a checkpoint inside the chunk sums the spikes of its first steps)."""
        if tap not in self.consumers:
            return
        n = spikes.shape[0]
        for k in self._inside(start, n):
            upto = int(self.checkpoints[k]) - start
            cum = after if upto == n else before + spikes[:upto].sum(0).reshape(self.batch, -1).to(torch.float64)
            self._curve(tap, k, cum)

    def _tap_counts(self, tap: tuple[str, int]) -> torch.Tensor | None:
        """A tap's counts over the whole run (None: a tap node that never ran)."""
        kind, index = tap
        if kind == "input":
            return self.input_counts
        return self.neuron_counts[index] if kind == "pop" else self.node_counts.get(tap)

    def add_layer(self, layer: int, spikes: torch.Tensor, counts: torch.Tensor, start: int) -> torch.Tensor:
        """Spikes (n, B, *shape) of steps start..start+n-1 as 0/1 floats and their sums over the n steps
        (B, *shape), exact (sums of at most n ones); returns the number of spikes (0-d)."""
        chunk_counts = counts.reshape(self.batch, -1)
        n = spikes.shape[0]
        before = self.neuron_counts[layer]
        self.neuron_counts[layer] = before + chunk_counts
        self._add_tap(("pop", layer), before, self.neuron_counts[layer], spikes, start)  # the events it sends on
        if layer + 1 == len(self.neuron_counts):
            self._add_output(spikes.reshape(n, self.batch, -1).to(torch.int64), start)
        return chunk_counts.sum()

    def add_tap(self, tap: tuple[str, int], spikes: torch.Tensor, start: int) -> torch.Tensor:
        """The spikes (n, B, *its shape) the tap node of ``tap`` (the max-pool gate) passed in steps start..;
        returns their number (0-d)."""
        before = self.node_counts.get(tap)
        if before is None:
            before = torch.zeros(self.batch, spikes[0, 0].numel(), dtype=torch.float64, device=spikes.device)
        after = before + spikes.sum(0).reshape(self.batch, -1).to(torch.float64)
        self._add_tap(tap, before, after, spikes, start)
        self.node_counts[tap] = after
        return (after - before).sum()

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
        synops = torch.zeros(self.batch, len(self.neuron_counts), dtype=torch.float64, device=self.first.device)
        for tap, consumers in self.consumers.items():
            counts = self._tap_counts(tap)
            if counts is None:  # a tap node that never ran: no events
                continue
            for layer, fan in consumers:
                synops[:, layer] += counts @ fan
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
