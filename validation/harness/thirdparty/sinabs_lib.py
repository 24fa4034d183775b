"""sinabs (synsense/sinabs) as an agreement engine: ``sinabs.from_nir(graph, batch_size=n)``, run on a whole
spike train at once (sinabs' layers take (batch · time, ...) tensors and loop over time inside each layer;
for a feed-forward chain that is the cascade schedule).

sinabs maps ``Affine`` → ``nn.Linear``, ``Conv2d`` → ``nn.Conv2d``, ``SumPool2d`` → ``sl.SumPool2d``,
``Flatten`` → ``nn.Flatten(start_dim + 1, ...)`` and ``IF`` → ``sl.IAFSqueeze(spike_threshold=v_threshold,
min_v_mem=-v_threshold)``, whose defaults emit ⌊v / threshold⌋ spikes in a step (``MultiSpike``), reset by
subtraction and fire at v ≥ threshold.
"""

from __future__ import annotations

from typing import Any

NAME = "sinabs"
IMPORTER = "sinabs.from_nir(graph, batch_size=n)"
DEPARTURES = (
    "IF → several spikes in one step when v ≥ 2 · v_threshold (IAFSqueeze's default MultiSpike: ⌊v / v_threshold⌋); "
    "NIR's IF emits at most one",
    "IF → reset by subtraction (IAFSqueeze's default MembraneSubtract); NIR's IF resets to v_reset",
    "IF → membrane clipped from below at -v_threshold (min_v_mem); NIR's IF has no lower bound",
    "IF → fires at v ≥ v_threshold; NIR's IF at v > v_threshold (differs only when v equals the stored "
    "threshold, the float32 just below the spec's θ)",
)
ADAPTER = (
    "IF: spike_fn = SingleSpike (at most one spike a step)",
    "IF: reset_fn = MembraneReset(0) (reset to v_reset = 0), min_v_mem = None (no lower bound)",
    "IF: spike_threshold = the next float32 above v_threshold (sinabs fires at ≥, NIR at >)",
)


def version() -> str:
    from importlib.metadata import version as v

    return v("sinabs")


def default_batch(steps: int) -> int:
    return max(1, 4000 // steps)  # (batch · time) rows per layer call


def run(graph: Any, if_names: list[str], x: Any, adapter: bool) -> list[Any]:
    """Spikes (n, T, neurons) of each IF node for inputs x (n, T, *input shape)."""
    import sinabs
    import torch
    from sinabs.activation import MembraneReset, SingleSpike

    from validation.harness.thirdparty.common import SpikeTap

    n, steps = x.shape[:2]
    module = sinabs.from_nir(graph, batch_size=n)
    if adapter:
        for name in if_names:
            neuron = module.get_submodule(name)
            neuron.spike_fn = SingleSpike
            neuron.reset_fn = MembraneReset(reset_value=0.0)
            neuron.min_v_mem = None
            # a new tensor: the importer's may share memory with the graph's v_threshold array
            threshold = neuron.spike_threshold.detach()
            above = torch.nextafter(threshold, torch.full_like(threshold, torch.inf))
            neuron.spike_threshold = torch.nn.Parameter(above, requires_grad=False)
    tap = SpikeTap(module, if_names)
    try:
        with torch.no_grad():
            module(x.reshape(n * steps, *x.shape[2:]))
        calls = tap.take()
    finally:
        tap.remove()
    return [calls[name][0].reshape(n, steps, -1) for name in if_names]
