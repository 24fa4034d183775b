"""When has a row converged: time to accuracy, and the verdict that the horizon was long enough.

A record's checkpoints give the number of correctly classified images after every checkpoint time. Its
*time to accuracy* is the first checkpoint after which that number stays within a tolerance of its final
value (the value at the record's horizon H): 0.1 pp of the images, rounded down to whole images (10 of
10 000, 2 of 2 000, 0 of 500). A row has *converged* when its time to accuracy is at most H / 2 (the whole
second half of the run moved the accuracy by no more than the tolerance) and at most half of the images lack
an output spike at H (a curve flat at 100 % error has not converged, it has not started; with a membrane
readout: most images have unequal output potentials).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from convert.contract.records import SpikeRecord

TOLERANCE_PP = 0.1


def tolerance_images(n: int, tolerance_pp: float = TOLERANCE_PP) -> int:
    """Whole images in ``tolerance_pp`` percentage points of ``n`` images (rounded down)."""
    return int(np.floor(n * tolerance_pp / 100 + 1e-9))


def time_to_accuracy(times: np.ndarray, correct: np.ndarray, tolerance: int) -> float:
    """First time in ``times`` after which ``correct`` (correct images at each time) stays within
    ``tolerance`` images of its last value."""
    times, correct = np.asarray(times), np.asarray(correct)
    if times.shape != correct.shape or times.ndim != 1 or len(times) == 0:
        raise ValueError(f"time_to_accuracy: times {times.shape} and counts {correct.shape} must match, 1-d")
    outside = np.abs(correct - correct[-1]) > tolerance
    if not outside.any():
        return float(times[0])
    return float(times[np.nonzero(outside)[0][-1] + 1])


def checkpoint_index(record: SpikeRecord, step: int) -> int:
    """The index of checkpoint ``step`` in ``record`` (a ValueError if it was not recorded)."""
    hits = np.nonzero(record.checkpoints == step)[0]
    if len(hits) == 0:
        raise ValueError(f"the record has no checkpoint at step {step} (checkpoints end at {record.checkpoints[-1]})")
    return int(hits[0])


def correct_at(record: SpikeRecord, step: int) -> np.ndarray:
    """Per image: classified correctly after ``step`` steps."""
    return record.predictions(checkpoint_index(record, step)) == record.labels


@dataclass(frozen=True)
class Convergence:
    horizon_ms: float
    images: int
    tolerance_images: int
    time_to_accuracy_ms: float | None  # None: most images never had an output spike, nothing to converge to
    no_output_spike_fraction: float
    converged: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def convergence(record: SpikeRecord, dt_ms: float = 1.0) -> Convergence:
    """Time to accuracy and the convergence verdict of one record (module doc)."""
    labels = record.labels
    correct = np.array([int(np.sum(record.predictions(i) == labels)) for i in range(len(record.checkpoints))])
    tol = tolerance_images(record.n_images)
    times = record.checkpoints * dt_ms
    t_acc = time_to_accuracy(times, correct, tol)
    silent = record.undecided_fraction()  # no output spike, or (membrane readout) all potentials equal
    horizon = float(times[-1])
    if silent >= 0.5:
        return Convergence(horizon, record.n_images, tol, None, silent, False)
    return Convergence(horizon, record.n_images, tol, t_acc, silent, bool(t_acc <= horizon / 2))
