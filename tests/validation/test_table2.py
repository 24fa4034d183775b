"""Table 2 and the figures end to end on a tiny trained model: outputs, resumption, provenance."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from convert import datasets
from convert.__main__ import main as convert_main
from convert.contract.records import SpikeRecord
from validation.paper.experiments import EvalConfig
from validation.paper.figures import make_figures
from validation.paper.rows import row_names
from validation.paper.table2 import run_table2


@pytest.mark.slow
def test_table2_and_figures_on_a_tiny_model(tmp_path):
    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "2", "--train-images", "512"]
    assert convert_main([*argv, "--runs", str(tmp_path)]) == 0
    cfg = EvalConfig(
        n_images=20, steps=30, seeds=(0, 1), thresholds=(1.0, 2.0), search_images=20, holdout=100, calib_images=500
    )
    results = run_table2(cfg, None, tmp_path, pairs=(("mnist", "mlp"),), progress=False)
    out = tmp_path / "table2" / cfg.tag
    cache = out.parent  # searches and records are shared by every tag, keyed by content
    assert [e["row"] for e in results["entries"]] == list(row_names())
    # every accuracy is the one of its saved record, on the first 20 test images, one record per seed
    labels = datasets.load("mnist", "test").labels[:20]
    for e in results["entries"]:
        records = [SpikeRecord.load(cache / p) for p in e["records"]]
        assert [r.meta["seed"] for r in records] == [0, 1], e["row"]
        for r in records:
            np.testing.assert_array_equal(r.labels, labels)
            assert r.steps == 30
        assert e["accuracies"] == [r.accuracy() for r in records], e["row"]
        assert e["accuracy_mean"] == pytest.approx(np.mean(e["accuracies"]))
        assert e["no_spike_fraction_mean"] == pytest.approx(np.mean([r.no_spike_fraction() for r in records]))
    saved = json.loads((out / "table2.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["config"]["steps"] == 30 and "git_commit" in saved
    md = (out / "table2.md").read_text()
    assert "baseline tuned" in md and "McNemar" in md
    n_rows = len(row_names())
    # the ANN vs every row; data-based vs every other row at T and at the horizons
    tuned = sum(r.endswith("-tuned") for r in row_names())  # and every tuned row vs its θ = 1 row
    assert len(results["paired"]) == n_rows + 2 * (n_rows - 1) + tuned
    assert {c["claim"].split(" at ")[0] for c in results["claims"]} >= {"the baseline needs a tuned threshold"}
    for e in results["entries"]:
        lo, hi = e["ci95_first_seed"]
        assert lo <= e["accuracies"][0] <= hi
    macs = 784 * 1200 + 1200 * 1200 + 1200 * 10
    assert all(e["ann_macs_per_image"] == macs and e["synops_per_image_mean"] > 0 for e in results["entries"])
    assert "ANN MACs" in md and "events at T" in md
    for p in results["paired"]:
        assert 0 <= p["p_value"] <= 1 and p["a_only"] + p["b_only"] <= p["n"] == 20
    (search_file,) = (cache / "searches").iterdir()
    search = json.loads(search_file.read_text())
    assert search["on"] == "held-out train" and search["chosen"] in (1.0, 2.0) and "git_commit" in search
    records = sorted(p.name for p in (cache / "records").glob("*.npz"))
    unique_specs = len({e["records"][0] for e in results["entries"]})  # a tuned θ of 1 shares the copy's record
    assert len(records) == unique_specs * 2
    assert all((cache / p).exists() for e in results["entries"] for p in e["records"])
    # a rerun resumes from the records: same numbers, nothing simulated again
    mtimes = {p: p.stat().st_mtime_ns for p in (cache / "records").rglob("*.npz")}
    again = run_table2(cfg, None, tmp_path, pairs=(("mnist", "mlp"),), progress=False)
    assert [e["accuracies"] for e in again["entries"]] == [e["accuracies"] for e in results["entries"]]
    assert {p: p.stat().st_mtime_ns for p in (cache / "records").rglob("*.npz")} == mtimes
    # one row alone (`table2 --rows model`): its own folder, the same record as in the whole table, none simulated
    only = run_table2(
        dataclasses.replace(cfg, rows=("model",)), None, tmp_path, pairs=(("mnist", "mlp"),), progress=False
    )
    assert [e["row"] for e in only["entries"]] == ["model"]
    assert only["entries"][0]["records"] == next(e["records"] for e in results["entries"] if e["row"] == "model")
    assert {p: p.stat().st_mtime_ns for p in (cache / "records").rglob("*.npz")} == mtimes
    assert (tmp_path / "table2" / f"{cfg.tag}-rows-model" / "table2.md").exists()
    with pytest.raises(ValueError, match="unknown rows"):
        dataclasses.replace(cfg, rows=("nope",))
    rows = make_figures(again, tmp_path)
    assert len(rows) == len(row_names())
    assert (out / "fig3_mnist.png").stat().st_size > 0 and (out / "fig3_mnist.svg").stat().st_size > 0
    assert "time to accuracy" in (out / "convergence.md").read_text()


def _count_simulations(monkeypatch) -> list[str]:
    """Record the spec fingerprint of every simulation Table 2 and the threshold search start."""
    from convert.contract.fingerprint import spec_fingerprint
    from validation.paper import experiments

    calls: list[str] = []
    real_run = experiments.run

    def counting(engine, spec, *args, **kwargs):
        calls.append(spec_fingerprint(spec))
        return real_run(engine, spec, *args, **kwargs)

    monkeypatch.setattr(experiments, "run", counting)
    return calls


@pytest.mark.slow
def test_cached_results_are_keyed_by_content(tmp_path, monkeypatch):
    """A changed checkpoint recomputes every row; a changed percentile recomputes only the robust row; an
    unchanged question recomputes nothing."""
    import dataclasses

    import torch

    from convert.train import checkpoint_paths

    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "1", "--train-images", "256"]
    assert convert_main([*argv, "--runs", str(tmp_path)]) == 0
    cfg = EvalConfig(
        n_images=10, steps=15, seeds=(0,), thresholds=(1.0, 2.0), search_images=10, holdout=50, calib_images=200
    )
    pairs = (("mnist", "mlp"),)
    calls = _count_simulations(monkeypatch)
    first = run_table2(cfg, None, tmp_path, pairs=pairs, progress=False)
    unique = len({e["records"][0] for e in first["entries"]})  # rows with equal specs share one run
    assert len(calls) == len(cfg.thresholds) + unique  # the search, then one run per distinct row

    calls.clear()
    run_table2(cfg, None, tmp_path, pairs=pairs, progress=False)
    assert calls == [], "an unchanged question is answered from the cache"

    calls.clear()
    robust = dataclasses.replace(cfg, percentile=99.0)
    second = run_table2(robust, None, tmp_path, pairs=pairs, progress=False)
    assert len(calls) == 1, "only the robust row depends on the percentile"
    changed = [
        a["row"] for a, b in zip(first["entries"], second["entries"], strict=True) if a["records"] != b["records"]
    ]
    assert changed == ["robust"]

    ckpt, _ = checkpoint_paths(tmp_path, "mnist", "mlp")
    blob = torch.load(ckpt, weights_only=True)
    blob["state_dict"]["2.weight"][0, 0] += 0.5  # the first hidden layer's weight: a "retrained" checkpoint
    torch.save(blob, ckpt)
    calls.clear()
    third = run_table2(cfg, None, tmp_path, pairs=pairs, progress=False)
    unique = len({e["records"][0] for e in third["entries"]})
    assert len(calls) == len(cfg.thresholds) + unique, "a new checkpoint recomputes the search and every row"
    assert all(a["records"] != b["records"] for a, b in zip(first["entries"], third["entries"], strict=True))
    assert len(list((tmp_path / "stats").iterdir())) == 2, "statistics of the new weights are collected anew"


@pytest.mark.slow
def test_an_interrupted_record_resumes_from_its_finished_parts(tmp_path, monkeypatch, capsys):
    """A record is simulated in parts; a run killed after the first part keeps it, and the rerun simulates
    only the rest, giving the record an uninterrupted run gives. ``estimate`` prints the expected time."""
    from validation.paper import experiments
    from validation.paper.experiments import Job, evaluate
    from validation.paper.table2 import expected_seconds

    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "1", "--train-images", "256"]
    assert convert_main([*argv, "--runs", str(tmp_path)]) == 0
    from convert.pipeline import copy_spec

    spec = copy_spec("mnist", "mlp", tmp_path)
    cfg = EvalConfig(n_images=30, steps=12, seeds=(0,), part_images=10)
    job = Job(spec, "mnist", "mlp", 0, 30, 12)
    out = tmp_path / "t2"
    assert job.missing_image_steps(cfg, out) == 30 * 12
    real_run = experiments.run
    calls = []

    def dies_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(kwargs["image_indices"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(experiments, "run", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        evaluate(job, None, cfg, out)
    assert not job.path(cfg, out).exists() and job.missing_image_steps(cfg, out) == 20 * 12
    resumed_parts = []
    monkeypatch.setattr(
        experiments, "run", lambda *a, **k: resumed_parts.append(k["image_indices"]) or real_run(*a, **k)
    )
    rec = evaluate(job, None, cfg, out)
    assert [p[0] for p in resumed_parts] == [10, 20], "only the missing parts run again"
    monkeypatch.setattr(experiments, "run", real_run)
    whole = evaluate(job, None, dataclasses.replace(cfg, part_images=30), tmp_path / "whole")
    np.testing.assert_array_equal(rec.output_counts, whole.output_counts)
    np.testing.assert_array_equal(rec.image_indices, np.arange(30))
    assert job.missing_image_steps(cfg, out) == 0
    larger = Job(spec, "mnist", "mlp", 0, 40, 12)  # a larger table reuses the parts a smaller one finished
    assert larger.missing_image_steps(dataclasses.replace(cfg, n_images=40), out) == 10 * 12
    seconds = expected_seconds(
        {("mnist", "mlp"): {"specs": {"data": (spec, None)}}}, {("mnist", "mlp"): 1000}, None, cfg, probe=(16, 5)
    )
    assert seconds > 0


@pytest.mark.slow
def test_committed_parts_are_published_and_read_back_as_cached(tmp_path, monkeypatch):
    """--publish-parts copies every finished part to the committed folder under its content key; a later run
    with an empty cache builds the same table from them without simulating anything."""
    from validation.paper import committed_parts, experiments

    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "1", "--train-images", "256"]
    assert convert_main([*argv, "--runs", str(tmp_path)]) == 0
    committed = tmp_path / "committed"
    monkeypatch.setattr(committed_parts, "COMMITTED", committed)
    cfg = EvalConfig(n_images=30, steps=20, seeds=(0,), part_images=10, rows=("model", "data"), calib_images=500)
    first = run_table2(cfg, None, tmp_path, pairs=(("mnist", "mlp"),), progress=False, publish=True)
    cache = tmp_path / "table2" / "records"
    parts = sorted(p.name for p in (cache / "parts").glob("*.npz"))
    assert len(parts) == 2 * 3 and sorted(p.name for p in committed.glob("*.npz")) == parts
    index = json.loads((committed / committed_parts.INDEX).read_text())["parts"]
    assert [e["file"] for e in index] == parts  # each part's provenance: who ran it, where, how long
    assert all(e["cache_key"] and e["wall_s"] > 0 and "platform" in e["machine"] for e in index)
    assert sorted(tuple(e["images"]) for e in index) == sorted([(0, 10), (10, 20), (20, 30)] * 2)
    import shutil

    shutil.rmtree(cache)

    def no_simulation(*args, **kwargs):
        raise AssertionError("a committed part was simulated again")

    monkeypatch.setattr(experiments, "simulate_part", no_simulation)
    again = run_table2(cfg, None, tmp_path, pairs=(("mnist", "mlp"),), progress=False)
    assert [e["accuracies"] for e in again["entries"]] == [e["accuracies"] for e in first["entries"]]
    assert [e["row"] for e in again["entries"]] == ["model", "data"]
