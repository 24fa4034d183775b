"""Per-channel thresholds for T steps (the channel-wise form of Li et al. 2021's threshold search; SpikingJelly's
layer-/channel-wise balancing): after the per-layer calibration (θ = 1), each channel c of a hidden layer gets
its own scale λ_c, the λ of least clip-floor error at T over that channel's calibration activations
(:func:`convert.calibration.calibrated_scale`), folded into the weights so that every threshold stays 1:

    row c of W_l and b_{l,c} divided by λ_c,   column c of the next weighted layer multiplied by λ_c.

A positive scale commutes with ReLU, average pooling, a max-pooling gate (it compares units of one channel) and
``Flatten`` (channel c's block of columns), so the ANN's function is unchanged; the SNN's channel c fires at the
rate a_c/λ_c, clipped at one spike per step. A channel is a Conv2d's output channel or a Dense layer's neuron. A
layer keeps its per-layer scale when its output is read by a skip edge or a skip edge enters it (an identity edge
has one gain for every channel), when no weighted layer follows it (the output layer: its rows are the class
scores), or when it has no positive activation in a channel (λ_c = 1 there).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from convert import ann
from convert.calibration import calibrated, calibrated_scale, check_steps
from convert.contract.spec import AvgPool2d, Flatten, MaxPool2d, NetworkSpec, is_spiking
from convert.normalize import NormalizationReport
from convert.stats import ActivationStats

__all__ = ["CHANNEL_IMAGES", "channel_scaled", "calibrated_per_channel"]

CHANNEL_IMAGES = 1024  # calibration images whose activations choose the channels' λ (the first ones given)
_PASS = (AvgPool2d, MaxPool2d, Flatten)  # layers a channel's scale passes through unchanged


def _consumer(spec: NetworkSpec, i: int) -> int | None:
    """The index of the weighted layer that reads layer i's output through pooling and Flatten only, or None
    (no such layer, or a skip edge reads an output on the way)."""
    sources = {e.source for e in spec.skips}
    j = i
    while True:
        if j in sources:
            return None
        j += 1
        if j >= len(spec.layers):
            return None
        if not isinstance(spec.layers[j], _PASS):
            return j


def _fold(layer: Any, scales: np.ndarray, axis: int, block: int = 1, divide: bool = True) -> Any:
    """``layer`` with its weights' ``axis`` (rows: 0, columns: 1) divided (or multiplied) by ``scales``, each
    scale over ``block`` consecutive entries; the bias too when rows are divided."""
    factor = np.repeat(scales, block)
    factor = 1.0 / factor if divide else factor
    weight = np.asarray(layer.weight, dtype=np.float64)
    if axis == 1 and getattr(layer, "groups", 1) > 1:  # a grouped convolution: W[o, i] reads input_channel[o, i]
        per_entry = factor[layer.input_channel()][:, :, None, None]
    else:
        shape = [1] * weight.ndim
        shape[axis] = len(factor)
        per_entry = factor.reshape(shape)
    new = {"weight": (weight * per_entry).astype(np.asarray(layer.weight).dtype)}
    if axis == 0 and layer.bias is not None:
        new["bias"] = (np.asarray(layer.bias, dtype=np.float64) * factor).astype(np.asarray(layer.bias).dtype)
    return dataclasses.replace(layer, **new)


def channel_scaled(spec: NetworkSpec, images: Any, steps: Any) -> tuple[NetworkSpec, list[Any]]:
    """``spec`` (per-layer calibrated, θ = 1) with per-channel scales folded in for T = ``steps``, chosen on
    the first :data:`CHANNEL_IMAGES` of ``images``; returns it and each spiking layer's λ_c (None where the
    layer keeps its per-layer scale). Pure."""
    steps = check_steps(steps)
    images = np.asarray(images)[:CHANNEL_IMAGES]
    if len(images) == 0:
        raise ValueError("per-channel thresholds need calibration images: got none")
    acts = ann.layer_activities(spec, images)
    shapes = spec.shapes
    layers = list(spec.layers)
    spiking = [i for i, layer in enumerate(layers) if is_spiking(layer)]
    chosen: list[Any] = []
    for k, i in enumerate(spiking):
        j = _consumer(spec, i)
        layer = layers[i]
        if j is None or not hasattr(layer, "weight") or not hasattr(layers[j], "weight") or spec.skips_into(i):
            chosen.append(None)
            continue
        channels = int(np.asarray(layer.weight).shape[0])
        per_channel = np.asarray(acts[k]).reshape(len(images), channels, -1)
        lams = np.ones(channels)
        for c in range(channels):
            a = per_channel[:, c].ravel()
            a = a[a > 0]
            lam = calibrated_scale(a, steps)[0] if a.size else 0.0
            lams[c] = lam if lam > 0 else 1.0
        layers[i] = _fold(layer, lams, axis=0)
        # the consumer's input columns: one per channel (Conv2d), or the channel's block after Flatten (Dense)
        block = 1
        if np.asarray(layers[j].weight).ndim == 2:  # Dense: the channel's positions after Flatten
            block = int(np.prod(shapes[j])) // channels
        layers[j] = _fold(layers[j], lams, axis=1, block=block, divide=False)
        chosen.append(lams)
    return dataclasses.replace(spec, layers=tuple(layers)), chosen


def calibrated_per_channel(
    spec: NetworkSpec, stats: ActivationStats, images: Any, steps: Any = None
) -> tuple[NetworkSpec, NormalizationReport]:
    """The method ``calibrated-channel``: :func:`convert.calibration.calibrated` for T = ``steps``, then
    :func:`channel_scaled`. ``provenance["channel_thresholds"]`` holds T, the images and each layer's λ_c
    range (min, max; None where the layer keeps its per-layer scale)."""
    steps = check_steps(steps)
    new, report = calibrated(spec, stats, steps)
    new, chosen = channel_scaled(new, images, steps)
    summary = {
        "steps": steps,
        "images": int(min(len(images), CHANNEL_IMAGES)),
        "range": [None if c is None else [float(np.min(c)), float(np.max(c))] for c in chosen],
    }
    provenance = {**new.provenance, "channel_thresholds": summary}
    return dataclasses.replace(new, provenance=provenance), report
