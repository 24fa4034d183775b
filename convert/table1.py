"""Table 1: train, validation and test accuracy (eval mode) of the four ANNs and the setting each was chosen
with, from their metrics files. "train" is measured on the images the network was trained on."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from convert.contract.provenance import check_outputs, write_text_atomic

REPLICATION = {
    ("mnist", "mlp"): (99.81, 97.91),
    ("mnist", "cnn"): (99.79, 98.93),
    ("fashion", "mlp"): (93.44, 88.10),
    ("fashion", "cnn"): (92.69, 89.50),
}


def rows(runs: Path) -> list[dict]:
    out = []
    for (ds, model), (rep_train, rep_test) in REPLICATION.items():
        path = runs / "models" / f"{ds}-{model}.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text())
        val = m.get("validation_accuracy")
        sel = m.get("selection") or {}
        chosen = sel["candidates"][sel["chosen"]]["overrides"] if sel.get("candidates") else {}
        out.append(
            {
                "dataset": ds,
                "model": model,
                "train": round(100 * m["train_accuracy"], 2),
                "validation": round(100 * val, 2) if val is not None else None,
                "test": round(100 * m["test_accuracy"], 2),
                "replication_train": rep_train,
                "replication_test": rep_test,
                "epochs": m["epochs"],
                "setting": ", ".join(f"{k} {v}" for k, v in chosen.items() if k != "epochs"),
                "candidates": len(sel.get("candidates", [])) or 1,
                "train_wall_s": round(m["train_wall_s"], 1),
                "selection_wall_s": round(sel.get("selection_wall_s", m["train_wall_s"]), 1),
            }
        )
    return out


def write_table1(runs: Path) -> str:
    """Write runs/table1.md and runs/table1.csv; return the Markdown."""
    table = rows(runs)
    if not table:
        raise FileNotFoundError(f"no metrics under {runs / 'models'}; train with `python -m convert train ...`")
    md = [
        "| dataset | model | train % | validation % | test % | replication train % | replication test % "
        "| epochs | chosen setting (of N candidates) | wall s (all candidates) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['dataset']} | {r['model']} | {r['train']:.2f} | "
        + (f"{r['validation']:.2f}" if r["validation"] is not None else "–")
        + f" | {r['test']:.2f} | {r['replication_train']:.2f} | {r['replication_test']:.2f} | {r['epochs']} "
        f"| {r['setting'] or '–'} ({r['candidates']}) | {r['selection_wall_s']:.0f} |"
        for r in table
    ]
    text = "\n".join(md) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    check_outputs(runs / "table1.md", runs / "table1.csv")  # both or none
    write_text_atomic(runs / "table1.md", text)
    write_text_atomic(runs / "table1.csv", buf.getvalue())
    return text
