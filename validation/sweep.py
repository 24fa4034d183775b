"""Resumable parameter sweeps: a grid of cells, each one fastsim evaluation, run on an executor.

A TOML config names the grid and the run settings (see ``validation/sweeps/example.toml``)::

    [grid]                       # every combination is one cell
    dataset = ["mnist"]; model = ["mlp"]; method = ["data", "model"]
    threshold = [1.0]; max_rate_hz = [1000.0]; steps = [200]
    schedule = ["delay"]; reset = ["zero", "subtract"]; seed = [0, 1]
    [run]
    images = 200; device = "cpu"; dtype = "float32"; out = "runs/sweeps/example.jsonl"

Instead of dataset/model/method a cell may name ``spec = "<file.npz>"`` (then ``dataset`` picks the images).
Finished cells are appended to the results file (JSON lines) by rewriting it atomically, so a sweep killed at
any moment loses no finished cell and never holds a partial one; a rerun skips the cells already there.
Tasks run on a ``concurrent.futures`` executor: local processes by default, or a Dask distributed cluster
(``--dask <scheduler address>``), whose ``Client.get_executor()`` is one too.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import io
import itertools
import json
import multiprocessing
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from convert.provenance import provenance, write_bytes_atomic, write_json_atomic, write_text_atomic

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
RUN_DEFAULTS: dict[str, Any] = {"images": 100, "device": "cpu", "dtype": "float32", "out": "runs/sweeps/sweep.jsonl"}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a sweep TOML file; unknown keys are errors that name them."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: cannot read sweep config ({err})") from err
    grid = raw.get("grid", {})
    unknown = set(grid) - set(GRID_DEFAULTS) - {"spec"}
    if unknown:
        raise ValueError(f"{path}: unknown grid keys {sorted(unknown)}; known: {sorted(GRID_DEFAULTS)} and spec")
    run = {**RUN_DEFAULTS, **raw.get("run", {})}
    unknown = set(run) - set(RUN_DEFAULTS) - {"root", "runs", "batch_size"}
    if unknown:
        raise ValueError(f"{path}: unknown run keys {sorted(unknown)}")
    return {"grid": {k: v if isinstance(v, list) else [v] for k, v in grid.items()}, "run": run}


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


def cell_key(cell: dict[str, Any]) -> str:
    return json.dumps(cell, sort_keys=True)


def build_spec(cell: dict[str, Any], run: dict[str, Any]):
    from convert.io import load_spec
    from convert.pipeline import copy_spec, default_runs, normalized_spec, stats_for

    if "spec" in cell:
        spec = load_spec(cell["spec"])
    else:
        runs = Path(run.get("runs") or default_runs())
        base = copy_spec(cell["dataset"], cell["model"], runs)
        stats = None
        if cell["method"] in ("data", "robust"):
            stats = stats_for(base, cell["dataset"], run.get("root"), runs, 20_000, progress=False)
        spec, _ = normalized_spec(
            base, cell["method"], stats, threshold=cell["threshold"], percentile=cell["percentile"]
        )
    return dataclasses.replace(
        spec,
        schedule=cell["schedule"],
        reset=cell["reset"],
        max_rate_hz=float(cell["max_rate_hz"]),
        encoding=cell["encoding"],
    )


def run_cell(cell: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """One sweep task (a top-level function, so process pools and Dask can ship it)."""
    from convert import datasets
    from validation.engines import run as simulate

    start = time.perf_counter()
    spec = build_spec(cell, run)
    test = datasets.load(cell["dataset"], "test", run.get("root"))
    n = min(int(run["images"]), len(test.images))
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
    }


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _append(path: Path, rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    rows.append(row)
    write_text_atomic(path, "".join(json.dumps(r, default=float) + "\n" for r in rows))


def make_executor(workers: int, dask: str | None) -> tuple[cf.Executor, Any]:
    """A local process pool, or a Dask cluster's executor (returned with its client, to close)."""
    if dask:
        from distributed import Client

        client = Client(dask)
        return client.get_executor(), client
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")), None


def run_sweep(
    config_path: str | Path,
    out: str | Path | None = None,
    workers: int = 1,
    dask: str | None = None,
    progress: bool = True,
) -> Path:
    """Run every cell of the grid not yet in the results file; return the results path."""
    config = load_config(config_path)
    run = config["run"]
    path = Path(out or run["out"])
    rows = read_results(path)
    done = {r["key"] for r in rows}
    todo = [c for c in cells(config) if cell_key(c) not in done]
    meta_path = path.with_suffix(".meta.json")
    write_json_atomic(meta_path, {"config_file": str(config_path), **provenance(config, seed=None)})
    if not todo:
        return path
    executor, client = make_executor(workers, dask)
    futures: dict[cf.Future, dict[str, Any]] = {}
    try:
        futures = {executor.submit(run_cell, c, run): c for c in todo}
        bar = tqdm(total=len(todo), desc="sweep cells", disable=not progress)
        for fut in cf.as_completed(futures):
            cell = futures[fut]
            _append(path, rows, {"key": cell_key(cell), "cell": cell, "result": fut.result()})
            bar.update()
        bar.close()
    finally:
        for fut in futures:
            fut.cancel()
        executor.shutdown(wait=False)
        if client is not None:
            client.close()
    return path


def plot_sweep(path: Path, png: Path | None = None) -> Path:
    """Accuracy heatmap over the first two grid keys that vary (mean over the rest), and accuracy curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_results(path)
    if not rows:
        raise ValueError(f"{path}: no finished cells to plot")
    varying = [k for k in sorted(rows[0]["cell"]) if len({json.dumps(r["cell"][k]) for r in rows}) > 1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if len(varying) >= 2:
        kx, ky = varying[:2]
        xs = sorted({r["cell"][kx] for r in rows}, key=str)
        ys = sorted({r["cell"][ky] for r in rows}, key=str)
        grid = np.full((len(ys), len(xs)), np.nan)
        for iy, y in enumerate(ys):
            for ix, x in enumerate(xs):
                acc = [r["result"]["accuracy"] for r in rows if r["cell"][kx] == x and r["cell"][ky] == y]
                grid[iy, ix] = 100 * np.mean(acc) if acc else np.nan
        im = axes[0].imshow(grid, cmap="viridis", aspect="auto")
        axes[0].set_xticks(range(len(xs)), [str(x) for x in xs])
        axes[0].set_yticks(range(len(ys)), [str(y) for y in ys])
        axes[0].set_xlabel(kx)
        axes[0].set_ylabel(ky)
        fig.colorbar(im, ax=axes[0], label="accuracy (%)")
    else:
        axes[0].set_axis_off()
    label_keys = varying or ["method"]
    for r in rows:
        label = ", ".join(f"{k}={r['cell'][k]}" for k in label_keys)
        axes[1].plot(r["result"]["checkpoints"], 100 * np.asarray(r["result"]["accuracy_curve"]), label=label)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("steps (ms)")
    axes[1].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    png = png or path.with_suffix(".png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(png, buf.getvalue())
    return png
