"""Beyond the paper's two networks: the deeper Fashion-MNIST networks of :mod:`convert.models` (``vgg``: 3×3
convolutions with bias and BatchNorm, max-pooling, a hidden dense layer; ``resnet``: residual blocks with
BatchNorm, global average pooling) converted with the methods that apply to them and simulated like Table 2.

For each network and each row of :data:`ROWS` (data-based normalization with θ = 1, the same spec with the
reset by subtraction, robust normalization with θ = 1, the copy with the threshold tuned on held-out training
images) on the first ``n_images`` test images for T steps (one input
seed, the records cached by content with Table 2's under ``runs/table2``): the ANN's and the SNN's accuracy on
the same images with 95 % Wilson intervals, the exact McNemar test of the SNN against the ANN, the time after
which the accuracy stays within 1 pp and within 0.1 pp of its value at T, the synaptic events per image at T
against the ANN's multiply-accumulates, and fastsim float64 against Brian2 (cpp_standalone) on a sample of
the data-based spec. Written to ``runs/beyond/`` (``beyond.json``, ``beyond.md``); the rows' specs to
``runs/specs/<dataset>-<model>-<row>.npz``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from convert.contract.io import save_spec
from convert.contract.provenance import provenance, write_json_atomic, write_text_atomic
from convert.train import checkpoint_paths
from validation.harness.agreement import agreement_markdown, agreement_summary
from validation.markdown import table
from validation.paper.convergence import correct_at, time_to_accuracy, tolerance_images
from validation.paper.experiments import EvalConfig, build_specs
from validation.paper.table2 import network_entries, network_jobs, network_records
from validation.significance import mcnemar

NETWORKS: tuple[tuple[str, str], ...] = (("fashion", "vgg"), ("fashion", "resnet"))
ROWS: tuple[str, ...] = ("data", "data-subtract", "robust", "baseline-tuned")
WITHIN_PP: tuple[float, ...] = (1.0, 0.1)


@dataclass(frozen=True)
class BeyondConfig:
    """What the table evaluates: ``eval`` (images, horizon T, seed, engine) for every row of ``rows`` on every
    network of ``networks`` that has a trained checkpoint, and Brian2 on ``agreement_images`` ×
    ``agreement_steps`` of each data-based spec (0 images: no Brian2 check)."""

    eval: EvalConfig = field(default_factory=lambda: EvalConfig(n_images=2000, steps=300, seeds=(0,), part_images=500))
    networks: tuple[tuple[str, str], ...] = NETWORKS
    rows: tuple[str, ...] = ROWS
    agreement_images: int = 10
    agreement_steps: int = 100
    agreement_device: str = "cpp_standalone"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "eval": self.eval.to_dict()}


def time_within(record, pp: float, dt_ms: float) -> float:
    """The time (ms) after which the record's accuracy stays within ``pp`` percentage points of its last
    checkpoint's."""
    correct = np.array([int(correct_at(record, int(c)).sum()) for c in record.checkpoints])
    return time_to_accuracy(record.checkpoints * dt_ms, correct, tolerance_images(record.n_images, pp))


def run_beyond(cfg: BeyondConfig, root: Path | None, runs: Path, progress: bool = True) -> dict[str, Any]:
    """Every (network, row) entry, its tests against the ANN and the Brian2 checks; also written."""
    cache = runs / "table2"  # records and searches shared with Table 2 (keyed by content)
    ev = cfg.eval
    todo = [(ds, m) for ds, m in cfg.networks if checkpoint_paths(runs, ds, m)[1].exists()]
    built = {(ds, m): build_specs(ds, m, root, runs, ev, cache, progress) for ds, m in todo}
    for (ds, m), b in built.items():  # the specs the table runs, for the diagnosis and for other tools
        for row in cfg.rows:
            save_spec(b["specs"][row][0], runs / "specs" / f"{ds}-{m}-{row}.npz")
    jobs = {(ds, m): network_jobs(ev, built[(ds, m)], ds, m, cfg.rows) for ds, m in todo}
    total = sum(j.missing_image_steps(ev, cache) for by_row in jobs.values() for j in by_row.values())
    bar = tqdm(total=total, unit="img-step", unit_scale=True, desc="beyond", disable=not progress or total == 0)
    entries, agreement = [], []
    for ds, model in todo:
        recs = network_records(ev, jobs[(ds, model)], root, cache, bar.update)
        found, correct = network_entries(ev, built[(ds, model)], jobs[(ds, model)], recs, root, cache)
        found.sort(key=lambda e: cfg.rows.index(e["row"]))
        for entry in found:
            row = entry["row"]
            record = recs[row][0]
            dt = built[(ds, model)]["specs"][row][0].dt_ms
            entry["time_within_pp_ms"] = {str(pp): time_within(record, pp, dt) for pp in WITHIN_PP}
            entry["vs_ann"] = mcnemar(correct[row]["T"], correct["ANN"]["T"]).to_dict()
        entries += found
        if cfg.agreement_images:
            spec = built[(ds, model)]["specs"]["data"][0]
            engines = ("fastsim:float64", f"refsim:{cfg.agreement_device}")
            agreement.append(
                agreement_summary(
                    spec, f"{ds}-{model}-data", engines, cfg.agreement_images, cfg.agreement_steps, 0, 0, root, runs
                )
            )
    bar.close()
    results = {"config": cfg.to_dict(), "entries": entries, "agreement": agreement, **provenance(cfg.to_dict(), 0)}
    out = runs / "beyond"
    write_json_atomic(out / "beyond.json", results)
    write_text_atomic(out / "beyond.md", "# Beyond the paper's two networks\n\n" + markdown(results))
    return results


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(results: dict[str, Any]) -> str:
    """The table of :func:`run_beyond`'s entries and its Brian2 checks."""
    ev = results["config"]["eval"]
    lines = [
        f"Fashion-MNIST, the first {ev['n_images']} test images, T = {ev['steps']} ms, input seed "
        f"{ev['seeds'][0]}; ANN and SNN on the same images, 95 % Wilson intervals, exact McNemar test of the SNN "
        "against the ANN; time within x pp: after it the accuracy stays within x pp of its value at T; events: "
        "synaptic events per image up to T against the ANN's multiply-accumulates.",
        "",
    ]
    rows = []
    for e in results["entries"]:
        lo, hi = e["ci95_at_T"]
        within = e["time_within_pp_ms"]
        events = e["synops_per_image_at_T"]
        ratio = "–" if events is None else f"{events / e['ann_macs_per_image']:.2f}"
        ann, snn = e["ann_accuracy_same_images"], e["accuracy_at_T_mean"]
        rows.append(
            (
                *(f"{e['dataset']}-{e['model']}", e["row"], f"{e['threshold']:.3g}", _pct(ann)),
                f"{_pct(snn)} ({_pct(lo)}–{_pct(hi)})",
                f"{100 * (snn - ann):+.2f}",
                f"{e['vs_ann']['p_value']:.2g}",
                *(f"{within['1.0']:.0f}", f"{within['0.1']:.0f}", f"{events or 0:.3g}"),
                *(f"{e['ann_macs_per_image']:.3g}", ratio),
            )
        )
    header = ("network", "row", "θ", "ANN %", "SNN % at T (95 % CI)", "SNN − ANN (pp)", "McNemar p")
    lines += table((*header, "within 1 pp (ms)", "within 0.1 pp (ms)", "events at T", "ANN MACs", "ratio"), rows)
    if results["agreement"]:
        lines += ["", "fastsim against Brian2 on identical input spikes (data-based specs):", ""]
        lines.append(agreement_markdown(results["agreement"]))
    return "\n".join(lines) + "\n"
