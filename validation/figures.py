"""Figures 3 and 4: classification error against simulated time, and the time each line needs to converge.

One figure per dataset (Figure 3: MNIST, Figure 4: Fashion-MNIST), one line per model × row, the band
spanning the input seeds (min to max), log time axis from 1 ms to T. The convergence table gives the first
time after which the mean accuracy stays within 0.1 pp of its value at T.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from convert.provenance import atomic_path, write_json_atomic, write_text_atomic
from convert.records import SpikeRecord
from validation import rows

STYLE = {"mlp": "-", "cnn": "--"}
FIG_NUMBER = {"mnist": 3, "fashion": 4}


def curves(out: Path, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
    """(times in steps (C,), accuracy per seed (S, C), mean fraction of images without an output spike at T)
    from the records behind one Table 2 entry."""
    recs = [SpikeRecord.load(out / p) for p in entry["records"]]
    silent = float(np.mean([r.no_spike_fraction() for r in recs]))
    return recs[0].checkpoints, np.stack([r.accuracy_curve() for r in recs]), silent


def convergence_time(times: np.ndarray, acc: np.ndarray, tolerance: float = 0.001) -> float:
    """First time after which ``acc`` stays within ``tolerance`` of its final value."""
    outside = np.abs(acc - acc[-1]) > tolerance + 1e-12
    if not outside.any():
        return float(times[0])
    last_bad = np.nonzero(outside)[0][-1]
    return float(times[min(last_bad + 1, len(times) - 1)])


def plot_dataset(out: Path, dataset: str, results: dict[str, Any]) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    table = []
    cfg = results["config"]
    for entry in (e for e in results["entries"] if e["dataset"] == dataset):
        model, row = entry["model"], entry["row"]
        times, acc, silent = curves(out, entry)
        t_ms = times * 1.0  # dt = 1 ms
        err = 100 * (1 - acc)
        color = rows.color(row)
        ax.plot(t_ms, err.mean(0), STYLE[model], color=color, label=f"{model.upper()} {entry.get('label', row)}")
        ax.fill_between(t_ms, err.min(0), err.max(0), color=color, alpha=0.2, linewidth=0)
        mean = acc.mean(0)
        settled = convergence_time(t_ms, mean)
        table.append(
            {
                "dataset": dataset,
                "model": model,
                "row": row,
                "final_accuracy": float(mean[-1]),
                "no_output_spike_fraction": silent,
                "ms_to_within_0.1pp": settled,
                # a curve that is flat because the output never spiked has not converged
                "reached_before_T": bool(settled < t_ms[-1] and silent < 0.5),
            }
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("test error (%)")
    ax.set_title(
        f"Figure {FIG_NUMBER.get(dataset, '')}: {dataset} ({cfg['n_images']} test images, {len(cfg['seeds'])} seeds)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    stem = f"fig{FIG_NUMBER.get(dataset, 0)}_{dataset}"
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=120)
        with atomic_path(out / f"{stem}.{ext}") as tmp:
            tmp.write_bytes(buf.getvalue())
    plt.close(fig)
    return {"figure": stem, "convergence": table}


def convergence_markdown(rows: list[dict[str, Any]], steps: int) -> str:
    lines = [
        f"Time (ms) after which the mean accuracy stays within 0.1 pp of its value at T = {steps} ms "
        "(replication: ~21 ms for MNIST MLP data-based, ~2 000 ms for model-based).",
        "",
        "| dataset | model | row | accuracy at T (%) | ms to within 0.1 pp |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["no_output_spike_fraction"] >= 0.5:
            t = f"not before T ({100 * r['no_output_spike_fraction']:.0f} % of images without an output spike)"
        else:
            t = f"{r['ms_to_within_0.1pp']:g}" + ("" if r["reached_before_T"] else " (not before T)")
        lines.append(f"| {r['dataset']} | {r['model']} | {r['row']} | {100 * r['final_accuracy']:.2f} | {t} |")
    return "\n".join(lines) + "\n"


def make_figures(results: dict[str, Any], runs: Path) -> list[dict[str, Any]]:
    """Both figures and the convergence table from the records behind ``results`` (run_table2's output)."""
    cfg = results["config"]
    out = runs / "table2" / results["tag"]
    rows = []
    for dataset in dict.fromkeys(e["dataset"] for e in results["entries"]):
        rows += plot_dataset(out, dataset, results)["convergence"]
    write_text_atomic(out / "convergence.md", convergence_markdown(rows, cfg["steps"]))
    write_json_atomic(out / "convergence.json", {"config": cfg, "rows": rows})
    return rows
