"""Calibration without retraining: each layer's scale chosen for a target number of time steps T (Li et al.,
ICML 2021, "A free lunch from ANN: towards efficient, accurate spiking neural networks calibration"; reference
code yhhhli/SNN_Calibration), the per-layer threshold search only.

An IF neuron started at θ/2 with reset by subtraction and the constant input a fires clip(floor(a·T/θ + 1/2), 0, T)
times in T steps (docs/qcfs.md), so a layer whose activations are divided by λ (θ = 1) stands, after T steps,
for the clip-floor

    q_λ(a) = λ/T · clip(floor(a·T/λ + 1/2), 0, T).

:func:`calibrated_scale` picks λ_l from a grid of candidates (:func:`candidates`) by the least mean squared error
(a − q_λ(a))² over the layer's calibration activations (:class:`convert.stats.ActivationStats`' sample of its
positive activations: a zero activation gives q = 0, no error, so leaving the zeros out changes the mean by a
constant factor, not the choice). The method ``calibrated`` (:mod:`convert.methods`) folds the λ's as
data-based normalization does (d_l = λ_l / λ_{l−1}, θ = 1) and sets ``v_init`` 0.5 and reset by subtraction,
which the closed form assumes. Per-channel thresholds, bias correction and potential correction (the rest of
Li et al.) are not done.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from convert.contract.spec import NetworkSpec
from convert.normalize import NormalizationReport, apply_divisors, chained_divisors
from convert.stats import ActivationStats

__all__ = ["PERCENTILES", "N_FRACTIONS", "candidates", "clip_floor_error", "calibrated_scale", "calibrated"]

PERCENTILES = (99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0)  # of the positive activations
N_FRACTIONS = 100  # and k/100 of the largest activation, k = 1..100


def check_steps(steps: Any) -> int:
    """``steps`` as an int ≥ 1, or a ValueError that says what it must be."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(
            f"method 'calibrated' needs steps, the target number of time steps T (an integer >= 1), got {steps!r}"
        )
    return int(steps)


def clip_floor_error(samples: np.ndarray, lam: float, steps: int) -> float:
    """mean over ``samples`` of (a − λ/T · clip(floor(a·T/λ + 1/2), 0, T))²; 0 for no samples."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return 0.0
    q = np.clip(np.floor(a * (steps / lam) + 0.5), 0, steps) * (lam / steps)
    return float(np.mean((a - q) ** 2))


def candidates(samples: np.ndarray, maximum: float | None = None) -> np.ndarray:
    """The λ's searched, ascending and distinct: the :data:`PERCENTILES` of ``samples`` (positive activations)
    and k/:data:`N_FRACTIONS` of ``maximum`` (default: the samples' max), k = 1..N; empty if nothing is positive."""
    a = np.asarray(samples, dtype=np.float64)
    top = float(a.max()) if maximum is None and a.size else float(maximum or 0.0)
    if top <= 0:
        return np.empty(0)
    grid = [top * k / N_FRACTIONS for k in range(1, N_FRACTIONS + 1)]
    if a.size:
        grid += [float(p) for p in np.percentile(a, PERCENTILES)]
    return np.unique(np.asarray([g for g in grid if g > 0], dtype=np.float64))


def calibrated_scale(samples: np.ndarray, steps: int, maximum: float | None = None) -> tuple[float, dict[str, Any]]:
    """(λ, details): the candidate λ with the least :func:`clip_floor_error` at T = ``steps`` (the smallest on a
    tie); λ = 0 when no activation is positive."""
    steps = check_steps(steps)
    grid = candidates(samples, maximum)
    if grid.size == 0:
        return 0.0, {"lambda": 0.0, "steps": steps}
    errors = np.array([clip_floor_error(samples, lam, steps) for lam in grid])
    best = int(np.argmin(errors))
    lam = float(grid[best])
    top = float(maximum) if maximum is not None else float(np.max(samples))
    return lam, {"lambda": lam, "steps": steps, "error": float(errors[best]), "lambda_over_max": lam / top}


def calibrated(spec: NetworkSpec, stats: ActivationStats, steps: Any = None) -> tuple[NetworkSpec, NormalizationReport]:
    """The method ``calibrated``: λ_l = :func:`calibrated_scale` of layer l's activations at T = ``steps``,
    W_l ← W_l · λ_{l−1}/λ_l, b_l ← b_l / λ_l (θ = 1, λ_0 = 1), ``v_init`` 0.5, reset by subtraction (the schedule
    as given). The report's layers and ``provenance["calibrated"]`` hold each λ and T."""
    steps = check_steps(steps)
    stats.check_matches(spec)

    def scale_of(li: int, layer) -> tuple[float, dict[str, Any]]:
        lam, details = calibrated_scale(stats.samples[li], steps, stats.max[li] or None)
        return lam, {**details, "exact": stats.exact(li)}

    divisors, infos = chained_divisors(spec, scale_of)
    new, report = apply_divisors(spec, divisors, [1.0] * len(divisors), "calibrated", {"steps": steps}, infos)
    lambdas = [info.get("lambda") for info in infos]  # None: a pooling layer (no scale of its own)
    provenance = {**new.provenance, "calibrated": {"steps": steps, "lambda": lambdas}}
    return dataclasses.replace(new, v_init=0.5, reset="subtract", provenance=provenance), report
