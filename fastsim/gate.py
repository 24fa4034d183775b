"""The max-pool gate in fastsim (docs/semantics.md: max-pooling): its torch step, its event tables, its event step.

The gate (:class:`convert.layers.maxpool2d.MaxPool2d`) is a *tap node*: no population, but a stateful map on the
spikes of the population below, whose output units the next layer's synapses (and any skip edge from its tap
``("gate", p)``) leave from. Each engine calls it through a generic hook; everything the gate is, is here:

* :class:`MaxGate`, for the torch engines (:mod:`fastsim.network`): it runs the gate over a chunk of steps,
  time first: for spikes s (n, B, C, H, W) of the population below and the spike counts c (B, C, H', W', k²)
  of its units so far, the count of every unit after step t is c + Σ_{t' ≤ t} s(t') (the spikes of step t
  included), each window's winner is the unit with the highest count, ties to the lowest position in the
  window (the lowest C-order index), and the gate's output in step t is the winner's spike of step t. Counts
  are int64, so the winner is exact on every device; the output spikes are the input's own 0/1 values.
* :class:`GateTables` and :func:`event_tables`, for the event engine (:mod:`fastsim.event_tables`), and its
  compiled step :func:`event_step` with its state (:func:`event_state`), which the kernel
  (:mod:`fastsim._events_kernel`) calls before a gated layer's synapses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convert.layers.maxpool2d import RULES, unit_windows
from fastsim._numba import nb


# --------------------------------------------------------------------------------------- the torch engines
@dataclass(frozen=True)
class MaxGate:
    """The gate of the spec layer ``layer`` (:class:`convert.layers.maxpool2d.MaxPool2d`: kernel, stride, zero
    padding, ceil_mode) on a population of shape ``in_shape`` (C, H, W) whose activity is the tap ``tap``;
    output ``shape`` (C, H', W')."""

    layer: Any
    in_shape: tuple[int, int, int]
    tap: tuple[str, int]
    shape: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(self.in_shape))
        object.__setattr__(self, "shape", self.layer.output_shape(self.in_shape))

    @property
    def kernel(self) -> int:
        return self.layer.kernel_size

    def initial(self, batch: int, device: torch.device) -> torch.Tensor:
        """No spike counted yet: zeros (B, C, H', W', k²)."""
        return torch.zeros(batch, *self.shape, self.kernel**2, dtype=torch.int64, device=device)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(n, B, C, H, W) → (n, B, C, H', W', k²): each window's positions in row-major order (their C order),
        zero where the window holds padding or lies past the input. A padded position's count stays 0, so it
        can only win a window whose real units have not fired yet, whose output is then 0 as the real
        winner's would be: the same spikes as a winner among the real units."""
        k, s, p = self.kernel, self.layer.step, self.layer.padding
        _, oh, ow = self.shape
        h, w = self.in_shape[1:]
        bottom, right = max(0, (oh - 1) * s + k - h - p), max(0, (ow - 1) * s + k - w - p)
        if p or bottom or right:
            x = torch.nn.functional.pad(x, (p, right, p, bottom))
        win = x.unfold(3, k, s).unfold(4, k, s)  # (n, B, C, H', W', k, k) (the last two: row, column)
        return win[:, :, :, :oh, :ow].reshape(*win.shape[:3], oh, ow, k * k)

    def __call__(self, spikes: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate the spikes (n, B, C, H, W) of n steps given the counts before them; returns the passed spikes
        (n, B, C, H', W') and the counts after the n steps."""
        win = self.windows(spikes)
        kk = win.shape[-1]
        cum = counts.unsqueeze(0) + win.to(torch.int64).cumsum(0)  # counts after each step, this step's included
        if self.layer.rule == "max-count":  # one spike in every step in which the window's highest count grows
            highest = cum.max(-1).values
            before = torch.cat([counts.max(-1).values.unsqueeze(0), highest[:-1]])
            return (highest > before).to(spikes.dtype), cum[-1]
        # a unique key per unit: the count first, then the earlier position (ties to the lowest index)
        rank = torch.arange(kk - 1, -1, -1, device=spikes.device, dtype=torch.int64)
        winner = (cum * kk + rank).argmax(-1, keepdim=True)
        return win.gather(-1, winner).squeeze(-1), cum[-1]


# --------------------------------------------------------------------------------------- the event engine
@dataclass(frozen=True)
class GateTables:
    """The max-pool gates of a spec for the event kernel (all arrays empty or -1 without a gate).

    Gate g sits on population ``g_pop[g]`` and feeds layer ``g_pop[g] + 1`` (``gate_of[l]`` = g, else -1); it
    has ``g_size[g]`` output units (internal order of the pooled shape; their spike lists at ``g_off[g]``) of
    ``g_kk[g]`` members each: ``g_members[g_moff[g] + u·kk + r]``, the population's internal index of the unit
    of rank r (row-major position in the window, the tie order) of output unit u (-1: padding). Neuron j of a
    gated population p belongs to the output units ``g_units[g_uptr[v_off[p] + j] : g_uptr[v_off[p] + j + 1]]``
    (none past the last window, or when not gated; several where windows overlap)."""

    gate_of: np.ndarray
    g_pop: np.ndarray
    g_size: np.ndarray
    g_off: np.ndarray
    g_kk: np.ndarray
    g_moff: np.ndarray
    g_members: np.ndarray
    g_uptr: np.ndarray
    g_units: np.ndarray
    g_rule: np.ndarray  # per gate: 0 the leader rule, 1 max-count (convert.layers.maxpool2d.RULES)

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        """The arrays in field order: the first :data:`N_TABLES` entries of the kernel's flat ``graph`` tuple (a
        parallel loop cannot take a tuple of tuples), which the compiled functions below read."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def source_id(self, tap: tuple[str, int]) -> int:
        """The gate id of the tap ``("gate", p)`` (an edge's source in the kernel)."""
        return int(np.flatnonzero(self.g_pop == tap[1])[0])


def _members(gate: MaxGate, internal_order) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a gate on a (C, H, W) population, in the event engine's internal orders (``internal_order(shape)``:
    the spec index of the neuron at each internal position): each output unit's k² members by rank (-1 where
    the window holds padding), and each neuron's windows, compressed (``ptr`` (n + 1,), ``units``: neuron j's
    windows are ``units[ptr[j]:ptr[j + 1]]``)."""
    pop_order, pool_order = internal_order(gate.in_shape), internal_order(gate.shape)
    pop_internal = np.argsort(pop_order)  # spec index → internal index
    spec_members = gate.layer.members(gate.in_shape)[pool_order]  # rows in the internal order of the windows
    members = np.where(spec_members >= 0, pop_internal[np.maximum(spec_members, 0)], -1)
    ptr, units = unit_windows(members, len(pop_order))
    return members.reshape(-1).astype(np.int64), ptr, units


def event_tables(stages, internal_order) -> GateTables:
    """The :class:`GateTables` of the stages' gates (:attr:`fastsim.stages.Stage.node`), in the internal orders
    of :func:`fastsim.event_tables.internal_order` (given: that module builds on this one)."""
    L = len(stages)
    gate_of = np.full(L, -1, dtype=np.int64)
    g_pop, g_size, g_kk, members, rules = [], [], [], [], []
    counts = [np.zeros(int(np.prod(s.shape)), dtype=np.int64) for s in stages]  # windows per neuron
    units_all: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in stages]
    for layer, stage in enumerate(stages):
        if isinstance(stage.node, MaxGate):
            gate_of[layer] = len(g_pop)
            m, ptr, units = _members(stage.node, internal_order)
            g_pop.append(layer - 1)
            g_size.append(int(np.prod(stage.node.shape)))
            g_kk.append(stage.node.kernel**2)
            rules.append(RULES.index(stage.node.layer.rule))
            members.append(m)
            counts[layer - 1], units_all[layer - 1] = np.diff(ptr), units
    sizes = np.asarray(g_size, dtype=np.int64)
    kk = np.asarray(g_kk, dtype=np.int64)
    return GateTables(
        gate_of=gate_of,
        g_pop=np.asarray(g_pop, dtype=np.int64),
        g_size=sizes,
        g_off=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        g_kk=kk,
        g_moff=np.concatenate([[0], np.cumsum(sizes * kk)]).astype(np.int64),
        g_members=np.concatenate(members) if members else np.zeros(0, dtype=np.int64),
        g_uptr=np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64),
        g_units=np.concatenate(units_all).astype(np.int64),
        g_rule=np.asarray(rules, dtype=np.int64),
    )


#: how many arrays :class:`GateTables` puts at the head of the kernel's ``graph``
N_TABLES = len(dataclasses.fields(GateTables))


@nb.njit(cache=True)
def event_state(graph, n_neurons):
    """The gates' state at the start of an image: every neuron's spike count so far (read for gated
    populations), the last step it fired in, the last step each output unit's window was looked at, the
    passed output units of this step (at each gate's offset), their numbers, and each window's highest count
    so far (the max-count rule)."""
    g_off = graph[3]
    return (
        np.zeros(n_neurons, np.int64),
        np.full(n_neurons, -1, np.int64),
        np.full(g_off[-1], -1, np.int64),
        np.zeros(g_off[-1], np.int32),
        np.zeros(g_off.shape[0] - 1, np.int64),
        np.zeros(g_off[-1], np.int64),
    )


@nb.njit(cache=True)
def gate_into(graph, layer):
    """The id of the gate in front of ``layer`` (-1 for none)."""
    return graph[0][layer]


@nb.njit(cache=True)
def event_output(g, graph, state):
    """The output units gate g passed in this step (a list at its offset) and their number."""
    return state[3][graph[3][g] :], state[4][g]


@nb.njit(cache=True)
def event_step(g, t, v_off, graph, spk, nsp, state):
    """Gate g's step t: count the spikes of its population (already stepped: ``spk``/``nsp``, the lists of the
    neurons that fired in this step at each population's offset ``v_off``), then pass the spike of every window
    whose unit with the highest count so far (ties to the lowest rank) fired in this step (the max-count rule:
    every window whose highest count grew); returns the passed output units and their number
    (:func:`event_output`)."""
    gate_of, g_pop, g_size, g_off, g_kk, g_moff, g_members, g_uptr, g_units, g_rule = graph[:N_TABLES]
    counts, last, visited, gspk, gnsp, highest = state
    max_count = g_rule[g] == 1
    p = g_pop[g]
    base, n = v_off[p], nsp[p]
    for s in range(n):
        j = base + spk[base + s]
        counts[j] += 1
        last[j] = t
    kk, go = g_kk[g], g_off[g]
    m = 0
    for s in range(n):
        j = base + spk[base + s]
        for e in range(g_uptr[j], g_uptr[j + 1]):  # the windows this neuron belongs to
            u = g_units[e]
            if visited[go + u] == t:
                continue
            visited[go + u] = t
            mo = g_moff[g] + u * kk
            best = -1
            for r in range(kk):  # the highest count, ties to the lowest rank; padding (-1) never counts
                q = g_members[mo + r]
                if q < 0:
                    continue
                if best < 0 or counts[base + q] > counts[best]:
                    best = base + q
            if max_count:  # a window is looked at only when a unit of it fired: its highest count can only grow then
                if counts[best] > highest[go + u]:
                    highest[go + u] = counts[best]
                    gspk[go + m] = u
                    m += 1
            elif last[best] == t:
                gspk[go + m] = u
                m += 1
    gnsp[g] = m
    return gspk[go:], m
