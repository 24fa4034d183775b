"""The simulators as validation sees them: ``run(engine, spec, ...) -> SpikeRecord``.

validation/ never touches Brian2 or torch objects: it calls the two simulators' ``simulate`` functions,
which return the neutral :class:`convert.contract.records.SpikeRecord`. The imports are lazy so that a machine
without Brian2 can still use fastsim and vice versa. Third-party libraries (Norse, snnTorch, sinabs) run the
spec's NIR graph on given input spikes (:mod:`validation.harness.thirdparty`); ``adapter=True`` works around their
importers' departures from NIR.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec
from validation.harness.thirdparty import LIBRARIES

ENGINES = ("fastsim", "refsim", *LIBRARIES)
DEFAULT_DEVICE = {"fastsim": "cpu", "refsim": "cpp_standalone"}


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
    """Simulate ``spec`` with ``engine`` (fastsim, refsim or a third-party library) and return its SpikeRecord."""
    shared = dict(
        spikes=spikes,
        steps=steps,
        labels=labels,
        image_indices=image_indices,
        checkpoints=checkpoints,
        progress=progress,
    )
    if engine in LIBRARIES:
        from validation.harness.thirdparty import simulate as thirdparty_simulate

        if spikes is None:
            raise ValueError(f"engine {engine} runs on given input spikes only (identical-input comparisons)")
        return thirdparty_simulate(engine, spec, **shared, **options)
    common = dict(**shared, seed=seed, record_neurons=record_neurons, device=device or DEFAULT_DEVICE.get(engine))
    if engine == "fastsim":
        from fastsim.simulate import simulate

        # fastsim's default is kernel="auto" (events on a CPU); validation's engines ("fastsim:float64", the
        # conformance suite's, sweeps) keep the torch engine unless they name a kernel, as they were published
        options.setdefault("kernel", "torch")
        return simulate(spec, images, dtype=dtype, **common, **options)
    if engine == "refsim":
        from refsim.simulate import simulate

        return simulate(spec, images, **common, **options)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
