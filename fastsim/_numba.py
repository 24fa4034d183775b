"""numba, with its on-disk cache where the project keeps it: imported by every fastsim module with compiled code.

numba reads ``NUMBA_CACHE_DIR`` when it is imported (and again before each compilation), but each
``@njit(cache=True)`` picks its cache folder when it is applied: so the variable is set and re-read here, before
any of them, which also covers a numba imported earlier by another module (validation.cluster, events). The
folder is ``$NUMBA_CACHE_DIR`` if the user set it, else ``cache/numba`` under the results folder
(:func:`convert.contract.paths.numba_cache_dir`), in a subfolder named by the content of the compiled modules
(:data:`SOURCES`): numba checks only the caller's file before it reuses a compiled function, so a changed helper
in another module (the gate's step, called by the event kernel) would otherwise leave a stale kernel in use.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba as nb
from numba.core import config as numba_config

from convert.contract.paths import numba_cache_dir

#: the fastsim modules whose compiled functions call each other
SOURCES = ("_events_kernel.py", "gate.py")


def sources_key() -> str:
    """A short hash of the content of :data:`SOURCES`."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return "kernel-" + digest.hexdigest()[:12]


def _cache_dir() -> str:
    key = sources_key()
    base = Path(os.environ.get("NUMBA_CACHE_DIR") or numba_cache_dir())
    return str(base if base.name == key else base / key)  # a child process inherits the keyed folder


os.environ["NUMBA_CACHE_DIR"] = _cache_dir()
numba_config.reload_config()

__all__ = ["nb"]
