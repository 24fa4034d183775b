"""The rows of Table 2 and the lines of Figures 3/4, derived from the registry of normalization methods.

Every registered method that applies to any model (:func:`convert.methods.paper_methods`: not ``qcfs``, which
needs a model trained with QCFS activations) is a row, run with the evaluation's shared options (threshold
1, the configured percentile, ...). A method that takes a ``threshold`` gets a second row, ``<name>-tuned``,
whose threshold is chosen by a search on held-out *training* images (the paper's "baseline, tuned θ").
Registering a method adds its rows everywhere: tables, figures, the main job.

A *variant* row (:data:`VARIANTS`) runs a registered method's spec with simulation options changed: the reset
by subtraction of Rueckauer et al. 2017 instead of the paper's reset to zero (``data-subtract``), and with it
every membrane starting at half its threshold (``data-subtract-half``, Bu et al. 2022); it runs only where a
table names it (the deeper networks' table), never in the paper's Table 2.
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
    reset: str | None = None  # a variant's reset ("subtract"); None: the spec's own (the paper's "zero")
    v_init: float | None = None  # a variant's initial potential (fraction of θ); None: the spec's own (0)

    @property
    def changes(self) -> dict[str, Any]:
        """The spec fields a variant row replaces (empty for a registry row)."""
        return {k: v for k, v in (("reset", self.reset), ("v_init", self.v_init)) if v is not None}

    @property
    def color(self) -> str:
        return TUNED_COLOR if self.tuned else methods.get(self.method).color

    def label(self, **options: Any) -> str:
        if self.tuned:
            return f"{self.method} tuned θ"
        title = methods.get(self.method).title(**{"threshold": 1.0, **options})
        if self.reset == "subtract":
            title += ", reset by subtraction"
        return title + (f", v(0) = {self.v_init:g} θ" if self.v_init else "")


VARIANTS: tuple[Row, ...] = (
    Row("data-subtract", "data", reset="subtract"),
    Row("data-subtract-half", "data", reset="subtract", v_init=0.5),
)


def rows() -> tuple[Row, ...]:
    """Every row, in registry order; a thresholded method's tuned row follows it."""
    out: list[Row] = []
    for m in methods.paper_methods():  # a method that requires QCFS training has no row on ReLU networks
        out.append(Row(m.name, m.name))
        if "threshold" in m.options:
            out.append(Row(f"{m.name}-tuned", m.name, tuned=True))
    return tuple(out)


def named(names: tuple[str, ...] | None) -> tuple[Row, ...]:
    """The rows called ``names`` (registry rows and variants; an unknown name is an error), in registry
    order then variant order; None: every registry row (no variants)."""
    if names is None:
        return rows()
    known = rows() + VARIANTS
    unknown = set(names) - {r.name for r in known}
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}; known: {', '.join(r.name for r in known)}")
    return tuple(r for r in known if r.name in names)


def row_names() -> tuple[str, ...]:
    return tuple(r.name for r in rows())


def color(row_name: str) -> str:
    """A row's colour; a row no longer registered (an old results file) is drawn in grey."""
    return next((r.color for r in rows() + VARIANTS if r.name == row_name), "0.5")
