"""Closest approach of every membrane to its threshold: what explains a count that flips with rounding.

For each neuron, the minimum over all threshold checks of a run of |c − θ| / θ, where c is the voltage the
check reads (:attr:`fastsim.step.LayerUpdate.checked`): the voltage left from the previous step under
``delay``, the voltage after this step's input under ``cascade`` (docs/semantics.md). A neuron whose margin is
below the relative rounding error of the arithmetic (≈ 1e-7 · fan-in in float32) can spike in one precision
and not in another; a neuron with a large margin cannot. Computed by stepping the network with
:func:`fastsim.step.network_update`, the step every fastsim path computes (a diagnostic for agreement runs,
not a fast path).
"""

from __future__ import annotations

import torch

from fastsim.encode import InputSource
from fastsim.step import NetworkState


def threshold_margins(net, source: InputSource, batch: int, steps: int) -> list[torch.Tensor]:
    """Per spiking layer, (batch, n_l) min relative distance |c − θ| / θ over the threshold checks of ``steps``
    steps of ``source`` through ``net`` (a :class:`fastsim.network.Network`)."""
    stages, spec = net.stages, net.spec
    state, nodes = net.initial_state(batch), net.initial_nodes(batch)
    thresholds = [s.threshold for s in stages]
    margins = [torch.full((batch, *s.shape), torch.inf, dtype=torch.float64, device=net.device) for s in stages]
    for t in range(steps):
        x = source.chunk(t, 1)[0].reshape(batch, *spec.input_shape)
        updates, nodes, _ = net.step_updates(x, state, nodes)
        for margin, update, th in zip(margins, updates, thresholds, strict=True):
            if torch.isinf(th):  # a membrane readout's output layer: no threshold check, the margin stays +inf
                continue
            torch.minimum(margin, ((update.checked - th).abs() / th).to(torch.float64), out=margin)
        state = NetworkState(tuple(u.state for u in updates))
    return [m.reshape(batch, -1) for m in margins]
