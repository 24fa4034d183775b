"""Training-seed spread: the aggregation, and the whole command on a briefly trained MLP with two seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from validation.paper.experiments import EvalConfig
from validation.paper.networks import PUBLISHED_MODELS
from validation.paper.seeds import SeedsConfig, aggregate, markdown, run_seeds, train_seed


def _t2(acc_data: float, acc_model: float, holds: bool) -> dict:
    data = {"dataset": "mnist", "model": "mlp", "row": "data", "images": 10000, "horizon_steps": 300}
    data |= {
        "accuracy_mean": acc_data,
        "accuracy_at_T_mean": acc_data,
        "ci95_first_seed": [acc_data - 0.01, acc_data + 0.01],
    }
    model = {**data, "row": "model", "images": 500, "horizon_steps": 5000}  # at T = 300 still near chance
    model |= {"accuracy_mean": acc_model, "accuracy_at_T_mean": 0.1, "ci95_first_seed": [acc_model - 0.02, acc_model]}
    return {
        "entries": [data, model],
        "claims": [{"dataset": "mnist", "model": "mlp", "claim": "data beats model", "holds": holds}],
    }


def test_the_spread_is_over_training_seeds_and_the_interval_is_the_first_seeds() -> None:
    t1 = [{("mnist", "mlp"): {"test_accuracy": a}} for a in (0.98, 0.982, 0.981)]
    t2 = [_t2(0.97, 0.95, True), _t2(0.974, 0.96, False), _t2(0.972, 0.955, True)]
    s = aggregate((0, 1, 2), t1, t2)
    data = next(e for e in s["entries"] if e["row"] == "data")
    assert data["accuracy"] == [0.97, 0.974, 0.972]
    assert data["mean"] == pytest.approx(0.972) and data["std"] == pytest.approx(0.002)
    assert data["range"] == pytest.approx(0.004) and data["ci95_first_seed"] == [0.96, 0.98]
    model = next(e for e in s["entries"] if e["row"] == "model")  # at its own horizon, not at T
    assert model["accuracy"] == [0.95, 0.96, 0.955] and (model["images"], model["horizon_steps"]) == (500, 5000)
    assert s["ann_test_accuracy"] == {"mnist-mlp": [0.98, 0.982, 0.981]}
    assert s["claims"] == [
        {"dataset": "mnist", "model": "mlp", "claim": "data beats model", "holds": [True, False, True]}
    ]
    md = markdown(s)
    assert "97.20 ± 0.20" in md and "2 of 3 seeds" in md and "98.00 / 98.20 / 98.10" in md


def test_one_seed_is_not_a_spread() -> None:
    with pytest.raises(ValueError, match="at least two distinct training seeds"):
        SeedsConfig(seeds=(3, 3))


@pytest.mark.slow
def test_two_training_seeds_on_a_briefly_trained_mlp(tmp_path) -> None:
    ev = EvalConfig(
        n_images=20, steps=20, seeds=(0,), thresholds=(1.0, 2.0), search_images=20, holdout=100, calib_images=200
    )
    ev = EvalConfig(**{**ev.to_dict(), "slow_rows": ("model",), "slow_images": 10, "slow_steps": 40})
    cfg = SeedsConfig(seeds=(0, 1), pairs=(("mnist", "mlp"),), eval=ev, train={"epochs": 1, "train_images": 256})
    s = run_seeds(cfg, None, tmp_path, progress=False)
    ann = s["ann_test_accuracy"]["mnist-mlp"]
    assert len(ann) == 2 and ann[0] != ann[1]  # other weights
    for seed in (0, 1):
        meta = json.loads((tmp_path / "seeds" / f"s{seed}" / "models" / "mnist-mlp.json").read_text())
        assert meta["selection"]["request"]["base"]["seed"] == seed
    assert {e["row"] for e in s["entries"]} >= {"data", "model", "robust"}
    assert all(len(e["accuracy"]) == 2 and np.isfinite(e["std"]) for e in s["entries"])
    assert all(len(c["holds"]) == 2 for c in s["claims"])
    saved = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert saved["seeds"] == [0, 1] and "git_commit" in saved
    assert "Training-seed spread" in (tmp_path / "seeds" / "seeds.md").read_text()


def test_the_main_jobs_seed_starts_from_the_published_networks_and_other_seeds_train(tmp_path) -> None:
    cfg = SeedsConfig(seeds=(0, 1), pairs=(("mnist", "mlp"),))
    assert cfg.given(0) == PUBLISHED_MODELS and cfg.given(1) is None
    assert SeedsConfig(seeds=(0, 1), train={"epochs": 1}).given(0) is None  # another setting: train it
    assert SeedsConfig(seeds=(0, 1), models=None).given(0) is None  # --train
    metrics = train_seed(cfg, 0, None, tmp_path)
    published = json.loads((PUBLISHED_MODELS / "mnist-mlp.json").read_text())
    assert metrics[("mnist", "mlp")]["test_accuracy"] == published["test_accuracy"]
    assert (tmp_path / "models" / "mnist-mlp.pt").read_bytes() == (PUBLISHED_MODELS / "mnist-mlp.pt").read_bytes()
    wrong = SeedsConfig(seeds=(0, 1), pairs=(("mnist", "mlp"),), models_seed=1)
    with pytest.raises(ValueError, match="trained with seed 0, not 1"):
        train_seed(wrong, 1, None, tmp_path / "other")
