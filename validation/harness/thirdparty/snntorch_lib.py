"""snnTorch (jeshraghian/snntorch) as an agreement engine: ``snntorch.import_nir.import_from_nir(graph)``.

snnTorch maps ``Affine`` → ``nn.Linear``, ``Conv2d`` → ``nn.Conv2d``, ``Flatten`` → ``nn.Flatten(start_dim,
end_dim)`` and ``IF`` → ``snn.Leaky(beta=0.9, threshold=v_threshold, init_hidden=False)``: a leaky neuron with
reset by subtraction, where NIR's IF has no leak and resets to v_reset.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

NAME = "snntorch"
IMPORTER = "snntorch.import_nir.import_from_nir(graph)"
DEPARTURES = (
    "IF → snn.Leaky(init_hidden=False), which returns (spikes, membrane); nirtorch passes that tuple on to the "
    "next layer, so no graph with an IF node runs (TypeError)",
    "IF → a leaky neuron, beta = 0.9 (NIR's IF has no leak)",
    "IF → reset by subtraction (snn.Leaky's default); NIR's IF resets to v_reset",
    "Flatten: start_dim passed to nn.Flatten unchanged, so start_dim=0 also flattens the batch",
)
ADAPTER = (
    "IF → snn.Leaky(beta=1, threshold=v_threshold, reset_mechanism='zero', init_hidden=True) (cleared per batch)",
    "Flatten start_dim + 1 (the batch dimension)",
)


def version() -> str:
    from importlib.metadata import version as v

    return v("snntorch")


def default_batch(steps: int) -> int:
    return 100


def run(graph: Any, if_names: list[str], x: Any, adapter: bool) -> list[Any]:
    """Spikes (n, T, neurons) of each IF node for inputs x (n, T, *input shape)."""
    import snntorch
    from snntorch.import_nir import import_from_nir

    from validation.harness.thirdparty.common import SpikeTap, step_loop

    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints its progress
        module = import_from_nir(graph)
    reset = None
    if adapter:
        neurons = []
        for name, node in graph.nodes.items():
            kind = type(node).__name__
            if kind == "Flatten" and node.start_dim >= 0:
                module.get_submodule(name).start_dim = node.start_dim + 1
            elif kind == "IF":
                threshold = float(np.unique(node.v_threshold)[0])
                neuron = snntorch.Leaky(beta=1.0, threshold=threshold, reset_mechanism="zero", init_hidden=True)
                module.set_submodule(name, neuron)
                neurons.append(neuron)

        def reset() -> None:
            for neuron in neurons:
                neuron.reset_mem()

    tap = SpikeTap(module, if_names)
    try:
        return step_loop(module, x, tap, batched=adapter, reset=reset)
    finally:
        tap.remove()
