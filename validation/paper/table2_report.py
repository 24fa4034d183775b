"""Table 2 as people read it: the paper's claims checked against the paired tests, and the Markdown/CSV tables.

Everything here reads the results dictionary of :func:`validation.paper.table2.run_table2` (or its ``table2.json``)
and simulates nothing: :func:`claims` states which of the paper's claims hold, each with the test behind it;
:func:`markdown` (accuracy at T), :func:`converged_markdown` (each row at its horizon), :func:`paired_markdown`
and :func:`cost_markdown` render the tables; :func:`write_outputs` writes them atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from convert.contract.provenance import check_outputs, write_json_atomic, write_text_atomic
from validation.markdown import table
from validation.paper.experiments import REPLICATION_THRESHOLD


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
    lines = table(
        ("dataset", "model", "claim", "evidence", "holds here"),
        (
            (c["dataset"], c["model"], c["claim"], c["evidence"], "yes" if c["holds"] else "no")
            for c in results.get("claims", [])
        ),
    )
    return "\n".join(lines) + "\n"


def paired_markdown(results: dict[str, Any]) -> str:
    lines = [
        "Paired comparisons on the same images and the first input seed (exact McNemar test): A only / B only "
        "count the images one classifies correctly and the other does not; at = T (the common horizon) or H "
        "(each row at its own horizon); n = the images both ran.",
        "",
    ]
    lines += table(
        ("dataset", "model", "A", "B", "at", "n", "A %", "B %", "A only", "B only", "p"),
        (
            (
                *(p["dataset"], p["model"], p["a"], p["b"], p.get("at", "T"), p["n"]),
                *(f"{100 * p['accuracy_a']:.2f}", f"{100 * p['accuracy_b']:.2f}", p["a_only"], p["b_only"]),
                f"{p['p_value']:.3g}",
            )
            for p in results.get("paired", [])
        ),
    )
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
    ]
    rows = []
    for e in results["entries"]:
        if "synops_per_image_mean" not in e:
            continue
        at_conv = e.get("synops_per_image_at_convergence")
        ratio = None if at_conv is None else at_conv / e["ann_macs_per_image"]
        t_acc = e.get("convergence", {}).get("time_to_accuracy_ms")
        rows.append(
            (
                *(e["dataset"], e["model"], e["row"], _fmt(e.get("synops_per_image_at_T")), _fmt(t_acc, "g")),
                *(_fmt(at_conv), f"{e['synops_per_image_mean']:.3g}", f"{e['ann_macs_per_image']:.3g}"),
                _fmt(ratio, ".2f"),
            )
        )
    header = ("dataset", "model", "row", "events at T", "time to acc. (ms)", "events then", "events at H")
    lines += table((*header, "ANN MACs", "ratio"), rows)
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
    ]
    rows = []
    for (ds, model), entries in by_pair.items():
        cells = [_cell(entries[c], model, "T") if c in entries else "" for c in columns]
        first = next(iter(entries.values()))
        n = cfg["n_images"]
        ann_cell = f"{100 * first['ann_test_accuracy']:.2f} / {100 * _ann_same(first, n):.2f} (n = {n})"
        rows.append((ds, model, ann_cell, *cells))
    lines += table(("dataset", "model", "ANN (all / these n)", *(labels[c] for c in columns)), rows)
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
    ]
    rows = []
    for e in results["entries"]:
        conv = e.get("convergence", {})
        lo, hi = e["ci95_first_seed"]
        rows.append(
            (
                *(e["dataset"], e["model"], e.get("label", e["row"]), f"{e.get('images')} × {e.get('horizon_steps')}"),
                f"{100 * e['accuracy_mean']:.2f} ({100 * lo:.2f}–{100 * hi:.2f})",
                f"{100 * e['ann_accuracy_same_images']:.2f}",
                _fmt(conv.get("time_to_accuracy_ms"), "g"),
                "yes" if conv.get("converged") else "no",
                _fmt(e.get("replication"), ".2f"),
            )
        )
    header = ("dataset", "model", "row", "images × H (ms)", "accuracy at H (%)", "ANN on these images")
    lines += table((*header, "time to acc. (ms)", "converged", "replication (10 000 ms)"), rows)
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
    check_outputs(*(out / f"table2.{ext}" for ext in ("json", "md", "csv")))  # all three or none
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
