"""Where a conversion loses accuracy: every spiking population's SNN firing rate against the rate the ANN asks
of it, on the same images.

The rate model (Diehl et al. 2015; Rueckauer et al. 2017): an integrate-and-fire neuron without leak, driven by
a constant input current I per step, fires I/θ times per step on average (at most once per step). So the ANN
of a spec, run with every spiking layer's pre-activation divided by its threshold,

    r_0 = x · max_rate · dt,    r_l = ReLU(W_l r_{l-1} + b_l [+ S_l r_j]) / θ_l

(average pooling: mean(r_{l-1}) / θ_l; :func:`convert.ann.rates`, the one ANN forward of the project, with skip
edges S_l from population j, max-pool gates and biases) gives the rate r_l (spikes per step) that each neuron
of layer l should reach; the SNN's rate is its spike count over T steps divided by T. Per layer,
:func:`diagnose` reports over every (image, neuron) pair:

* ``correlation`` (Pearson) and ``slope`` (least squares through the origin) of the SNN rate on the ANN rate;
* ``saturated``: the fraction of pairs that fired in every step they could (rate 1, less the l + 1 steps of
  latency of spiking layer l under the ``delay`` schedule): the ANN asks for more than one spike per step
  there, and the excess is lost;
* ``silent``: among pairs whose ANN rate asks for at least one spike in T steps, the fraction that never fired;
* ``error``: the mean |SNN rate − min(ANN rate, 1)| in spikes per step, and relative to the mean ANN rate.

At a few steps (T ≤ :data:`SMALL_T`, where calibration and QCFS work) two more numbers per layer say how much of
the error is the least any conversion can have at that T and how much is the SNN's own departure:

* ``floor_error``: the error of the clip-floor of the layer's own ANN rates at T, mean
  |clip(floor(r·T + f), 0, T)/T − min(r, 1)| with f the start potential (``v_init`` or ``v_init_neurons``):
  the quantization that T steps impose even on a constant input current (:func:`convert.ann.clip_floor_activations`);
* ``shift``: the signed mean SNN rate − min(ANN rate, 1), what bias and potential correction aim at.

A method whose thresholds clip on purpose (``Method.clips``: the calibrated methods, QCFS) is not told that its
saturated neurons are a fault, and its correlation and slope are taken against min(ANN rate, 1).

The first layer whose error exceeds :data:`DEPART_FACTOR` × its floor error (plus :data:`DEPART_SLACK`) is
where the SNN departs from its ANN beyond quantization: its input spikes arrive unevenly from the layers below,
which the clip-floor model (exact for the first layer of an analog-input cascade) does not capture.

The first layer where the match breaks (correlation below :data:`MIN_CORRELATION`, or more than
:data:`MAX_SATURATED` saturated, or more than :data:`MAX_SILENT` silent) is named with what the pattern usually
means: saturation, a normalization scale that is too small (weights too large for θ); silence, a scale too
large or T too short; a low correlation with neither, the errors of the layers below. Later layers inherit the
errors of earlier ones, so the first broken layer is where to look.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from convert import ann
from convert.ann import as_input
from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec

MIN_CORRELATION = 0.9
MAX_SATURATED = 0.01
MAX_SILENT = 0.05
SUBLINEAR = 0.8  # a first-layer slope below this, under reset to zero, is the reset's loss of charge
SMALL_T = 64  # at most this many steps: the verdict also says where the SNN departs beyond quantization
DEPART_FACTOR = 1.5  # a layer departs when its error exceeds this many times its clip-floor error ...
DEPART_SLACK = 1e-3  # ... plus this (spikes per step: a floor error of 0, as QCFS at T = L, needs a margin)

NOTHING_TO_DIAGNOSE = (
    "the spec has no spiking population to diagnose: its only spiking layer is the membrane readout "
    "(a non-spiking output); diagnose a spec with at least one hidden layer, or with --readout spikes"
)

ADVICE = {
    "saturated": "neurons fire in every step: the ANN asks for more than one spike per step, so the "
    "normalization scale of this layer is too small (weights too large for θ); normalize by a larger "
    "activation (data-based max rather than a low percentile) or raise θ",
    "silent": "neurons the ANN drives never fire: the scale is too large (weights too small for θ) or T too "
    "short; normalize by a smaller activation (a robust percentile), lower θ, or simulate longer",
    "correlation": "the rates follow the ANN only loosely without saturating or falling silent: the errors of "
    "the layers below (their rates are this layer's input), or too few steps for rates to settle",
}


@dataclass(frozen=True)
class LayerDiagnosis:
    layer: int  # index among the spiking layers
    kind: str  # the spec layer's class
    neurons: int
    ann_mean_rate: float  # spikes per step the ANN asks for, averaged over (image, neuron) pairs
    snn_mean_rate: float
    correlation: float
    slope: float
    saturated: float
    silent: float
    error: float
    relative_error: float
    shift: float = float("nan")  # mean SNN rate − min(ANN rate, 1), signed (spikes per step)
    clipped: bool = False  # the spec's method clips by design (Method.clips): saturation is intended
    floor_error: float = float("nan")  # the clip-floor's error at T on the layer's own ANN rates

    def departs(self) -> bool:
        """Whether the error exceeds the clip-floor's at T by more than quantization explains (module docstring)."""
        return bool(self.error > DEPART_FACTOR * self.floor_error + DEPART_SLACK)

    def broken(self) -> str | None:
        """The first pattern that breaks the match here (a key of :data:`ADVICE`), or None."""
        if self.saturated > MAX_SATURATED and not self.clipped:
            return "saturated"
        if self.silent > MAX_SILENT:
            return "silent"
        if self.error == 0.0:  # the SNN's rates are the ANN's exactly (e.g. a layer both leave silent)
            return None
        if not self.correlation >= MIN_CORRELATION:  # NaN (a constant layer that misses) counts as broken
            return "correlation"
        return None


def expected_rates(spec: NetworkSpec, images: np.ndarray) -> list[np.ndarray]:
    """Per spiking layer (a membrane readout's output layer left out), the rate model's spikes per step for
    every image and neuron, (N, n_l) float64 (module docstring)."""
    rate = 1.0 if spec.encoding == "current" else spec.max_rate_hz * spec.dt_ms / 1000.0  # input spikes per step
    per_layer = ann.rates(spec, as_input(spec, images) * rate)
    if spec.readout == "membrane":  # the output layer integrates without spiking: no rate to compare
        per_layer = per_layer[:-1]
    return [r.numpy().astype(np.float64) for r in per_layer]


def clips_by_design(spec: NetworkSpec) -> bool:
    """Whether the spec's normalization method clips the largest activations on purpose (``Method.clips``:
    calibrated thresholds, QCFS), so that saturation is not named as the fault."""
    from convert import methods

    name = spec.provenance.get("method")
    return isinstance(name, str) and name in methods.names() and methods.get(name).clips


def start_fractions(spec: NetworkSpec) -> list[Any]:
    """Per spiking layer, the start potential as a fraction of θ: ``v_init`` (a float), or the layer's
    ``v_init_neurons`` (an array, one per neuron)."""
    if spec.v_init_neurons is None:
        return [float(spec.v_init)] * len(spec.spiking_indices)
    return [np.asarray(f, dtype=np.float64).ravel() for f in spec.v_init_neurons]


def floor_rates(rates: np.ndarray, steps: int, start: Any) -> np.ndarray:
    """clip(floor(r·T + f), 0, T) / T: the rate an IF neuron started at f·θ, reset by subtraction, reaches in T
    steps under the constant current r·θ per step (f broadcast over the neurons, the last axis)."""
    return np.clip(np.floor(rates * steps + start), 0, steps) / steps


def _layer(
    index: int,
    kind: str,
    ann: np.ndarray,
    snn: np.ndarray,
    steps: int,
    delay: bool,
    start: Any = 0.0,
    clipped: bool = False,
) -> LayerDiagnosis:
    floor_err = float(np.abs(floor_rates(ann, steps, start) - np.minimum(ann, 1.0)).mean())
    a, r = ann.ravel(), snn.ravel()
    target = np.minimum(a, 1.0) if clipped else a  # a clipping method's neurons are meant to stop at one per step
    # a spike in every step it could fire in: under `delay`, spiking layer l (0-based) is l + 1 steps late
    full = (steps - (index + 1 if delay else 0)) / steps
    corr = float(np.corrcoef(target, r)[0, 1]) if target.std() > 0 and r.std() > 0 else float("nan")
    slope = float(target @ r / (target @ target)) if target @ target > 0 else float("nan")
    active = a >= 1.0 / steps  # the ANN asks for at least one spike in T steps
    err = np.abs(r - np.minimum(a, 1.0))
    return LayerDiagnosis(
        layer=index,
        kind=kind,
        neurons=ann.shape[1],
        ann_mean_rate=float(a.mean()),
        snn_mean_rate=float(r.mean()),
        correlation=corr,
        slope=slope,
        saturated=float(np.mean(r >= full - 0.5 / steps)),
        silent=float(np.mean(r[active] == 0)) if active.any() else 0.0,
        error=float(err.mean()),
        relative_error=float(err.mean() / a.mean()) if a.mean() > 0 else float("nan"),
        shift=float(np.mean(r - np.minimum(a, 1.0))),
        clipped=clipped,
        floor_error=floor_err,
    )


def diagnose(spec: NetworkSpec, images: np.ndarray, record: SpikeRecord) -> dict[str, Any]:
    """Every spiking layer's :class:`LayerDiagnosis` and the first broken one, from ``record`` (a simulation of
    ``images`` with ``record_neurons=True``). Also returns the rates themselves, for plots."""
    if record.neuron_counts is None:
        raise ValueError("diagnose needs per-neuron counts: simulate with record_neurons=True")
    if record.n_images != len(images):
        raise ValueError(f"the record has {record.n_images} images, but {len(images)} were given")
    steps = record.steps
    ann = expected_rates(spec, images)
    if not ann:
        raise ValueError(NOTHING_TO_DIAGNOSE)
    kinds = [type(spec.layers[i]).__name__ for i in spec.spiking_indices]
    snn = [np.asarray(c, dtype=np.float64) / steps for c in record.neuron_counts[: len(ann)]]
    delay = spec.schedule == "delay"
    starts = start_fractions(spec)
    clipped = clips_by_design(spec)
    pairs = enumerate(zip(ann, snn, strict=True))
    layers = [_layer(k, kinds[k], a, r, steps, delay, starts[k], clipped) for k, (a, r) in pairs]
    first = next((d for d in layers if d.broken()), None)
    verdict = (
        "every layer matches its ANN rates"
        if first is None
        else f"spiking layer {first.layer} ({first.kind}) is the first that breaks: {ADVICE[first.broken()]}"
    )
    if spec.reset == "zero" and layers and layers[0].slope < SUBLINEAR:
        verdict += (
            f"; the rates fall below the ANN's from the first layer on (slope {layers[0].slope:.2f}): a reset to "
            "zero discards the charge above θ at every spike, so a neuron driven by I per step fires only once "
            "in ⌈θ/I⌉ steps; reset by subtraction keeps it (Rueckauer et al. 2017)"
        )
    departs = next((d for d in layers if d.departs()), None) if steps <= SMALL_T else None
    if steps <= SMALL_T:
        corrected = "bias_correction" in spec.provenance or "potential_correction" in spec.provenance
        verdict += "; " + small_t_verdict(layers, steps, departs, corrected)
    return {
        "layers": [asdict(d) | {"broken": d.broken(), "departs": d.departs()} for d in layers],
        "first_broken": None if first is None else first.layer,
        "first_departs": None if departs is None else departs.layer,
        "verdict": verdict,
        "steps": steps,
        "images": record.n_images,
        "snn_accuracy": record.accuracy(),
        "rates": {"ann": ann, "snn": snn},
    }


def small_t_verdict(
    layers: list[LayerDiagnosis], steps: int, departs: LayerDiagnosis | None, corrected: bool = False
) -> str:
    """What the few-step columns say: the first layer that departs beyond the clip-floor of T steps, or that
    every layer's error is quantization."""
    rule = f"{DEPART_FACTOR:g}× the clip-floor error of its own ANN rates at T = {steps}"
    if departs is None:
        return (
            f"at T = {steps} every layer's error stays within {rule}: what is lost is the quantization of T steps; "
            "more steps, or an ANN trained for it (QCFS with L = T), gain the rest"
        )
    d = departs
    sign = "more" if d.shift > 0 else "fewer"
    return (
        f"at T = {steps}, spiking layer {d.layer} ({d.kind}) is the first that departs beyond quantization: error "
        f"{d.error:.4f} against {d.floor_error:.4f} for the clip-floor ({rule}): its input spikes arrive unevenly "
        f"from the layers below, which no threshold at T undoes; its mean rate is off by {d.shift:+.4f} spikes/step "
        f"({sign} spikes than the ANN asks)"
        + (
            ", left after the spec's own bias/potential correction (fitted on the calibration images)"
            if corrected
            else ", what bias or potential correction (calibrated-bc, calibrated-pc) shifts"
        )
    )


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a summary of many networks shows, from :func:`diagnose`'s (or its JSON file's) ``layers``:
    the first broken layer, its pattern (a key of :data:`ADVICE`, None if every layer matches) and the first
    layer's slope (below :data:`SUBLINEAR` under reset to zero: the reset's loss of charge)."""
    layers = result["layers"]
    first = next((d for d in layers if d["broken"]), None)
    return {
        "first_broken": None if first is None else first["layer"],
        "pattern": None if first is None else first["broken"],
        "first_slope": layers[0]["slope"] if layers and layers[0]["slope"] is not None else float("nan"),
    }


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON's null: JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def printable(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 (a name Python decoded with surrogate escapes)
    shown as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def markdown(result: dict[str, Any]) -> str:
    head = (
        "| layer | kind | neurons | ANN rate | SNN rate | correlation | slope | saturated | silent | "
        "error (spikes/step) | relative error | clip-floor error at T | shift | match |"
    )
    lines = [head, "|" + "---|" * 14]

    def num(value: Any, fmt: str) -> str:
        return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)

    for d in result["layers"]:
        match = d["broken"] or ("departs" if d.get("departs") and result["steps"] <= SMALL_T else "ok")
        lines.append(
            f"| {d['layer']} | {d['kind']} | {d['neurons']} | {d['ann_mean_rate']:.4f} | {d['snn_mean_rate']:.4f} "
            f"| {d['correlation']:.3f} | {d['slope']:.3f} | {100 * d['saturated']:.2f} % | {100 * d['silent']:.2f} % "
            f"| {d['error']:.4f} | {100 * d['relative_error']:.1f} % | {num(d.get('floor_error'), '.4f')} "
            f"| {num(d.get('shift'), '+.4f')} | {match} |"
        )
    lines += [
        "",
        f"{result['images']} images × {result['steps']} steps; SNN accuracy {100 * result['snn_accuracy']:.2f} %. "
        f"{result['verdict']}. Broken: correlation < {MIN_CORRELATION}, saturated > {100 * MAX_SATURATED:.0f} % "
        f"or silent > {100 * MAX_SILENT:.0f} % (rates in spikes per step; "
        "the ANN rate is ReLU(W r + b + S r_skip) / θ).",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Any, max_points: int = 200_000) -> None:
    """A grid of per-layer hexbin plots, SNN rate against ANN rate, written atomically to ``path`` (PNG)."""
    from convert.contract.provenance import write_bytes_atomic

    write_bytes_atomic(path, plot_png(result, max_points))


def plot_png(result: dict[str, Any], max_points: int = 200_000) -> bytes:
    """:func:`plot`'s picture as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result["layers"])
    if n == 0:
        raise ValueError(NOTHING_TO_DIAGNOSE)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, d, a, r in zip(axes.flat, result["layers"], result["rates"]["ann"], result["rates"]["snn"], strict=False):
        a, r = a.ravel(), r.ravel()
        if len(a) > max_points:
            keep = rng.choice(len(a), max_points, replace=False)
            a, r = a[keep], r[keep]
        top = max(1.0, float(a.max()) if len(a) else 1.0)
        ax.hexbin(a, r, gridsize=40, bins="log", mincnt=1, extent=(0, top, 0, 1.05), cmap="viridis")
        ax.plot([0, 1], [0, 1], "r--", lw=1)
        ax.set_title(f"layer {d['layer']} {d['kind']}: r={d['correlation']:.3f} {d['broken'] or 'ok'}", fontsize=9)
        ax.set_xlabel("ANN rate (spikes/step)")
        ax.set_ylabel("SNN rate")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return buffer.getvalue()


def run_diagnosis(
    spec: NetworkSpec,
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    steps: int,
    out: Any,
    config: dict[str, Any],
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    runner: Any = None,
) -> dict[str, Any]:
    """Simulate ``spec`` (float64, per-neuron counts) on ``images`` for ``steps`` steps, diagnose it and write
    ``diagnose.md``, ``diagnose.png`` and ``diagnose.json`` (with ``config`` and provenance) atomically to the
    folder ``out``; returns the numbers (without the per-pair rates). ``runner``: how fastsim runs
    (default :func:`validation.harness.engines.run` here; :func:`validation.cluster.sharded` for a Dask cluster)."""
    from pathlib import Path

    from convert.contract.provenance import (
        check_outputs,
        provenance,
        write_bytes_atomic,
        write_json_atomic,
        write_text_atomic,
    )
    from fastsim.network import fastest_kernel
    from validation.harness.engines import run

    if not expected_rates(spec, np.zeros((1, *spec.input_shape), dtype=np.uint8)):
        raise ValueError(NOTHING_TO_DIAGNOSE)  # before minutes of simulation
    out = Path(out)
    files = {name: out / f"diagnose.{name}" for name in ("png", "json", "md")}
    check_outputs(*files.values())  # a link or a device among them: refused before anything runs
    record = (runner or run)(
        "fastsim",
        spec,
        images=images,
        steps=steps,
        seed=seed,
        labels=labels,
        record_neurons=True,
        dtype="float64",
        kernel=fastest_kernel(device, spec),
        device=device,
        progress=progress,
    )
    result = diagnose(spec, images, record)
    numbers = {k: v for k, v in result.items() if k != "rates"}
    # everything rendered before anything is written: a failure leaves none of the three files
    table = markdown(result)
    page = f"# Diagnosis of {printable(name)}\n\n{table}\n![per layer](diagnose.png)\n"
    png = plot_png(result)
    record = _finite({**numbers, **provenance(config, seed)})
    check_outputs(*files.values())
    write_bytes_atomic(files["png"], png)
    write_json_atomic(files["json"], record)
    write_text_atomic(files["md"], page)
    return {**numbers, "markdown": table}
