"""torchvision's classification families as the torchvision stage builds and briefly trains them.

Every ReLU classification family torchvision ships is built with ``num_classes=10`` and its first convolution
for one channel (:func:`one_channel`; nothing else edited), for MNIST zero-padded to the smallest input it takes
(:func:`padded`: 32×32; AlexNet 64×64). Brief training (:func:`trained`): the first ``train_images`` training
images in one seeded shuffled order, ``epochs`` epochs of Adam at ``lr`` (a family's own :data:`RECIPES` where
the defaults leave it near chance), batches of ``batch``, BatchNorm in train mode; the weights are cached by the
content of everything that determines them (:func:`train_key`). ``cfg`` is the stage's
:class:`validation.paper.torchvision_table.VisionConfig` (any object with its fields).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from convert.datasets import padded

#: (family, builder keyword arguments, input size)
FAMILIES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("resnet18", {}, 32),
    ("resnet34", {}, 32),
    ("resnet50", {}, 32),
    ("vgg11_bn", {}, 32),
    ("vgg16_bn", {}, 32),
    ("alexnet", {}, 64),
    ("squeezenet1_1", {}, 32),
    ("googlenet", {"aux_logits": False, "init_weights": True}, 32),
    ("densenet121", {}, 32),
    ("mobilenet_v2", {}, 32),
    ("shufflenet_v2_x1_0", {}, 32),
)
NAMES = tuple(f[0] for f in FAMILIES)
#: families whose brief training needs its own learning rate or epochs: Adam at 1e-3 for one epoch leaves them
#: near chance. The rate is the best of 1e-4, 3e-4 and 1e-3 after one epoch, by the accuracy on 1 000 training
#: images the training does not read (images 5 000–5 999; AlexNet 36 / 38 / 21 %, SqueezeNet 29 / 37 / 11 %,
#: vgg11_bn 93 / 53 / 18 %, vgg16_bn 88 / 30 / 22 %: ``benchmarks/torchvision_recipe.py``), never on the test
#: set; three epochs where one at the best rate still leaves a family below 40 %
RECIPES: dict[str, dict[str, Any]] = {
    "alexnet": {"lr": 3e-4, "epochs": 3},
    "squeezenet1_1": {"lr": 3e-4, "epochs": 3},
    "vgg11_bn": {"lr": 1e-4},
    "vgg16_bn": {"lr": 1e-4},
}


def family(name: str) -> tuple[dict[str, Any], int]:
    """The family's builder keyword arguments and input size (:data:`FAMILIES`)."""
    return next((k, s) for n, k, s in FAMILIES if n == name)


def one_channel(model: Any) -> Any:
    """``model`` with its first 3-channel convolution replaced by a 1-channel one of the same settings."""
    from torch import nn

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            conv = nn.Conv2d(
                1, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups, m.bias is not None
            )
            parent = model
            *path, last = name.split(".")
            for part in path:
                parent = getattr(parent, part)
            setattr(parent, last, conv)
            return model
    raise ValueError("the model has no 3-channel convolution")


def build(name: str, seed: int) -> tuple[Any, int]:
    """The family ``name`` as it comes (10 classes, one input channel, seeded initial weights) and its input
    size."""
    import torch

    from convert.vision import import_torchvision

    kwargs, size = family(name)
    tv = import_torchvision()
    torch.manual_seed(seed)
    return one_channel(getattr(tv.models, name)(num_classes=10, **kwargs)), size


def recipe(name: str, cfg: Any) -> Any:
    """``cfg`` with the family's own learning rate and epochs (:data:`RECIPES`), if it has them."""
    return dataclasses.replace(cfg, **RECIPES.get(name, {}))


def train_key(name: str, cfg: Any) -> str:
    """The content of everything that determines the trained weights."""
    import torch

    from convert.datasets import recorded_hashes

    what = {
        "model": name,
        "builder": family(name),
        "train": [cfg.train_images, cfg.epochs, cfg.lr, cfg.batch, cfg.seed],  # cfg: recipe() applied
        "data": recorded_hashes("mnist", "train"),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def train(model: Any, images: np.ndarray, labels: np.ndarray, cfg: Any) -> float:
    """Brief training in place (module docstring); returns the wall time in seconds."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.as_tensor(images, dtype=torch.float32) / 255.0
    y = torch.as_tensor(labels, dtype=torch.int64)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = time.monotonic()
    model.train()
    steps = cfg.epochs * ((len(x) + cfg.batch - 1) // cfg.batch)
    with tqdm(total=steps, desc="train", unit="batch", leave=False) as bar:
        for _ in range(cfg.epochs):
            order = torch.randperm(len(x), generator=gen)
            for lo in range(0, len(x), cfg.batch):
                idx = order[lo : lo + cfg.batch]
                opt.zero_grad()
                loss = F.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                bar.update(1)
    model.eval()
    return time.monotonic() - start


def trained(name: str, cfg: Any, root: Any, cache: Path) -> tuple[Any, int, dict[str, Any]]:
    """The briefly trained model (read from ``cache`` when its key matches), its input size, and how it was
    trained."""
    import torch

    from convert import datasets

    cfg = recipe(name, cfg)
    model, size = build(name, cfg.seed)
    key = train_key(name, cfg)
    path = cache / f"{name}-{key[:16]}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        if saved.get("key") == key:
            model.load_state_dict(saved["state"])
            return model.eval(), size, saved["info"]
    data = datasets.load("mnist", "train", root)
    n = min(cfg.train_images, len(data.images) - cfg.calib_images)
    wall = train(model, padded(data.images[:n], size), data.labels[:n], cfg)
    info = {"train_images": int(n), "epochs": cfg.epochs, "lr": cfg.lr, "train_s": round(wall, 1), "key": key}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "state": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)
    return model.eval(), size, info


__all__ = [
    "FAMILIES",
    "NAMES",
    "RECIPES",
    "build",
    "family",
    "one_channel",
    "padded",
    "recipe",
    "train",
    "train_key",
    "trained",
]
