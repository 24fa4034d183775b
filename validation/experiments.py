"""Evaluation runs shared by Table 2, the figures and the main job: one (dataset, model, row, seed) at a time.

Rows come from :mod:`validation.rows` (one per registered normalization method, and a tuned-threshold row
for the baseline); with the built-in methods they are the paper's Table 2 columns plus robust normalization:
``baseline`` (the direct copy, threshold 1), ``baseline-tuned`` (the threshold chosen by a search on a
held-out part of the *training* set, never the test set: the last ``holdout`` training images, which
calibration excludes), ``model`` (Algorithm 1), ``data`` (Algorithm 2) and ``robust`` (the 99.9th percentile
of activations, Rueckauer et al. 2017).

Every cached artifact (the threshold search, each run's SpikeRecord) is named by a content fingerprint of
everything that determines it (:mod:`convert.fingerprint`): the spec's weights and semantics, the dataset
split's recorded hash, the evaluation settings that matter to it, the engine options, the input seed and the
format versions. An interrupted Table 2 resumes where it stopped, and a retrained checkpoint or a changed
setting recomputes exactly the entries it changes; an old entry is never read for a new question.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert import datasets, methods
from convert.fingerprint import CACHE_FORMAT_VERSION, fingerprint, short, spec_fingerprint
from convert.pipeline import copy_spec, normalized_spec, stats_for
from convert.provenance import provenance, write_json_atomic
from convert.records import RECORD_FORMAT_VERSION, SpikeRecord, default_checkpoints
from convert.spec import NetworkSpec
from validation.engines import run
from validation.rows import rows

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

    @property
    def engine(self) -> dict[str, Any]:
        """The simulator options that can change a record (float rounding differs between them)."""
        return {
            "engine": "fastsim",
            "device": self.device,
            "dtype": self.dtype,
            "matmul": self.matmul,
            "kernel": self.kernel,
            "batch_size": self.batch_size,
        }


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


def search_key(base: NetworkSpec, dataset: str, cfg: EvalConfig) -> str:
    """Fingerprint of a threshold search: the copy spec, the held-out images, the candidates and the engine."""
    return fingerprint(
        {
            "kind": "threshold-search",
            "cache_format": CACHE_FORMAT_VERSION,
            "spec": spec_fingerprint(base),
            "data": datasets.recorded_hashes(dataset, "train"),
            "search": {k: getattr(cfg, k) for k in ("thresholds", "search_images", "holdout", "search_seed", "steps")},
            "engine": cfg.engine,
        }
    )


def cached_search(base: NetworkSpec, dataset: str, root: Path | None, cfg: EvalConfig, out: Path) -> dict[str, Any]:
    """The baseline threshold search, cached under ``out/searches/`` by :func:`search_key`."""
    key = search_key(base, dataset, cfg)
    path = out / "searches" / f"threshold-{dataset}-{short(key)}.json"
    if path.exists():
        search = json.loads(path.read_text())
        if search.get("key") == key:
            return search
    tuned, scores = search_threshold(base, *heldout(dataset, root, cfg), cfg)
    search = {
        "key": key,
        "chosen": tuned,
        "accuracy": {str(k): v for k, v in scores.items()},
        "on": "held-out train",
        **provenance(cfg.to_dict(), cfg.search_seed),
    }
    write_json_atomic(path, search)
    return search


def build_specs(dataset: str, model: str, root: Path | None, runs: Path, cfg: EvalConfig, out: Path) -> dict:
    """Every row's spec for one trained model (threshold search and statistics cached by content)."""
    base = copy_spec(dataset, model, runs)
    table = rows()
    search = cached_search(base, dataset, root, cfg, out) if any(r.tuned for r in table) else None
    stats = None
    if any(methods.get(r.method).needs_stats for r in table):
        stats = stats_for(base, dataset, root, runs, cfg.calib_images, holdout=cfg.holdout, progress=False)
    shared = {"threshold": 1.0, "percentile": cfg.percentile}
    specs = {}
    for row in table:
        options = {**shared, "threshold": search["chosen"]} if row.tuned else shared
        specs[row.name] = normalized_spec(base, row.method, stats, **options)
    return {"base": base, "specs": specs, "search": search}


def record_key(spec: NetworkSpec, dataset: str, cfg: EvalConfig, seed: int) -> str:
    """Fingerprint of one Table 2 run: spec content, test split, images, steps, checkpoints, engine, seed."""
    return fingerprint(
        {
            "kind": "table2-record",
            "cache_format": CACHE_FORMAT_VERSION,
            "record_format": RECORD_FORMAT_VERSION,
            "spec": spec_fingerprint(spec),
            "data": datasets.recorded_hashes(dataset, "test"),
            "images": cfg.n_images,
            "steps": cfg.steps,
            "checkpoints": figure_checkpoints(cfg.steps),
            "engine": cfg.engine,
            "seed": seed,
        }
    )


def record_path(out: Path, key: str, dataset: str, model: str, row: str, seed: int) -> Path:
    """Where the record of :func:`record_key` ``key`` lives; the readable prefix is for people, not lookup."""
    return out / "records" / f"{dataset}-{model}-{row}-s{seed}-{short(key)}.npz"


def evaluate(
    spec: NetworkSpec,
    dataset: str,
    root: Path | None,
    cfg: EvalConfig,
    seed: int,
    path: Path,
    key: str,
    progress: bool = False,
) -> SpikeRecord:
    """Run ``spec`` on the first ``cfg.n_images`` test images with input seed ``seed``; cached at ``path``
    under ``key`` (a file there holding another key is recomputed, never read)."""
    if path.exists():
        rec = SpikeRecord.load(path)
        if rec.meta.get("cache_key") == key:
            return rec
    test = datasets.load(dataset, "test", root)
    n = cfg.n_images
    if n > len(test.images):
        raise ValueError(f"n_images={n} exceeds the {dataset} test split ({len(test.images)} images)")
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
    rec = rec.with_meta(dataset=dataset, cache_key=key, provenance=provenance(cfg.to_dict(), seed))
    rec.save(path)
    return rec
