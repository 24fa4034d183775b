"""The rows of Table 2 and the lines of Figures 3/4, derived from the registry of normalization methods.

Every registered method (:mod:`convert.methods`) is a row, run with the evaluation's shared options (threshold
1, the configured percentile, ...). A method that takes a ``threshold`` gets a second row, ``<name>-tuned``,
whose threshold is chosen by a search on held-out *training* images (the paper's "baseline, tuned θ").
Registering a method adds its rows everywhere: tables, figures, the main job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convert import methods

TUNED_COLOR = "C1"


@dataclass(frozen=True)
class Row:
    name: str  # the row's key in results files, e.g. "baseline-tuned"
    method: str  # the registered method it runs
    tuned: bool = False  # threshold from the held-out search

    @property
    def color(self) -> str:
        return TUNED_COLOR if self.tuned else methods.get(self.method).color

    def label(self, **options: Any) -> str:
        if self.tuned:
            return f"{self.method} tuned θ"
        return methods.get(self.method).title(**{"threshold": 1.0, **options})


def rows() -> tuple[Row, ...]:
    """Every row, in registry order; a thresholded method's tuned row follows it."""
    out: list[Row] = []
    for m in methods.all_methods():
        out.append(Row(m.name, m.name))
        if "threshold" in m.options:
            out.append(Row(f"{m.name}-tuned", m.name, tuned=True))
    return tuple(out)


def row_names() -> tuple[str, ...]:
    return tuple(r.name for r in rows())


def color(row_name: str) -> str:
    """A row's colour; a row no longer registered (an old results file) is drawn in grey."""
    return next((r.color for r in rows() if r.name == row_name), "0.5")
