"""The plot of a sweep's results file: an accuracy heatmap over the two grid keys that vary, and curves."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import write_bytes_atomic
from validation.grid.results_log import first_by_key, read_results


def _plot_rows(path: Path, keys: Iterable[str] | None) -> list[dict[str, Any]]:
    rows = list(first_by_key(read_results(path)).values())
    if keys is not None:
        wanted = set(keys)
        rows = [r for r in rows if r["key"] in wanted]
    if not rows:
        raise ValueError(f"{path}: no finished cells to plot")
    return rows


def plot_sweep(path: Path, png: Path | None = None, keys: Iterable[str] | None = None) -> Path:
    """Accuracy heatmap over the first two grid keys that vary (mean over the rest), and accuracy curves.
    ``keys``: plot only these cells (e.g. a plan's, leaving out rows of an older checkpoint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _plot_rows(path, keys)
    varying = [k for k in sorted(rows[0]["cell"]) if len({json.dumps(r["cell"][k]) for r in rows}) > 1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if len(varying) >= 2:
        kx, ky = varying[:2]
        xs = sorted({r["cell"][kx] for r in rows}, key=str)
        ys = sorted({r["cell"][ky] for r in rows}, key=str)
        grid = np.full((len(ys), len(xs)), np.nan)
        for iy, y in enumerate(ys):
            for ix, x in enumerate(xs):
                acc = [r["result"]["accuracy"] for r in rows if r["cell"][kx] == x and r["cell"][ky] == y]
                grid[iy, ix] = 100 * np.mean(acc) if acc else np.nan
        im = axes[0].imshow(grid, cmap="viridis", aspect="auto")
        axes[0].set_xticks(range(len(xs)), [str(x) for x in xs])
        axes[0].set_yticks(range(len(ys)), [str(y) for y in ys])
        axes[0].set_xlabel(kx)
        axes[0].set_ylabel(ky)
        fig.colorbar(im, ax=axes[0], label="accuracy (%)")
    else:
        axes[0].set_axis_off()
    label_keys = varying or ["method"]
    for r in rows:
        label = ", ".join(f"{k}={r['cell'][k]}" for k in label_keys)
        axes[1].plot(r["result"]["checkpoints"], 100 * np.asarray(r["result"]["accuracy_curve"]), label=label)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("steps (ms)")
    axes[1].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    png = png or path.with_suffix(".png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(png, buf.getvalue())
    return png
