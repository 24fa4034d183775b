"""Potential correction (Li et al., ICML 2021, "A free lunch from ANN"): after per-channel thresholds and bias
correction, each hidden neuron starts at its own potential, chosen so that its mean activity after T steps
matches the ANN's on the calibration images.

Starting a neuron at f·θ instead of θ/2 moves its count after T steps by about f − ½ (the closed form of
docs/qcfs.md: clip(floor(a·T/θ + f), 0, T)), so a mean rate error e_i = mean(a_i − r_i·θ)/θ (spikes per step,
ANN minus SNN) is removed by

    f_i = clip(½ + T·e_i, 0, 1⁻),

layer by layer from the input, each layer measured with the layers below already corrected. The SNN's activity
comes from ``activity`` as in :mod:`convert.bias_correction` (the clip-floor model with each neuron's start by
default, or fastsim's measurement). The output layer under the ``membrane`` readout and pooling populations keep
½. The starts are the spec's ``v_init_neurons`` (one fraction in [0, 1) per neuron, honoured by every engine).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from convert import ann
from convert.bias_correction import BIAS_IMAGES, Activity, calibrated_bias_corrected
from convert.calibration import check_steps
from convert.contract.spec import NetworkSpec, is_spiking
from convert.layers import family_of
from convert.normalize import NormalizationReport
from convert.stats import ActivationStats

__all__ = ["potential_corrected", "calibrated_potential_corrected"]

_BELOW_ONE = float(np.nextafter(1.0, 0.0))


def potential_corrected(
    spec: NetworkSpec, images: Any, steps: Any, activity: Activity | None = None
) -> tuple[NetworkSpec, list[Any]]:
    """``spec`` with a start potential per hidden neuron for T = ``steps`` (``v_init_neurons``), chosen on the
    first :data:`~convert.bias_correction.BIAS_IMAGES` of ``images``; returns it and each population's starts
    (None where they stay at ``v_init``). Pure."""
    steps = check_steps(steps)
    images = np.asarray(images)[:BIAS_IMAGES]
    if len(images) == 0:
        raise ValueError("potential correction needs calibration images: got none")
    target = ann.layer_activities(spec, images)
    sizes = spec.population_sizes
    starts = [np.full(n, spec.v_init) for n in sizes] if spec.v_init_neurons is None else list(spec.v_init_neurons)
    spiking = [i for i, layer in enumerate(spec.layers) if is_spiking(layer)]
    chosen: list[Any] = [None] * len(spiking)

    def correctable(k: int) -> bool:  # a population with weights of its own or edges (not a pool)
        output = k == len(spiking) - 1
        return family_of(spec.layers[spiking[k]]).has_weights and not (output and spec.readout == "membrane")

    def correct(k: int, model: np.ndarray) -> None:
        error = (np.asarray(target[k]) - np.asarray(model)).mean(axis=0) / spec.layers[spiking[k]].threshold
        starts[k] = chosen[k] = np.clip(starts[k] + steps * error, 0.0, _BELOW_ONE)

    def adjust(k: int, layer: Any, a: Any) -> Any:
        if not correctable(k):
            return None
        correct(k, a.reshape(len(a), -1).numpy())
        return layer  # computed again with its new starts, before the layers above read it

    if activity is None:  # the clip-floor model: each population corrected as the one forward pass reaches it
        ann.clip_floor_activations(spec, ann.as_input(spec, images), steps, adjust=adjust, starts=starts)
    else:
        for k in range(len(spiking)):
            if correctable(k):
                correct(k, activity(dataclasses.replace(spec, v_init_neurons=starts), images, steps)[k])
    return dataclasses.replace(spec, v_init_neurons=starts), chosen


def calibrated_potential_corrected(
    spec: NetworkSpec, stats: ActivationStats, images: Any, steps: Any = None, activity: Activity | None = None
) -> tuple[NetworkSpec, NormalizationReport]:
    """The method ``calibrated-pc``: ``calibrated-bc`` (:func:`convert.bias_correction.calibrated_bias_corrected`)
    then :func:`potential_corrected` for the same T against the same ``activity``.
    ``provenance["potential_correction"]`` holds T, the images and each population's mean and range of starts."""
    steps = check_steps(steps)
    new, report = calibrated_bias_corrected(spec, stats, images, steps, activity)
    new, chosen = potential_corrected(new, images, steps, activity)
    summary = {
        "steps": steps,
        "images": int(min(len(images), BIAS_IMAGES)),
        "starts": [
            None if c is None else {"mean": float(c.mean()), "min": float(c.min()), "max": float(c.max())}
            for c in chosen
        ],
    }
    provenance = {**new.provenance, "potential_correction": summary}
    return dataclasses.replace(new, provenance=provenance), report
