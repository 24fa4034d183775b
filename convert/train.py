"""Training of the Diehl ANNs, deterministic for a seed on the CPU, with eval-mode accuracy.

The replication we follow measured its ANN accuracy with dropout still on (it never called
``model.eval()``); here every accuracy is measured in eval mode. Adam with a cosine learning-rate decay,
cross-entropy on the logits; checkpoints hold the state dict and the metrics.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from convert import datasets, models
from convert.provenance import atomic_path, provenance, write_json_atomic


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"
    model: str = "mlp"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    train_images: int | None = None  # a prefix of the training set, for quick runs and tests

    def __post_init__(self) -> None:
        """Refuse impossible settings (0 epochs would save an untrained network) with a ValueError naming them."""
        import math

        def count(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        def positive(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if self.dataset not in datasets.DATASETS:
            raise ValueError(f"TrainConfig.dataset must be one of {', '.join(datasets.DATASETS)}, got {self.dataset!r}")
        if self.model not in models.MODELS:
            raise ValueError(f"TrainConfig.model must be one of {', '.join(models.MODELS)}, got {self.model!r}")
        for name in ("epochs", "batch_size"):
            if not count(getattr(self, name)):
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.train_images is not None and not count(self.train_images):
            raise ValueError(f"TrainConfig.train_images must be a positive integer or None, got {self.train_images!r}")
        if not positive(self.lr) or self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be a positive finite number, got {self.lr!r}")
        if not positive(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).reshape(len(images), 1, 28, 28)


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Classification accuracy with the model in eval mode (dropout off); restores the previous mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += int((model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(images), 1)


def train_model(
    config: TrainConfig,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    progress: bool = False,
) -> tuple[nn.Sequential, list[float]]:
    """Train a fresh model; return it (in eval mode) and the mean training loss of every epoch."""
    torch.manual_seed(config.seed)
    model = models.build(config.model)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_x) // config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(train_x), generator=gen)
        total = 0.0
        bar = tqdm(
            range(0, len(train_x), config.batch_size),
            desc=f"{config.dataset}-{config.model} epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
        )
        for i in bar:
            idx = order[i : i + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(train_x[idx]), train_y[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(train_x))
    model.eval()
    return model, losses


def checkpoint_paths(runs: Path, dataset: str, model: str) -> tuple[Path, Path]:
    return runs / "models" / f"{dataset}-{model}.pt", runs / "models" / f"{dataset}-{model}.json"


def train_and_save(
    config: TrainConfig, root: Path | None, runs: Path, force: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train (unless a checkpoint exists and not ``force``), write checkpoint + metrics JSON, return metrics."""
    ckpt, metrics_path = checkpoint_paths(runs, config.dataset, config.model)
    if ckpt.exists() and metrics_path.exists() and not force:
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("config") == asdict(config):
            return metrics  # reuse: same training config

    torch.use_deterministic_algorithms(True)
    train = datasets.load(config.dataset, "train", root)
    test = datasets.load(config.dataset, "test", root)
    n = config.train_images or len(train.images)
    tx, ty = images_to_tensor(train.images[:n]), torch.from_numpy(train.labels[:n].astype(np.int64))
    vx, vy = images_to_tensor(test.images), torch.from_numpy(test.labels.astype(np.int64))
    start = time.perf_counter()
    model, losses = train_model(config, tx, ty, progress=progress)
    wall = time.perf_counter() - start
    metrics = {
        "dataset": config.dataset,
        "model": config.model,
        "train_accuracy": accuracy(model, tx, ty),
        "test_accuracy": accuracy(model, vx, vy),
        "accuracy_mode": "model.eval() (dropout off)",
        "epochs": config.epochs,
        "epoch_losses": losses,
        "train_wall_s": wall,
        **provenance(asdict(config), config.seed),
    }
    with atomic_path(ckpt) as tmp:
        torch.save({"model": config.model, "state_dict": model.state_dict(), "metrics": metrics}, tmp)
    write_json_atomic(metrics_path, metrics)
    return metrics


def load_model(path: Path) -> nn.Sequential:
    """Rebuild a trained model (eval mode) from a checkpoint written by :func:`train_and_save`; any other file
    (damaged, foreign, or a pickle that would run code) raises a ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint; train it with `python -m convert train ...`")

    def not_ours(why: str | BaseException) -> ValueError:
        import pickle

        if isinstance(why, pickle.UnpicklingError):  # torch's own advice (weights_only=False) would run the code
            why = "it holds objects other than tensors, which could run code; refused without loading them"
        detail = f"{type(why).__name__}: {str(why).strip()}" if isinstance(why, BaseException) else why
        detail = (detail.splitlines() or [""])[0][:200]
        return ValueError(f"{path}: not a checkpoint written by `python -m convert train`; retrain ({detail})")

    try:
        # weights_only: a pickle that would call anything but tensor constructors raises UnpicklingError
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError...: all mean "not ours"
        raise not_ours(err) from None
    name = blob.get("model") if isinstance(blob, dict) else None
    state = blob.get("state_dict") if isinstance(blob, dict) else None
    if name not in models.MODELS or not isinstance(state, dict):
        raise not_ours("no valid 'model' name and 'state_dict'")
    model = models.build(name)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        raise not_ours(err) from None
    return model.eval()
