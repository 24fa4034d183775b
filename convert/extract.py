"""Trained torch model → NetworkSpec: the baseline "direct copy" of the weights (threshold 1).

Walks an ``nn.Sequential`` module by module: Flatten → Flatten, Linear → Dense, Conv2d → Conv2d,
AvgPool2d → AvgPool2d; ReLU and Dropout are dropped (ReLU becomes the IF neuron, dropout is a training
device only). A bias, max-pooling or any other module raises an error naming it.

The spiking network rectifies after every weight layer (an IF neuron's rate is never negative), so the ANN must
too: every Linear/Conv2d but the last (the logits) must be followed by a ReLU before anything that does not
commute with it. Only Dropout, Identity and Flatten may sit between a weight layer and its ReLU; an AvgPool2d
there is refused, because the SNN computes avg(relu(x)) where such an ANN computes relu(avg(x)). A missing ReLU
raises an error naming the module. Extra ReLUs (two in a row, one first, one after a pool or after the last
layer) are accepted: ReLU is idempotent and the input pixels are already non-negative.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from convert.datasets import CLASSES
from convert.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec, SpecError

_DROPPED = (nn.ReLU, nn.Dropout, nn.Identity)
_COMMUTE_WITH_RELU = (nn.Dropout, nn.Identity, nn.Flatten)  # may sit between a weight layer and its ReLU


def check_rectifiers(model: nn.Sequential) -> None:
    """Raise :class:`SpecError` naming the module if a weight layer that is not the last one is not followed by
    a ReLU (with only Dropout/Identity/Flatten in between): its SNN copy would rectify where the ANN does not."""
    weights = [i for i, m in enumerate(model) if isinstance(m, (nn.Linear, nn.Conv2d))]
    for i in weights[:-1]:
        j = i + 1
        while j < len(model) and isinstance(model[j], _COMMUTE_WITH_RELU):
            j += 1
        if j < len(model) and isinstance(model[j], nn.ReLU):
            continue
        found = f"module {j} ({type(model[j]).__name__})" if j < len(model) else "the end of the model"
        raise SpecError(
            f"module {i} ({type(model[i]).__name__}) is not followed by a ReLU (found {found} first): the spiking "
            "network rectifies after every weight layer but the last, so it would not compute this ANN; "
            f"insert nn.ReLU() right after module {i} (only Dropout or Flatten may come between) and retrain"
        )


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
    check_rectifiers(model)
    return layers


def spec_from_model(
    model: nn.Sequential,
    input_shape: tuple[int, ...] = (1, 28, 28),
    dataset: str | None = None,
    **spec_fields: Any,
) -> NetworkSpec:
    """The direct copy of ``model`` as a spec (all thresholds 1; other fields from ``spec_fields``)."""
    labels = CLASSES[dataset] if dataset else ()
    recorded = {"dataset": dataset} if dataset else {}  # what `check_spec_dataset` reads
    provenance = {"method": "copy", **recorded, **spec_fields.pop("provenance", {})}
    return NetworkSpec(
        input_shape=input_shape,
        layers=tuple(layers_from_module(model)),
        labels=labels,
        provenance=provenance,
        **spec_fields,
    )
