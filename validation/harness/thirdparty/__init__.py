"""Third-party simulators as agreement engines: the spec's NIR graph run in Norse, snnTorch, sinabs or SpikingJelly.

Each library has one module here (``norse_lib``, ``snntorch_lib``, ``sinabs_lib``, ``spikingjelly_lib``),
imported only when its engine runs, so that validation works without them. An engine is named ``<library>``
(the graph as the library's documented importer builds it) or ``<library>:adapter`` (the same module with the importer's
departures from NIR's definitions worked around, each one listed in the module's ``ADAPTER``). Both run the
graph that :func:`convert.nir_export.to_nir` writes, read back from a ``.nir`` file as a user would, on the
precomputed input spikes the other engines get; what they are compared with is the spec the graph encodes
(:func:`graph_spec`: the ``cascade`` schedule and reset to zero, by NIR's definitions).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any

import numpy as np

from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec

#: engine name → module of validation.harness.thirdparty
LIBRARIES = {
    "norse": "norse_lib",
    "snntorch": "snntorch_lib",
    "sinabs": "sinabs_lib",
    "spikingjelly": "spikingjelly_lib",
}


class ThirdPartyError(RuntimeError):
    """A library's importer or module failed on the graph; the message says where and what the adapter does."""


def library(name: str) -> ModuleType:
    """The module of engine ``name`` (imported now); an unknown name lists the known ones."""
    if name not in LIBRARIES:
        raise ValueError(f"unknown third-party engine {name!r}; known: {', '.join(LIBRARIES)}")
    return importlib.import_module(f"{__name__}.{LIBRARIES[name]}")


def graph_spec(spec: NetworkSpec) -> tuple[NetworkSpec, list[str]]:
    """The spec that the NIR graph of ``spec`` encodes (what a third-party run must agree with), and what of
    ``spec`` the graph does not express (the delay schedule, subtract reset)."""
    from convert.nir_export import NIRSemanticsWarning, to_nir, unexpressed
    from convert.nir_import import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRSemanticsWarning)
        graph = to_nir(spec, lossy=True)
    return from_nir(graph, semantics="graph"), unexpressed(spec)


def simulate(
    name: str,
    spec: NetworkSpec,
    *,
    spikes: np.ndarray,
    steps: int,
    adapter: bool = False,
    labels: np.ndarray | None = None,
    image_indices: np.ndarray | None = None,
    checkpoints: Any = None,
    batch_size: int | None = None,
    progress: bool = False,
    **ignored: Any,
) -> SpikeRecord:
    """Run the NIR graph of ``spec`` in library ``name`` on ``spikes`` (N, steps, n_inputs) and return the
    SpikeRecord (per-neuron counts included; synaptic events are not recorded and read 0)."""
    from validation.harness.thirdparty import common

    lib = library(name)
    return common.simulate(
        lib,
        spec,
        spikes=spikes,
        steps=steps,
        adapter=adapter,
        labels=labels,
        image_indices=image_indices,
        checkpoints=checkpoints,
        batch_size=batch_size,
        progress=progress,
    )
