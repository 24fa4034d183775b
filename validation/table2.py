"""Table 2: SNN test accuracy per dataset × model × row, at a common horizon T and at each row's own horizon.

``python -m validation table2`` runs (or resumes) every evaluation of :mod:`validation.experiments`: one
long run per row (its checkpoints give the accuracy at T and at the row's horizon H, the time to accuracy
and the convergence verdict of :mod:`validation.convergence`), with a 95 % Wilson interval over images for
every accuracy, exact McNemar tests on the same images (:func:`paired_tests`), the paper's claims checked
against them (:func:`claims`) and the cost per classification in synaptic events beside the ANN's MACs. It
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
from convert.records import SpikeRecord
from convert.train import checkpoint_paths
from validation.convergence import checkpoint_index, convergence, correct_at
from validation.engines import run
from validation.experiments import REPLICATION_THRESHOLD, EvalConfig, Job, build_specs, evaluate
from validation.rows import rows
from validation.significance import mcnemar, wilson_interval

REPLICATION = {  # Table 2 of the replication: SNN test accuracy after 10 000 ms
    ("mnist", "mlp"): {"baseline": 98.64, "baseline-tuned": 98.68, "model": 98.65, "data": 98.66},
    ("mnist", "cnn"): {"baseline": 98.87, "baseline-tuned": 99.11, "model": 99.10, "data": 99.10},
    ("fashion", "mlp"): {"baseline": 89.75, "baseline-tuned": 90.00, "model": 89.69, "data": 89.85},
    ("fashion", "cnn"): {"baseline": 89.33, "baseline-tuned": 90.18, "model": 90.15, "data": 90.20},
}
PAIRS = tuple(REPLICATION)


def _jobs(cfg: EvalConfig, built: dict, ds: str, model: str) -> dict[tuple[str, int], Job]:
    return {
        (r.name, seed): Job(built["specs"][r.name][0], ds, model, seed, *cfg.plan(r.name))
        for r in rows()
        for seed in cfg.seeds
    }


def run_table2(
    cfg: EvalConfig,
    root: Path | None,
    runs: Path,
    pairs: tuple[tuple[str, str], ...] = PAIRS,
    progress: bool = True,
    estimate: bool = False,
) -> dict[str, Any]:
    """Every (dataset, model, row, seed) evaluation; returns the results dictionary (also written).

    Threshold searches and statistics come first; then the simulations still missing are counted, and a
    progress bar in image-steps shows the ETA. ``estimate``: first print the expected wall time on this
    machine, from a short timed run of each network (:func:`expected_seconds`)."""
    out = runs / "table2" / cfg.tag
    results: dict[str, Any] = {"config": cfg.to_dict(), "tag": cfg.tag, "entries": [], "paired": []}
    todo = [(ds, m) for ds, m in pairs if checkpoint_paths(runs, ds, m)[1].exists()]
    cache = runs / "table2"  # searches and records, keyed by content: shared by every tag (scale) of the table
    built = {(ds, m): build_specs(ds, m, root, runs, cfg, cache) for ds, m in todo}
    jobs = {(ds, m): _jobs(cfg, built[(ds, m)], ds, m) for ds, m in todo}
    missing: dict[tuple[str, str], int] = {}
    for (ds, m), by_row in jobs.items():
        unique = {j.key(cfg): j for j in by_row.values()}  # equal specs share a record
        missing[(ds, m)] = sum(j.missing_image_steps(cfg, cache) for j in unique.values())
    total = sum(missing.values())
    if estimate and total:
        seconds = expected_seconds(built, missing, root, cfg)
        print(f"table2: {total:,} image-steps to simulate; expected wall time on this machine ~{_hms(seconds)}")
    bar = tqdm(total=total, unit="img-step", unit_scale=True, desc="table2", disable=not progress or total == 0)
    for ds, model in todo:
        entries, correct = _network_entries(cfg, built[(ds, model)], jobs[(ds, model)], root, cache, bar.update)
        results["entries"] += entries
        results["paired"] += paired_tests(ds, model, correct)
    bar.close()
    results["claims"] = claims(results)
    results.update(provenance(cfg.to_dict(), seed=None))
    results["seeds"] = list(cfg.seeds)
    write_outputs(results, out)
    return results


def _network_entries(cfg, built, jobs, root, cache, update) -> tuple[list[dict[str, Any]], dict]:
    """Every row's entry of one network (records under ``cache``, runs/table2, paths relative to it), and per
    row and for the ANN the per-image correctness (first input seed) at T and at the row's horizon, for the
    paired tests."""
    ds, model = next(iter(jobs.values())).dataset, next(iter(jobs.values())).model
    ann_all = json.loads(checkpoint_paths(cache.parent, ds, model)[1].read_text())["test_accuracy"]
    test = datasets.load(ds, "test", root)
    macs = sum(ann.macs_per_image(built["base"]))
    ann_correct = ann.predict(built["base"], test.images[: cfg.n_images]) == test.labels[: cfg.n_images]
    entries = []
    correct = {"ANN": {"T": ann_correct, "H": ann_correct}}
    for row_def in rows():
        row = row_def.name
        spec, report = built["specs"][row]
        images, horizon = cfg.plan(row)
        recs = [evaluate(jobs[(row, seed)], root, cfg, cache, update) for seed in cfg.seeds]
        first = recs[0]
        conv = convergence(first, spec.dt_ms)
        at_t = [float(np.mean(correct_at(r, cfg.steps))) for r in recs]
        final = [r.accuracy() for r in recs]
        correct[row] = {"T": correct_at(first, cfg.steps), "H": correct_at(first, horizon)}
        k_t, k_h = int(correct[row]["T"].sum()), int(correct[row]["H"].sum())
        t_acc = conv.time_to_accuracy_ms
        conv_index = None if t_acc is None else checkpoint_index(first, int(round(t_acc / spec.dt_ms)))
        entries.append(
            {
                "dataset": ds,
                "model": model,
                "row": row,
                "label": row_def.label(percentile=cfg.percentile),
                "tuned": row_def.tuned,
                "threshold": spec.thresholds[0],
                "images": images,
                "horizon_steps": horizon,
                "common_steps": cfg.steps,
                "n_images_common": cfg.n_images,
                "ann_test_accuracy": ann_all,
                "ann_accuracy_same_images": float(ann_correct[:images].mean()),
                "accuracy_at_T_mean": float(np.mean(at_t)),
                "accuracy_at_T_std": float(np.std(at_t, ddof=1)) if len(at_t) > 1 else 0.0,
                "accuracies_at_T": at_t,
                "ci95_at_T": wilson_interval(k_t, images),
                "accuracy_mean": float(np.mean(final)),  # at the row's horizon
                "accuracy_std": float(np.std(final, ddof=1)) if len(final) > 1 else 0.0,
                "accuracies": final,
                "ci95_first_seed": wilson_interval(k_h, images),
                "convergence": conv.to_dict(),
                "no_spike_fraction_at_T": first.no_spike_fraction(checkpoint_index(first, cfg.steps)),
                "no_spike_fraction_mean": float(np.mean([r.no_spike_fraction() for r in recs])),
                "synops_per_image_mean": float(np.mean([r.synops.sum(axis=1).mean() for r in recs])),
                "synops_per_image_at_T": _synops_at(first, checkpoint_index(first, cfg.steps)),
                "synops_per_image_at_convergence": None if conv_index is None else _synops_at(first, conv_index),
                "ann_macs_per_image": macs,
                "divisors": list(report.divisors),
                "replication": REPLICATION[(ds, model)].get(row),
                "search": built["search"] if row_def.tuned else None,
                "wall_s": float(sum(r.meta.get("wall_s", 0.0) for r in recs)),
                "image_steps_per_s": first.meta.get("image_steps_per_s"),
                "records": [str(jobs[(row, s)].path(cfg, cache).relative_to(cache)) for s in cfg.seeds],
            }
        )
    return entries, correct


def _synops_at(record: SpikeRecord, index: int) -> float | None:
    """Mean synaptic events per image up to checkpoint ``index`` (None for records without the curve)."""
    curve = getattr(record, "synops_curve", None)
    if curve is None:
        return float(record.synops.sum(axis=1).mean()) if index == len(record.checkpoints) - 1 else None
    return float(curve[:, index].sum(axis=-1).mean())


def expected_seconds(built: dict, missing: dict, root: Path | None, cfg: EvalConfig, probe=(256, 40)) -> float:
    """Expected wall time of the missing image-steps: each network's rate from a timed probe run (``probe`` =
    images × steps of its data-based spec, compiled, after one untimed warm-up run)."""
    seconds = 0.0
    for (ds, model), todo in missing.items():
        if not todo:
            continue
        spec = built[(ds, model)]["specs"].get("data", next(iter(built[(ds, model)]["specs"].values())))[0]
        images = datasets.load(ds, "test", root).images[: probe[0]]
        kw = dict(steps=probe[1], device=cfg.device, dtype=cfg.dtype, matmul=cfg.matmul, kernel=cfg.kernel)
        run("fastsim", spec, images[:32], compile=True, **kw)
        rec = run("fastsim", spec, images, compile=True, **kw)
        seconds += todo / rec.meta["image_steps_per_s"]
    return seconds


def _hms(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


REFERENCE_ROW = "data"  # the paper's method: every other row is compared with it


def paired_tests(dataset: str, model: str, correct: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Exact McNemar tests on the same images and input seed (the first ``min`` images both ran): the ANN
    against every SNN row at the row's horizon; the reference row against every other row at T and at their
    horizons (each row at its own)."""
    snn = [r for r in correct if r != "ANN"]
    pairs = [("ANN", r, "H") for r in snn]
    if REFERENCE_ROW in correct:
        pairs += [(REFERENCE_ROW, r, when) for when in ("T", "H") for r in snn if r != REFERENCE_ROW]
    pairs += [(f"{r}-tuned", r, "H") for r in snn if f"{r}-tuned" in correct]  # a tuned threshold vs θ = 1
    tests = []
    for a, b, when in pairs:
        n = min(len(correct[a][when]), len(correct[b][when]))
        test = mcnemar(correct[a][when][:n], correct[b][when][:n]).to_dict()
        tests.append({"dataset": dataset, "model": model, "a": a, "b": b, "at": when, **test})
    return tests


def _find(results: dict[str, Any], ds: str, model: str, **match: str) -> dict[str, Any] | None:
    for p in results.get("paired", []):
        if (p["dataset"], p["model"]) == (ds, model) and all(p.get(k) == v for k, v in match.items()):
            return p
    return None


def _entry(results: dict[str, Any], ds: str, model: str, row: str) -> dict[str, Any] | None:
    return next((e for e in results["entries"] if (e["dataset"], e["model"], e["row"]) == (ds, model, row)), None)


def _evidence(p: dict[str, Any]) -> str:
    return f"{p['a_only']} vs {p['b_only']} discordant images, p = {p['p_value']:.3g} (n = {p['n']})"


def claims(results: dict[str, Any], alpha: float = 0.05) -> list[dict[str, Any]]:
    """The paper's three claims, per network, each with the paired test or the times behind it.

    1. data-based is more accurate than model-based at T (McNemar at T: holds if data wins significantly);
    2. data-based converges faster than model-based (time to accuracy; a row not converged within its horizon
       H counts as needing at least H);
    3. the baseline needs a tuned threshold (McNemar at the horizon, tuned vs θ = 1: holds if the tuned row
       wins significantly; a tuned θ of 1 means the search found no better threshold)."""
    cfg = results["config"]
    out = []
    for ds, model in dict.fromkeys((e["dataset"], e["model"]) for e in results["entries"]):
        data, model_row = _entry(results, ds, model, "data"), _entry(results, ds, model, "model")
        p = _find(results, ds, model, a="data", b="model", at="T")
        if p is not None:
            holds = p["a_only"] > p["b_only"] and p["p_value"] < alpha
            out.append(
                {
                    "dataset": ds,
                    "model": model,
                    "claim": f"data-based beats model-based at T = {cfg['steps']} ms",
                    "evidence": f"{100 * p['accuracy_a']:.2f} % vs {100 * p['accuracy_b']:.2f} %; " + _evidence(p),
                    "holds": holds,
                }
            )
        if data is not None and model_row is not None:
            cd, cm = data["convergence"], model_row["convergence"]
            # a row that has not converged within its horizon needs at least that horizon
            t_data = cd["time_to_accuracy_ms"] if cd["time_to_accuracy_ms"] is not None else float("inf")
            t_model = cm["time_to_accuracy_ms"] if cm["converged"] else max(cm["horizon_ms"], t_data)
            holds = t_data < t_model
            td, tm = (_reached(c) for c in (cd, cm))
            out.append(
                {
                    "dataset": ds,
                    "model": model,
                    "claim": "data-based converges faster than model-based",
                    "evidence": f"time to within 0.1 pp of the value at the horizon: {td} vs {tm}",
                    "holds": bool(holds),
                }
            )
        p = _find(results, ds, model, a="baseline-tuned", b="baseline", at="H")
        tuned = _entry(results, ds, model, "baseline-tuned")
        base = _entry(results, ds, model, "baseline")
        if tuned is not None and base is not None:
            same = tuned["threshold"] == base["threshold"]
            wins = p is not None and p["a_only"] > p["b_only"] and p["p_value"] < alpha
            out.append(
                {
                    "dataset": ds,
                    "model": model,
                    "claim": "the baseline needs a tuned threshold",
                    "evidence": (
                        "the search chose θ = 1: no threshold beat the copy on held-out images"
                        if same
                        else f"θ = {tuned['threshold']:g}: {100 * tuned['accuracy_mean']:.2f} % vs θ = 1: "
                        f"{100 * base['accuracy_mean']:.2f} %" + (f"; {_evidence(p)}" if p else "")
                    ),
                    "holds": bool((not same) and wins),
                }
            )
    return out


def _reached(conv: dict[str, Any]) -> str:
    """A row's time to accuracy for people: the time, and whether the run converged by the module's test."""
    if conv["time_to_accuracy_ms"] is None:
        return f"not started by {conv['horizon_ms']:g} ms (most images without an output spike)"
    text = f"{conv['time_to_accuracy_ms']:g} ms"
    return text if conv["converged"] else text + f" (not converged: later than half of H = {conv['horizon_ms']:g} ms)"


def claims_markdown(results: dict[str, Any]) -> str:
    lines = ["| dataset | model | claim | evidence | holds here |", "|---|---|---|---|---|"]
    lines += [
        f"| {c['dataset']} | {c['model']} | {c['claim']} | {c['evidence']} | {'yes' if c['holds'] else 'no'} |"
        for c in results.get("claims", [])
    ]
    return "\n".join(lines) + "\n"


def paired_markdown(results: dict[str, Any]) -> str:
    lines = [
        "Paired comparisons on the same images and the first input seed (exact McNemar test): A only / B only "
        "count the images one classifies correctly and the other does not; at = T (the common horizon) or H "
        "(each row at its own horizon); n = the images both ran.",
        "",
        "| dataset | model | A | B | at | n | A % | B % | A only | B only | p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['dataset']} | {p['model']} | {p['a']} | {p['b']} | {p.get('at', 'T')} | {p['n']} "
        f"| {100 * p['accuracy_a']:.2f} | {100 * p['accuracy_b']:.2f} | {p['a_only']} | {p['b_only']} "
        f"| {p['p_value']:.3g} |"
        for p in results.get("paired", [])
    ]
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def cost_markdown(results: dict[str, Any]) -> str:
    """Synaptic events per classification at T, at the row's time to accuracy and at its horizon, against the
    ANN's multiply-accumulates per image."""
    steps = results["config"]["steps"]
    lines = [
        f"Cost per classification: mean synaptic events per image (first input seed) at T = {steps} ms, at the "
        "row's time to accuracy and at its horizon H, beside the ANN's multiply-accumulates per image; ratio = "
        "events at the time to accuracy / MACs.",
        "",
        "| dataset | model | row | events at T | time to acc. (ms) | events then | events at H | ANN MACs | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in results["entries"]:
        if "synops_per_image_mean" not in e:
            continue
        at_conv = e.get("synops_per_image_at_convergence")
        ratio = None if at_conv is None else at_conv / e["ann_macs_per_image"]
        t_acc = e.get("convergence", {}).get("time_to_accuracy_ms")
        lines.append(
            f"| {e['dataset']} | {e['model']} | {e['row']} | {_fmt(e.get('synops_per_image_at_T'))} "
            f"| {_fmt(t_acc, 'g')} | {_fmt(at_conv)} | {e['synops_per_image_mean']:.3g} "
            f"| {e['ann_macs_per_image']:.3g} | {_fmt(ratio, '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any]) -> str:
    """Table 2 at the common horizon T: one line per network, one column per row, in their order."""
    cfg = results["config"]
    by_pair: dict[tuple[str, str], dict[str, dict]] = {}
    for e in results["entries"]:
        by_pair.setdefault((e["dataset"], e["model"]), {})[e["row"]] = e
    columns = list(dict.fromkeys(e["row"] for e in results["entries"]))
    labels = {e["row"]: e.get("label", e["row"]) for e in results["entries"]}
    seeds = tuple(cfg["seeds"])
    spread = f", mean ± std over input seeds {seeds}" if len(seeds) > 1 else f", input seed {seeds[0]}"
    lines = [
        f"SNN test accuracy (%) after T = {cfg['steps']} ms{spread}, the 95 % Wilson interval over images "
        "(first seed) in parentheses, on the first n test images (n in the ANN column; a row on fewer images "
        "says so); the replication's (10 000 ms, 10 000 images) in brackets.",
        "",
        "| dataset | model | ANN (all / these n) | " + " | ".join(labels[c] for c in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (ds, model), entries in by_pair.items():
        cells = [_cell(entries[c], model, "T") if c in entries else "" for c in columns]
        first = next(iter(entries.values()))
        n = cfg["n_images"]
        ann_cell = f"{100 * first['ann_test_accuracy']:.2f} / {100 * _ann_same(first, n):.2f} (n = {n})"
        lines.append(f"| {ds} | {model} | {ann_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ann_same(e: dict[str, Any], n: int) -> float:
    return e.get("ann_accuracy_same_images", float("nan")) if e.get("images", n) == n else float("nan")


def converged_markdown(results: dict[str, Any]) -> str:
    """Every row at its own horizon H: accuracy with its interval, time to accuracy, the verdict."""
    lines = [
        "Every row at its own horizon H (one run per row: its checkpoints give the value at T above and the value "
        "at H here). Time to accuracy: the first time after which the accuracy stays within 0.1 pp (⌊n/1000⌋ "
        "images) of its value at H; converged: that time is at most H/2 and most images have an output spike.",
        "",
        "| dataset | model | row | images × H (ms) | accuracy at H (%) | ANN on these images | time to acc. (ms) "
        "| converged | replication (10 000 ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in results["entries"]:
        conv = e.get("convergence", {})
        lo, hi = e["ci95_first_seed"]
        lines.append(
            f"| {e['dataset']} | {e['model']} | {e.get('label', e['row'])} | {e.get('images')} × "
            f"{e.get('horizon_steps')} | {100 * e['accuracy_mean']:.2f} ({100 * lo:.2f}–{100 * hi:.2f}) "
            f"| {100 * e['ann_accuracy_same_images']:.2f} | {_fmt(conv.get('time_to_accuracy_ms'), 'g')} "
            f"| {'yes' if conv.get('converged') else 'no'} | {_fmt(e.get('replication'), '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def _cell(e: dict[str, Any], model: str, when: str = "H") -> str:
    if when == "T" and "accuracy_at_T_mean" in e:
        mean, std, (lo, hi) = e["accuracy_at_T_mean"], e["accuracy_at_T_std"], e["ci95_at_T"]
    else:
        mean, std, (lo, hi) = e["accuracy_mean"], e["accuracy_std"], e["ci95_first_seed"]
    cell = f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if len(e.get("accuracies", [0])) > 1 else "")
    cell += f" ({100 * lo:.1f}–{100 * hi:.1f})"
    if e.get("images") is not None and e.get("images") != e.get("n_images_common", e.get("images")):
        cell += f", n = {e['images']}"
    if e.get("tuned"):
        cell += f", θ={e['threshold']:g} (repl. {REPLICATION_THRESHOLD[model]:g})"
    if e["replication"] is not None:
        cell += f" [{e['replication']:.2f}]"
    return cell


def write_outputs(results: dict[str, Any], out: Path) -> None:
    write_json_atomic(out / "table2.json", results)
    text = "\n".join(
        (
            markdown(results),
            converged_markdown(results),
            claims_markdown(results),
            paired_markdown(results),
            cost_markdown(results),
        )
    )
    write_text_atomic(out / "table2.md", text)
    buf = io.StringIO()
    fields = ["dataset", "model", "row", "threshold", "ann_test_accuracy", "ann_accuracy_same_images"]
    fields += ["images", "horizon_steps", "accuracy_at_T_mean", "accuracy_mean", "accuracy_std"]
    writer = csv.DictWriter(buf, fieldnames=fields + ["no_spike_fraction_mean", "replication"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results["entries"])
    write_text_atomic(out / "table2.csv", buf.getvalue())
