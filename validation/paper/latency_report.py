"""The latency table's report (:mod:`validation.paper.latency`): markdown tables and the gap-vs-T plot."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

from validation.markdown import table
from validation.paper.latency_rows import ANCHORS, ROW_NAMES, row

NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}


def _network(e: dict[str, Any]) -> str:
    return f"{e['dataset']}-{e['model']}"


def _line(e: dict[str, Any]) -> tuple[str, str]:
    return e["row"], e["encoding"]


def _gap(e: dict[str, Any]) -> float:
    return 100 * (e["snn_accuracy"] - e["ann_accuracy"])


def _by_network(entries: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], dict[int, dict]]]:
    out: dict[str, dict[tuple[str, str], dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for e in entries:
        out[_network(e)][_line(e)][e["steps"]] = e
    return out


def markdown(results: dict[str, Any]) -> str:
    """Per network: the gap to the ANN (pp) at every T, one line per row and input (* : McNemar p < 0.05), then
    every entry with its Wilson interval, the paired interval of the gap and the McNemar p; the anchors'
    published numbers last."""
    cfg = results["config"]
    steps = cfg["steps"]
    lines = [
        "# Accuracy in a few time steps",
        "",
        f"Test images: the first {cfg['images']} of MNIST / Fashion-MNIST for the paper's networks, the first "
        f"{cfg['deeper_images']} for the deeper ones; membrane readout; `cascade` unless the row says `delay`; "
        f"analog (`current`) input, Poisson (seed {cfg['seed']}) where marked; fastsim {cfg['kernel']} "
        f"{cfg['dtype']}. Each SNN against its own ANN on the same images (QCFS: the trained QCFS network). Cells: "
        "SNN − ANN in percentage points, `*` where the exact McNemar test gives p < 0.05.",
        "",
    ]
    walls = results.get("wall_s", {})
    for net, by_line in _by_network(results["entries"]).items():
        anns = sorted({(e["ann"], e["ann_accuracy"]) for line in by_line.values() for e in line.values()})
        ann_text = ", ".join(f"{kind} ANN {100 * acc:.2f} %" for kind, acc in anns)
        wall = f"; this run {walls[net] / 60:.1f} min, cached parts read" if net in walls else ""
        lines += [f"## {net} ({ann_text}{wall})", ""]
        body = []
        for (name, encoding), by_t in by_line.items():
            cells = []
            for t in steps:
                e = by_t.get(t)
                cells.append("" if e is None else f"{_gap(e):+.2f}{'*' if e['vs_ann']['p_value'] < 0.05 else ''}")
            body.append((row(name).label, encoding, *cells))
        lines += table(("row", "input", *(f"T = {t}" for t in steps)), body)
        lines.append("")
    lines += ["## Every entry", ""]
    body = []
    for e in results["entries"]:
        lo, hi = e["ci95"]
        dlo, dhi = e["vs_ann"]["difference_ci95"]
        body.append(
            (
                _network(e),
                e["row"],
                e["encoding"],
                e["steps"],
                e["n"],
                f"{100 * e['ann_accuracy']:.2f}",
                f"{100 * e['snn_accuracy']:.2f} ({100 * lo:.2f}–{100 * hi:.2f})",
                f"{_gap(e):+.2f} ({100 * dlo:+.2f} to {100 * dhi:+.2f})",
                f"{e['vs_ann']['a_only']}/{e['vs_ann']['b_only']}",
                f"{e['vs_ann']['p_value']:.2g}",
            )
        )
    head = ("network", "row", "input", "T", "n", "ANN %", "SNN % (95 % CI)", "SNN − ANN pp (95 % CI)")
    lines += table((*head, "SNN only / ANN only", "McNemar p"), body)
    if results.get("agreement"):
        from validation.harness.agreement import agreement_markdown

        lines += [
            "",
            "## Brian2 holds the new rows",
            "",
            "Analog input: both engines add the same constant current of each pixel in every step.",
            "",
            agreement_markdown(results["agreement"]),
        ]
    lines += ["", "## The anchors (published CIFAR-10 numbers from their papers, not measured here)", ""]
    lines += [f"- {who}: {what}" for who, what in ANCHORS]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any]) -> bytes:
    """PNG: one panel per network, the gap to the ANN (pp) against T (log axis), one line per row and input,
    the band its paired 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = _by_network(results["entries"])
    fig, axes = plt.subplots(1, max(1, len(nets)), figsize=(4.2 * max(1, len(nets)), 3.6), squeeze=False)
    for ax, (net, by_line) in zip(axes[0], nets.items(), strict=False):
        for (name, encoding), by_t in sorted(by_line.items(), key=lambda kv: (ROW_NAMES.index(kv[0][0]), kv[0][1])):
            ts = sorted(by_t)
            gap = [_gap(by_t[t]) for t in ts]
            lo = [100 * by_t[t]["vs_ann"]["difference_ci95"][0] for t in ts]
            hi = [100 * by_t[t]["vs_ann"]["difference_ci95"][1] for t in ts]
            color = f"C{ROW_NAMES.index(name)}"
            style = "--" if encoding == "poisson" else "-"
            label = row(name).label + (" (Poisson)" if encoding == "poisson" else "")
            ax.plot(ts, gap, style, color=color, marker="o", ms=3, label=label)
            ax.fill_between(ts, lo, hi, color=color, alpha=0.15, lw=0)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-10, 1)
        ax.set_title(net)
        ax.set_xlabel("T (steps)")
        ax.set_ylabel("SNN − ANN (pp)")
    seen: dict[str, Any] = {}  # every line's label once (a row may be on some panels only: QCFS on the CNNs)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    axes[0][-1].legend(list(seen.values()), list(seen), fontsize=6, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
