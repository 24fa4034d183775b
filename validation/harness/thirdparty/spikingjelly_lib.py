"""SpikingJelly (fangwei123456/spikingjelly) as an agreement engine:
``spikingjelly.activation_based.nir_exchange.import_from_nir(graph, dt=1.0)``, run step by step.

SpikingJelly maps ``Affine`` → ``layer.Linear``, ``Conv2d`` → ``layer.Conv2d``, ``Flatten`` → ``layer.Flatten``
(start_dim + 1 for the batch), ``IF`` → ``neuron.IFNode(v_threshold, v_reset)`` (v += x; spike at v ≥ v_threshold;
hard reset), and requires r = 1 / dt: the graph's r = 1 means ``dt=1.0``. It maps no ``SumPool2d``; nirtorch's
default map supplies ``nn.LPPool2d(1, ...)``.
"""

from __future__ import annotations

from typing import Any

NAME = "spikingjelly"
IMPORTER = "spikingjelly.activation_based.nir_exchange.import_from_nir(graph, dt=1.0)"
DEPARTURES = (
    "IF → IFNode fires at v ≥ v_threshold; NIR's IF at v > v_threshold (differs only when v equals the stored "
    "threshold, the float32 just below the spec's θ)",
)
ADAPTER = ("IF: v_threshold = the next float32 above the graph's (SpikingJelly fires at ≥, NIR at >)",)


def version() -> str:
    from importlib.metadata import version as v

    return v("spikingjelly")


def default_batch(steps: int) -> int:
    return 100


def run(graph: Any, if_names: list[str], x: Any, adapter: bool) -> list[Any]:
    """Spikes (n, T, neurons) of each IF node for inputs x (n, T, *input shape)."""
    import numpy as np
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    from validation.harness.thirdparty.common import SpikeTap, step_loop

    module = import_from_nir(graph, dt=1.0)
    if adapter:
        for name in if_names:
            node = module.get_submodule(name).module
            node.v_threshold = float(np.nextafter(np.float32(node.v_threshold), np.float32(np.inf)))
    tap = SpikeTap(module, if_names)
    try:
        return step_loop(module, x, tap, batched=True)
    finally:
        tap.remove()
