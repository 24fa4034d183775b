"""Sweeps: grid expansion, content keys, resume after a hard kill, concurrent sweeps on one results file,
--root/--runs, workers that die with a killed sweep, torn and malformed lines, and the Dask executor."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from convert import datasets
from convert.contract.io import save_spec
from validation.__main__ import main
from validation.grid import sweep
from validation.grid.results_log import TornLineWarning, first_by_key, read_results
from validation.grid.sweep import build_spec, cell_key, cells, load_config, plan_sweep, run_sweep
from validation.grid.sweep_plot import plot_sweep

from .conftest import small_mnist_spec

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, rng, seeds, steps: int = 20, name: str = "sweep.toml", run: str = "") -> Path:
    """A sweep over reset x seed of a small random spec (saved once as tiny.npz); ``seeds``: a count or a list."""
    spec = tmp_path / "tiny.npz"
    if not spec.exists():
        save_spec(small_mnist_spec(rng), spec)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    cfg = tmp_path / name
    cfg.write_text(
        f"""
[grid]
spec = ["{spec}"]
dataset = ["mnist"]
reset = ["zero", "subtract"]
seed = {seeds}
steps = [{steps}]
[run]
images = 10
out = "{tmp_path / "results.jsonl"}"
{run}
"""
    )
    return cfg


def _lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n"), "every line of a results file ends in a newline"
    return text.splitlines()


def test_grid_expansion_and_bad_keys(tmp_path, rng):
    cfg = _config(tmp_path, rng, 3)
    grid = cells(load_config(cfg))
    assert len(grid) == 6
    assert all(c["steps"] == 20 and c["schedule"] == "delay" for c in grid)
    plan = plan_sweep(cfg)
    assert len({t.key for t in plan.tasks}) == 6 and len(plan.todo) == 6
    assert plan.run["calib_images"] == 20_000 and plan.run["holdout"] == 5_000
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nthreshhold = [1.0]\n")
    with pytest.raises(ValueError, match="threshhold"):
        load_config(bad)
    bad.write_text("[run]\nholdout = -1\n")
    with pytest.raises(ValueError, match="run.holdout"):
        load_config(bad)


def test_v_init_is_an_optional_grid_key(tmp_path, rng):
    """``v_init`` reaches the cell's spec where the grid names it; a grid without it keeps its cells (and so
    the keys of results written before the key existed)."""
    cfg = _config(tmp_path, rng, 1)
    plain = cells(load_config(cfg))
    assert all("v_init" not in c for c in plain)
    cfg.write_text(cfg.read_text().replace("steps = [20]", "steps = [20]\nv_init = [0.0, 0.5]"))
    grid = cells(load_config(cfg))
    assert sorted(c["v_init"] for c in grid) == [0.0, 0.0, 0.5, 0.5]
    run = load_config(cfg)["run"]
    half = next(c for c in grid if c["v_init"] == 0.5)
    assert build_spec(half, run).v_init == 0.5 and build_spec(plain[0], run).v_init == 0.0


def test_cell_key_covers_everything_that_determines_a_result():
    cell = {**sweep.GRID_DEFAULTS}
    run = {**sweep.RUN_DEFAULTS, "batch_size": None}
    key = cell_key(cell, run, "f" * 64)
    changed = [
        cell_key(cell, run, "e" * 64),  # a retrained checkpoint, another spec file, other statistics
        cell_key({**cell, "seed": 1}, run, "f" * 64),
        cell_key({**cell, "dataset": "fashion"}, run, "f" * 64),
        cell_key(cell, {**run, "images": 101}, "f" * 64),
        cell_key(cell, {**run, "dtype": "float64"}, "f" * 64),
        cell_key(cell, {**run, "device": "cuda"}, "f" * 64),
    ]
    assert len({key, *changed}) == 1 + len(changed)
    assert cell_key(cell, {**run, "batch_size": 7}, "f" * 64) == key, "batch_size sizes memory, not results"


@pytest.mark.slow
def test_killed_sweep_resumes_every_cell_exactly_once(tmp_path, rng):
    cfg = _config(tmp_path, rng, 20, steps=100)  # 40 cells, each long enough for the kill to land mid-sweep
    results = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "validation", "sweep", "--config", str(cfg), "--no-plot"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_results(results)) < 2 and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = len(read_results(results))
    assert 2 <= finished_before < 40, "the kill must land mid-sweep"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    rows = read_results(results)
    counts = Counter(r["key"] for r in rows)
    assert set(counts) == {t.key for t in plan_sweep(cfg).tasks}
    assert set(counts.values()) == {1}
    # a row written before the kill and the last one written after it hold what the cell computes afresh
    plan = plan_sweep(cfg)
    for row in (rows[0], rows[-1]):
        fresh = sweep.run_cell(row["cell"], plan.run)
        for name in ("accuracy", "accuracy_curve", "no_spike_fraction", "mean_spikes_per_image", "images"):
            assert row["result"][name] == fresh[name], name
    meta = json.loads(results.with_suffix(".meta.json").read_text())
    assert "versions" in meta and "git_commit" in meta
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary files left"


@pytest.mark.slow
def test_concurrent_sweeps_on_one_file_keep_every_cell(tmp_path, rng):
    """Two sweeps with overlapping grids append to one results file at the same time; none loses a cell."""
    a = _config(tmp_path, rng, range(0, 4), steps=60, name="a.toml")
    b = _config(tmp_path, rng, range(2, 6), steps=60, name="b.toml")
    results = tmp_path / "results.jsonl"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "validation", "sweep", "--config", str(c), "--no-plot"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for c in (a, b)
    ]
    errs = [p.communicate(timeout=600)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    keys = {t.key for t in plan_sweep(a).tasks} | {t.key for t in plan_sweep(b).tasks}
    rows = read_results(results)
    assert len(keys) == 12 and {r["key"] for r in rows} == keys, "every cell of both sweeps is kept"
    assert len(_lines(results)) == len(rows) >= 12
    assert len(first_by_key(rows)) == 12
    assert plan_sweep(a).todo == [] and plan_sweep(b).todo == []


def _untrained_checkpoint(runs: Path) -> None:
    import torch

    from convert import models
    from convert.train import checkpoint_paths

    ckpt, _ = checkpoint_paths(runs, "mnist", "mlp")
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model": "mlp", "state_dict": models.build("mlp").state_dict(), "metrics": {}}, ckpt)


def test_runs_flag_overrides_the_config_and_calibration_is_a_setting(tmp_path, monkeypatch):
    from convert import pipeline
    from convert.stats import load_stats

    calls = []
    original = pipeline.stats_for
    monkeypatch.setattr(pipeline, "stats_for", lambda *a, **k: calls.append((a, k)) or original(*a, **k))
    good, elsewhere = tmp_path / "good-runs", tmp_path / "config-runs"
    _untrained_checkpoint(good)
    cfg = tmp_path / "sweep.toml"
    out = tmp_path / "results.jsonl"
    cfg.write_text(
        "[grid]\ndataset = 'mnist'\nmodel = 'mlp'\nmethod = 'data'\nsteps = 10\n"
        f"[run]\nimages = 5\nruns = '{elsewhere}'\ncalib_images = 100\nholdout = 50\nout = '{out}'\n"
    )
    argv = ["sweep", "--config", str(cfg), "--runs", str(good), "--workers", "0", "--no-plot"]
    assert main(argv) == 0
    assert {(a[3], a[4], a[5]) for a, _ in calls} == {(good, 100, 50)}, "runs, calib_images, holdout"
    stats = list((good / "stats").iterdir())
    assert len(stats) == 1 and load_stats(stats[0]).n_images == 100
    assert not elsewhere.exists(), "the config's run.runs is not used when --runs is given"
    rows = read_results(out)
    assert len(rows) == 1 and rows[0]["cell"]["method"] == "data"


def test_missing_root_is_a_one_line_error(tmp_path, rng, capsys):
    missing = tmp_path / "no-data"
    cfg = _config(tmp_path, rng, 1, run=f"root = '{missing}'")
    with pytest.raises(ValueError, match="does not exist"):
        plan_sweep(cfg)
    assert len(plan_sweep(cfg, root=datasets.default_root()).tasks) == 2, "--root overrides run.root"
    argv = ["sweep", "--config", str(cfg), "--root", str(missing), "--workers", "0", "--no-plot"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "python -m convert data --root" in err, err
    assert not (tmp_path / "results.jsonl").exists()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            pass
    return out


def _state(pid: int) -> str:
    """The /proc state letter (Z: a zombie, dead and awaiting reaping), or 'gone'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_sweep(tmp_path, rng):
    cfg = _config(tmp_path, rng, 30, steps=100)
    results = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "validation", "sweep", "--config", str(cfg), "--no-plot", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        workers: list[int] = []
        while time.time() < deadline and proc.poll() is None and not (workers and read_results(results)):
            workers = [c for c in _children(proc.pid) if _is_worker(c)]
            time.sleep(0.05)
        assert workers and proc.poll() is None, "a worker is running cells when the sweep is killed"
        os.kill(proc.pid, signal.SIGKILL)  # the sweep process only, not its group
        proc.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(_state(w) not in ("gone", "Z") for w in workers):
            time.sleep(0.05)
        assert [_state(w) for w in workers] in (["gone"], ["Z"]), "the worker exits with its sweep"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this test's process group is left
        except ProcessLookupError:
            pass


_ORPHAN = """
import os, subprocess, sys, time
child = "import os; from validation.grid.executors import _watch_parent; p = os.getppid(); "
child += "print(os.getpid(), flush=True); _watch_parent(p)"
subprocess.Popen([sys.executable, "-c", child])
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_parent_watchdog_ends_an_orphaned_worker(tmp_path):
    """The portable fallback alone (no prctl): a process polling getppid exits when its parent is killed."""
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN], cwd=REPO, stdout=subprocess.PIPE, start_new_session=True)
    try:
        child = int(proc.stdout.readline())
        assert _state(child) not in ("gone", "Z")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 3
        while time.time() < deadline and _state(child) not in ("gone", "Z"):
            time.sleep(0.05)
        assert _state(child) in ("gone", "Z"), "the watchdog ends the orphan within its 0.5 s poll"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_torn_last_line_is_dropped_and_its_cell_rerun(tmp_path, rng):
    cfg = _config(tmp_path, rng, 1)
    path = run_sweep(cfg, workers=0, progress=False)
    first, second = _lines(path)
    path.write_text(first + "\n" + second[: len(second) // 2])  # what a writer killed mid-line leaves
    with pytest.warns(TornLineWarning, match=r"results\.jsonl: line 2 is a torn last line"):
        assert len(plan_sweep(cfg).todo) == 1
    with pytest.warns(TornLineWarning, match="line 2"):
        run_sweep(cfg, workers=0, progress=False)
    lines = _lines(path)
    assert lines[0] == first and len(lines) == 2, "the fragment is truncated, not glued to the next row"
    assert json.loads(lines[1])["key"] == json.loads(second)["key"]
    assert plan_sweep(cfg).todo == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [("{}", "line 2 is not a results row"), ('{"key": "x", "cell"', "line 2 is not valid JSON")],
)
def test_malformed_line_is_an_error_naming_the_line(tmp_path, rng, capsys, bad, message):
    cfg = _config(tmp_path, rng, 1)
    path = run_sweep(cfg, workers=0, progress=False)
    first, second = _lines(path)
    path.write_text(f"{first}\n{bad}\n{second}\n")
    with pytest.raises(ValueError, match=message + ".*delete or repair that line"):
        run_sweep(cfg, workers=0, progress=False)
    capsys.readouterr()
    assert main(["sweep", "--config", str(cfg), "--workers", "0", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: {message}" in err, err
    assert len(_lines(path)) == 3, "a malformed file is left as it is"


def test_retrained_spec_is_recomputed_and_an_unchanged_one_skipped(tmp_path, rng, monkeypatch):
    calls = []
    original = sweep.run_cell
    monkeypatch.setattr(sweep, "run_cell", lambda cell, run: calls.append(cell) or original(cell, run))
    cfg = _config(tmp_path, rng, 1)
    path = run_sweep(cfg, workers=0, progress=False)
    old = read_results(path)
    assert len(calls) == 2 and len(old) == 2

    save_spec(small_mnist_spec(rng), tmp_path / "tiny.npz")  # new weights in the same file
    calls.clear()
    run_sweep(cfg, workers=0, progress=False)
    rows = read_results(path)
    assert len(calls) == 2 and len(rows) == 4, "the stale cells are recomputed, not skipped"
    new = rows[2:]
    assert {r["key"] for r in new}.isdisjoint(r["key"] for r in old)
    assert {r["spec_fingerprint"] for r in new}.isdisjoint(r["spec_fingerprint"] for r in old)
    assert [r["cell"] for r in new] == [r["cell"] for r in old], "rows keep the readable cell"

    calls.clear()
    run_sweep(cfg, workers=0, progress=False)
    assert calls == [] and len(read_results(path)) == 4, "an unchanged question is not recomputed"
    png = plot_sweep(path, keys=[t.key for t in plan_sweep(cfg).tasks])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_sweep_on_a_local_dask_cluster(tmp_path, rng):
    from distributed import LocalCluster

    cfg = _config(tmp_path, rng, 1)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        path = run_sweep(cfg, dask=cluster.scheduler_address, progress=False)
    rows = read_results(path)
    assert len(rows) == 2
    assert {r["cell"]["reset"] for r in rows} == {"zero", "subtract"}
    png = plot_sweep(path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", ["images = 20000", "images = 0", "calib_images = 0", "holdout = -1"])
def test_impossible_run_settings_are_errors(tmp_path, bad):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[grid]\nseed = [0]\n[run]\n{bad}\n")
    with pytest.raises(ValueError, match=bad.split(" ")[0]):
        load_config(cfg)


def test_a_spec_cell_on_another_dataset_is_refused(tmp_path, rng):
    spec = save_spec(dataclasses.replace(small_mnist_spec(rng), provenance={"dataset": "mnist"}), tmp_path / "m.npz")
    cell = {**cells({"grid": {"spec": [str(spec)], "dataset": ["fashion"]}, "run": {}})[0]}
    with pytest.raises(ValueError, match="mnist"):
        sweep.build_spec(cell, {})


@pytest.mark.parametrize("seed", ["18446744073709551616", "4294967296", "-1", "1.5", "true", '"3"'])
def test_grid_seeds_are_checked_when_the_config_is_read(tmp_path, rng, capsys, seed):
    """A grid seed of 2**64 or -1 failed only when its cell ran (after the other cells' work, the meta file
    written), and 1.5 ran as seed 1 under a key of 1.5: every seed is checked as the config is read."""
    cfg = _config(tmp_path, rng, [0])
    cfg.write_text(cfg.read_text().replace("seed = [0]", f"seed = [0, {seed}]"))
    with pytest.raises(ValueError, match="grid.seed must be an integer from 0 to 4294967295"):
        load_config(cfg)
    capsys.readouterr()
    assert main(["sweep", "--config", str(cfg), "--workers", "0", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grid.seed" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml", "tiny.npz"]  # nothing run or written


@pytest.mark.parametrize("which", ["results", "meta", "plot"])
def test_sweep_outputs_that_are_links_or_fifos_are_refused(tmp_path, rng, capsys, which):
    """A FIFO as the results file blocked the sweep forever (it reads the file first); a link there or at the
    meta file or the plot was replaced with a regular file. Refused in one line, before any cell runs."""
    cfg = _config(tmp_path, rng, [0])
    results = tmp_path / "results.jsonl"
    node = {"results": results, "meta": results.with_suffix(".meta.json"), "plot": results.with_suffix(".png")}
    if which == "results":
        os.mkfifo(node[which])
    else:
        (tmp_path / "mine").write_text("keep")
        node[which].symlink_to(tmp_path / "mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(["sweep", "--config", str(cfg), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{node[which]} exists and is a" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
