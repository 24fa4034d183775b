"""Trained torch model → NetworkSpec: the baseline "direct copy" of the weights (threshold 1).

Walks an ``nn.Sequential`` module by module: Flatten → Flatten, Linear → Dense, Conv2d → Conv2d,
AvgPool2d → AvgPool2d; ReLU and Dropout are dropped (ReLU becomes the IF neuron, dropout is a training
device only). A bias, max-pooling or any other module raises an error naming it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from convert.datasets import CLASSES
from convert.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec, SpecError

_DROPPED = (nn.ReLU, nn.Dropout, nn.Identity)


def _weight(module: nn.Module) -> np.ndarray:
    if getattr(module, "bias", None) is not None:
        raise SpecError(f"{type(module).__name__} has a bias: not supported; build it with bias=False")
    return module.weight.detach().cpu().numpy().astype(np.float64)


def _pool_size(value: Any, name: str) -> int:
    values = {value} if isinstance(value, int) else set(value)
    if len(values) != 1:
        raise SpecError(f"AvgPool2d.{name}: only square pooling is supported, got {value}")
    return int(values.pop())


def layers_from_module(model: nn.Sequential) -> list:
    layers: list = []
    for i, m in enumerate(model):
        if isinstance(m, _DROPPED):
            continue
        if isinstance(m, nn.Flatten):
            layers.append(Flatten())
        elif isinstance(m, nn.Linear):
            layers.append(Dense(_weight(m)))
        elif isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros":
                raise SpecError(f"module {i} (Conv2d): groups, dilation and non-zero padding are not supported")
            layers.append(Conv2d(_weight(m), stride=m.stride, padding=m.padding))
        elif isinstance(m, nn.AvgPool2d):
            if m.padding not in (0, (0, 0)) or m.ceil_mode:
                raise SpecError(f"module {i} (AvgPool2d): padding and ceil_mode are not supported")
            k = _pool_size(m.kernel_size, "kernel_size")
            layers.append(AvgPool2d(k, stride=_pool_size(m.stride or k, "stride")))
        else:
            raise SpecError(
                f"module {i}: unknown layer {type(m).__name__}; supported: Flatten, Linear, Conv2d, AvgPool2d"
            )
    return layers


def spec_from_model(
    model: nn.Sequential,
    input_shape: tuple[int, ...] = (1, 28, 28),
    dataset: str | None = None,
    **spec_fields: Any,
) -> NetworkSpec:
    """The direct copy of ``model`` as a spec (all thresholds 1; other fields from ``spec_fields``)."""
    labels = CLASSES[dataset] if dataset else ()
    provenance = {"method": "copy", **spec_fields.pop("provenance", {})}
    return NetworkSpec(
        input_shape=input_shape,
        layers=tuple(layers_from_module(model)),
        labels=labels,
        provenance=provenance,
        **spec_fields,
    )
