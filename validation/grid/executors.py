"""Executors for sweeps: a local process pool whose workers die with the sweep, or a Dask cluster's executor.

A ``kill -9`` of the sweep process must not leave its workers (~450 MB each) blocked forever: every local
worker runs :func:`_die_with_parent` at start-up.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Executor initializer: end this worker when the sweep process dies, even by ``kill -9``.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill it when the thread that started it
    exits (run_sweep's caller, which outlives its executor); the ``getppid`` check closes the race where
    the parent died first. Portable fallback: a daemon thread polls ``getppid`` every 0.5 s."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="sweep-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def make_executor(workers: int, dask: str | None) -> tuple[cf.Executor, Any]:
    """A local process pool, or a Dask cluster's executor (returned with what closes its client, and the local
    cluster of ``local:N``): the address is checked as every --dask is (:func:`validation.cluster.connect`)."""
    if dask:
        import contextlib

        from validation import cluster

        stack = contextlib.ExitStack()
        client = stack.enter_context(cluster.connect(dask))
        return client.get_executor(), stack
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(workers, ctx, initializer=_die_with_parent, initargs=(os.getpid(),))
    return pool, None
