"""A spec run as the ReLU network it was converted from (torch, no dropout: eval semantics by construction).

For every spiking layer the ANN activation is a_l = ReLU(W_l ∗ a_{l-1}) (pooling: the mean of each k×k
window of a_{l-1}; ``Flatten`` reshapes); the logits are the output layer's pre-activation W_L ∗ a_{L-1}.
This is the only forward pass of the ANN that normalization and statistics use.
"""

from __future__ import annotations

from functools import singledispatch

import numpy as np
import torch
import torch.nn.functional as F

from convert.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec, SpecError


def _tensor(weight: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    # spec arrays are read-only; torch wants writable memory, so hand it a copy
    return torch.tensor(weight, dtype=like.dtype)


@singledispatch
def layer_forward(layer, x: torch.Tensor) -> torch.Tensor:
    raise SpecError(f"no ANN forward for layer type {type(layer).__name__}")


@layer_forward.register
def _(layer: Flatten, x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1)


@layer_forward.register
def _(layer: Dense, x: torch.Tensor) -> torch.Tensor:
    return x @ _tensor(layer.weight, x).T


@layer_forward.register
def _(layer: Conv2d, x: torch.Tensor) -> torch.Tensor:
    w = _tensor(layer.weight, x)
    return F.conv2d(x, w, stride=layer.stride, padding=layer.padding)


@layer_forward.register
def _(layer: AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, layer.kernel_size, stride=layer.stride)


def as_input(spec: NetworkSpec, images: np.ndarray | torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Images (uint8 or float in [0, 1]) as a float tensor of shape (N, *spec.input_shape)."""
    x = torch.as_tensor(np.asarray(images))
    if x.dtype == torch.uint8:
        x = x.to(torch.float64) / 255.0
    x = x.to(dtype)
    if x[0].numel() != spec.n_inputs:
        raise SpecError(f"input_shape: spec takes {spec.input_shape}, images have shape {tuple(x.shape[1:])}")
    return x.reshape(len(x), *spec.input_shape)


@torch.inference_mode()
def activations(spec: NetworkSpec, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """ReLU activations of every spiking layer (flattened, (N, n_l)) and the logits (N, n_classes)."""
    acts = []
    z = x
    for layer in spec.layers:
        z = layer_forward(layer, z)
        if not isinstance(layer, Flatten):
            logits = z.reshape(len(z), -1)
            z = torch.relu(z)
            acts.append(z.reshape(len(z), -1))
    return acts, logits


def predict(spec: NetworkSpec, images, batch_size: int = 1000) -> np.ndarray:
    """ANN class predictions (argmax of the logits) of ``images``."""
    preds = []
    for i in range(0, len(images), batch_size):
        _, logits = activations(spec, as_input(spec, images[i : i + batch_size]))
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(preds)


def accuracy(spec: NetworkSpec, images, labels, batch_size: int = 1000) -> float:
    return float(np.mean(predict(spec, images, batch_size) == np.asarray(labels)))
