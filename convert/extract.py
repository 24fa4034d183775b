"""Trained torch model → NetworkSpec: the baseline "direct copy" of the weights (threshold 1).

Walks an ``nn.Sequential`` module by module and copies each through the layer family that names its class
(:mod:`convert.layers`: Flatten → Flatten, Linear → Dense, Conv2d → Conv2d, AvgPool2d → AvgPool2d); ReLU and
Dropout are dropped (ReLU becomes the IF neuron, dropout is a training device only). A bias, max-pooling or
any other module raises an error naming it.

The spiking network rectifies after every weight layer (an IF neuron's rate is never negative), so the ANN must
too: every Linear/Conv2d but the last (the logits) must be followed by a ReLU before anything that does not
commute with it. Only Dropout, Identity and the modules of non-spiking families (Flatten: a re-indexing) may
sit between a weight layer (a family with weights) and its ReLU; an AvgPool2d
there is refused, because the SNN computes avg(relu(x)) where such an ANN computes relu(avg(x)). A missing ReLU
raises an error naming the module. Extra ReLUs (two in a row, one first, one after a pool or after the last
layer) are accepted: ReLU is idempotent and the input pixels are already non-negative.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from convert.contract.spec import NetworkSpec, SpecError
from convert.datasets import CLASSES
from convert.layers import FAMILIES, LayerFamily

_DROPPED = (nn.ReLU, nn.Dropout, nn.Identity)
#: one image of each dataset, as the engines read it (channels, height, width)
IMAGE_SHAPE = {"mnist": (1, 28, 28), "fashion": (1, 28, 28)}


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)


def check_input_shape(input_shape: tuple[int, ...], dataset: str | None) -> None:
    """Raise :class:`SpecError` unless a model of ``input_shape`` can read ``dataset``'s images: their shape
    (unit dimensions aside: 1×28×28 or 28×28) or their pixels flattened (784, the input of an MLP that takes
    flattened images; the engines flatten an image row by row, as ``x.view(len(x), -1)`` does)."""
    if dataset is None or dataset not in IMAGE_SHAPE:
        return
    image = IMAGE_SHAPE[dataset]
    pixels = 1
    for d in image:
        pixels *= d
    squeezed = tuple(int(d) for d in input_shape if d != 1)
    if squeezed in (tuple(d for d in image if d != 1), (pixels,)):
        return
    raise SpecError(
        f"the model takes {_dims(tuple(input_shape))} inputs; {dataset} images are {_dims(image)} ({pixels} pixels): "
        f"convert a model made for {dataset} (input {_dims(image)}, {_dims(image[1:])} or {pixels} flattened pixels)"
    )


def _extractable() -> list[LayerFamily]:
    """The families with a torch counterpart, in registry order."""
    return [f for f in FAMILIES.values() if f.torch_module is not None]


def _module_class(family: LayerFamily) -> type[nn.Module]:
    return getattr(nn, family.torch_module)


def _weight_modules() -> tuple[type[nn.Module], ...]:
    """The modules of the families with weights (a ReLU must follow them)."""
    return tuple(_module_class(f) for f in _extractable() if f.has_weights)


def _commute_with_relu() -> tuple[type[nn.Module], ...]:
    """What may sit between a weight layer and its ReLU: Dropout, Identity and the re-indexing layers."""
    return (nn.Dropout, nn.Identity, *(_module_class(f) for f in _extractable() if not f.spiking))


def check_rectifiers(model: nn.Sequential) -> None:
    """Raise :class:`SpecError` naming the module if a weight layer that is not the last one is not followed by
    a ReLU (with only Dropout/Identity/Flatten in between): its SNN copy would rectify where the ANN does not."""
    weights = [i for i, m in enumerate(model) if isinstance(m, _weight_modules())]
    commute = _commute_with_relu()
    for i in weights[:-1]:
        j = i + 1
        while j < len(model) and isinstance(model[j], commute):
            j += 1
        if j < len(model) and isinstance(model[j], nn.ReLU):
            continue
        found = f"module {j} ({type(model[j]).__name__})" if j < len(model) else "the end of the model"
        raise SpecError(
            f"module {i} ({type(model[i]).__name__}) is not followed by a ReLU (found {found} first): the spiking "
            "network rectifies after every weight layer but the last, so it would not compute this ANN; "
            f"insert nn.ReLU() right after module {i} (only Dropout or Flatten may come between) and retrain"
        )


def _family_of_module(module: nn.Module, index: int) -> LayerFamily:
    for family in _extractable():
        if isinstance(module, _module_class(family)):
            return family
    supported = ", ".join(f.torch_module for f in _extractable())
    raise SpecError(f"module {index}: unknown layer {type(module).__name__}; supported: {supported}")


def layers_from_module(model: nn.Sequential) -> list:
    """The spec layers copied from ``model``'s modules (ReLU, Dropout and Identity dropped)."""
    layers = [_family_of_module(m, i).from_module(m, i) for i, m in enumerate(model) if not isinstance(m, _DROPPED)]
    check_rectifiers(model)
    return layers


def spec_from_model(
    model: nn.Sequential,
    input_shape: tuple[int, ...] = (1, 28, 28),
    dataset: str | None = None,
    **spec_fields: Any,
) -> NetworkSpec:
    """The direct copy of ``model`` as a spec (all thresholds 1; other fields from ``spec_fields``)."""
    return direct_copy(layers_from_module(model), input_shape, dataset, **spec_fields)


def direct_copy(
    layers: list, input_shape: tuple[int, ...], dataset: str | None = None, **spec_fields: Any
) -> NetworkSpec:
    """A spec of copied ``layers`` (thresholds 1) with ``dataset``'s class labels and the provenance
    ``method="copy"`` (plus ``spec_fields["provenance"]``); the other ``spec_fields`` are the spec's."""
    check_input_shape(tuple(input_shape), dataset)
    labels = CLASSES[dataset] if dataset else ()
    recorded = {"dataset": dataset} if dataset else {}  # what `check_spec_dataset` reads
    provenance = {"method": "copy", **recorded, **spec_fields.pop("provenance", {})}
    return NetworkSpec(
        input_shape=tuple(input_shape), layers=tuple(layers), labels=labels, provenance=provenance, **spec_fields
    )
