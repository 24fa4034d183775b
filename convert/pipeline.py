"""The convert pipeline in one place: checkpoint → copy spec → activation stats (cached) → normalized spec.

Used by ``python -m convert normalize`` and by validation/, so that every user of a normalized network
gets it the same way. Files live under the results folder (``--runs``, else ``$SNN_RUNS``, else ``runs/``:
:func:`convert.contract.paths.default_runs`): ``models/``, ``stats/``, ``specs/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from convert import datasets, methods, models, normalize
from convert.contract.fingerprint import (
    CACHE_FORMAT_VERSION,
    KEY_FIELD,
    fingerprint,
    read_cached,
    short,
)
from convert.contract.paths import default_runs as default_runs  # re-exported: the CLIs' --runs default
from convert.contract.spec import NetworkSpec
from convert.extract import spec_from_model
from convert.stats import ActivationStats, collect_stats, load_stats, save_stats, weights_fingerprint
from convert.train import checkpoint_paths, load_model

# collect_stats' settings for the cached statistics (part of their cache key)
STATS_SETTINGS = {"batch_size": 500, "max_samples": 2_000_000, "seed": 0}
# the main job's calibration set: the first 20 000 training images, leaving out the last 5 000 (the threshold
# search's held-out images; validation/paper/experiments.py EvalConfig.calib_images and .holdout)
MAIN_CALIB_IMAGES = 20_000
MAIN_HOLDOUT = 5_000


def copy_spec(dataset: str, model: str, runs: Path, **spec_fields: Any) -> NetworkSpec:
    """The direct copy of the trained checkpoint ``runs/models/<dataset>-<model>.pt``. A checkpoint trained with
    QCFS activations (``convert train --activation qcfs``) is read by ``from_torch``: its λ's in the weights,
    θ = 1, reset by subtraction and ``v_init`` ½ unless ``spec_fields`` say otherwise (convert/qcfs.py)."""
    from convert.qcfs import has_qcfs

    ckpt, _ = checkpoint_paths(runs, dataset, model)
    prov = {"source_checkpoint": ckpt.name, "dataset": dataset, "model": model}
    net = load_model(ckpt)
    if model in models.DEEPER_MODELS or has_qcfs(net):  # BatchNorm, max-pooling, residual sums, QCFS: traced
        from convert.from_torch import from_torch

        return from_torch(net, dataset=dataset, provenance=prov, **spec_fields)
    return spec_from_model(net, dataset=dataset, provenance=prov, **spec_fields)


def trained_activation(dataset: str, model: str, runs: Path) -> str:
    """``"qcfs"`` if the checkpoint ``runs/models/<dataset>-<model>.pt`` was trained with QCFS activations (its
    metrics say so), else ``"relu"`` (also when there is none yet: :func:`copy_spec` names what is missing)."""
    import json

    _, metrics = checkpoint_paths(runs, dataset, model)
    try:
        config = json.loads(metrics.read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return "relu"
    return config.get("activation", "relu") if isinstance(config, dict) else "relu"


def calibration_images(dataset: str, root: Path | None, n: int | None, holdout: int = 0) -> np.ndarray:
    """The calibration set: the first ``n`` training images, excluding the last ``holdout`` (which the
    threshold search of validation/ uses). Never the test split."""
    if n is not None and n < 1:
        raise ValueError(f"calibration images must be a positive count or None (all), got {n}")
    train = datasets.load(dataset, "train", root)
    images = train.images[: len(train.images) - holdout]
    if n is not None and n > len(images):
        raise ValueError(f"{n} calibration images exceed the {len(images)} training images outside the holdout")
    return images if n is None else images[:n]


def stats_for(
    spec: NetworkSpec,
    dataset: str,
    root: Path | None,
    runs: Path,
    n_calib: int | None = None,
    holdout: int = 0,
    progress: bool = True,
) -> ActivationStats:
    """Activation statistics of ``spec``'s ANN on the calibration set, cached under a fingerprint of the
    weights, the training split's recorded hash, the calibration range and the collector's settings."""
    key = fingerprint(
        {
            "kind": "activation-stats",
            "cache_format": CACHE_FORMAT_VERSION,
            "weights": weights_fingerprint(spec),
            "data": datasets.recorded_hashes(dataset, "train"),
            "n_calib": n_calib,
            "holdout": holdout,
            "collector": STATS_SETTINGS,
        }
    )
    path = runs / "stats" / f"{dataset}-{short(key)}.npz"
    stats = read_cached(path, key, load_stats, lambda s: s.meta)
    if stats is not None:
        return stats
    stats = collect_stats(
        spec, calibration_images(dataset, root, n_calib, holdout), progress=progress, **STATS_SETTINGS
    )
    stats = dataclasses.replace(stats, meta={**stats.meta, KEY_FIELD: key})
    save_stats(stats, path)
    return stats


def normalized_spec(
    base: NetworkSpec, method: str, stats: ActivationStats | None = None, images: Any = None, **options: Any
) -> tuple[NetworkSpec, normalize.NormalizationReport]:
    """Apply the registered method ``method`` (:mod:`convert.methods`) to the copy spec ``base``; ``options``
    (``threshold``, ``percentile``, ``previous``, ...) reach the methods that take them, ``images`` (the
    calibration images) those that need them."""
    return methods.get(method).apply(base, stats, images, **options)
