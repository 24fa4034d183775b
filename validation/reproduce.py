"""The main job: data → training → conversion → Table 1, Table 2, Figures 3/4 → agreement with Brian2.

Reduced scale by default so that it finishes on a 2-core CPU box; every stage reuses what an earlier
(interrupted) run finished: checkpoints, statistics, specs, simulation records. ``runs/REPORT.md``
collects the tables with the command, the machine and the wall time of every stage.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convert import ann, datasets, methods
from convert.io import save_spec
from convert.nir_export import save_nir
from convert.pipeline import copy_spec, normalized_spec, stats_for
from convert.provenance import machine, provenance, write_json_atomic, write_text_atomic
from convert.select import CANDIDATES, select_and_train
from convert.table1 import write_table1
from convert.train import TrainConfig
from validation.experiments import EvalConfig
from validation.figures import convergence_markdown, make_figures
from validation.table2 import PAIRS, run_table2


@dataclass(frozen=True)
class ReproduceConfig:
    # the training settings tried per model; the best on the validation split is kept (convert/select.py)
    candidates: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=lambda: dict(CANDIDATES))
    seed: int = 0
    eval: EvalConfig = field(default_factory=EvalConfig)
    agreement_images: int = 10
    agreement_steps: int = 100
    agreement_device: str = "cpp_standalone"


def _stage(log: list[dict[str, Any]], name: str, start: float) -> None:
    log.append({"stage": name, "wall_s": round(time.perf_counter() - start, 1)})
    print(f"[reproduce] {name}: {log[-1]['wall_s']:.0f} s", flush=True)


def train_all(cfg: ReproduceConfig, root: Path | None, runs: Path) -> None:
    for ds, model in PAIRS:
        base = TrainConfig(dataset=ds, model=model, seed=cfg.seed, validation_images=cfg.eval.holdout)
        m = select_and_train(base, cfg.candidates[model], root, runs)
        sel = m["selection"]
        print(
            f"  {ds}-{model}: candidate {sel['chosen']} of {len(sel['candidates'])} "
            f"(validation {100 * m['validation_accuracy']:.2f} %), test {100 * m['test_accuracy']:.2f} %"
        )


def write_specs(cfg: ReproduceConfig, root: Path | None, runs: Path) -> list[dict[str, Any]]:
    """The four methods' specs for every model under runs/specs/ (with their divisors and the ANN test
    accuracy of each normalized spec, which must equal the copy's), and one NIR export."""
    rows = []
    for ds, model in PAIRS:
        base = copy_spec(ds, model, runs)
        test = datasets.load(ds, "test", root)
        copy_acc = ann.accuracy(base, test.images, test.labels)
        stats = stats_for(base, ds, root, runs, cfg.eval.calib_images, holdout=cfg.eval.holdout, progress=False)
        for method in methods.names():
            spec, report = normalized_spec(base, method, stats, percentile=cfg.eval.percentile)
            save_spec(spec, runs / "specs" / f"{ds}-{model}-{method}.npz")
            if (ds, model, method) == ("mnist", "cnn", "model"):
                # the graph other simulators run: the cascade schedule (NIR cannot express the delay schedule)
                save_nir(dataclasses.replace(spec, schedule="cascade"), runs / "specs" / "mnist-cnn-model.nir")
            acc = ann.accuracy(spec, test.images, test.labels)
            same = acc == copy_acc  # positive homogeneity: only an exact logit tie could break it
            rows.append(
                {"spec": f"{ds}-{model}-{method}", "divisors": list(report.divisors), "ann_test": acc, "same": same}
            )
            print(
                f"  {ds}-{model}-{method}: divisors {[f'{d:.4g}' for d in report.divisors]}, ANN test {acc:.4f}"
                + ("" if same else f" DIFFERS from the copy's {copy_acc:.4f}")
            )
    write_json_atomic(runs / "specs" / "summary.json", rows)
    return rows


def agreement_runs(cfg: ReproduceConfig, root: Path | None, runs: Path) -> list[dict[str, Any]]:
    from convert.io import load_spec
    from validation.agreement import agreement, write_report

    test = datasets.load("mnist", "test", root)
    n = cfg.agreement_images
    summaries = []
    for model in ("mlp", "cnn"):
        spec = load_spec(runs / "specs" / f"mnist-{model}-data.npz")
        for engines in (("fastsim:float64", f"refsim:{cfg.agreement_device}"), ("fastsim:float32", "fastsim:float64")):
            images = n if engines[0] != "fastsim:float32" else 10 * n
            report, recs = agreement(
                spec, test.images[:images], test.labels[:images], cfg.agreement_steps, engines, seed=cfg.seed
            )
            name = f"mnist-{model}-data-{engines[0].replace(':', '_')}-vs-{engines[1].replace(':', '_')}"
            config = {"spec": f"mnist-{model}-data", "images": images, "steps": cfg.agreement_steps, "seed": cfg.seed}
            write_report(report, recs, runs / "agreement", name, config)
            ident = report["identical"]
            summaries.append(
                {
                    "model": model,
                    "engines": " vs ".join(engines),
                    "images": images,
                    "steps": cfg.agreement_steps,
                    "exact_fraction": ident["exact_fraction"],
                    "mismatches": ident["mismatches"],
                    "explained": ident["mismatches_explained"],
                    "prediction_agreement": ident["prediction_agreement"],
                }
            )
            print(f"  {name}: {100 * ident['exact_fraction']:.4f} % equal counts")
    return summaries


def agreement_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| MNIST model (data-based) | engines | images × steps | equal per-neuron counts | mismatches "
        "(explained) | same prediction |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['engines']} | {r['images']} × {r['steps']} | {100 * r['exact_fraction']:.4f} % "
        f"| {r['mismatches']} ({r['explained']}) | {100 * r['prediction_agreement']:.1f} % |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def reproduce(cfg: ReproduceConfig, root: Path | None, runs: Path) -> Path:
    log: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    start = time.perf_counter()
    train_all(cfg, root, runs)
    table1 = write_table1(runs)
    _stage(log, "training + Table 1", start)
    start = time.perf_counter()
    write_specs(cfg, root, runs)
    _stage(log, "conversion (statistics + specs)", start)
    start = time.perf_counter()
    results = run_table2(cfg.eval, root, runs)
    from validation.table2 import cost_markdown, paired_markdown
    from validation.table2 import markdown as table2_markdown

    _stage(log, "Table 2 simulations (fastsim)", start)
    start = time.perf_counter()
    conv = make_figures(results, runs)
    _stage(log, "Figures 3/4", start)
    start = time.perf_counter()
    agree = agreement_runs(cfg, root, runs)
    _stage(log, "agreement with Brian2", start)
    total = time.perf_counter() - t0
    tag = cfg.eval.tag
    report = "\n".join(
        [
            "# Reduced-scale reproduction",
            "",
            f"Command: `make reproduce`. Machine: {machine()}. Total wall time {total / 60:.1f} min.",
            "",
            "## Table 1 (ANN accuracy, eval mode)",
            "",
            table1,
            "## Table 2 (SNN accuracy)",
            "",
            table2_markdown(results),
            paired_markdown(results),
            cost_markdown(results),
            f"Figures: `runs/table2/{tag}/fig3_mnist.png`, `runs/table2/{tag}/fig4_fashion.png`.",
            "",
            "## Convergence",
            "",
            convergence_markdown(conv, cfg.eval.steps),
            "## Agreement (identical input spikes)",
            "",
            agreement_markdown(agree),
            "## Stage wall times",
            "",
            "\n".join(f"- {x['stage']}: {x['wall_s']:.0f} s" for x in log),
            "",
        ]
    )
    write_text_atomic(runs / "REPORT.md", report)
    write_json_atomic(runs / "reproduce.json", {"stages": log, "total_s": total, **provenance({"tag": tag}, cfg.seed)})
    return runs / "REPORT.md"
