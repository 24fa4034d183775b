"""Where the project writes: the results folder and the caches kept under it.

Every output goes under the results folder: ``--runs`` on a command line, else ``$SNN_RUNS``, else ``runs/`` in
the checkout. Under it, beside the results, ``build/refsim/`` holds Brian2's compiled standalone projects
(:func:`refsim.devices.default_build_root`; ``--build-dir`` or ``$SNN_BUILD`` move them) and ``cache/numba/``
numba's compiled event kernel (:mod:`fastsim._events_kernel`; ``$NUMBA_CACHE_DIR`` moves it). The datasets are
read from ``$SNN_DATA`` (``data/``), into which only ``python -m convert data`` writes.

Light on purpose (no torch, no numpy): refsim and fastsim ask it for their cache folders.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def default_runs() -> Path:
    """The results folder when no ``--runs`` is given: ``$SNN_RUNS`` if set, else ``runs/`` in the checkout."""
    env = os.environ.get("SNN_RUNS")
    return Path(env).expanduser() if env else CHECKOUT / "runs"


def numba_cache_dir() -> Path:
    """Where numba caches the compiled event kernel unless ``$NUMBA_CACHE_DIR`` is set: ``cache/numba`` under
    :func:`default_runs` (a process-wide cache: ``--runs`` of one command does not move it)."""
    return default_runs() / "cache" / "numba"
