"""Every engine the conformance suite runs, as ``validation.harness.engines.run`` sees it.

An :class:`Engine` is a simulator (``fastsim`` or ``refsim``) with fixed options (device, dtype, Brian2 target).
Engines that need hardware carry the ``gpu`` mark and are skipped with the reason when it is absent; engines
that compile a Brian2 standalone project per network carry ``standalone`` (and ``slow``: a project takes
30-90 s to compile on the 2-core box) and by default run only the covering subset each test names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec
from validation.harness.engines import run


def _cuda_torch() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU: torch.cuda.is_available() is False"
    return None


def _cuda_brian2() -> str | None:
    from refsim.devices import DeviceUnavailable, check_cuda

    try:
        check_cuda()
    except DeviceUnavailable as err:
        return str(err)
    return None


@dataclass(frozen=True)
class Engine:
    """One engine: ``run(spec, images, spikes=..., steps=..., ...)`` returns its SpikeRecord."""

    id: str
    simulator: str
    options: dict[str, Any]
    marks: tuple[Any, ...] = ()
    #: poisson input from images follows the counter-based hash of docs/semantics.md (False: refsim, which
    #: draws from Brian2's own generator unless the spikes are supplied; see refsim/simulate.py)
    counter_poisson: bool = True
    #: compiles one project per network: run only the covering subset of each matrix
    compiles: bool = False
    unavailable: Callable[[], str | None] = field(default=lambda: None, compare=False)

    def run(self, spec: NetworkSpec, images: np.ndarray | None = None, **kwargs: Any) -> SpikeRecord:
        return run(self.simulator, spec, images, **self.options, **kwargs)


STANDALONE = (pytest.mark.standalone, pytest.mark.slow)
GPU = (pytest.mark.gpu,)
ENGINES = (
    Engine("fastsim-float64", "fastsim", {"device": "cpu", "dtype": "float64"}),
    Engine("fastsim-float32", "fastsim", {"device": "cpu", "dtype": "float32"}),
    Engine("fastsim-events-float64", "fastsim", {"device": "cpu", "dtype": "float64", "kernel": "events"}),
    Engine("fastsim-events-float32", "fastsim", {"device": "cpu", "dtype": "float32", "kernel": "events"}),
    Engine("fastsim-cuda-float32", "fastsim", {"device": "cuda", "dtype": "float32"}, GPU, unavailable=_cuda_torch),
    Engine("fastsim-cuda-float64", "fastsim", {"device": "cuda", "dtype": "float64"}, GPU, unavailable=_cuda_torch),
    Engine("brian2-runtime", "refsim", {"device": "runtime", "target": "numpy"}, counter_poisson=False),
    Engine(
        "brian2-cpp_standalone",
        "refsim",
        {"device": "cpp_standalone"},
        STANDALONE,
        counter_poisson=False,
        compiles=True,
    ),
    Engine(
        "brian2-cuda_standalone",
        "refsim",
        {"device": "cuda_standalone"},
        (*GPU, *STANDALONE),
        counter_poisson=False,
        compiles=True,
        unavailable=_cuda_brian2,
    ),
)


def engine_params() -> list[Any]:
    return [pytest.param(e, id=e.id, marks=e.marks) for e in ENGINES]
