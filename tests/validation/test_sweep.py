"""Sweeps: grid expansion, resume after a hard kill, and the Dask executor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from convert.io import save_spec
from validation.sweep import cell_key, cells, load_config, plot_sweep, read_results, run_sweep

from .conftest import small_mnist_spec


def _config(tmp_path: Path, rng, seeds: int, steps: int = 20) -> Path:
    spec = save_spec(small_mnist_spec(rng), tmp_path / "tiny.npz")
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(
        f"""
[grid]
spec = ["{spec}"]
dataset = ["mnist"]
reset = ["zero", "subtract"]
seed = {list(range(seeds))}
steps = [{steps}]
[run]
images = 10
out = "{tmp_path / "results.jsonl"}"
"""
    )
    return cfg


def test_grid_expansion_and_bad_keys(tmp_path, rng):
    cfg = load_config(_config(tmp_path, rng, 3))
    grid = cells(cfg)
    assert len(grid) == 6 and len({cell_key(c) for c in grid}) == 6
    assert all(c["steps"] == 20 and c["schedule"] == "delay" for c in grid)
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nthreshhold = [1.0]\n")
    with pytest.raises(ValueError, match="threshhold"):
        load_config(bad)


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
    assert set(counts) == {cell_key(c) for c in cells(load_config(cfg))}
    assert set(counts.values()) == {1}
    assert all(0 <= r["result"]["accuracy"] <= 1 for r in rows)
    meta = json.loads(results.with_suffix(".meta.json").read_text())
    assert "versions" in meta and "git_commit" in meta
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary files left"


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
