"""Bias correction for a calibrated spec (Li et al., ICML 2021, "A free lunch from ANN", its light calibration step):
after the thresholds are chosen for T steps (per channel, :mod:`convert.channel_thresholds`), every layer's bias gets,
per output channel, the mean error between the ANN's activity and the SNN's activity after T steps, layer by layer
from the input, so that each layer's correction sees the layers below it already corrected.

The SNN's activity after T steps is modelled by the clip-floor forward (:func:`convert.ann.clip_floor_activations`,
every spiking layer q(z) = θ/T · clip(floor(z·T/θ + f), 0, T), f the start fraction, ½ for a calibrated spec): exact
for the first spiking layer of an analog-input spec under ``cascade`` with reset by subtraction, a model for the
deeper ones (their input is a spike train, not a constant current). The reference code measures the deeper layers'
activity in the SNN itself; the converter imports no simulator, so a simulator's measurement is passed in as
``activity`` (``fastsim.calibration.simulated_activity``, what ``validation latency`` uses). On the Fashion VGG (500
test images, 256 calibration images) the clip-floor model gains nothing over the thresholds alone, the measured
activity 12–15 pp at T = 4–8 (docs/calibration.md).

For layer l with channel c (a Conv2d's output channel, a Dense layer's neuron):

    b_{l,c} ← b_{l,c} + mean over images and positions of (a_{l,c} − q_{l,c}),

with a the ANN's activity (ReLU) and q the modelled (or, given a simulator, measured) SNN activity, both of
the calibrated spec (so in its units, θ = 1). The output layer under the ``membrane`` readout and layers
without a bias field (pooling) are left as they are; a layer without a bias gets one. With the clip-floor model
the layers are corrected in one forward pass, each as the pass reaches it (:func:`convert.ann.clip_floor_activations`
with ``adjust``): the same operations as one forward pass per layer, so the same biases, in time linear in the
depth (densenet121's 657 populations: one pass instead of 657).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from convert import ann
from convert.calibration import check_steps
from convert.contract.spec import NetworkSpec, is_spiking
from convert.normalize import NormalizationReport
from convert.stats import ActivationStats

__all__ = ["BIAS_IMAGES", "bias_corrected", "calibrated_bias_corrected", "clip_floor_activity"]

BIAS_IMAGES = 256  # calibration images the correction averages over (the first ones given)


Activity = Callable[[NetworkSpec, np.ndarray, int], list[np.ndarray]]


def clip_floor_activity(spec: NetworkSpec, images: np.ndarray, steps: int) -> list[np.ndarray]:
    """The default model of the SNN's activity after T steps: every spiking layer's clip-floor activity
    (:func:`convert.ann.clip_floor_activations`), flattened (N, n_l)."""
    return ann.batched_activities(lambda s, x: ann.clip_floor_activations(s, x, steps), spec, images)


def _channel_means(values: np.ndarray, channels: int) -> np.ndarray:
    """Per-channel mean over the images and the positions of flattened activities (N, C·P) → (C,)."""
    return np.asarray(values, dtype=np.float64).reshape(len(values), channels, -1).mean(axis=(0, 2))


def bias_corrected(
    spec: NetworkSpec, images: Any, steps: Any, activity: Activity | None = None
) -> tuple[NetworkSpec, list[Any]]:
    """``spec`` with every biased hidden layer's bias corrected for T = ``steps`` on the first
    :data:`BIAS_IMAGES` of ``images`` (uint8 or float in [0, 1]); returns it and the per-layer corrections (an
    array per corrected layer, None for a layer left as it was). ``activity(spec, images, T)`` gives the SNN's
    activity per spiking layer (count · θ/T, flattened); the default is :func:`clip_floor_activity`, and a
    simulator can pass its measured one (``fastsim.calibration.simulated_activity``). The output layer is
    left as it is under the ``membrane`` readout: its membrane is linear in the counts below it, whose mean
    error the layer below's correction removes. Pure: the spec given is not changed."""
    steps = check_steps(steps)
    images = np.asarray(images)[:BIAS_IMAGES]
    if len(images) == 0:
        raise ValueError("bias correction needs calibration images: got none")
    target = ann.layer_activities(spec, images)  # the ANN is the same function whatever the biases below become
    layers = list(spec.layers)
    spiking = [i for i, layer in enumerate(layers) if is_spiking(layer)]
    corrections: list[Any] = [None] * len(spiking)
    shapes = spec.shapes

    def correctable(k: int) -> bool:
        output = k == len(spiking) - 1
        has_bias = any(f.name == "bias" for f in dataclasses.fields(layers[spiking[k]]))
        return has_bias and not (output and spec.readout == "membrane")

    def correct(k: int, model: np.ndarray) -> Any:
        """Layer k's bias corrected for its modelled activity ``model`` (N, n_l); the corrected layer."""
        i = spiking[k]
        layer, channels = layers[i], int(shapes[i + 1][0])  # output channels, or neurons of a 1-d population
        delta = _channel_means(target[k], channels) - _channel_means(model, channels)
        bias = np.zeros(channels) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
        dtype = np.asarray(getattr(layer, "weight", bias)).dtype  # the layer's own precision
        layers[i] = dataclasses.replace(layer, bias=(bias + delta).astype(dtype))
        corrections[k] = delta
        return layers[i]

    if activity is None:  # the clip-floor model: each layer corrected as the one forward pass reaches it
        x = ann.as_input(spec, images)  # what clip_floor_activity computes, one layer at a time (module doc)
        ann.clip_floor_activations(
            spec,
            x,
            steps,
            adjust=lambda k, layer, a: correct(k, a.reshape(len(a), -1).numpy()) if correctable(k) else None,
        )
    else:  # a measured activity: the network below corrected, then measured again, for each layer
        for k in range(len(spiking)):
            if correctable(k):
                correct(k, activity(dataclasses.replace(spec, layers=tuple(layers)), images, steps)[k])
    return dataclasses.replace(spec, layers=tuple(layers)), corrections


def calibrated_bias_corrected(
    spec: NetworkSpec, stats: ActivationStats, images: Any, steps: Any = None, activity: Activity | None = None
) -> tuple[NetworkSpec, NormalizationReport]:
    """The method ``calibrated-bc``: the per-channel thresholds for T = ``steps``
    (:func:`convert.channel_thresholds.calibrated_per_channel`: v_init ½, reset by subtraction), then
    :func:`bias_corrected` for the same T on the calibration images, against ``activity`` (default: the
    clip-floor model; ``fastsim.calibration.simulated_activity`` measures it). ``provenance["bias_correction"]``
    holds T, the images used, the activity's name and each layer's largest |correction|."""
    from convert.channel_thresholds import calibrated_per_channel

    steps = check_steps(steps)
    new, report = calibrated_per_channel(spec, stats, images, steps)
    new, corrections = bias_corrected(new, images, steps, activity)
    chosen = activity or clip_floor_activity
    summary = {
        "steps": steps,
        "images": int(min(len(images), BIAS_IMAGES)),
        "activity": f"{chosen.__module__}.{chosen.__qualname__}",
        "max_abs": [None if c is None else float(np.max(np.abs(c))) for c in corrections],
    }
    provenance = {**new.provenance, "bias_correction": summary}
    return dataclasses.replace(new, provenance=provenance), report
