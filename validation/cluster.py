"""Records simulated on a Dask cluster: Table 2's parts (row × block of test images) as Dask tasks.

The unit of work is the part of :class:`validation.paper.experiments.Job` that the single-process path caches
(``cfg.part_images`` test images of one record). Each task carries what the part needs (the images and
labels of the block, steps, seed, checkpoints, simulator options and cache key; the spec is scattered to the
cluster once and shared by the tasks that use it), so workers need neither the dataset nor a shared
filesystem. The client writes each finished part atomically under its content key, exactly where the
single-process path would; the joined records and tables are then built by the same code, so a run on a
cluster, on one machine, or interrupted and resumed gives the same results. Dask reruns the tasks of a
worker that is lost; a part is written, and counted by the progress bar, once, when its result arrives.

Addresses: ``tcp://host:8786`` (a running ``dask scheduler``; see docs/scale-out.md) or ``local:N``, a
:class:`distributed.LocalCluster` of N worker processes on this machine sharing its cores.

Devices: with the config's device ``worker``, each worker picks its own: a worker started with a ``GPU``
resource (``dask worker ADDRESS --resources GPU=1``) and a usable CUDA device runs the torch engine there, any
other the event engine on its CPU. Each part's record says in its meta which worker, device and kernel
produced it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.cli import usable_cores
from convert.contract.fingerprint import spec_fingerprint
from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec
from validation.paper.experiments import EvalConfig, Job, PartTask, simulate_part

try:
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - connect() says what to install
    WorkerPlugin = object

LOCAL = "local:"
WORKER_DEVICE = "worker"  # EvalConfig.device: each cluster worker uses its own best device


class ClusterError(ValueError):
    """A cluster address that cannot be used (a user error: one line, exit status 2)."""


#: how long a scheduler address may take to answer Dask's handshake (connection and identity) before --dask gives up
CONNECT_TIMEOUT_S = 15.0


def local_workers(address: str) -> int | None:
    """N of ``local:N`` (None for a scheduler address); a bad N, or more workers than this machine has cores
    (each worker is a process with its own copy of the engines), is an error that says what to write."""
    if not address.startswith(LOCAL):
        return None
    text = address[len(LOCAL) :]
    if not text.isdigit() or int(text) < 1:
        raise ClusterError(f"--dask {address!r}: write local:N with N ≥ 1 worker processes, e.g. local:2")
    n, cores = int(text), usable_cores()
    if n > cores:
        raise ClusterError(
            f"--dask {address}: this machine has {cores} usable cores, so at most local:{cores} (one worker process "
            "per core); for more workers start a `dask scheduler` and workers on other machines (docs/scale-out.md)"
        )
    return n


def check_scheduler(address: str, timeout: float | None = None) -> None:
    """Raise :class:`ClusterError` unless a Dask scheduler answers at ``address`` within ``timeout`` seconds
    (default :data:`CONNECT_TIMEOUT_S`): the connection, Dask's handshake and an ``identity`` request, all under
    the one deadline. ``distributed.Client(address, timeout=...)`` bounds only the connection: a server that
    accepts and then says nothing (or answers in another protocol, such as HTTP) kept it waiting forever."""
    import asyncio

    try:
        from distributed.comm import connect as comm_connect
    except ImportError as err:
        raise ClusterError(f"--dask needs the distributed package ({err}): pip install 'dask[distributed]'") from None

    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout

    async def identity() -> Any:
        comm = await comm_connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    start = "start one there with `dask scheduler` (it listens on port 8786; docs/scale-out.md), or use local:N"
    try:
        reply = asyncio.run(asyncio.wait_for(identity(), timeout + 1))  # +1: a refused connection fails first
    except TimeoutError:
        raise ClusterError(
            f"--dask {address}: no Dask scheduler answered within {timeout:g} s (something may listen there that "
            f"does not speak Dask's protocol); {start}"
        ) from None
    except (OSError, ValueError, TypeError) as err:  # refused, reset, closed mid-handshake, not an address...
        why = " ".join(str(err).split()) or type(err).__name__
        if err.__cause__ is not None:  # what the last try met: "Connect call failed" (nothing listens)...
            why += ": " + re.sub(r"in <[^>]*>: ", "", " ".join(str(err.__cause__).split()))
        raise ClusterError(f"--dask {address}: no Dask scheduler answers there ({why}); {start}") from None
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise ClusterError(
            f"--dask {address}: a Dask {kind or 'peer'} answers there, not a scheduler: give the scheduler's address "
            "(`dask scheduler` prints it)"
        )


def check_address(address: str, timeout: float | None = None) -> None:
    """Refuse an unusable ``--dask`` address before any work: a bad or too large ``local:N``
    (:func:`local_workers`), or an address where no scheduler answers (:func:`check_scheduler`)."""
    if local_workers(address) is None:
        check_scheduler(address, timeout)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while the block runs. The threads started in it (a local cluster's event
    loop) keep the mask, and so does every process they start (its workers, and theirs): a terminal's Ctrl-C,
    sent to the whole foreground process group, then reaches this process alone, which prints its one line
    and closes the cluster, ending the workers (before, each worker printed its own KeyboardInterrupt
    traceback). A Ctrl-C meanwhile is delivered here when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    from multiprocessing import resource_tracker

    # the first spawned process starts multiprocessing's resource tracker, and starting it *unblocks* SIGINT in
    # the thread that does (SIG_UNBLOCK, not the mask it found): start it now, before blocking
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def connect(address: str, timeout: float | None = None) -> Iterator[Any]:
    """A :class:`distributed.Client` of ``address`` (closed, and a local cluster shut down, on exit); a scheduler
    that does not answer within ``timeout`` seconds (:func:`check_scheduler`) is a :class:`ClusterError`."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ClusterError(f"--dask needs the distributed package ({err}): pip install 'dask[distributed]'") from None
    n = local_workers(address)
    if n is None:
        timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
        check_scheduler(address, timeout)
        try:
            client = Client(address, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as err:
            msg = f"--dask {address}: no scheduler answers there ({err}); start one with `dask scheduler`"
            raise ClusterError(msg) from None
        with client:
            yield client
        return
    threads = max(1, usable_cores() // n)
    cluster = None
    try:
        with _sigint_blocked():  # the workers never see the terminal's Ctrl-C: this process ends them
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=None,
                # a task's error reaches this process as the client's exception, with the worker's traceback; the
                # workers' own log lines are noise, as the error a worker logs when its heartbeat meets the
                # scheduler closing after a Ctrl-C (a race inside distributed that printed a traceback)
                silence_logs=logging.CRITICAL,
            )
        with Client(cluster) as client:
            yield client
    finally:
        if cluster is not None:
            cluster.close()


def worker_options(options: dict[str, Any], resources: dict[str, float], cuda: bool) -> dict[str, Any]:
    """The simulator options a worker runs a task with: the config's own, except that the device ``worker``
    becomes the worker's GPU (torch engine) when it was started with a ``GPU`` resource and CUDA works, and
    its CPU (event engine) otherwise."""
    if options.get("device") != WORKER_DEVICE:
        return {}
    if resources.get("GPU", 0) > 0 and cuda:
        return {"device": "cuda", "kernel": "torch"}
    return {"device": "cpu", "kernel": "events"}


def _this_worker() -> tuple[Any, int]:
    """(the Dask worker running this task, its threads), the engines' own thread pools (numba's and
    torch's) limited to that share of the cores."""
    import torch
    from distributed import get_worker

    worker = get_worker()
    n = int(worker.state.nthreads)
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    return worker, n


def run_part_on_worker(task: PartTask, spec: NetworkSpec) -> SpikeRecord:
    """A Dask task: simulate one part on this worker with its share of the cores."""
    import torch

    worker, threads = _this_worker()
    override = worker_options(task.options, dict(worker.state.total_resources), torch.cuda.is_available())
    rec = simulate_part(task, spec, **override)
    return rec.with_meta(ran_on={"worker": worker.address, "threads": threads, **task.options, **override})


@dataclass(frozen=True)
class Part:
    """One missing part on the client: where its record goes, and its task."""

    job: Job
    path: Path
    task: PartTask


def missing_parts(jobs: list[Job], cfg: EvalConfig, root: Path | None, out: Path) -> list[Part]:
    """Every part of ``jobs`` not cached under ``out`` (jobs with equal keys count once)."""
    unique = {job.key(cfg): job for job in jobs}
    todo = []
    for job in unique.values():
        ranges = job.missing_parts(cfg, out)
        if not ranges:
            continue
        test = job.test_split(root)
        for lo, hi in ranges:
            key, path = job.part(cfg, out, lo, hi)
            images, labels = np.ascontiguousarray(test.images[lo:hi]), np.ascontiguousarray(test.labels[lo:hi])
            todo.append(Part(job, path, PartTask.of(job, cfg, lo, hi, images, labels, key)))
    return todo


def simulate_parts(client: Any, parts: list[Part], on_part: Callable[[int], None] | None = None) -> int:
    """Run ``parts`` on the cluster, writing each record as it arrives; returns how many were written.

    Tasks are named by their parts' content keys (a part asked for twice runs once); each spec is sent to the
    cluster once. If this process is interrupted, the parts already written stay and a rerun skips them."""
    from distributed import as_completed

    specs: dict[str, Any] = {}
    futures = {}
    for part in parts:
        skey = spec_fingerprint(part.job.spec)
        if skey not in specs:
            specs[skey] = client.scatter(part.job.spec, hash=False)
        fut = client.submit(run_part_on_worker, part.task, specs[skey], key=f"part-{part.task.key}", pure=False)
        futures[fut] = part
    written = 0
    try:
        for fut in as_completed(list(futures)):
            part = futures[fut]
            record = fut.result()
            record.save(part.path)
            written += 1
            if on_part is not None:
                on_part(part.task.image_steps)
    finally:
        client.cancel(list(futures))
    return written


OVERHEAD_S_PER_TASK = 0.02  # per-task cost measured on a LocalCluster: 9-13 ms (docs/scale-out.md), rounded up
CORE_COUNTS = (2, 8, 16, 32, 64, 128)


def expected_seconds(local_seconds: float, tasks: int, cores: int) -> float:
    """Wall time on ``cores`` cores as fast as this machine's: the single-process estimate scaled by cores,
    plus the tasks' overhead spread over them. It assumes at least as many tasks as workers (a part's images do
    not split between workers: smaller ``--part-images`` make more tasks)."""
    here = os.cpu_count() or 1
    return (local_seconds * here + OVERHEAD_S_PER_TASK * tasks) / max(cores, 1)


def estimate_lines(local_seconds: float, tasks: int, cluster_cores: int | None = None) -> str:
    """The expected wall time on the cluster (``cluster_cores``) or per core count, for ``tasks`` parts."""
    counts = (cluster_cores,) if cluster_cores else CORE_COUNTS
    lines = [f"  {c:>4} cores: ~{expected_seconds(local_seconds, tasks, c) / 3600:.2f} h" for c in counts]
    head = f"on a cluster ({tasks} tasks; cores as fast as this machine's {os.cpu_count() or 1}):"
    return "\n".join([head, *lines])


PER_IMAGE = ("images", "spikes", "labels", "image_indices")  # the arguments cut into blocks of images


class ImportBrian2(WorkerPlugin):
    """Imports Brian2 on every worker, now and on workers that join later, in the worker's main thread: its
    import installs a SIGINT handler, which Python allows only there (tasks run in other threads);
    :func:`refsim.brian.load` puts the worker's own handler back at once."""

    name = "snn-balance-import-brian2"

    def setup(self, worker) -> None:
        from refsim.brian import load

        load()


def _run_block(run_fn: Callable[..., SpikeRecord], engine: str, spec: NetworkSpec, kw: dict) -> SpikeRecord:
    """A Dask task: one block of images through ``run_fn(engine, spec, **kw)`` with this worker's share of
    the cores; a Brian2 standalone project is built in a folder of this worker's own (two workers building
    the same project in one folder would overwrite each other's files): ``worker-<pid>`` under the task's
    ``build_dir`` (``--build-dir``), else under the worker's own :func:`refsim.devices.default_build_root`."""
    worker, threads = _this_worker()
    if engine.startswith("refsim"):
        from refsim.devices import default_build_root

        root = Path(kw["build_dir"]) if kw.get("build_dir") is not None else default_build_root()
        kw = {**kw, "build_dir": root / f"worker-{os.getpid()}"}
    rec = run_fn(engine, spec, **kw)
    return rec.with_meta(ran_on={"worker": worker.address, "threads": threads})


def sharded(client: Any, run_fn: Callable[..., SpikeRecord], block: int | None = None, desc: str = "cluster"):
    """A drop-in for ``run_fn(engine, spec, **kw)`` that cuts the per-image arguments (:data:`PER_IMAGE`) into
    blocks of ``block`` images (default: one block per worker), runs each block as a Dask task and joins the
    records in image order. Per-image inputs (Poisson spikes from the counter hash of the image index, given
    spikes) do not depend on the block, so the joined record is the one a single run gives."""
    from distributed import as_completed
    from tqdm import tqdm

    from convert.contract.records import concatenate

    def runner(engine: str, spec: NetworkSpec, **kw: Any) -> SpikeRecord:
        n = len(next(kw[k] for k in PER_IMAGE if kw.get(k) is not None))
        if kw.get("image_indices") is None:  # each block's Poisson input is that of its images' own indices
            kw = {**kw, "image_indices": np.arange(n)}
        size = block or -(-n // max(1, len(client.nthreads())))
        if engine.startswith("refsim"):
            client.register_plugin(ImportBrian2())
        spec_future = client.scatter(spec, hash=False)
        futures = {}
        for lo in range(0, n, size):
            sub = {k: (v[lo : lo + size] if k in PER_IMAGE and v is not None else v) for k, v in kw.items()}
            sub["progress"] = False
            futures[client.submit(_run_block, run_fn, engine, spec_future, sub, pure=False)] = lo
        done = {}
        with tqdm(total=n, unit="img", desc=f"{desc} {engine}", disable=not kw.get("progress")) as bar:
            for fut in as_completed(list(futures)):
                rec = fut.result()
                done[futures[fut]] = rec
                bar.update(rec.n_images)
        blocks = [done[lo] for lo in sorted(done)]
        return concatenate(blocks).with_meta(ran_on=[r.meta["ran_on"] for r in blocks])

    return runner
