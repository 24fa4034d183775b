"""The "beyond the paper" table end to end on a briefly trained residual network: rows, tests against the ANN,
times within 1 and 0.1 pp, events against MACs, outputs and resumption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from convert import ann
from convert.__main__ import main as convert_main
from validation.paper.beyond import PAIRED, ROWS, BeyondConfig, run_beyond
from validation.paper.experiments import EvalConfig


@pytest.mark.slow
def test_beyond_on_a_briefly_trained_resnet(tmp_path):
    argv = ["train", "--dataset", "fashion", "--model", "resnet", "--epochs", "1", "--train-images", "256"]
    assert convert_main([*argv, "--runs", str(tmp_path)]) == 0
    ev = EvalConfig(
        n_images=20,
        steps=30,
        seeds=(0,),
        thresholds=(1.0, 2.0),
        search_images=20,
        holdout=100,
        calib_images=200,
        part_images=10,
    )
    cfg = BeyondConfig(eval=ev, networks=(("fashion", "resnet"), ("fashion", "vgg")), agreement_images=0)
    results = run_beyond(cfg, None, tmp_path, progress=False)
    entries = results["entries"]  # the vgg has no checkpoint here: left out, not an error
    assert [(e["model"], e["row"]) for e in entries] == [("resnet", r) for r in ROWS]
    spec = json.loads((tmp_path / "models" / "fashion-resnet.json").read_text())
    assert spec["model"] == "resnet"
    for e in entries:
        within = e["time_within_pp_ms"]
        assert 0 < within["1.0"] <= within["0.1"] <= 30  # a looser tolerance settles no later
        vs = e["vs_ann"]
        assert vs["n"] == 20 and 0 <= vs["p_value"] <= 1
        assert vs["accuracy_a"] == pytest.approx(e["accuracy_at_T_mean"])
        assert vs["accuracy_b"] == pytest.approx(e["ann_accuracy_same_images"])
        assert e["synops_per_image_at_T"] > 0 and e["ann_macs_per_image"] > 0
        lo, hi = e["ci95_at_T"]
        assert lo <= e["accuracy_at_T_mean"] <= hi
    # the ANN's MACs are the converted spec's, skip edges included
    from convert.pipeline import copy_spec

    base = copy_spec("fashion", "resnet", tmp_path)
    assert entries[0]["ann_macs_per_image"] == sum(ann.macs_per_image(base))
    # the variant row is the data-based spec with the reset by subtraction, nothing else changed
    from convert.contract.io import load_spec

    data, sub = (load_spec(tmp_path / "specs" / f"fashion-resnet-{r}.npz") for r in ("data", "data-subtract"))
    assert (data.reset, sub.reset) == ("zero", "subtract")
    assert dataclasses.replace(sub, reset="zero") == data
    md = (tmp_path / "beyond" / "beyond.md").read_text()
    assert "fashion-resnet" in md and "McNemar" in md and all(f"| {r} |" in md for r in ROWS)
    # each variant row against the row it changes, on the same images: the difference with its interval
    assert [(p["a"], p["b"]) for p in results["paired"]] == list(PAIRED)
    for p in results["paired"]:
        by_row = {e["row"]: e["accuracy_at_T_mean"] for e in entries}
        assert p["n"] == 20 and p["accuracy_a"] == pytest.approx(by_row[p["a"]])
        lo, hi = p["difference_ci95"]
        assert lo <= p["accuracy_a"] - p["accuracy_b"] <= hi
    assert "A − B (pp, 95 % CI)" in md
    saved = json.loads((tmp_path / "beyond" / "beyond.json").read_text())
    assert "git_commit" in saved and saved["config"]["eval"]["steps"] == 30
    # a rerun reads the cached records: the same numbers, nothing simulated again
    records = sorted((tmp_path / "table2" / "records").rglob("*.npz"))
    mtimes = [p.stat().st_mtime_ns for p in records]
    again = run_beyond(cfg, None, tmp_path, progress=False)
    assert [e["accuracy_at_T_mean"] for e in again["entries"]] == [e["accuracy_at_T_mean"] for e in entries]
    assert [p.stat().st_mtime_ns for p in records] == mtimes
    assert np.isfinite([e["time_within_pp_ms"]["0.1"] for e in again["entries"]]).all()


def test_variant_rows_are_named_not_run_by_default() -> None:
    from validation.paper.rows import VARIANTS, named, rows

    assert set(ROWS) >= {v.name for v in VARIANTS}  # the deeper networks' table runs the variant
    assert named(None) == rows() and not set(VARIANTS) & set(rows())  # Table 2 does not
    assert [r.name for r in named(("data-subtract", "data"))] == ["data", "data-subtract"]
    with pytest.raises(ValueError, match="unknown rows \\['nope'\\]"):
        named(("data", "nope"))


def test_deeper_networks_search_a_part_of_table2s_grid() -> None:
    from validation.paper.beyond import DEEPER_THRESHOLDS

    assert BeyondConfig().eval.thresholds == DEEPER_THRESHOLDS
    assert set(DEEPER_THRESHOLDS) < set(EvalConfig().thresholds)  # its choices are candidates of Table 2's too


def test_the_table_names_the_datasets_of_its_networks() -> None:
    from validation.paper.beyond import markdown

    config = BeyondConfig(networks=(("mnist", "cnn"), ("fashion", "cnn"), ("fashion", "vgg"))).to_dict()
    text = markdown({"config": config, "entries": [], "agreement": []})
    assert text.startswith("MNIST and Fashion-MNIST, the first 2000 test images, T = 300 ms")
    only = markdown({"config": BeyondConfig().to_dict(), "entries": [], "agreement": []})
    assert only.startswith("Fashion-MNIST, the first 2000") and "MNIST and" not in only
    assert "about 14 h" in only and "about 14 h" not in text  # the deeper networks' cost only under their table
