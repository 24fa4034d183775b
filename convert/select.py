"""Model selection on a validation split held out from the training set; the test set is read once, at the end.

The last ``validation_images`` (default 5 000) training images are never trained on: every candidate setting
(learning rate, dropout, epochs) is trained on the rest and scored on them, the best validation accuracy wins
(ties go to the earlier candidate), and only the winner's test accuracy is measured. The checkpoint's metrics
record every candidate with its validation score, so the choice can be audited. The same tail of the training
set is the threshold search's held-out set in validation/ (``EvalConfig.holdout``), and calibration excludes
it, so nothing downstream has seen it in training either.

Each candidate's trained weights are cached under ``runs/models/candidates/`` by a fingerprint of its
training config, the training data's recorded hash and the torch version, so an interrupted selection
resumes with the candidates it finished.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convert import datasets, models
from convert.contract.fingerprint import (
    CACHE_FORMAT_VERSION,
    KEY_FIELD,
    fingerprint,
    read_cached_json,
    short,
)
from convert.contract.provenance import atomic_path, check_outputs, provenance, write_json_atomic
from convert.train import (
    TrainConfig,
    accuracy,
    checkpoint_paths,
    images_to_tensor,
    load_model,
    model_fields,
    record,
    train_model,
)

# The settings tried for each model by `python -m convert select` and the main job: overrides of TrainConfig.
# All use Adam with a cosine decay over the run. The MLP's candidates differ in dropout (input, hidden: Diehl's
# 0.2/0.5 or a lighter 0.1/0.3) and in the length of the schedule; the CNN's in learning rate.
CANDIDATES: dict[str, tuple[dict[str, Any], ...]] = {
    "mlp": (
        {"lr": 1e-3, "dropout": (0.2, 0.5), "epochs": 20},
        {"lr": 1e-3, "dropout": (0.1, 0.3), "epochs": 20},
        {"lr": 1e-3, "dropout": (0.1, 0.3), "epochs": 10},
        # images shifted by up to 1 pixel (Diehl et al.'s MLP reached 98.84 % on the test set)
        {"lr": 1e-3, "dropout": (0.1, 0.3), "epochs": 30, "shift": 1},
    ),
    "cnn": (
        {"lr": 1e-2, "dropout": (0.25,), "epochs": 10},
        {"lr": 1e-3, "dropout": (0.25,), "epochs": 10},
    ),
    # the deeper networks beyond the paper (Fashion-MNIST): one setting each, images shifted by up to 2 pixels
    "vgg": (
        {"lr": 1e-3, "dropout": (0.5,), "epochs": 10, "shift": 2},
        {"lr": 1e-3, "dropout": (0.25,), "epochs": 15, "shift": 1},
    ),
    "resnet": ({"lr": 2e-3, "dropout": (0.1,), "epochs": 15, "shift": 1},),
}


# What `python -m convert select` chose from CANDIDATES on the validation split (docs/results/selection.md
# lists every candidate's score): the main job trains these, and reruns the selection with `--select`.
SELECTED: dict[str, tuple[dict[str, Any], ...]] = {
    "mlp": (CANDIDATES["mlp"][1],),
    "cnn": (CANDIDATES["cnn"][0],),
    "vgg": CANDIDATES["vgg"],
    "resnet": CANDIDATES["resnet"],
}
# where a dataset's choice differs from its model's: the MNIST MLP's shifted candidate won on the validation
# split (99.32 % against 99.02 % for candidate 1; docs/results/selection.md)
SELECTED_FOR: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {("mnist", "mlp"): (CANDIDATES["mlp"][3],)}


def selected(dataset: str, model: str) -> tuple[dict[str, Any], ...]:
    """The setting the main job trains for ``dataset``-``model`` (what `python -m convert select` chose)."""
    return SELECTED_FOR.get((dataset, model), SELECTED[model])


def _canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing stored and new configs."""
    return json.loads(json.dumps(value))


def split_train(
    dataset: str, root: Path | None, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train x, train y, validation x, validation y): the validation split is the training set's last
    ``config.validation_images`` images; ``config.train_images`` takes a prefix of the rest."""
    train = datasets.load(dataset, "train", root)
    n_fit = len(train.images) - config.validation_images
    if n_fit < 1:
        raise ValueError(f"validation_images={config.validation_images} leaves no {dataset} training images")
    if config.train_images is not None and config.train_images > n_fit:
        raise ValueError(
            f"train_images={config.train_images} exceeds the {n_fit} training images left after holding out "
            f"{config.validation_images} for validation"
        )
    fit = slice(0, config.train_images or n_fit)
    val = slice(n_fit, len(train.images))

    def tensors(s: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return images_to_tensor(train.images[s]), torch.from_numpy(train.labels[s].astype(np.int64))

    return *tensors(fit), *tensors(val)


def candidate_key(config: TrainConfig) -> str:
    """Fingerprint of one training run: its config, the training data and the torch version."""
    return fingerprint(
        {
            "kind": "trained-candidate",
            "cache_format": CACHE_FORMAT_VERSION,
            "config": record(config),
            "architecture": models.architecture(config.model, config.activation, config.levels),
            "data": datasets.recorded_hashes(config.dataset, "train"),
            "torch": torch.__version__,
        }
    )


def fit_candidate(config: TrainConfig, root: Path | None, runs: Path, progress: bool = True) -> dict[str, Any]:
    """Train one candidate (or reuse its cached weights) and score it on the validation split.

    Returns ``{"config", "cache_key", "path", "train_accuracy", "validation_accuracy", "epoch_losses",
    "train_wall_s"}``.
    """
    key = candidate_key(config)
    path = runs / "models" / "candidates" / f"{config.dataset}-{config.model}-{short(key)}.pt"
    meta_path = path.with_suffix(".json")
    cached = read_cached_json(meta_path, key) if path.exists() else None
    if cached is not None:
        return cached
    torch.use_deterministic_algorithms(True)
    tx, ty, vx, vy = split_train(config.dataset, root, config)
    start = time.perf_counter()
    model, losses = train_model(config, tx, ty, progress=progress)
    meta = {
        "config": record(config),
        KEY_FIELD: key,
        "path": path.name,
        "train_accuracy": accuracy(model, tx, ty),
        "validation_accuracy": accuracy(model, vx, vy) if len(vx) else None,
        "epoch_losses": losses,
        "train_wall_s": time.perf_counter() - start,
    }
    check_outputs(path, meta_path)  # both or none
    with atomic_path(path) as tmp:
        blob = {"model": config.model, **model_fields(config), "state_dict": model.state_dict(), "metrics": meta}
        torch.save(blob, tmp)
    write_json_atomic(meta_path, meta)
    return meta


def select_and_train(
    base: TrainConfig,
    candidates: tuple[dict[str, Any], ...] = ({},),
    root: Path | None = None,
    runs: Path = Path("runs"),
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every candidate (``base`` with each dict of overrides), keep the best on the validation split as
    ``runs/models/<dataset>-<model>.pt``, measure its test accuracy and return its metrics (also written
    beside it). A single candidate is plain training; the selection is recorded all the same."""
    if not candidates:
        raise ValueError("select_and_train: no candidates")
    configs = [dataclasses.replace(base, **c) for c in candidates]
    if len(configs) > 1 and base.validation_images < 1:
        raise ValueError("choosing between candidates needs a validation split (validation_images >= 1)")
    request = _canonical({"base": record(base), "candidates": list(candidates)})
    ckpt, metrics_path = checkpoint_paths(runs, base.dataset, base.model)
    if ckpt.exists() and metrics_path.exists() and not force:
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("selection", {}).get("request") == request:
            return metrics  # the same question: same candidates, same data, same settings
    fits = [fit_candidate(c, root, runs, progress) for c in configs]
    scores = [f["validation_accuracy"] if f["validation_accuracy"] is not None else -1.0 for f in fits]
    best = max(range(len(fits)), key=lambda i: (scores[i], -i))
    chosen = configs[best]
    model = load_model(ckpt.parent / "candidates" / fits[best]["path"])
    test = datasets.load(base.dataset, "test", root)  # read once, for the chosen model only
    test_acc = accuracy(model, images_to_tensor(test.images), torch.from_numpy(test.labels.astype(np.int64)))
    metrics = {
        "dataset": base.dataset,
        "model": base.model,
        "train_accuracy": fits[best]["train_accuracy"],
        "validation_accuracy": fits[best]["validation_accuracy"],
        "test_accuracy": test_acc,
        "accuracy_mode": "model.eval() (dropout off)",
        "epochs": chosen.epochs,
        "epoch_losses": fits[best]["epoch_losses"],
        "train_wall_s": fits[best]["train_wall_s"],
        "selection": {
            "request": request,
            "criterion": f"validation accuracy on the last {base.validation_images} training images "
            "(never trained on); ties go to the earlier candidate; the test set was not read",
            "candidates": [{"overrides": _canonical(c), **_score(f)} for c, f in zip(candidates, fits, strict=True)],
            "chosen": best,
            "selection_wall_s": sum(f["train_wall_s"] for f in fits),
        },
        **provenance(record(chosen), chosen.seed),
    }
    check_outputs(ckpt, metrics_path)  # both or none
    with atomic_path(ckpt) as tmp:
        blob = {"model": base.model, **model_fields(chosen), "state_dict": model.state_dict(), "metrics": metrics}
        torch.save(blob, tmp)
    write_json_atomic(metrics_path, metrics)
    return metrics


def _score(fit: dict[str, Any]) -> dict[str, Any]:
    score = {k: fit[k] for k in ("validation_accuracy", "train_accuracy", "train_wall_s")}
    return {**score, "key": fit.get(KEY_FIELD, fit.get("key"))}  # a candidate cached before KEY_FIELD has "key"
