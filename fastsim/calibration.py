"""The SNN's measured activity for calibration: what :func:`convert.bias_correction.bias_corrected` corrects
against when it is given a simulator instead of its clip-floor model (Li et al. 2021 measure it so)."""

from __future__ import annotations

import dataclasses

import numpy as np

from convert.contract.spec import NetworkSpec
from fastsim.simulate import simulate


def simulated_activity(spec: NetworkSpec, images: np.ndarray, steps: int) -> list[np.ndarray]:
    """Every spiking layer's activity after T = ``steps`` steps of analog (``current``) input under the
    ``cascade`` schedule, count · θ_l / T per neuron, flattened (N, n_l); fastsim's exact float64 engine."""
    run = dataclasses.replace(spec, encoding="current", schedule="cascade")
    record = simulate(run, images, steps=steps, record_neurons=True, dtype="float64", progress=False)
    return [
        np.asarray(counts, dtype=np.float64) * (theta / steps)
        for counts, theta in zip(record.neuron_counts, spec.thresholds, strict=True)
    ]
