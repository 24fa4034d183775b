"""Closest approach of every membrane to its threshold: what explains a count that flips with rounding.

For each neuron, the minimum over all threshold checks of a run of |v − θ| / θ, where v is the voltage the
check reads: the voltage left from the previous step under ``delay``, the voltage after this step's input
under ``cascade`` (docs/semantics.md). A neuron whose margin is below the relative rounding error of the
arithmetic (≈ 1e-7 · fan-in in float32) can spike in one precision and not in another; a neuron with a large
margin cannot. Computed by the plain per-step loop (a diagnostic for agreement runs, not a fast path).
"""

from __future__ import annotations

import torch

from fastsim.step import reset_voltage


def threshold_margins(net, source, batch: int, steps: int) -> list[torch.Tensor]:
    """Per spiking layer, (batch, n_l) min relative distance |v − θ| / θ over the threshold checks."""
    stages = net.stages
    vs = [torch.zeros(batch, *s.shape, dtype=net.dtype, device=net.device) for s in stages]
    margins = [torch.full((batch, *s.shape), torch.inf, dtype=torch.float64, device=net.device) for s in stages]
    reset, delay = net.spec.reset, net.spec.schedule == "delay"

    def note(layer: int, v: torch.Tensor) -> None:
        th = stages[layer].threshold
        torch.minimum(margins[layer], ((v - th).abs() / th).to(torch.float64), out=margins[layer])

    for t in range(steps):
        pre = source.chunk(t, 1)[0].reshape(batch, *net.spec.input_shape)
        if delay:
            spikes = []
            for layer, (v, stage) in enumerate(zip(vs, stages, strict=True)):
                note(layer, v)
                spikes.append(v >= stage.threshold)
            for layer, stage in enumerate(stages):
                v = vs[layer] + stage.synapse(pre.to(net.dtype))
                vs[layer] = reset_voltage(v, spikes[layer], stage.threshold, reset)
                pre = spikes[layer]
        else:
            for layer, stage in enumerate(stages):
                v = vs[layer] + stage.synapse(pre.to(net.dtype))
                note(layer, v)
                s = v >= stage.threshold
                vs[layer] = reset_voltage(v, s, stage.threshold, reset)
                pre = s
    return [m.reshape(batch, -1) for m in margins]
