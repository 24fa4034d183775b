"""Evaluation runs shared by Table 2, the figures and the main job: one (dataset, model, row, seed) at a time.

Rows (the paper's Table 2 columns, plus robust normalization):

* ``baseline``: the direct copy, threshold 1;
* ``baseline-tuned``: the direct copy with the threshold chosen by a search on a held-out part of the
  *training* set (never the test set): the last ``holdout`` training images, which calibration excludes;
* ``model``: model-based normalization (Algorithm 1);
* ``data``: data-based normalization (Algorithm 2, as in the paper);
* ``robust``: the 99.9th percentile of activations (Rueckauer et al. 2017).

Each run's SpikeRecord is cached as a file, so an interrupted Table 2 resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert import datasets
from convert.pipeline import copy_spec, normalized_spec, stats_for
from convert.provenance import provenance, write_json_atomic
from convert.records import SpikeRecord, default_checkpoints
from convert.spec import NetworkSpec
from validation.engines import run

ROWS = ("baseline", "baseline-tuned", "model", "data", "robust")
REPLICATION_THRESHOLD = {"mlp": 4.0, "cnn": 20.0}


@dataclass(frozen=True)
class EvalConfig:
    n_images: int = 500
    steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "cpu"
    dtype: str = "float32"
    matmul: str = "fp32"  # fastsim's float32 product mode (fp32, tf32x2, tf32x3)
    kernel: str = "torch"  # fastsim's kernel (torch, triton)
    batch_size: int | None = None
    thresholds: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 32.0)
    search_images: int = 500
    holdout: int = 5000
    search_seed: int = 1_000_003
    percentile: float = 99.9
    calib_images: int | None = 20_000

    @property
    def tag(self) -> str:
        engine = "" if (self.matmul, self.kernel) == ("fp32", "torch") else f"-{self.matmul}-{self.kernel}"
        return f"n{self.n_images}-t{self.steps}-{self.dtype}{engine}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def figure_checkpoints(steps: int, points: int = 60) -> np.ndarray:
    """A log-spaced grid of step counts (1 .. steps) for error-vs-time curves."""
    grid = np.unique(np.round(np.logspace(0, np.log10(steps), points)).astype(np.int64))
    return np.union1d(grid, default_checkpoints(steps))


def heldout(dataset: str, root: Path | None, cfg: EvalConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and indices of the threshold-search set: from the training split's held-out tail."""
    train = datasets.load(dataset, "train", root)
    idx = np.arange(len(train.images) - cfg.holdout, len(train.images))[: cfg.search_images]
    return train.images[idx], train.labels[idx], idx


def search_threshold(
    base: NetworkSpec, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, cfg: EvalConfig
) -> tuple[float, dict[float, float]]:
    """The baseline threshold with the best accuracy on the given (held-out training) images.

    Ties go to the smaller threshold. Returns the choice and the accuracy of every candidate."""
    from convert.normalize import baseline

    scores = {}
    for theta in cfg.thresholds:
        spec, _ = baseline(base, theta)
        rec = run(
            "fastsim",
            spec,
            images,
            steps=cfg.steps,
            seed=cfg.search_seed,
            labels=labels,
            image_indices=indices,
            device=cfg.device,
            dtype=cfg.dtype,
            matmul=cfg.matmul,
            kernel=cfg.kernel,
            batch_size=cfg.batch_size,
            compile=True,  # many runs of one network: torch.compile pays for itself (2x on the CNN)
        )
        scores[float(theta)] = rec.accuracy()
    best = max(scores, key=lambda t: (scores[t], -t))
    return best, scores


def build_specs(dataset: str, model: str, root: Path | None, runs: Path, cfg: EvalConfig, out: Path) -> dict:
    """Every row's spec for one trained model (threshold search and statistics cached under ``out``)."""
    base = copy_spec(dataset, model, runs)
    search_file = out / f"threshold-{dataset}-{model}.json"
    if search_file.exists():
        search = json.loads(search_file.read_text())
        tuned = search["chosen"]
    else:
        tuned, scores = search_threshold(base, *heldout(dataset, root, cfg), cfg)
        search = {"chosen": tuned, "accuracy": {str(k): v for k, v in scores.items()}, "on": "held-out train"}
        write_json_atomic(search_file, search)
    stats = stats_for(base, dataset, root, runs, cfg.calib_images, holdout=cfg.holdout, progress=False)
    specs = {
        "baseline": normalized_spec(base, "baseline", threshold=1.0),
        "baseline-tuned": normalized_spec(base, "baseline", threshold=tuned),
        "model": normalized_spec(base, "model"),
        "data": normalized_spec(base, "data", stats),
        "robust": normalized_spec(base, "robust", stats, percentile=cfg.percentile),
    }
    return {"specs": specs, "tuned_threshold": tuned, "search": search}


def record_path(out: Path, dataset: str, model: str, row: str, seed: int) -> Path:
    return out / "records" / f"{dataset}-{model}-{row}-s{seed}.npz"


def evaluate(
    spec: NetworkSpec, dataset: str, root: Path | None, cfg: EvalConfig, seed: int, path: Path, progress: bool = False
) -> SpikeRecord:
    """Run ``spec`` on the first ``cfg.n_images`` test images with input seed ``seed``; cached at ``path``."""
    if path.exists():
        return SpikeRecord.load(path)
    test = datasets.load(dataset, "test", root)
    n = min(cfg.n_images, len(test.images))
    rec = run(
        "fastsim",
        spec,
        test.images[:n],
        steps=cfg.steps,
        seed=seed,
        labels=test.labels[:n],
        image_indices=np.arange(n),
        device=cfg.device,
        dtype=cfg.dtype,
        matmul=cfg.matmul,
        kernel=cfg.kernel,
        batch_size=cfg.batch_size,
        compile=True,
        checkpoints=figure_checkpoints(cfg.steps),
        progress=progress,
    )
    rec = rec.with_meta(dataset=dataset, provenance=provenance(cfg.to_dict(), seed))
    rec.save(path)
    return rec
