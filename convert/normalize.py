"""Weight and threshold balancing: pure functions ``(spec, [stats], options) -> (new_spec, report)``.

None touches its input (spec arrays are read-only anyway); each returns a new spec and a
:class:`NormalizationReport` giving every per-layer divisor. The normalized spec's weights are
W_l / d_l for the divisors d_l below and its biases b_l / (d_1 ⋯ d_l) (with weights scaled layer by layer,
layer l's activations are a_l / Λ_l, Λ_l = d_1 ⋯ d_l, so its constant current must be scaled by the same
product: Rueckauer et al. 2017, eq. 6); a skip edge from the activity after layer j into layer l has its
weights multiplied by Λ_j / Λ_l (each edge by λ_source / λ_target; Hu et al. 2018 for residual blocks), and a
max-pool gate passes Λ through (:func:`node_scales`); its thresholds are all 1 (the methods assume θ = 1),
except ``baseline``, which keeps the weights and biases and sets the threshold.

Each layer family (:mod:`convert.layers`) supplies the per-layer quantities: its largest sum of positive
input weights, its largest positive weight and W ← W / d. A family without weights of its own (average
pooling keeps its weights 1/k², d = 1: a pool of already-normalized activations is itself normalized, its
mean cannot exceed the max of its inputs) passes the running factor ("previous") unchanged to the next
weight layer.

A layer with no positive weight (model-based) or no positive activation (data-based, robust) can never
fire; it is left unscaled (d = 1), the running factor passes through, and the report says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convert.contract.spec import NetworkSpec, SpecError
from convert.layers import LayerFamily, family_of
from convert.layers.skip import Skip
from convert.stats import ActivationStats


@dataclass(frozen=True)
class NormalizationReport:
    method: str
    divisors: tuple[float, ...]  # per spiking layer: W_l ← W_l / divisor
    thresholds: tuple[float, ...]
    options: dict[str, Any] = field(default_factory=dict)
    layers: tuple[dict[str, Any], ...] = ()  # per spiking layer: the quantities behind the divisor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """A plain-text table of the per-layer divisors (for CLIs)."""
        rows = [f"{'layer':>5} {'type':<10} {'divisor':>14} {'threshold':>10}  notes"]
        for i, (d, t, info) in enumerate(zip(self.divisors, self.thresholds, self.layers, strict=True)):
            notes = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            rows.append(f"{i:>5} {info.get('type', ''):<10} {d:>14.6g} {t:>10.4g}  {notes}")
        return "\n".join(rows)


def _spiking_family(layer: object) -> LayerFamily:
    family = family_of(layer)
    if not family.spiking:
        raise SpecError(f"{family.name} is not a spiking layer: it has no weights or threshold to normalize")
    return family


def max_positive_input_sum(layer: object) -> float:
    """max over neurons of Σ_i max(w_i, 0) (conv: per output channel over in-channels × kernel; pooling: 1)."""
    return _spiking_family(layer).max_positive_input_sum(layer)


def max_positive_weight(layer: object) -> float:
    """max(0, largest weight) (pooling: 1/k²)."""
    return _spiking_family(layer).max_positive_weight(layer)


def apply_divisors(
    spec: NetworkSpec,
    divisors: list[float],
    thresholds: list[float],
    method: str,
    options: dict[str, Any],
    infos: list[dict[str, Any]],
) -> tuple[NetworkSpec, NormalizationReport]:
    """The normalized spec and its report: every spiking layer l's weights divided by its divisor d_l, its bias
    by the cumulative scale Λ_l (:func:`node_scales`), a skip edge's weights multiplied by Λ_source/Λ_l, its threshold
    set to ``thresholds[l]``; the provenance names ``method`` and its ``options``. The one place every method (and
    the QCFS copy, :mod:`convert.from_torch`) writes scales into a spec."""
    layers = list(spec.layers)
    scales = node_scales(spec, divisors)
    # S ← S · Λ_j / Λ_l: each skip edge by λ_source / λ_target
    skips = tuple(e.scaled(scales[e.source] / scales[e.target]) for e in spec.skips)
    for d, t, i in zip(divisors, thresholds, spec.spiking_indices, strict=True):
        layer, family = layers[i], _spiking_family(layers[i])
        cumulative = scales[i]  # Λ_l
        if family.has_weights:
            layer = family.scaled(layer, d)
        if getattr(layer, "bias", None) is not None:  # b_l ← b_l / Λ_l (Rueckauer et al. 2017, eq. 6)
            layer = dataclasses.replace(layer, bias=layer.bias / cumulative)
        layers[i] = dataclasses.replace(layer, threshold=t)
    report = NormalizationReport(method, tuple(divisors), tuple(thresholds), dict(options), tuple(infos))
    provenance = {
        **spec.provenance,
        "method": method,
        "options": dict(options),
        "divisors": list(divisors),
        "normalized_from": spec.provenance.get("method", "copy"),
    }
    return dataclasses.replace(spec, layers=tuple(layers), skips=skips, provenance=provenance), report


def node_scales(spec: NetworkSpec, divisors: list[float]) -> list[float]:
    """Λ after every layer of ``spec`` for the per-population divisors d_l: Λ_l = Λ_{l−1} · d_l along the
    trunk (the scale by which the normalized network's activity after that layer is smaller than the ANN's);
    Flatten and a max-pool gate pass the scale below them through (max(a / Λ) = max(a) / Λ). Given the
    divisors of the first populations only, it is exact for the layers up to the last of them."""
    scales, current, k = [], 1.0, 0
    for layer in spec.layers:
        if family_of(layer).spiking:
            current *= divisors[k] if k < len(divisors) else 1.0
            k += 1
        scales.append(current)
    return scales


def _info(layer) -> dict[str, Any]:
    return {"type": type(layer).__name__}


def chained_divisors(
    spec: NetworkSpec, scale_of: Callable[[int, Any], tuple[float, dict[str, Any]]], keep_applied: bool = False
) -> tuple[list[float], list[dict[str, Any]]]:
    """The layer walk shared by data-based and robust normalization.

    previous = 1; for each weight layer l with scale s_l = ``scale_of(l, layer)``: divisor d_l = s_l / previous,
    then previous = s_l (or d_l with ``keep_applied``, as Diehl's code does). Pooling layers get d = 1 and pass
    previous through; a layer with s_l = 0 never fires and is left unscaled (d = 1, previous unchanged).
    """
    prev = 1.0
    divisors, infos = [], []
    for li, i in enumerate(spec.spiking_indices):
        layer = spec.layers[i]
        info = _info(layer)
        d = 1.0
        if _spiking_family(layer).has_weights:
            scale, details = scale_of(li, layer)
            info.update(details)
            if scale == 0:
                info["note"] = "no positive weight or activation on the calibration data: cannot fire; left unscaled"
            else:
                d = scale / prev
                prev = d if keep_applied else scale
        divisors.append(d)
        infos.append(info)
    return divisors, infos


def baseline(spec: NetworkSpec, threshold: float = 1.0) -> tuple[NetworkSpec, NormalizationReport]:
    """The direct copy: weights unchanged, every spiking layer's threshold set to ``threshold``."""
    if not np.isfinite(threshold) or threshold <= 0:
        raise SpecError(f"threshold must be a positive finite number, got {threshold!r}")
    n = len(spec.spiking_indices)
    infos = [_info(spec.layers[i]) for i in spec.spiking_indices]
    return apply_divisors(spec, [1.0] * n, [float(threshold)] * n, "baseline", {"threshold": threshold}, infos)


def _max_drive(layer: Any, previous: float, skips: list[tuple[Skip, float]]) -> float:
    """max over neurons j of Σ_i max(W_ji, 0) + Σ_edges Σ_i max(S_ji, 0) · Λ_src / Λ_{l-1} + max(b_j, 0) / Λ_{l-1}:
    the most one step can bring to a neuron whose inputs (the trunk's and every skip's, each normalized) fire
    at most once per step, before dividing by d_l (the bias is divided by Λ_{l-1} · d_l, a skip's weights by
    Λ_{l-1} · d_l / Λ_src, the trunk's weights by d_l). ``skips``: each skip edge and its Λ_src / Λ_{l-1}."""
    own = getattr(layer, "weight", None)  # a Neurons population has none: its edges bring everything
    w = 0.0 if own is None else np.clip(own, 0, None).reshape(own.shape[0], -1).sum(axis=1)
    if layer.bias is not None:
        w = w + np.clip(layer.bias, 0, None) / previous
    for edge, scale in skips:
        w = w + edge.positive_input_rows() * scale
    return float(np.max(w))


def model_based(spec: NetworkSpec, normalize_output: bool = True) -> tuple[NetworkSpec, NormalizationReport]:
    """Algorithm 1 (Diehl et al. 2015): divide each layer by its largest sum of positive input weights (with
    a bias: plus its positive bias, in the scale of the layer's normalized input).

    Afterwards no neuron can receive more than θ = 1 in one step from one-spike-per-step inputs, so none
    needs to fire more than once per step. ``normalize_output=False`` leaves the output layer as is
    (Diehl's CNN code does this).
    """
    divisors, infos = [], []
    last = spec.spiking_indices[-1]
    cumulative = 1.0  # Λ_{l-1}: the bias of layer l is divided by Λ_{l-1} · d_l
    for i in spec.spiking_indices:
        layer = spec.layers[i]
        info = _info(layer)
        s = max_positive_input_sum(layer)
        info["max_positive_input_sum"] = s
        bias = _spiking_family(layer).max_positive_bias
        has_bias = bias is not None and bias(layer) > 0
        into = spec.skips_into(i)
        if has_bias or into:  # the bias and the skips, in the scale of this input
            sources = node_scales(spec, divisors)  # Λ of each skip's source: from the divisors so far
            s = _max_drive(layer, cumulative, [(e, sources[e.source] / cumulative) for e in into])
            info["max_positive_drive"] = s
        if not _spiking_family(layer).has_weights or (i == last and not normalize_output):
            d = 1.0
        elif s == 0:
            d, info["note"] = 1.0, "no positive weight: cannot fire; left unscaled"
        else:
            d = s
        cumulative *= d
        divisors.append(d)
        infos.append(info)
    options = {"normalize_output": normalize_output}
    return apply_divisors(spec, divisors, [1.0] * len(divisors), "model", options, infos)


def data_based(
    spec: NetworkSpec, stats: ActivationStats, previous: str = "scale"
) -> tuple[NetworkSpec, NormalizationReport]:
    """Algorithm 2 (Diehl et al. 2015), data-based normalization.

    previous = 1; for each weight layer l: scale_l = max(largest positive weight, largest activation over
    the calibration data); W_l ← W_l / (scale_l / previous); previous = scale_l.

    ``previous="applied"`` instead sets previous to the applied factor scale_l / previous, as Diehl's
    MATLAB code does (open issue 5 of dannyneil/spiking_relu_conversion), for comparison.
    """
    if previous not in ("scale", "applied"):
        raise ValueError(f"previous must be 'scale' (the paper) or 'applied' (Diehl's code), got {previous!r}")
    stats.check_matches(spec)

    def scale_of(li: int, layer) -> tuple[float, dict[str, Any]]:
        max_wt, max_act = max_positive_weight(layer), stats.max[li]
        scale = max(max_wt, max_act)
        return scale, {"max_weight": max_wt, "max_activation": max_act, "scale": scale}

    divisors, infos = chained_divisors(spec, scale_of, keep_applied=previous == "applied")
    return apply_divisors(spec, divisors, [1.0] * len(divisors), "data", {"previous": previous}, infos)


def robust(
    spec: NetworkSpec, stats: ActivationStats, percentile: float = 99.9
) -> tuple[NetworkSpec, NormalizationReport]:
    """Robust normalization (Rueckauer et al. 2017): λ_l = the p-th percentile of layer l's (positive)
    activations; W_l ← W_l · λ_{l-1} / λ_l with λ_0 = 1 (inputs lie in [0, 1])."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    stats.check_matches(spec)

    def scale_of(li: int, layer) -> tuple[float, dict[str, Any]]:
        lam = stats.percentile(li, percentile)
        return lam, {"percentile_activation": lam, "exact": stats.exact(li)}

    divisors, infos = chained_divisors(spec, scale_of)
    return apply_divisors(spec, divisors, [1.0] * len(divisors), "robust", {"percentile": percentile}, infos)
