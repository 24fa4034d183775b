"""Pure integrate-and-fire step functions (Norse style): ``step(input, state, ...) -> (spikes, state)``.

One spiking layer l has membrane v_l, threshold θ_l and synaptic input I_l(t) = W_l · s_{l-1}(t). No leak, no
refractory period, no bias (docs/semantics.md). :func:`if_update` is the one definition of a layer's step;
every fastsim path computes it (the plain loop, the time-batched scan of :mod:`fastsim.scan` eager and
compiled, the threshold margins of :mod:`fastsim.margins`), and the fused Triton kernel of
:mod:`fastsim.fused`, which must restate it in Triton, is held to it case by case by
tests/fastsim/test_step_paths.py. The update, for input I(t) and the voltage v(t−1) left from the step before:

    u(t) = v(t−1) + I(t)                              (integrate)
    c(t) = v(t−1) under ``delay``, u(t) under ``cascade``  (the voltage the threshold check reads)
    s(t) = [c(t) ≥ θ]                                  (fire)
    v(t) = u(t) where s(t) = 0, else  0 (``zero``)  or  u(t) − θ (``subtract``)   (reset)

so ``cascade`` (Diehl's MATLAB code) integrates, fires and resets, and ``delay`` (Brian2's order) fires on the
old voltage, integrates and resets; under ``zero`` the input that arrived in a spiking step is lost, under
``subtract`` the surplus is kept (the count tracks Σ I / θ to within one spike).

The network step (:func:`network_update`) applies the layer step layer by layer, each fed this step's spikes
of the layer before. In ``delay`` that equals Brian2's order of all thresholds, then all synapses, then all
resets: s_l(t) reads only v_l(t−1), so taking the thresholds layer by layer gives the same spikes. Since the
network is feed-forward, a layer's whole spike train depends only on the spike train of the layer before it:
the time-batched scan (one layer over many steps) gives the same spikes as stepping the network.

Thresholds are 0-d tensors of the simulation dtype (θ rounded to that dtype), so ``c ≥ θ`` and ``u − θ`` are
computed entirely in the simulation dtype on every device. All functions are pure: inputs are never mutated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

RESETS = ("zero", "subtract")
SCHEDULES = ("delay", "cascade")

Synapse = Callable[[torch.Tensor], torch.Tensor]


class IFState(NamedTuple):
    """Membrane voltage of one layer, shape (batch, *layer shape)."""

    v: torch.Tensor


class NetworkState(NamedTuple):
    """States of the spiking layers, in order."""

    layers: tuple[IFState, ...]


class LayerUpdate(NamedTuple):
    """One layer's step: its spikes s(t) (bool), its new state v(t), and ``checked``, the voltage c(t) its
    threshold check read (what :mod:`fastsim.margins` measures)."""

    spikes: torch.Tensor
    state: IFState
    checked: torch.Tensor


def reset_voltage(v: torch.Tensor, spikes: torch.Tensor, threshold: torch.Tensor, reset: str) -> torch.Tensor:
    """``zero``: v ← 0 where s = 1; ``subtract``: v ← v − θ where s = 1; other neurons keep v."""
    if reset == "zero":
        # v − v is +0 for every finite v; torch.compile vectorizes this form, not a scalar 0.
        return torch.where(spikes, v - v, v)
    if reset == "subtract":
        return torch.where(spikes, v - threshold, v)
    raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


def if_update(
    input_current: torch.Tensor, state: IFState, threshold: torch.Tensor, reset: str, schedule: str
) -> LayerUpdate:
    """The layer step (module doc): u = v + I;  c = v (``delay``) or u (``cascade``);  s = [c ≥ θ];
    v' = reset(u, s)."""
    integrated = state.v + input_current
    if schedule == "delay":
        checked = state.v
    elif schedule == "cascade":
        checked = integrated
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    spikes = checked >= threshold
    return LayerUpdate(spikes, IFState(reset_voltage(integrated, spikes, threshold, reset)), checked)


def if_step(
    input_current: torch.Tensor, state: IFState, threshold: torch.Tensor, reset: str
) -> tuple[torch.Tensor, IFState]:
    """:func:`if_update` in ``cascade`` order: v' = v + I;  s = [v' ≥ θ];  v'' = reset(v', s)."""
    spikes, new, _ = if_update(input_current, state, threshold, reset, "cascade")
    return spikes, new


def if_step_delayed(
    input_current: torch.Tensor, state: IFState, threshold: torch.Tensor, reset: str
) -> tuple[torch.Tensor, IFState]:
    """:func:`if_update` in ``delay`` order: s = [v ≥ θ];  v' = reset(v + I, s)."""
    spikes, new, _ = if_update(input_current, state, threshold, reset, "delay")
    return spikes, new


def layer_step(schedule: str) -> Callable[..., tuple[torch.Tensor, IFState]]:
    """The one-layer step function of ``schedule``."""
    if schedule == "delay":
        return if_step_delayed
    if schedule == "cascade":
        return if_step
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def network_update(
    input_spikes: torch.Tensor,
    state: NetworkState,
    synapses: Sequence[Synapse],
    thresholds: Sequence[torch.Tensor],
    reset: str,
    schedule: str,
) -> tuple[LayerUpdate, ...]:
    """One step of the whole network: for l = 1..L, the layer step of layer l with input W_l · s_{l−1}(t)
    (s_0(t) = ``input_spikes``, s_l(t) the spikes of this step's update of layer l)."""
    updates, pre = [], input_spikes
    for st, syn, th in zip(state.layers, synapses, thresholds, strict=True):
        update = if_update(syn(pre.to(st.v.dtype)), st, th, reset, schedule)
        updates.append(update)
        pre = update.spikes
    return tuple(updates)


def _network_step(
    schedule: str,
    input_spikes: torch.Tensor,
    state: NetworkState,
    synapses: Sequence[Synapse],
    thresholds: Sequence[torch.Tensor],
    reset: str,
) -> tuple[tuple[torch.Tensor, ...], NetworkState]:
    updates = network_update(input_spikes, state, synapses, thresholds, reset, schedule)
    return tuple(u.spikes for u in updates), NetworkState(tuple(u.state for u in updates))


def delay_step(
    input_spikes: torch.Tensor,
    state: NetworkState,
    synapses: Sequence[Synapse],
    thresholds: Sequence[torch.Tensor],
    reset: str,
) -> tuple[tuple[torch.Tensor, ...], NetworkState]:
    """One step of the ``delay`` schedule for the whole network (Brian2's order):

    1. thresholds, all layers, on the voltage from step t−1:  s_l(t) = [v_l ≥ θ_l];
    2. synapses, all layers:  v_l += W_l · s_{l−1}(t)   (s_0(t) = ``input_spikes``);
    3. resets of the neurons with s_l(t) = 1.
    """
    return _network_step("delay", input_spikes, state, synapses, thresholds, reset)


def cascade_step(
    input_spikes: torch.Tensor,
    state: NetworkState,
    synapses: Sequence[Synapse],
    thresholds: Sequence[torch.Tensor],
    reset: str,
) -> tuple[tuple[torch.Tensor, ...], NetworkState]:
    """One step of the ``cascade`` schedule: for l = 1..L: v_l += W_l · s_{l−1}(t); s_l(t) = [v_l ≥ θ_l]; reset."""
    return _network_step("cascade", input_spikes, state, synapses, thresholds, reset)


def network_step(schedule: str) -> Callable[..., tuple[tuple[torch.Tensor, ...], NetworkState]]:
    """The network step function of ``schedule``."""
    if schedule == "delay":
        return delay_step
    if schedule == "cascade":
        return cascade_step
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
