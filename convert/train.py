"""Training of the Diehl ANNs, deterministic for a seed on the CPU, with eval-mode accuracy.

The replication we follow measured its ANN accuracy with dropout still on (it never called
``model.eval()``); here every accuracy is measured in eval mode. Adam with a cosine learning-rate decay,
cross-entropy on the logits. Which setting is trained, on which images, and the checkpoint files are
:mod:`convert.select`'s (model selection on a validation split held out from the training set).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from convert import datasets, models


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"
    model: str = "mlp"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    train_images: int | None = None  # a prefix of the training part, for quick runs and tests
    dropout: tuple[float, ...] | None = None  # the model's dropout probabilities (models.build); None: defaults
    validation_images: int = 5000  # the training split's last images: held out for model selection
    shift: int = 0  # augmentation: every training image moved by up to ±shift pixels each way (0: none)
    activation: str = "relu"  # or "qcfs": convert.qcfs.QCFS in place of every ReLU (models.build)
    levels: int | None = None  # QCFS's quantization steps L (activation "qcfs" only)
    init: str | None = None  # a trained checkpoint of the same model to start from (convert.finetune; qcfs only)

    def __post_init__(self) -> None:
        """Refuse impossible settings (0 epochs would save an untrained network) with a ValueError naming them."""
        if self.dataset not in datasets.DATASETS:
            raise ValueError(f"TrainConfig.dataset must be one of {', '.join(datasets.DATASETS)}, got {self.dataset!r}")
        if self.model not in models.MODELS:
            raise ValueError(f"TrainConfig.model must be one of {', '.join(models.MODELS)}, got {self.model!r}")
        checks = {
            "epochs": (_is_int(self.epochs) and self.epochs >= 1, "a positive integer"),
            "batch_size": (_is_int(self.batch_size) and self.batch_size >= 1, "a positive integer"),
            "train_images": (
                self.train_images is None or (_is_int(self.train_images) and self.train_images >= 1),
                "a positive integer or None",
            ),
            "lr": (_is_finite(self.lr) and self.lr > 0, "a positive finite number"),
            "weight_decay": (_is_finite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            "validation_images": (_is_int(self.validation_images) and self.validation_images >= 0, "an integer >= 0"),
            "shift": (_is_int(self.shift) and 0 <= self.shift < 14, "an integer in [0, 14)"),
        }
        for name, (ok, what) in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {what}, got {getattr(self, name)!r}")
        try:
            models.rectifier(self.activation, self.levels)
        except ValueError as err:
            raise ValueError(f"TrainConfig: {err}") from None
        if self.dropout is not None:
            object.__setattr__(self, "dropout", tuple(float(p) for p in self.dropout))
            models.build(self.model, self.dropout)  # validates the probabilities for this model
        if self.init is not None:
            if self.activation != "qcfs":
                raise ValueError(
                    "TrainConfig.init (start from a trained checkpoint) fine-tunes a QCFS model: "
                    "add activation='qcfs' (--activation qcfs), or leave init out to train from scratch"
                )
            object.__setattr__(self, "init", str(self.init))
            object.__setattr__(self, "_init_key", init_fingerprint(self.init, self.model))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def record(config: TrainConfig) -> dict[str, Any]:
    """The config as its records and cache keys hold it: fields added later (``shift``; ``activation`` and
    ``levels``; ``init``) appear only when set (a shift; an activation other than relu; a start), so every
    earlier key and selection request stays valid. A start is recorded by its weights' digest, not its path."""
    out = dataclasses.asdict(config)
    if out["shift"] == 0:
        del out["shift"]
    if out["activation"] == "relu":
        del out["activation"], out["levels"]
    if out["init"] is None:
        del out["init"]
    else:  # the start by its content (convert.finetune.init_fingerprint), never by its path
        out["init"] = {"weights_sha256": config._init_key}  # type: ignore[attr-defined]
    return out


def model_fields(config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint holds besides the model's name to rebuild it: nothing for a ReLU model (its files are
    as before), ``{"activation": "qcfs", "levels": L}`` for a QCFS model (:func:`load_model` reads them)."""
    return {} if config.activation == "relu" else {"activation": config.activation, "levels": config.levels}


def shifted(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image of the batch x (B, 1, H, W) moved by (dy, dx) drawn uniformly from [-shift, shift]², the
    pixels moved in from outside zero (the background)."""
    if shift == 0:
        return x
    b, _, h, w = x.shape
    d = torch.randint(-shift, shift + 1, (b, 2), generator=gen)
    padded = F.pad(x, (shift, shift, shift, shift))
    rows = (torch.arange(h).view(1, h) + shift - d[:, :1]).view(b, 1, h, 1).expand(b, 1, h, w + 2 * shift)
    out = padded.gather(2, rows)
    cols = (torch.arange(w).view(1, w) + shift - d[:, 1:]).view(b, 1, 1, w).expand(b, 1, h, w)
    return out.gather(3, cols)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).reshape(len(images), 1, 28, 28)


@torch.inference_mode()
def predictions(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """The model's class for every image (the argmax of its output), in eval mode (dropout off), ``batch_size``
    images at a time; restores the previous mode."""
    was_training = model.training
    model.eval()
    out = [model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Classification accuracy with the model in eval mode (dropout off); restores the previous mode."""
    correct = int((predictions(model, images, batch_size) == np.asarray(labels)).sum())
    return correct / max(len(images), 1)


def train_model(
    config: TrainConfig,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    progress: bool = False,
) -> tuple[nn.Module, list[float]]:
    """Train a fresh model; return it (in eval mode) and the mean training loss of every epoch."""
    torch.manual_seed(config.seed)
    model = models.build(config.model, config.dropout, config.activation, config.levels)
    if config.init is not None:  # fine-tune: the checkpoint's weights, each λ from the ReLU activations
        from convert.finetune import LAMBDA_IMAGES, start_from

        start_from(model, start_state(config.init, config.model), train_x[:LAMBDA_IMAGES], config.init)
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
            loss = loss_fn(model(shifted(train_x[idx], config.shift, gen)), train_y[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(train_x))
    model.eval()
    return model, losses


def start_state(path: str | Path, model_name: str) -> dict[str, torch.Tensor]:
    """The state dict of the checkpoint a fine-tuning starts from (``TrainConfig.init``), which must be a
    checkpoint of ``model_name``; a missing or foreign file is a clear error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--init {path}: no such checkpoint; give a file written by `python -m convert train`")
    model = load_model(Path(path))
    name = torch.load(Path(path), map_location="cpu", weights_only=True)["model"]
    if name != model_name:
        raise ValueError(
            f"--init {path}: a checkpoint of model {name!r}, not {model_name!r}; start from the same model"
        )
    return model.state_dict()


def init_fingerprint(path: str | Path, model_name: str) -> str:
    """sha256 of the starting weights (names, dtypes, shapes and bytes): the start's cache key."""
    from convert.contract.fingerprint import fingerprint

    return fingerprint({k: v.detach().cpu().numpy() for k, v in start_state(path, model_name).items()})


def checkpoint_paths(runs: Path, dataset: str, model: str) -> tuple[Path, Path]:
    return runs / "models" / f"{dataset}-{model}.pt", runs / "models" / f"{dataset}-{model}.json"


def load_model(path: Path) -> nn.Module:
    """Rebuild a trained model (eval mode) from a checkpoint written by :mod:`convert.select`; any other file
    (damaged, foreign, or a pickle that would run code) raises a ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint; train it with `python -m convert train ...`")

    def not_ours(why: str | BaseException) -> ValueError:
        import pickle

        if isinstance(why, pickle.UnpicklingError):  # torch's own advice (weights_only=False) would run the code
            why = "it holds objects other than tensors, which could run code; refused without loading them"
        if isinstance(why, EOFError) and path.stat().st_size == 0:
            why = "an empty file"
        detail = f"{type(why).__name__}: {str(why).strip()}" if isinstance(why, BaseException) else why
        detail = (detail.splitlines() or [""])[0].split(". This is an internal miniz error")[0][:200]
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
    try:  # a QCFS model's checkpoint names its activation and levels (model_fields); a ReLU model's neither
        model = models.build(name, None, blob.get("activation", "relu"), blob.get("levels"))
    except (TypeError, ValueError) as err:
        raise not_ours(err) from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        raise not_ours(err) from None
    return model.eval()
