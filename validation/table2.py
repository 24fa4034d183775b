"""Table 2: SNN test accuracy after T ms per dataset × model × row, mean ± std over input seeds.

``python -m validation table2`` runs (or resumes) every evaluation of :mod:`validation.experiments` and
writes ``table2.md``, ``table2.csv`` and ``table2.json`` (config, seeds, versions, git commit, and the
content-addressed record file behind every accuracy) under ``runs/table2/<tag>/``. The replication's numbers
(10 000 ms, the whole test set) stand beside ours.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from convert import ann, datasets
from convert.provenance import provenance, write_json_atomic, write_text_atomic
from convert.train import checkpoint_paths
from validation.experiments import REPLICATION_THRESHOLD, EvalConfig, build_specs, evaluate, record_key, record_path
from validation.rows import rows
from validation.significance import mcnemar, wilson_interval

REPLICATION = {  # Table 2 of the replication: SNN test accuracy after 10 000 ms
    ("mnist", "mlp"): {"baseline": 98.64, "baseline-tuned": 98.68, "model": 98.65, "data": 98.66},
    ("mnist", "cnn"): {"baseline": 98.87, "baseline-tuned": 99.11, "model": 99.10, "data": 99.10},
    ("fashion", "mlp"): {"baseline": 89.75, "baseline-tuned": 90.00, "model": 89.69, "data": 89.85},
    ("fashion", "cnn"): {"baseline": 89.33, "baseline-tuned": 90.18, "model": 90.15, "data": 90.20},
}
PAIRS = tuple(REPLICATION)


def run_table2(
    cfg: EvalConfig,
    root: Path | None,
    runs: Path,
    pairs: tuple[tuple[str, str], ...] = PAIRS,
    progress: bool = True,
) -> dict[str, Any]:
    """Every (dataset, model, row, seed) evaluation; returns the results dictionary (also written)."""
    out = runs / "table2" / cfg.tag
    results: dict[str, Any] = {"config": cfg.to_dict(), "tag": cfg.tag, "entries": [], "paired": []}
    todo = [(ds, m) for ds, m in pairs if checkpoint_paths(runs, ds, m)[1].exists()]
    table = rows()
    bar = tqdm(total=len(todo) * len(table) * len(cfg.seeds), desc="table2 runs", disable=not progress)
    for ds, model in todo:
        built = build_specs(ds, model, root, runs, cfg, out)
        ann_all = json.loads(checkpoint_paths(runs, ds, model)[1].read_text())["test_accuracy"]
        test = datasets.load(ds, "test", root)
        n = cfg.n_images
        macs = sum(ann.macs_per_image(built["base"]))
        ann_correct = ann.predict(built["base"], test.images[:n]) == test.labels[:n]
        ann_same = float(ann_correct.mean())
        correct = {"ANN": ann_correct}  # per image, first input seed: for the paired tests
        for row_def in table:
            row = row_def.name
            spec, report = built["specs"][row]
            accs, no_spike, paths, synops = [], [], [], []
            for seed in cfg.seeds:
                key = record_key(spec, ds, cfg, seed)
                path = record_path(out, key, ds, model, row, seed)
                rec = evaluate(spec, ds, root, cfg, seed, path, key)
                accs.append(rec.accuracy())
                correct.setdefault(row, rec.predictions() == rec.labels)
                no_spike.append(rec.no_spike_fraction())
                synops.append(float(rec.synops.sum(axis=1).mean()))
                paths.append(str(path.relative_to(out)))
                bar.update()
            results["entries"].append(
                {
                    "dataset": ds,
                    "model": model,
                    "row": row,
                    "label": row_def.label(percentile=cfg.percentile),
                    "tuned": row_def.tuned,
                    "threshold": spec.thresholds[0],
                    "ann_test_accuracy": ann_all,
                    "ann_accuracy_same_images": ann_same,
                    "accuracy_mean": float(np.mean(accs)),
                    "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                    "accuracies": accs,
                    "ci95_first_seed": wilson_interval(int(correct[row].sum()), n),
                    "no_spike_fraction_mean": float(np.mean(no_spike)),
                    "synops_per_image_mean": float(np.mean(synops)),
                    "ann_macs_per_image": macs,
                    "divisors": list(report.divisors),
                    "replication": REPLICATION[(ds, model)].get(row),
                    "search": built["search"] if row_def.tuned else None,
                    "records": paths,
                }
            )
        results["paired"] += paired_tests(ds, model, correct)
    bar.close()
    results.update(provenance(cfg.to_dict(), seed=None))
    results["seeds"] = list(cfg.seeds)
    write_outputs(results, out)
    return results


REFERENCE_ROW = "data"  # the paper's method: every other row is compared with it


def paired_tests(dataset: str, model: str, correct: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Exact McNemar tests on the same images and input seed: the reference row against every other row, and
    the ANN against every SNN row."""
    pairs = [("ANN", r) for r in correct if r != "ANN"]
    if REFERENCE_ROW in correct:
        pairs += [(REFERENCE_ROW, r) for r in correct if r not in ("ANN", REFERENCE_ROW)]
    return [
        {"dataset": dataset, "model": model, "a": a, "b": b, **mcnemar(correct[a], correct[b]).to_dict()}
        for a, b in pairs
    ]


def paired_markdown(results: dict[str, Any]) -> str:
    lines = [
        "Paired comparisons on the same images and the first input seed (exact McNemar test): A only / B only "
        "count the images one classifies correctly and the other does not.",
        "",
        "| dataset | model | A | B | A % | B % | A only | B only | p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['dataset']} | {p['model']} | {p['a']} | {p['b']} | {100 * p['accuracy_a']:.2f} "
        f"| {100 * p['accuracy_b']:.2f} | {p['a_only']} | {p['b_only']} | {p['p_value']:.3g} |"
        for p in results.get("paired", [])
    ]
    return "\n".join(lines) + "\n"


def cost_markdown(results: dict[str, Any]) -> str:
    """Synaptic events per classification at T against the ANN's multiply-accumulates per image."""
    steps = results["config"]["steps"]
    lines = [
        f"Cost per classification at T = {steps} ms: synaptic events per image (mean over images and input "
        "seeds) and their ratio to the ANN's multiply-accumulates per image.",
        "",
        "| dataset | model | row | synaptic events / image | ANN MACs / image | ratio |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {e['dataset']} | {e['model']} | {e['row']} | {e['synops_per_image_mean']:.3g} "
        f"| {e['ann_macs_per_image']:.3g} | {e['synops_per_image_mean'] / e['ann_macs_per_image']:.2f} |"
        for e in results["entries"]
        if "synops_per_image_mean" in e
    ]
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any]) -> str:
    """Table 2 as Markdown: one line per network, one column per row of the results, in their order."""
    cfg = results["config"]
    by_pair: dict[tuple[str, str], dict[str, dict]] = {}
    for e in results["entries"]:
        by_pair.setdefault((e["dataset"], e["model"]), {})[e["row"]] = e
    columns = list(dict.fromkeys(e["row"] for e in results["entries"]))
    labels = {e["row"]: e.get("label", e["row"]) for e in results["entries"]}
    lines = [
        f"SNN test accuracy (%) after {cfg['steps']} ms on the first {cfg['n_images']} test images, mean ± std over "
        f"input seeds {tuple(cfg['seeds'])}, the 95 % Wilson interval over images (first seed) in parentheses; "
        "the replication's (10 000 ms, 10 000 images) in brackets.",
        "",
        "| dataset | model | ANN (all / these images) | " + " | ".join(labels[c] for c in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (ds, model), entries in by_pair.items():
        cells = [_cell(entries[c], model) if c in entries else "" for c in columns]
        first = next(iter(entries.values()))
        ann_cell = (
            f"{100 * first['ann_test_accuracy']:.2f} / {100 * first.get('ann_accuracy_same_images', float('nan')):.2f}"
        )
        lines.append(f"| {ds} | {model} | {ann_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(e: dict[str, Any], model: str) -> str:
    cell = f"{100 * e['accuracy_mean']:.2f} ± {100 * e['accuracy_std']:.2f}"
    if "ci95_first_seed" in e:
        lo, hi = e["ci95_first_seed"]
        cell += f" ({100 * lo:.1f}–{100 * hi:.1f})"
    if e.get("tuned"):
        cell += f", θ={e['threshold']:g} (repl. {REPLICATION_THRESHOLD[model]:g})"
    if e["replication"] is not None:
        cell += f" [{e['replication']:.2f}]"
    return cell


def write_outputs(results: dict[str, Any], out: Path) -> None:
    write_json_atomic(out / "table2.json", results)
    text = "\n".join((markdown(results), paired_markdown(results), cost_markdown(results)))
    write_text_atomic(out / "table2.md", text)
    buf = io.StringIO()
    fields = ["dataset", "model", "row", "threshold", "ann_test_accuracy", "ann_accuracy_same_images"]
    fields += ["accuracy_mean", "accuracy_std"]
    writer = csv.DictWriter(buf, fieldnames=fields + ["no_spike_fraction_mean", "replication"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results["entries"])
    write_text_atomic(out / "table2.csv", buf.getvalue())
