"""The latency table (validation/paper/latency.py) end to end on a briefly trained MLP and its QCFS twin: every
row, input and T, the tests against each row's own ANN, the outputs, and resumption from the cached parts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert.__main__ import main as convert_main
from validation.paper.latency import LatencyConfig, run_latency
from validation.paper.latency_rows import ROWS, row


def test_latency_on_a_briefly_trained_mlp_and_its_qcfs_twin(tmp_path):
    runs, twins = tmp_path / "runs", tmp_path / "twins"
    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "1", "--train-images", "512"]
    assert convert_main([*argv, "--runs", str(runs)]) == 0
    assert convert_main([*argv, "--runs", str(twins), "--activation", "qcfs", "--levels", "4"]) == 0
    cfg = LatencyConfig(
        networks=(("mnist", "mlp"),),
        images=40,
        steps=(2, 4, 8),
        part_images=25,  # two parts, the second short
        calib_images=300,
        holdout=100,
        bias_images=32,
        qcfs_models=str(twins / "models"),
        agreement_images=0,  # Brian2 on the new rows: tests/refsim/test_calibrated_brian2.py
    )
    results = run_latency(cfg, None, runs, progress=False)
    entries = results["entries"]
    expected = {(r.name, enc, t) for r in ROWS for enc in r.encodings for t in cfg.steps}
    assert {(e["row"], e["encoding"], e["steps"]) for e in entries} == expected
    ann = {kind: {e["ann_accuracy"] for e in entries if e["ann"] == kind} for kind in ("relu", "qcfs")}
    assert len(ann["relu"]) == 1 and len(ann["qcfs"]) == 1  # one ANN per kind, on the same 40 images
    assert {e["ann"] for e in entries if e["row"] == "qcfs"} == {"qcfs"}
    for e in entries:
        vs = e["vs_ann"]
        assert e["n"] == vs["n"] == 40 and 0 <= vs["p_value"] <= 1
        assert vs["accuracy_a"] == pytest.approx(e["snn_accuracy"]) and vs["accuracy_b"] == e["ann_accuracy"]
        lo, hi = e["ci95"]
        assert lo <= e["snn_accuracy"] <= hi
        dlo, dhi = vs["difference_ci95"]
        assert dlo <= e["snn_accuracy"] - e["ann_accuracy"] <= dhi
    # a few steps are where the rows differ: at T = 2 the delay schedule has given the output no input yet
    delay = next(e for e in entries if e["row"] == "data-subtract-half-delay" and e["steps"] == 2)
    assert delay["snn_accuracy"] < 0.5 * delay["ann_accuracy"]
    # every row's spec is saved for the diagnosis: one per T for a calibrated row, one for the others
    assert (runs / "specs" / "mnist-mlp-calibrated-pc-T4.npz").exists() and (
        runs / "specs" / "mnist-mlp-qcfs.npz"
    ).exists()
    out = runs / "latency"
    md = (out / "latency.md").read_text()
    assert "mnist-mlp" in md and "T = 8" in md and "CIFAR-10" in md
    assert all(f"| {r.label} |" in md for r in ROWS)
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "latency.json").read_text())
    assert "git_commit" in saved and saved["config"]["steps"] == [2, 4, 8] and saved["seed"] == 0
    # a rerun reads every part from the cache: the same numbers, no part written again
    parts = sorted((out / "records").glob("*.npz"))
    assert len(parts) > 0
    mtimes = [p.stat().st_mtime_ns for p in parts]
    again = run_latency(cfg, None, runs, progress=False)
    assert [e["snn_accuracy"] for e in again["entries"]] == [e["snn_accuracy"] for e in entries]
    assert [p.stat().st_mtime_ns for p in parts] == mtimes
    assert sorted((out / "records").glob("*.npz")) == parts


def test_rows_are_named_and_checked():
    assert row("calibrated-bc").per_steps and row("qcfs").method == "qcfs"
    assert row("data").encodings == ("current", "poisson")
    with pytest.raises(ValueError, match="rows: unknown magic"):
        LatencyConfig(rows=("data", "magic"))
    with pytest.raises(ValueError, match="steps: give increasing"):
        LatencyConfig(steps=(8, 4))
    assert np.all(np.diff(LatencyConfig().steps) > 0)
