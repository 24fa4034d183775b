"""The time-batched layer scan: one spiking layer over a chunk of T steps, given all T input currents.

The network is feed-forward, so the spike train of layer l over steps t0..t0+T-1 depends only on the
currents I_l(t) = W_l · s_{l-1}(t) of those steps and on v_l at t0. :func:`if_scan` applies the layer step
of the schedule (:func:`fastsim.step.layer_step`) T times; the spikes are exactly those of stepping the
whole network with :func:`fastsim.step.network_step`.

The steps go in groups of :data:`UNROLL` through a *group scan*: :func:`scan_steps` unrolls a group, so that
torch.compile fuses it into one loop over the neurons that keeps v in registers, reads each current once and
writes each spike once (the eager version runs the same maths op by op). The scan works in the memory
order of the currents, so strided currents (a broadcast analog input, a channels-last convolution output)
are scanned without a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from fastsim.step import IFState, layer_step

UNROLL = 10  # steps per group scan call

GroupScan = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # scan_steps, or it compiled


class LayerChunk(NamedTuple):
    """One spiking layer over a chunk of n steps: its ``spikes`` (n, batch, ...) as 0/1 in the state's dtype,
    its ``state`` after the chunk and its spike ``counts`` over the n steps (batch, ...)."""

    spikes: torch.Tensor
    state: IFState
    counts: torch.Tensor


def scan_steps(
    currents: torch.Tensor, v: torch.Tensor, threshold: torch.Tensor, reset: str, schedule: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``currents`` (T, M), ``v`` (M,) → spikes (T, M) as 0/1 in v's dtype, the final v, and the spike
    count of every neuron over the T steps (M,)."""
    step = layer_step(schedule)
    state, out = IFState(v), []
    for t in range(currents.shape[0]):
        spikes, state = step(currents[t], state, threshold, reset)
        out.append(spikes.to(v.dtype))
    spikes = torch.stack(out)
    return spikes, state.v, spikes.sum(0)


def _memory_order(x: torch.Tensor) -> list[int]:
    """The permutation of dims 1.. that lists them from the largest stride down (dim 0 stays first)."""
    rest = sorted(range(1, x.dim()), key=lambda d: (-x.stride(d), d))
    return [0, *rest]


def _inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def if_scan(
    currents: torch.Tensor,
    state: IFState,
    threshold: torch.Tensor,
    reset: str,
    schedule: str,
    group_scan: GroupScan | None = None,
    unroll: int = UNROLL,
) -> LayerChunk:
    """One layer over T steps: ``currents`` (T, batch, ...) → spikes (T, batch, ...) as 0/1 in the state's
    dtype, the final state, and the spike counts over the T steps (batch, ...).

    ``group_scan`` (default :func:`scan_steps`; a compiled version computes the same maths) takes groups of
    ``unroll`` steps; a shorter last group runs eagerly, so a compiled group scan only sees one group length.
    Outputs share the memory order of ``currents``.
    """
    group_scan = group_scan or scan_steps
    order = _memory_order(currents)
    phys = currents.permute(order)
    n_steps = phys.shape[0]
    flat = phys.reshape(n_steps, -1)
    state_order = [d - 1 for d in order[1:]]
    v = state.v.permute(state_order).reshape(-1)
    parts, counts = [], None
    for lo in range(0, n_steps, unroll):
        group = flat[lo : lo + unroll]
        spikes, v, c = (group_scan if len(group) == unroll else scan_steps)(group, v, threshold, reset, schedule)
        parts.append(spikes)
        counts = c if counts is None else counts + c
    spikes = parts[0] if len(parts) == 1 else torch.cat(parts)
    inverse = _inverse(order)
    inverse_state = _inverse(state_order)
    spikes = spikes.view(phys.shape).permute(inverse)
    new_v = v.view(phys.shape[1:]).permute(inverse_state)
    return LayerChunk(spikes, IFState(new_v), counts.view(phys.shape[1:]).permute(inverse_state))
