"""The horizon check: fast rows rerun longer on a subset, read at T and at the longer horizon."""

from __future__ import annotations

import numpy as np

from convert import datasets
from tests.validation.conftest import small_mnist_spec
from validation.harness.engines import run
from validation.paper import horizon_check
from validation.paper.experiments import EvalConfig
from validation.paper.horizon_check import HorizonCheck, markdown, run_horizon_check


def test_rows_at_t_and_at_the_longer_horizon_on_the_same_images(tmp_path, monkeypatch, rng) -> None:
    specs = {"baseline": small_mnist_spec(rng), "data": small_mnist_spec(rng), "model": small_mnist_spec(rng)}
    monkeypatch.setattr(
        horizon_check, "build_specs", lambda *a, **k: {"specs": {r: (s, None) for r, s in specs.items()}}
    )
    base = EvalConfig(n_images=40, steps=20, seeds=(3,), slow_rows=("model",))
    hc = HorizonCheck(datasets=("mnist",), images=12, steps=45)
    results = run_horizon_check(hc, base, None, tmp_path, pairs=(("mnist", "cnn"), ("fashion", "cnn")))
    assert [e["row"] for e in results["entries"]] == ["baseline", "data"]  # mnist only; the slow row left out
    test = datasets.load("mnist", "test")
    for e in results["entries"]:
        rec = run(
            "fastsim",
            specs[e["row"]],
            test.images[:12],
            steps=20,
            seed=3,
            labels=test.labels[:12],
            image_indices=np.arange(12),
            dtype="float32",
            kernel="events",
        )
        assert e["accuracy_T"] == rec.accuracy()  # the first T steps of the longer run are Table 2's run
        m = e["mcnemar_T_vs_H"]
        assert m["n"] == 12 and round(12 * (e["accuracy_T"] - e["accuracy_H"])) == m["a_only"] - m["b_only"]
        assert e["horizon_steps"] == 45 and e["T_steps"] == 20
    md = (tmp_path / "table2" / base.tag / "horizon-check.md").read_text()
    assert md == markdown(results) and "| mnist | cnn | data |" in md and "accuracy at 45 ms" in md
    records = {p: p.stat().st_mtime_ns for p in (tmp_path / "table2" / "records").rglob("*.npz")}
    assert records
    again = run_horizon_check(hc, base, None, tmp_path, pairs=(("mnist", "cnn"),))
    assert again["entries"] == results["entries"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "table2" / "records").rglob("*.npz")} == records
