"""Norse (norse/norse) as an agreement engine: ``norse.torch.from_nir(graph)``, run step by step.

Norse maps ``Affine`` → ``nn.Linear``, ``Conv2d`` → ``nn.Conv2d``, ``SumPool2d`` → ``nn.LPPool2d(1, ...)`` (a
sum for spikes ≥ 0), ``IF`` → ``IAFCell`` (v += x; z = [v − v_th > 0]; v ← v_reset on a spike: NIR's IF in the
cascade order) and ``Flatten`` → ``nn.Flatten(start_dim, end_dim)``.
"""

from __future__ import annotations

from typing import Any

NAME = "norse"
IMPORTER = "norse.torch.from_nir(graph)"
DEPARTURES = (
    "Flatten: NIR's start_dim counts sample dimensions (no batch), Norse passes it to nn.Flatten unchanged, so "
    "start_dim=0 also flattens the batch: a batched run fails; batchless runs (one image at a time) are correct",
    "IF: v_reset is not read (IAFParameters' default 0 is used); right for this project's graphs (v_reset = 0)",
)
ADAPTER = ("Flatten start_dim + 1 (the batch dimension), so that images run in batches",)


def version() -> str:
    from importlib.metadata import version as v

    return v("norse")


def default_batch(steps: int) -> int:
    return 100


def run(graph: Any, if_names: list[str], x: Any, adapter: bool) -> list[Any]:
    """Spikes (n, T, neurons) of each IF node for inputs x (n, T, *input shape)."""
    import norse.torch

    from validation.harness.thirdparty.common import SpikeTap, step_loop

    module = norse.torch.from_nir(graph)
    if adapter:
        for name, node in graph.nodes.items():
            if type(node).__name__ == "Flatten" and node.start_dim >= 0:
                module.get_submodule(name).start_dim = node.start_dim + 1
    tap = SpikeTap(module, if_names)
    try:
        return step_loop(module, x, tap, batched=adapter)
    finally:
        tap.remove()
