"""The latency table's rows (:mod:`validation.paper.latency`) and the anchors' published numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LatencyRow:
    """One row: the method, the spec's fields it runs with, its inputs, and whether it is calibrated per T."""

    name: str
    label: str
    method: str
    fields: dict[str, Any]
    encodings: tuple[str, ...] = ("current",)
    per_steps: bool = False  # one spec per T (its thresholds chosen for that T)
    max_steps: int | None = None  # the largest T it runs to (None: every T of the table)


CASCADE_HALF = {"reset": "subtract", "v_init": 0.5, "schedule": "cascade"}
ROWS: tuple[LatencyRow, ...] = (
    LatencyRow("data", "data-based (Diehl)", "data", {"reset": "zero", "v_init": 0.0, "schedule": "cascade"},
               ("current", "poisson")),
    LatencyRow("data-subtract-half", "data-based, subtract, θ/2", "data", CASCADE_HALF, ("current", "poisson")),
    LatencyRow("data-subtract-half-delay", "data-based, subtract, θ/2, delay schedule", "data",
               {**CASCADE_HALF, "schedule": "delay"}, max_steps=64),
    LatencyRow("calibrated", "calibrated (threshold per layer)", "calibrated", CASCADE_HALF, per_steps=True,
               max_steps=64),
    LatencyRow("calibrated-channel", "calibrated (threshold per channel)", "calibrated-channel", CASCADE_HALF,
               per_steps=True, max_steps=64),
    LatencyRow("calibrated-bc", "calibrated per channel + bias correction", "calibrated-bc", CASCADE_HALF,
               per_steps=True, max_steps=64),
    LatencyRow("calibrated-pc", "calibrated per channel + bias + potential correction", "calibrated-pc",
               CASCADE_HALF, per_steps=True),
    LatencyRow("qcfs", "QCFS (L = 8)", "qcfs", CASCADE_HALF),
)  # fmt: skip
ROW_NAMES = tuple(r.name for r in ROWS)

#: the anchors' published numbers, CIFAR-10, from their papers (not measured here)
ANCHORS: tuple[tuple[str, str], ...] = (
    ("QCFS (Bu et al., ICLR 2022), VGG-16, CIFAR-10", "ANN 95.52 %; SNN 93.96 % at T = 4, 94.95 % at 8, 95.40 % at 16"),
    ("Calibration (Li et al., ICML 2021), CIFAR-10", "plain ReLU networks within 1.35–2.1 pp of the ANN at T = 16–32"),
)


def row(name: str) -> LatencyRow:
    return next(r for r in ROWS if r.name == name)
