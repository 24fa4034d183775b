"""Table 2 and the figures end to end on a tiny trained model: outputs, resumption, provenance."""

from __future__ import annotations

import json

import pytest

from convert.__main__ import main as convert_main
from validation.experiments import ROWS, EvalConfig
from validation.figures import make_figures
from validation.table2 import run_table2


@pytest.mark.slow
def test_table2_and_figures_on_a_tiny_model(tmp_path):
    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "2", "--train-images", "512"]
    assert convert_main([*argv, "--runs", str(tmp_path)]) == 0
    cfg = EvalConfig(
        n_images=20, steps=30, seeds=(0, 1), thresholds=(1.0, 2.0), search_images=20, holdout=100, calib_images=500
    )
    results = run_table2(cfg, None, tmp_path, pairs=(("mnist", "mlp"),), progress=False)
    out = tmp_path / "table2" / cfg.tag
    assert [e["row"] for e in results["entries"]] == list(ROWS)
    assert all(len(e["accuracies"]) == 2 and 0 <= e["accuracy_mean"] <= 1 for e in results["entries"])
    saved = json.loads((out / "table2.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["config"]["steps"] == 30 and "git_commit" in saved
    assert "baseline tuned" in (out / "table2.md").read_text()
    search = json.loads((out / "threshold-mnist-mlp.json").read_text())
    assert search["on"] == "held-out train" and search["chosen"] in (1.0, 2.0)
    records = sorted(p.name for p in (out / "records").iterdir())
    assert len(records) == len(ROWS) * 2
    # a rerun resumes from the records: same numbers, nothing simulated again
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    again = run_table2(cfg, None, tmp_path, pairs=(("mnist", "mlp"),), progress=False)
    assert [e["accuracies"] for e in again["entries"]] == [e["accuracies"] for e in results["entries"]]
    assert {p: p.stat().st_mtime_ns for p in (out / "records").iterdir()} == mtimes
    rows = make_figures(cfg, tmp_path, [("mnist", "mlp")])
    assert len(rows) == len(ROWS)
    assert (out / "fig3_mnist.png").stat().st_size > 0 and (out / "fig3_mnist.svg").stat().st_size > 0
    assert "ms to within 0.1 pp" in (out / "convergence.md").read_text()
