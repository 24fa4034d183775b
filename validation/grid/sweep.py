"""Resumable parameter sweeps: a grid of cells, each one fastsim evaluation, run on an executor.

A TOML config names the grid and the run settings (see ``validation/sweeps/example.toml``)::

    [grid]                       # every combination is one cell
    dataset = ["mnist"]; model = ["mlp"]; method = ["data", "model"]
    threshold = [1.0]; max_rate_hz = [1000.0]; steps = [200]
    schedule = ["delay"]; reset = ["zero", "subtract"]; seed = [0, 1]
    # v_init = [0.0, 0.5]        (optional: every membrane's start, a fraction of its threshold)
    [run]
    images = 200; device = "cpu"; dtype = "float32"; out = "runs/sweeps/example.jsonl"
    calib_images = 20000; holdout = 5000   # the statistics of data/robust cells, as in Table 2
    # root = "data"; runs = "runs"; batch_size = 256   (optional; --root/--runs override root/runs)

Instead of dataset/model/method a cell may name ``spec = "<file.npz>"`` (then ``dataset`` picks the images).
Paths are relative to the working folder. The data root must exist (else a ValueError says how to fetch it).

**Results file** (JSON lines, :mod:`validation.grid.results_log`): one line per finished cell,
``{"key", "cell", "spec_fingerprint", "settings", "result"}``, appended under an exclusive lock on
``<out>.lock`` with one write and an fsync, so a sweep killed at any moment loses no finished cell, and two
sweeps sharing the file (same or overlapping grids) keep every cell of both. A torn last line (a writer
killed mid-write) is dropped with a warning and its cell rerun; any other malformed line is an error naming
the line. If two runs finish the same cell, both lines stay and the first counts. ``<out>.meta.json``
holds the provenance of the latest run.

**Cell identity.** ``key`` is a content fingerprint (:mod:`convert.contract.fingerprint`) of everything that
determines the result: the built spec's content (``spec_fingerprint``: it changes with the checkpoint, a spec
file's weights and the statistics, so with calib_images/holdout where they change them), the cell, ``images``, ``dtype``
and ``device``, the test split's recorded sha256 and ``CACHE_FORMAT_VERSION``. ``batch_size`` is left out:
Poisson inputs depend only on (seed, image index, step, pixel), so it sizes memory, not results. A rerun
skips the cells whose key is in the file and recomputes the rest, so a retrained checkpoint or a changed
setting appends new rows rather than reusing stale ones. The parent builds every cell's spec to key it
(cheap once statistics are cached); the worker rebuilds it and a row is keyed by what the worker simulated.

Tasks run on a ``concurrent.futures`` executor: local processes by default (``workers=0``: in this process),
or a Dask distributed cluster (``--dask <scheduler address>``), whose ``Client.get_executor()`` is one too.
Local workers die with the sweep process, even after ``kill -9`` (:mod:`validation.grid.executors`); the plot is
:mod:`validation.grid.sweep_plot`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import itertools
import time
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from convert import datasets, methods
from convert.cli import check_seed
from convert.contract.fingerprint import CACHE_FORMAT_VERSION, fingerprint, spec_fingerprint
from convert.contract.provenance import check_outputs, provenance, write_json_atomic
from validation.grid.executors import make_executor
from validation.grid.results_log import append_row, read_results

GRID_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "model": "mlp",
    "method": "data",
    "threshold": 1.0,
    "percentile": 99.9,
    "max_rate_hz": 1000.0,
    "steps": 100,
    "schedule": "delay",
    "reset": "zero",
    "encoding": "poisson",
    "seed": 0,
}
#: grid keys without a default in the cell: a cell holds one only where the grid names it, so that the keys of
#: every sweep written before the key existed stay the same (``v_init``: the spec's initial potential, θ fraction)
GRID_OPTIONAL: dict[str, Any] = {"v_init": 0.0}
RUN_DEFAULTS: dict[str, Any] = {
    "images": 100,
    "device": "cpu",
    "dtype": "float32",
    "out": "runs/sweeps/sweep.jsonl",
    "calib_images": 20_000,  # calibration images of data/robust statistics ("all": all but the holdout)
    "holdout": 5_000,  # the last training images, left out of calibration (validation/paper/experiments.py)
}
RUN_OPTIONAL = ("root", "runs", "batch_size")
RESULT_SETTINGS = ("images", "dtype", "device")  # the run settings in a cell's key


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a sweep TOML file; unknown keys are errors that name them."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: cannot read sweep config ({err})") from err
    grid = {k: v if isinstance(v, list) else [v] for k, v in raw.get("grid", {}).items()}
    unknown = set(grid) - set(GRID_DEFAULTS) - set(GRID_OPTIONAL) - {"spec"}
    if unknown:
        known = sorted([*GRID_DEFAULTS, *GRID_OPTIONAL])
        raise ValueError(f"{path}: unknown grid keys {sorted(unknown)}; known: {known} and spec")
    bad = set(grid.get("dataset", [])) - set(datasets.DATASETS)
    if bad:
        raise ValueError(f"{path}: unknown datasets {sorted(bad)}; known: {', '.join(datasets.DATASETS)}")
    bad = set(grid.get("method", [])) - set(methods.names())
    if bad:
        raise ValueError(f"{path}: unknown methods {sorted(bad)}; known: {', '.join(methods.names())}")
    for seed in grid.get("seed", []):  # refused now, not when its cell runs after the others' work
        check_seed(seed, f"{path}: grid.seed")
    run = {**RUN_DEFAULTS, **raw.get("run", {})}
    unknown = set(run) - set(RUN_DEFAULTS) - set(RUN_OPTIONAL)
    if unknown:
        raise ValueError(f"{path}: unknown run keys {sorted(unknown)}; known: {sorted(RUN_DEFAULTS)}, root, runs")
    if run["calib_images"] != "all" and (not _is_int(run["calib_images"]) or run["calib_images"] < 1):
        raise ValueError(f'{path}: run.calib_images must be a positive integer or "all", got {run["calib_images"]!r}')
    if not _is_int(run["images"]) or not 1 <= run["images"] <= datasets.N_IMAGES["test"]:
        limit = datasets.N_IMAGES["test"]
        raise ValueError(
            f"{path}: run.images must be an integer from 1 to {limit} (the test split), got {run['images']!r}"
        )
    if not _is_int(run["holdout"]) or run["holdout"] < 0:
        raise ValueError(f"{path}: run.holdout must be an integer >= 0, got {run['holdout']!r}")
    return {"grid": grid, "run": run}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resolve_run(run: dict[str, Any], root: str | Path | None = None, runs: str | Path | None = None) -> dict:
    """The run settings with ``root``/``runs`` (the --root/--runs flags) over the config's, as absolute
    paths; a data root that does not exist is a ValueError that says how to fetch the data."""
    from convert.pipeline import default_runs

    run = dict(run)
    data = Path(root or run.get("root") or datasets.default_root()).expanduser().resolve()
    if not data.is_dir():
        raise ValueError(
            f"data root {data} does not exist: fetch the datasets there with `python -m convert data --root "
            f"{data}`, or point --root (or the config's run.root, or $SNN_DATA) at the folder holding MNIST/"
        )
    run["root"] = str(data)
    run["runs"] = str(Path(runs or run.get("runs") or default_runs()).expanduser().resolve())
    return run


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid, defaults filled in, in a stable order."""
    grid = config["grid"]
    keys = sorted(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        cell = {k: v for k, v in GRID_DEFAULTS.items() if "spec" not in grid or k not in ("model", "method")}
        cell.update(dict(zip(keys, values, strict=True)))
        out.append(cell)
    return out


def cell_key(cell: dict[str, Any], run: dict[str, Any], spec_fp: str) -> str:
    """The content fingerprint that names a cell's result (see the module docstring for what it covers)."""
    dataset = cell["dataset"]
    return fingerprint(
        {
            "kind": "sweep-cell",
            "format": CACHE_FORMAT_VERSION,
            "spec": spec_fp,
            "cell": cell,
            "settings": {k: run[k] for k in RESULT_SETTINGS},
            "data": datasets.recorded_hashes(dataset, "test"),
        }
    )


def build_spec(cell: dict[str, Any], run: dict[str, Any]):
    from convert.contract.io import load_spec
    from convert.pipeline import copy_spec, default_runs, normalized_spec, stats_for

    if "spec" in cell:
        spec = load_spec(cell["spec"])
        datasets.check_spec_dataset(spec, cell["dataset"], cell["spec"])
    else:
        runs = Path(run.get("runs") or default_runs())
        base = copy_spec(cell["dataset"], cell["model"], runs)
        stats = None
        if methods.get(cell["method"]).needs_stats:
            n_calib = run.get("calib_images", RUN_DEFAULTS["calib_images"])
            n_calib = None if n_calib == "all" else int(n_calib)
            holdout = int(run.get("holdout", RUN_DEFAULTS["holdout"]))
            stats = stats_for(base, cell["dataset"], run.get("root"), runs, n_calib, holdout, progress=False)
        spec, _ = normalized_spec(
            base, cell["method"], stats, threshold=cell["threshold"], percentile=cell["percentile"]
        )
    return dataclasses.replace(
        spec,
        schedule=cell["schedule"],
        reset=cell["reset"],
        max_rate_hz=float(cell["max_rate_hz"]),
        encoding=cell["encoding"],
        v_init=float(cell.get("v_init", GRID_OPTIONAL["v_init"])),
    )


def run_cell(cell: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """One sweep task (a top-level function, so process pools and Dask can ship it). The result carries
    the ``spec_fingerprint`` of the spec it simulated."""
    from validation.harness.engines import run as simulate

    start = time.perf_counter()
    spec = build_spec(cell, run)
    test = datasets.load(cell["dataset"], "test", run.get("root"))
    n = int(run["images"])  # load_config keeps it within the test split
    rec = simulate(
        "fastsim",
        spec,
        test.images[:n],
        steps=int(cell["steps"]),
        seed=int(cell["seed"]),
        labels=test.labels[:n],
        image_indices=np.arange(n),
        device=run["device"],
        dtype=run["dtype"],
        batch_size=run.get("batch_size"),
    )
    return {
        "accuracy": rec.accuracy(),
        "checkpoints": rec.checkpoints.tolist(),
        "accuracy_curve": rec.accuracy_curve().tolist(),
        "no_spike_fraction": rec.no_spike_fraction(),
        "mean_synops_per_image": rec.synops.sum(1).mean(),
        "mean_spikes_per_image": rec.layer_counts.sum(1).mean(),
        "images": n,
        "wall_s": time.perf_counter() - start,
        "spec_fingerprint": spec_fingerprint(spec),
    }


@dataclasses.dataclass(frozen=True)
class Task:
    key: str
    cell: dict[str, Any]
    spec_fingerprint: str


@dataclasses.dataclass
class Plan:
    """A sweep ready to run: the results file, the resolved run settings, every cell keyed, and the keys
    already done (in the file when planned)."""

    path: Path
    config_file: str
    config: dict[str, Any]
    run: dict[str, Any]
    tasks: list[Task]
    done: set[str]

    @property
    def todo(self) -> list[Task]:
        return [t for t in self.tasks if t.key not in self.done]


def plan_sweep(
    config_path: str | Path,
    out: str | Path | None = None,
    root: str | Path | None = None,
    runs: str | Path | None = None,
) -> Plan:
    """Read the config, apply the --out/--root/--runs overrides, key every cell and read what is done."""
    config = load_config(config_path)
    run = resolve_run(config["run"], root, runs)
    tasks = []
    for cell in cells(config):
        fp = spec_fingerprint(build_spec(cell, run))
        tasks.append(Task(cell_key(cell, run, fp), cell, fp))
    path = Path(out or run["out"])
    check_outputs(path, path.with_suffix(".meta.json"))  # a FIFO there would block the read below forever
    done = {r["key"] for r in read_results(path)}
    return Plan(path, str(config_path), {**config, "run": run}, run, tasks, done)


def _finished(tasks: list[Task], run: dict[str, Any], workers: int, dask: str | None) -> Iterator[tuple]:
    """(task, result) as cells finish: in this process when ``workers == 0``, else on an executor."""
    if workers == 0 and not dask:
        for task in tasks:
            yield task, run_cell(task.cell, run)
        return
    executor, client = make_executor(workers, dask)
    futures: dict[cf.Future, Task] = {}
    try:
        futures = {executor.submit(run_cell, t.cell, run): t for t in tasks}
        for fut in cf.as_completed(futures):
            yield futures[fut], fut.result()
        executor.shutdown(wait=True)  # all done: join the idle workers now, not racing interpreter exit
    finally:
        for fut in futures:
            fut.cancel()
        executor.shutdown(wait=False)
        if client is not None:
            client.close()


def _row(plan: Plan, task: Task, result: dict[str, Any]) -> dict[str, Any]:
    fp = result.pop("spec_fingerprint")
    key = task.key
    if fp != task.spec_fingerprint:  # the checkpoint or spec file changed while the sweep ran
        key = cell_key(task.cell, plan.run, fp)
        why = "its row is keyed by the spec the worker simulated; rerun to finish this grid"
        warnings.warn(f"{plan.path}: the spec of cell {task.cell} changed during the sweep; {why}", stacklevel=3)
    settings = {k: plan.run[k] for k in RESULT_SETTINGS}
    return {"key": key, "cell": task.cell, "spec_fingerprint": fp, "settings": settings, "result": result}


def execute(plan: Plan, workers: int = 1, dask: str | None = None, progress: bool = True) -> int:
    """Run the plan's cells not yet done, appending each as it finishes; return how many ran."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: run in this process), got {workers}")
    meta = {"config_file": plan.config_file, **provenance(plan.config, seed=None)}
    write_json_atomic(plan.path.with_suffix(".meta.json"), meta)
    todo = plan.todo
    bar = tqdm(total=len(todo), desc="sweep cells", disable=not progress or not todo)
    with contextlib.closing(_finished(todo, plan.run, workers, dask)) as finished:
        for task, result in finished:
            append_row(plan.path, _row(plan, task, result))
            bar.update()
    bar.close()
    return len(todo)


def run_sweep(
    config_path: str | Path,
    out: str | Path | None = None,
    workers: int = 1,
    dask: str | None = None,
    progress: bool = True,
    root: str | Path | None = None,
    runs: str | Path | None = None,
) -> Path:
    """Run every cell of the grid not yet in the results file; return the results path."""
    plan = plan_sweep(config_path, out, root, runs)
    execute(plan, workers, dask, progress)
    return plan.path
