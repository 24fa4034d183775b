"""Threshold search hygiene and the figure helpers."""

from __future__ import annotations

import numpy as np
import pytest

from convert import datasets
from validation.paper import experiments
from validation.paper.experiments import EvalConfig, figure_checkpoints, search_threshold

from .conftest import small_mnist_spec


def test_threshold_search_never_reads_the_test_split(monkeypatch, rng):
    real_load = datasets.load
    seen = []

    def guarded(dataset, split, *args, **kwargs):
        seen.append(split)
        if split != "train":
            raise AssertionError(f"threshold search read the {split} split")
        return real_load(dataset, split, *args, **kwargs)

    monkeypatch.setattr(datasets, "load", guarded)
    monkeypatch.setattr(experiments.datasets, "load", guarded)
    cfg = EvalConfig(steps=20, search_images=20, holdout=100, thresholds=(0.5, 1.0, 2.0))
    images, labels, idx = experiments.heldout("mnist", None, cfg)
    assert idx.min() >= 60_000 - 100
    best, scores = search_threshold(small_mnist_spec(rng), images, labels, idx, cfg)
    assert seen == ["train"]
    assert best in cfg.thresholds and set(scores) == set(cfg.thresholds)


class _Scored:
    def __init__(self, accuracy: float) -> None:
        self._accuracy = accuracy

    def accuracy(self) -> float:
        return self._accuracy


@pytest.mark.parametrize(
    ("accuracy", "best"),
    [
        ({0.5: 0.25, 1.0: 0.75, 2.0: 0.5}, 1.0),
        ({0.5: 0.25, 1.0: 0.75, 2.0: 0.75}, 1.0),  # a tie goes to the smaller threshold
        ({0.5: 0.0, 1.0: 0.0, 2.0: 0.0}, 0.5),
        ({0.5: 0.1, 1.0: 0.2, 2.0: 0.3}, 2.0),
    ],
)
def test_threshold_search_picks_the_most_accurate_threshold(monkeypatch, rng, accuracy, best):
    """Each candidate runs the baseline spec with that threshold on the given held-out images; the search
    returns the candidates' accuracies and the best of them (the smallest on a tie)."""
    calls = []

    def fake_run(engine, spec, images, **kwargs):
        assert len(set(spec.thresholds)) == 1, "the baseline sets every layer's threshold to the candidate"
        calls.append((engine, spec.thresholds[0], images, kwargs))
        return _Scored(accuracy[spec.thresholds[0]])

    monkeypatch.setattr(experiments, "run", fake_run)
    cfg = EvalConfig(steps=7, thresholds=tuple(accuracy), search_seed=11)
    images, labels, idx = np.zeros((3, 1, 28, 28), np.uint8), np.array([1, 2, 3]), np.array([59_997, 59_998, 59_999])
    got_best, scores = search_threshold(small_mnist_spec(rng), images, labels, idx, cfg)
    assert got_best == best
    assert scores == accuracy
    assert [c[1] for c in calls] == list(accuracy)
    for engine, _, imgs, kwargs in calls:
        assert engine == "fastsim" and imgs is images
        assert kwargs["steps"] == 7 and kwargs["seed"] == 11
        assert kwargs["labels"] is labels and kwargs["image_indices"] is idx


def test_calibration_excludes_the_holdout():
    from convert.pipeline import calibration_images

    calib = calibration_images("mnist", None, None, holdout=100)
    assert len(calib) == 60_000 - 100


def test_figure_checkpoints():
    c = figure_checkpoints(300)
    assert c[0] == 1 and c[-1] == 300 and np.all(np.diff(c) > 0)
    assert {1, 2, 5, 10, 20, 50, 100, 200, 300} <= set(c.tolist())


def test_row_plans_give_slow_rows_fewer_images_and_more_time():
    cfg = EvalConfig(n_images=10_000, steps=300, slow_rows=("model",), slow_steps=5000, slow_images=2000)
    assert cfg.plan("data") == (10_000, 300) and cfg.plan("model") == (2000, 5000)
    assert cfg.tag == "n10000-t300-slow2000x5000-float32"
    small = EvalConfig(n_images=500, steps=6000, slow_rows=("model",), slow_steps=5000, slow_images=2000)
    assert small.plan("model") == (500, 6000)  # never more images than the table, never less time than T
    assert small.tag == "n500-t6000-float32"
    with pytest.raises(ValueError, match="slow_steps"):
        EvalConfig(slow_steps=0)
    with pytest.raises(ValueError, match="seeds"):
        EvalConfig(seeds=())


def test_record_checkpoints_include_the_common_horizon():
    from validation.paper.experiments import record_checkpoints

    c = record_checkpoints(5000, 300)
    assert 300 in c and c[-1] == 5000 and np.all(np.diff(c) > 0)
    assert record_checkpoints(300, 300)[-1] == 300


def test_engine_options_reach_the_config_and_its_tag():
    import argparse

    from validation.commands.paper import eval_config as _eval_config

    assert EvalConfig().tag == "n500-t300-float32"  # cached records of the default engine keep their folder
    args = argparse.Namespace(
        full=True,
        seeds=[0],
        device="cuda",
        dtype="float32",
        matmul="tf32x2",
        kernel="triton",
        images=1,
        steps=1,
        part_images=250,
    )
    cfg = _eval_config(args)
    assert (cfg.n_images, cfg.steps, cfg.matmul, cfg.kernel) == (10_000, 10_000, "tf32x2", "triton")
    assert cfg.part_images == 250  # --part-images reaches --full too
    assert cfg.tag == "n10000-t10000-float32-tf32x2-triton"


@pytest.mark.parametrize("n", [0, 60_000])
def test_impossible_calibration_counts_are_errors(n):
    from convert.pipeline import calibration_images

    with pytest.raises(ValueError, match="calibration images"):
        calibration_images("mnist", None, n, holdout=100)
