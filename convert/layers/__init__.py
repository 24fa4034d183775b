"""The layer families of a NetworkSpec, one module each, and the one registry that lists them.

:data:`FAMILIES` maps a class name (a layer's ``type`` in spec files) to its :class:`LayerFamily`. The spec's
validation, the ANN forward pass, normalization, the spec file format, the NIR export and the extraction from
torch modules all look a layer up here (:func:`family_of`), so a layer class that is not registered is a
:class:`SpecError` naming it everywhere, and adding a family is one module plus one entry below (and one
builder per simulator: ``fastsim.layers.operator``/``fanout``, ``refsim.connectivity.connections``).
"""

from __future__ import annotations

from convert.layers import avgpool2d, conv2d, dense, flatten, maxpool2d, neurons, skip
from convert.layers.avgpool2d import AvgPool2d
from convert.layers.base import Layer, LayerFamily, SpecError, SpikingLayer, UnknownLayerError
from convert.layers.conv2d import Conv2d
from convert.layers.dense import Dense
from convert.layers.flatten import Flatten
from convert.layers.maxpool2d import MaxPool2d
from convert.layers.neurons import Neurons

#: the registry: class name → family, in the order error messages list them
FAMILIES: dict[str, LayerFamily] = {
    fam.name: fam
    for fam in (flatten.FAMILY, dense.FAMILY, conv2d.FAMILY, avgpool2d.FAMILY, maxpool2d.FAMILY, neurons.FAMILY)
}

#: the registered layer classes when this module was imported (kept for ``isinstance`` checks and type hints;
#: code that must see every family, a test's included, calls :func:`family_of` or reads :data:`FAMILIES`)
LAYER_TYPES: tuple[type, ...] = tuple(fam.layer for fam in FAMILIES.values())
SPIKING_TYPES: tuple[type, ...] = tuple(fam.layer for fam in FAMILIES.values() if fam.spiking)


def supported() -> str:
    """The registered class names, for error messages."""
    return ", ".join(FAMILIES)


def family_of(layer: object) -> LayerFamily:
    """The family of ``layer`` (or of a subclass of a registered class); an :class:`UnknownLayerError` (a
    :class:`SpecError` and a ``TypeError``) naming its class if none is registered."""
    for cls in type(layer).__mro__:
        fam = FAMILIES.get(cls.__name__)
        if fam is not None and fam.layer is cls:
            return fam
    raise UnknownLayerError(f"unknown layer type {type(layer).__name__}; supported: {supported()}")


def is_spiking(layer: object) -> bool:
    """Whether ``layer`` is a population of IF neurons (every registered family but Flatten and MaxPool2d)."""
    return family_of(layer).spiking


def skip_map_layer(edge: skip.Skip) -> Dense | Conv2d | None:
    """A skip edge's map (:class:`convert.layers.skip.Skip`) as a layer of its own family (threshold 1, no bias),
    for the simulators' builders; None for the identity. Per-channel gains are a depthwise 1×1 convolution."""
    if edge.kind == "identity":
        return None
    if edge.kind == "dense":
        return Dense(edge.weight)
    if edge.kind == "channel":
        return Conv2d(edge.weight.reshape(-1, 1, 1, 1), groups=len(edge.weight))
    return Conv2d(edge.weight, stride=edge.stride, padding=edge.padding)


def skip_synapses(edge: skip.Skip, source_shape: tuple[int, ...]) -> int:
    """The (source, target) pairs a skip edge connects: one per unit for the identity."""
    layer = skip_map_layer(edge)
    if layer is None:
        import numpy as np

        return int(np.prod(source_shape))
    return int(family_of(layer).synapses(layer, source_shape))


def is_tap_node(layer: object) -> bool:
    """Whether ``layer`` is a tap node (its family's ``tap``: the max-pool gate, :mod:`convert.layers.maxpool2d`):
    no population but a stateful map on the spikes of the population below, not a reshape."""
    return family_of(layer).tap is not None


__all__ = [
    "FAMILIES",
    "LAYER_TYPES",
    "SPIKING_TYPES",
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "Flatten",
    "Layer",
    "LayerFamily",
    "MaxPool2d",
    "Neurons",
    "SpecError",
    "SpikingLayer",
    "UnknownLayerError",
    "family_of",
    "is_tap_node",
    "skip_map_layer",
    "skip_synapses",
    "is_spiking",
    "supported",
]
