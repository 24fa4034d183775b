"""Pure integrate-and-fire step functions (Norse style): ``step(input, state, ...) -> (spikes, state)``.

One spiking layer l has membrane v_l, threshold θ_l and synaptic input I_l(t) = W_l · s_{l-1}(t). No leak, no
refractory period, no bias (docs/semantics.md). The two reset modes, for a neuron that spiked in step t:

* ``zero``:      v ← 0        (input that arrived in step t is lost);
* ``subtract``:  v ← v − θ    (the surplus is kept: the count tracks Σ I / θ to within one spike).

The two schedules differ only in *when* a layer thresholds relative to its integration:

* ``cascade`` (Diehl's MATLAB code), :func:`if_step`:   v += I(t);  s(t) = [v ≥ θ];  reset;
* ``delay`` (Brian2's order), :func:`if_step_delayed`:  s(t) = [v(t−1) ≥ θ];  v += I(t);  reset.

Network steps (:func:`delay_step`, :func:`cascade_step`) apply these layer by layer; in ``delay`` every layer's
threshold reads the voltage left from step t−1, so all thresholds may be taken first, then all synapses
with this step's spikes s_{l-1}(t), then all resets, exactly as Brian2 orders them. Since the network is
feed-forward, a layer's whole spike train depends only on the spike train of the layer before it: the
time-batched scan of :mod:`fastsim.scan` (one layer over many steps) gives the same spikes as stepping the
network.

Thresholds are 0-d tensors of the simulation dtype (θ rounded to that dtype), so ``v ≥ θ`` and ``v − θ`` are
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


def reset_voltage(v: torch.Tensor, spikes: torch.Tensor, threshold: torch.Tensor, reset: str) -> torch.Tensor:
    """``zero``: v ← 0 where s = 1; ``subtract``: v ← v − θ where s = 1; other neurons keep v."""
    if reset == "zero":
        # v − v is +0 for every finite v; torch.compile vectorizes this form, not a scalar 0.
        return torch.where(spikes, v - v, v)
    if reset == "subtract":
        return torch.where(spikes, v - threshold, v)
    raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


def if_step(
    input_current: torch.Tensor, state: IFState, threshold: torch.Tensor, reset: str
) -> tuple[torch.Tensor, IFState]:
    """Integrate, fire, reset (``cascade`` order): v' = v + I;  s = [v' ≥ θ];  v'' = reset(v', s)."""
    v = state.v + input_current
    spikes = v >= threshold
    return spikes, IFState(reset_voltage(v, spikes, threshold, reset))


def if_step_delayed(
    input_current: torch.Tensor, state: IFState, threshold: torch.Tensor, reset: str
) -> tuple[torch.Tensor, IFState]:
    """Fire on the old voltage, integrate, reset (``delay`` order): s = [v ≥ θ];  v' = reset(v + I, s)."""
    spikes = state.v >= threshold
    return spikes, IFState(reset_voltage(state.v + input_current, spikes, threshold, reset))


def layer_step(schedule: str) -> Callable[..., tuple[torch.Tensor, IFState]]:
    """The one-layer step function of ``schedule``."""
    if schedule == "delay":
        return if_step_delayed
    if schedule == "cascade":
        return if_step
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def delay_step(
    input_spikes: torch.Tensor,
    state: NetworkState,
    synapses: Sequence[Synapse],
    thresholds: Sequence[torch.Tensor],
    reset: str,
) -> tuple[tuple[torch.Tensor, ...], NetworkState]:
    """One step of the ``delay`` schedule for the whole network.

    1. thresholds, all layers, on the voltage from step t−1:  s_l(t) = [v_l ≥ θ_l];
    2. synapses, all layers:  v_l += W_l · s_{l−1}(t)   (s_0(t) = ``input_spikes``);
    3. resets of the neurons with s_l(t) = 1.
    """
    spikes = tuple(st.v >= th for st, th in zip(state.layers, thresholds, strict=True))
    pre = (input_spikes, *spikes[:-1])
    new = []
    for st, syn, th, s_pre, s in zip(state.layers, synapses, thresholds, pre, spikes, strict=True):
        v = st.v + syn(s_pre.to(st.v.dtype))
        new.append(IFState(reset_voltage(v, s, th, reset)))
    return spikes, NetworkState(tuple(new))


def cascade_step(
    input_spikes: torch.Tensor,
    state: NetworkState,
    synapses: Sequence[Synapse],
    thresholds: Sequence[torch.Tensor],
    reset: str,
) -> tuple[tuple[torch.Tensor, ...], NetworkState]:
    """One step of the ``cascade`` schedule: for l = 1..L: v_l += W_l · s_{l−1}(t); s_l(t) = [v_l ≥ θ_l]; reset."""
    spikes, new = [], []
    s_pre = input_spikes
    for st, syn, th in zip(state.layers, synapses, thresholds, strict=True):
        s, st = if_step(syn(s_pre.to(st.v.dtype)), st, th, reset)
        spikes.append(s)
        new.append(st)
        s_pre = s
    return tuple(spikes), NetworkState(tuple(new))


def network_step(schedule: str) -> Callable[..., tuple[tuple[torch.Tensor, ...], NetworkState]]:
    """The network step function of ``schedule``."""
    if schedule == "delay":
        return delay_step
    if schedule == "cascade":
        return cascade_step
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
