"""Figures 3 and 4: classification error against simulated time, one line per model × row.

One figure per dataset (Figure 3: MNIST, Figure 4: Fashion-MNIST), log time axis from 1 ms to each row's own
horizon (a row that needs seconds runs for seconds, on the images its Table 2 entry names), the band the
95 % Wilson interval over images at every checkpoint (first input seed). The convergence table gives each
row's time to accuracy and verdict (:mod:`validation.paper.convergence`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import atomic_path, check_outputs, write_json_atomic, write_text_atomic
from convert.contract.records import SpikeRecord
from validation.markdown import table
from validation.paper import rows
from validation.paper.convergence import convergence
from validation.significance import wilson_interval

STYLE = {"mlp": "-", "cnn": "--"}
FIG_NUMBER = {"mnist": 3, "fashion": 4}


def error_band(record: SpikeRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(times in steps, error %, lower and upper 95 % Wilson bound of the error %) at every checkpoint."""
    n = record.n_images
    correct = np.array([int(np.sum(record.predictions(i) == record.labels)) for i in range(len(record.checkpoints))])
    bounds = np.array([wilson_interval(int(k), n) for k in correct])
    err = 100 * (1 - correct / n)
    return record.checkpoints, err, 100 * (1 - bounds[:, 1]), 100 * (1 - bounds[:, 0])


def plot_dataset(out: Path, dataset: str, results: dict[str, Any]) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    table = []
    images = set()
    for entry in (e for e in results["entries"] if e["dataset"] == dataset):
        model, row = entry["model"], entry["row"]
        rec = SpikeRecord.load(out.parent / entry["records"][0])  # records: runs/table2/records, shared
        times, err, lo, hi = error_band(rec)
        color = rows.color(row)
        n = rec.n_images
        images.add(n)
        label = f"{model.upper()} {entry.get('label', row)}" + (
            f" (n={n})" if n != results["config"]["n_images"] else ""
        )
        ax.plot(times, np.maximum(err, 1e-2), STYLE[model], color=color, label=label)
        ax.fill_between(times, np.maximum(lo, 1e-2), np.maximum(hi, 1e-2), color=color, alpha=0.18, linewidth=0)
        conv = entry.get("convergence") or convergence(rec).to_dict()
        table.append({"dataset": dataset, "model": model, "row": row, "final_accuracy": rec.accuracy(), **conv})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("test error (%)")
    n_text = "/".join(str(n) for n in sorted(images, reverse=True))
    ax.set_title(f"Figure {FIG_NUMBER.get(dataset, '')}: {dataset} ({n_text} test images, 95 % Wilson bands)")
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


def convergence_markdown(rows: list[dict[str, Any]], steps: int | None = None) -> str:
    lines = [
        "Time to accuracy: the first time after which the accuracy stays within 0.1 pp (⌊n/1000⌋ images) of its "
        "value at the row's horizon H; converged: that time is at most H/2 and most images have an output spike "
        "(replication: ~21 ms for MNIST MLP data-based, ~2 000 ms for model-based, in its current-input, "
        "membrane-readout configuration).",
        "",
    ]
    body = []
    for r in rows:
        if r["time_to_accuracy_ms"] is None:
            t = f"not started ({100 * r['no_output_spike_fraction']:.0f} % of images without an output spike)"
        else:
            t = f"{r['time_to_accuracy_ms']:g}"
        body.append(
            (
                *(r["dataset"], r["model"], r["row"], r["images"], f"{r['horizon_ms']:g}"),
                *(f"{100 * r['final_accuracy']:.2f}", t, "yes" if r["converged"] else "no"),
            )
        )
    header = ("dataset", "model", "row", "images", "H (ms)", "accuracy at H (%)", "time to accuracy (ms)")
    lines += table((*header, "converged"), body)
    return "\n".join(lines) + "\n"


def make_figures(results: dict[str, Any], runs: Path) -> list[dict[str, Any]]:
    """Both figures and the convergence table from the records behind ``results`` (run_table2's output)."""
    cfg = results["config"]
    out = runs / "table2" / results["tag"]
    found = dict.fromkeys(e["dataset"] for e in results["entries"])
    stems = [f"fig{FIG_NUMBER.get(ds, 0)}_{ds}.{ext}" for ds in found for ext in ("png", "svg")]
    check_outputs(*(out / name for name in (*stems, "convergence.md", "convergence.json")))  # all or none
    table = []
    for dataset in found:
        table += plot_dataset(out, dataset, results)["convergence"]
    write_text_atomic(out / "convergence.md", convergence_markdown(table))
    write_json_atomic(out / "convergence.json", {"config": cfg, "rows": table})
    return table
