"""Cross-simulator agreement: the same spec, the same inputs, two engines, compared count for count.

*Identical inputs*: both engines get the same counter-based input spikes; per spiking layer we compare the
per-neuron spike counts of every image (exact-match fraction, largest difference), the predicted classes
and the accuracy. A mismatch between float32 and float64 arithmetic is *explained* when the membrane came
within rounding distance of the threshold at some threshold check of that neuron (``SpikeRecord.margins``:
min over steps of |v − θ| / θ), or when an earlier layer of the same image already differed or had a
neuron near its threshold, whose spike may have moved in time without changing its count (propagated).

*Independent Poisson*: each engine draws its own input spikes; accuracies must differ by less than the 95 %
interval of a difference of two binomial proportions, and per-layer mean rates by less than a stated
relative tolerance plus three standard errors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from convert.contract.records import SpikeRecord
from validation.markdown import table

EXPLAIN_MARGIN = 1e-4  # relative |v − θ| / θ below which float32 rounding can flip a threshold check


@dataclass(frozen=True)
class LayerAgreement:
    layer: int
    neurons: int
    pairs: int
    equal: int
    exact_fraction: float
    max_abs_diff: int
    mismatches: list[dict[str, Any]] = field(default_factory=list)  # the first few, with margins


def _margin(record: SpikeRecord, layer: int, image: int, neuron: int) -> float | None:
    margins = getattr(record, "margins", None)
    if margins is None:
        return None
    return float(margins[layer][image, neuron])


def compare_counts(a: SpikeRecord, b: SpikeRecord, max_listed: int = 20) -> dict[str, Any]:
    """Per-neuron agreement of two records of the same images (both need ``neuron_counts``)."""
    if a.neuron_counts is None or b.neuron_counts is None:
        raise ValueError("compare_counts needs per-neuron counts: run both engines with record_neurons=True")
    if not np.array_equal(a.image_indices, b.image_indices):
        raise ValueError("the two records hold different images")
    layers = []
    explained = unexplained = 0
    upstream = np.zeros(a.n_images, dtype=bool)  # images with a difference in an earlier layer
    for li, (ca, cb) in enumerate(zip(a.neuron_counts, b.neuron_counts, strict=True)):
        diff = np.asarray(ca, dtype=np.int64) - np.asarray(cb, dtype=np.int64)
        bad = np.argwhere(diff != 0)
        listed = []
        for image, neuron in bad:
            margins = [m for m in (_margin(a, li, image, neuron), _margin(b, li, image, neuron)) if m is not None]
            margin = min(margins) if margins else None
            near = margin is not None and margin < EXPLAIN_MARGIN
            ok = near or bool(upstream[image])
            explained += ok
            unexplained += not ok
            if len(listed) < max_listed:
                listed.append(
                    {
                        "image": int(a.image_indices[image]),
                        "neuron": int(neuron),
                        "counts": [int(ca[image, neuron]), int(cb[image, neuron])],
                        "min_relative_margin": margin,
                        "explained": "near threshold" if near else ("propagated" if ok else "no"),
                    }
                )
        upstream |= np.any(diff != 0, axis=1)
        for rec in (a, b):
            if getattr(rec, "margins", None) is not None:
                upstream |= np.any(rec.margins[li] < EXPLAIN_MARGIN, axis=1)
        layers.append(
            LayerAgreement(
                layer=li,
                neurons=int(ca.shape[1]),
                pairs=int(diff.size),
                equal=int(diff.size - len(bad)),
                exact_fraction=float(1 - len(bad) / diff.size),
                max_abs_diff=int(np.abs(diff).max()) if diff.size else 0,
                mismatches=listed,
            )
        )
    total_pairs = sum(x.pairs for x in layers)
    total_equal = sum(x.equal for x in layers)
    return {
        "mode": "identical inputs",
        "images": a.n_images,
        "steps": a.steps,
        "layers": [asdict(x) for x in layers],
        "exact_fraction": total_equal / total_pairs if total_pairs else 1.0,
        "mismatches": total_pairs - total_equal,
        "mismatches_explained": explained,
        "mismatches_unexplained": unexplained,
        "prediction_agreement": float(np.mean(a.predictions() == b.predictions())),
        "output_counts_equal": bool(np.array_equal(a.output_counts, b.output_counts)),
        "first_spike_equal": bool(np.array_equal(a.first_spike_step, b.first_spike_step)),
        "accuracy": [a.accuracy(), b.accuracy()],
    }


def binomial_difference_interval(p1: float, p2: float, n1: int, n2: int, z: float = 1.96) -> float:
    """Half-width of the normal-approximation interval of p1 − p2 (at least one count's worth)."""
    se = math.sqrt(max(p1 * (1 - p1), 0.25 / n1) / n1 + max(p2 * (1 - p2), 0.25 / n2) / n2)
    return z * se


def compare_poisson(a: SpikeRecord, b: SpikeRecord, rate_tolerance: float = 0.05) -> dict[str, Any]:
    """Statistical agreement of two runs with independent input noise."""
    acc_a, acc_b = a.accuracy(), b.accuracy()
    half = binomial_difference_interval(acc_a, acc_b, a.n_images, b.n_images)
    layers = []
    for li in range(a.layer_counts.shape[1]):
        xa, xb = a.layer_counts[:, li].astype(float), b.layer_counts[:, li].astype(float)
        ma, mb = xa.mean(), xb.mean()
        sem = math.sqrt(xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb)) if len(xa) > 1 else 0.0
        allowed = rate_tolerance * max(ma, mb) + 3 * sem
        layers.append(
            {
                "layer": li,
                "mean_spikes_per_image": [ma, mb],
                "relative_difference": abs(ma - mb) / max(ma, mb, 1e-12),
                "allowed_difference": allowed,
                "within_tolerance": bool(abs(ma - mb) <= allowed),
            }
        )
    return {
        "mode": "independent Poisson",
        "images": a.n_images,
        "steps": a.steps,
        "accuracy": [acc_a, acc_b],
        "accuracy_difference": acc_a - acc_b,
        "interval_95": half,
        "accuracy_within_interval": bool(abs(acc_a - acc_b) <= half),
        "rate_tolerance": rate_tolerance,
        "layers": layers,
        "rates_within_tolerance": all(x["within_tolerance"] for x in layers),
    }


def markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of an agreement report."""
    lines = [f"# Agreement: {report.get('title', '')}", ""]
    cfg = report.get("config", {})
    if cfg:
        lines += ["Config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()), ""]
    ident = report.get("identical")
    if ident:
        lines += [
            f"## Identical inputs ({ident['images']} images x {ident['steps']} steps)",
            "",
        ]
        lines += table(
            ("layer", "neurons", "(image, neuron) pairs", "exact match", "largest difference"),
            (
                (x["layer"], x["neurons"], x["pairs"], f"{100 * x['exact_fraction']:.4f} %", x["max_abs_diff"])
                for x in ident["layers"]
            ),
        )
        lines += [
            "",
            f"All layers: {100 * ident['exact_fraction']:.4f} % equal; {ident['mismatches']} mismatches "
            f"({ident['mismatches_explained']} explained by a membrane within {EXPLAIN_MARGIN:g}·θ of threshold, "
            f"{ident['mismatches_unexplained']} unexplained). Predictions agree on "
            f"{100 * ident['prediction_agreement']:.2f} % of images; accuracies "
            f"{100 * ident['accuracy'][0]:.2f} % vs {100 * ident['accuracy'][1]:.2f} %.",
            "",
        ]
    nir = report.get("nir")
    if nir:
        lost = "; ".join(nir["not_expressed"]) or "nothing"
        lines += [
            f"## NIR graph (schedule {nir['schedule']}, reset {nir['reset']}; of the spec it does not express: {lost})",
            "",
        ]
        for engine in report["engines"]:
            meta = nir.get(engine)
            if meta:
                lines.append(f"- {engine}: {meta['library']} {meta['version']}, `{meta['importer']}`")
                lines += [f"  - importer departs from NIR: {d}" for d in meta["importer_departures"]]
                lines += [f"  - adapter: {a}" for a in meta["adapter"]]
        lines.append("")
    pois = report.get("poisson")
    if pois:
        lines += [
            f"## Independent Poisson inputs ({pois['images']} images x {pois['steps']} steps)",
            "",
            f"Accuracy {100 * pois['accuracy'][0]:.2f} % vs {100 * pois['accuracy'][1]:.2f} % "
            f"(difference {100 * pois['accuracy_difference']:+.2f} pp, "
            f"95 % interval ±{100 * pois['interval_95']:.2f} pp:"
            f" {'inside' if pois['accuracy_within_interval'] else 'OUTSIDE'}).",
            "",
        ]
        lines += table(
            ("layer", "mean spikes/image A", "B", "relative difference", "within tolerance"),
            (
                (
                    x["layer"],
                    f"{x['mean_spikes_per_image'][0]:.1f}",
                    f"{x['mean_spikes_per_image'][1]:.1f}",
                    f"{100 * x['relative_difference']:.2f} %",
                    x["within_tolerance"],
                )
                for x in pois["layers"]
            ),
        )
    return "\n".join(lines) + "\n"
