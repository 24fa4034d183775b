"""The simulators as validation sees them: ``run(engine, spec, ...) -> SpikeRecord``.

validation/ never touches Brian2 or torch objects: it calls the two simulators' ``simulate`` functions,
which return the neutral :class:`convert.contract.records.SpikeRecord`. The imports are lazy so that a machine
without Brian2 can still use fastsim and vice versa. Third-party libraries (Norse, snnTorch, sinabs) run the
spec's NIR graph on given input spikes (:mod:`validation.harness.thirdparty`); ``adapter=True`` works around their
importers' departures from NIR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec
from validation.harness.thirdparty import LIBRARIES

#: an engine: how it runs a spec (``runner(spec, images, **shared, seed=..., record_neurons=..., device=...,
#: dtype=..., **options)``) and the device it runs on unless told
Runner = Callable[..., SpikeRecord]
_RUNNERS: dict[str, tuple[Runner, str | None]] = {}


def register(name: str, default_device: str | None = None) -> Callable[[Runner], Runner]:
    """Add an engine under ``name`` (a decorator); a simulator or a third-party library is one function here."""

    def add(runner: Runner) -> Runner:
        _RUNNERS[name] = (runner, default_device)
        return runner

    return add


@register("fastsim", "cpu")
def _fastsim(spec: NetworkSpec, images: np.ndarray | None, dtype: str, **kw: Any) -> SpikeRecord:
    from fastsim.simulate import simulate

    # fastsim's default is kernel="auto" (events on a CPU); validation's engines ("fastsim:float64", the
    # conformance suite's, sweeps) keep the torch engine unless they name a kernel, as they were published
    kw.setdefault("kernel", "torch")
    return simulate(spec, images, dtype=dtype, **kw)


@register("refsim", "cpp_standalone")
def _refsim(spec: NetworkSpec, images: np.ndarray | None, dtype: str, **kw: Any) -> SpikeRecord:
    from refsim.simulate import simulate

    return simulate(spec, images, **kw)  # Brian2 computes in float64 whatever is asked


def _thirdparty(library: str) -> Runner:
    def run_library(spec: NetworkSpec, images: np.ndarray | None, dtype: str, **kw: Any) -> SpikeRecord:
        from validation.harness.thirdparty import simulate as thirdparty_simulate

        if kw.get("spikes") is None:
            raise ValueError(f"engine {library} runs on given input spikes only (identical-input comparisons)")
        for name in ("seed", "record_neurons", "device"):
            kw.pop(name, None)
        return thirdparty_simulate(library, spec, **kw)

    return run_library


for _library in LIBRARIES:
    register(_library)(_thirdparty(_library))

ENGINES = tuple(_RUNNERS)


def run(
    engine: str,
    spec: NetworkSpec,
    images: np.ndarray | None = None,
    *,
    spikes: np.ndarray | None = None,
    steps: int,
    seed: int = 0,
    labels: np.ndarray | None = None,
    image_indices: np.ndarray | None = None,
    device: str | None = None,
    dtype: str = "float64",
    record_neurons: bool = False,
    checkpoints: Any = None,
    progress: bool = False,
    **options: Any,
) -> SpikeRecord:
    """Simulate ``spec`` with ``engine`` (one of :data:`ENGINES`: fastsim, refsim or a third-party library) and
    return its SpikeRecord."""
    if engine not in _RUNNERS:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    runner, default_device = _RUNNERS[engine]
    return runner(
        spec,
        images,
        dtype,
        spikes=spikes,
        steps=steps,
        labels=labels,
        image_indices=image_indices,
        checkpoints=checkpoints,
        progress=progress,
        seed=seed,
        record_neurons=record_neurons,
        device=device or default_device,
        **options,
    )
