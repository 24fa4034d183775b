"""Start a QCFS model from a trained ReLU network of the same architecture (fine-tuning, not training anew).

A QCFS model has the ReLU model's parameters plus one threshold λ per rectifier (``<module>.lam``), so the ReLU
network's weights load into it unchanged. Each λ then starts at the :data:`LAMBDA_PERCENTILE`-th percentile of
its rectifier's positive inputs on the first :data:`LAMBDA_IMAGES` training images, measured with every rectifier
still a ReLU (the ReLU network's own activations): the clip λ loses only the top 0.1 % of activations, where the
default λ = 8 of a QCFS trained from scratch may clip half a layer or leave most of its L levels unused.
Training then goes on with QCFS in place (``TrainConfig.init``; ``python -m convert train --init CHECKPOINT``).

The checkpoint is read and keyed by :mod:`convert.train` (``start_state``; ``init_fingerprint``: by the
weights' content, never by the path, so a copied checkpoint is the same start and a retrained one is a
different one).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from convert.qcfs import QCFS

__all__ = ["LAMBDA_PERCENTILE", "LAMBDA_IMAGES", "load_start", "start_from"]

LAMBDA_PERCENTILE = 99.9  # each λ's start: this percentile of its rectifier's positive inputs
LAMBDA_IMAGES = 512  # ... on the first this many training images (no augmentation)


def load_start(model: nn.Module, state: dict[str, torch.Tensor], origin: str = "the start") -> None:
    """Load ``state`` (a trained model's state dict) into ``model``: every parameter but the QCFS thresholds
    must match; ``origin`` names the checkpoint in the error."""
    result = model.load_state_dict({k: v for k, v in state.items() if not k.endswith(".lam")}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(".lam")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"--init {origin}: its weights do not fit the model (missing {missing[:3]}, unexpected "
            f"{list(result.unexpected_keys)[:3]}); start from a checkpoint of the same architecture"
        )


@torch.no_grad()
def start_from(
    model: nn.Module, state: dict[str, torch.Tensor], images: torch.Tensor, origin: str = "the start"
) -> list[float]:
    """Load ``state`` into the QCFS ``model`` and set every λ from ``images`` (module docstring). Returns the λ
    set, in module order."""
    load_start(model, state, origin)
    rectifiers = [m for m in model.modules() if isinstance(m, QCFS)]
    if not rectifiers:
        raise ValueError("start_from: the model has no QCFS rectifier (fine-tuning starts a QCFS model)")
    inputs: dict[int, list[np.ndarray]] = {i: [] for i in range(len(rectifiers))}
    hooks = []
    for i, m in enumerate(rectifiers):
        m.forward = torch.relu  # the ReLU network's activations while measuring (instance attribute)

        def grab(_mod: nn.Module, args: tuple[torch.Tensor, ...], i: int = i) -> None:
            z = args[0].detach().reshape(-1)
            inputs[i].append(z[z > 0].numpy())

        hooks.append(m.register_forward_pre_hook(grab))
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(images), 128):
            model(images[s : s + 128])
    finally:
        for m, h in zip(rectifiers, hooks, strict=True):
            h.remove()
            del m.forward
        model.train(was_training)
    lams = []
    for i, m in enumerate(rectifiers):
        z = np.concatenate(inputs[i]) if inputs[i] else np.zeros(0)
        lam = float(np.percentile(z, LAMBDA_PERCENTILE)) if z.size else 1.0
        lam = lam if lam > 0 else 1.0  # a rectifier that never fires keeps a unit threshold
        m.lam.fill_(lam)
        lams.append(lam)
    return lams
