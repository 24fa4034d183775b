"""Time to accuracy and the convergence verdict: hand-made curves and a tiny network whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.records import SpikeRecord
from validation.paper.convergence import convergence, correct_at, time_to_accuracy, tolerance_images


@pytest.mark.parametrize(
    "correct, tol, expected",
    [
        ([10, 50, 90, 90, 90], 0, 3.0),  # settles at the third checkpoint
        ([90, 90, 90, 90, 90], 0, 1.0),  # flat from the start
        ([10, 90, 50, 90, 95], 0, 5.0),  # moves at the last checkpoint: only the end is within
        ([10, 90, 50, 94, 95], 1, 4.0),  # one image of tolerance
        ([10, 90, 94, 96, 95], 1, 3.0),  # within tolerance on both sides of the final value
    ],
)
def test_time_to_accuracy(correct, tol, expected):
    assert time_to_accuracy(np.array([1.0, 2, 3, 4, 5]), np.array(correct), tol) == expected


def test_tolerance_is_a_tenth_of_a_percent_in_whole_images():
    assert [tolerance_images(n) for n in (10_000, 2_000, 999, 500, 1000)] == [10, 2, 0, 0, 1]


def test_time_to_accuracy_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="must match"):
        time_to_accuracy(np.array([1.0, 2]), np.array([1]), 0)


def _record(counts: np.ndarray, labels: np.ndarray, checkpoints: np.ndarray) -> SpikeRecord:
    n = len(labels)
    return SpikeRecord(
        checkpoints=checkpoints,
        output_counts=counts,
        layer_counts=np.zeros((n, 1), dtype=np.int64),
        first_spike_step=np.zeros(n, dtype=np.int64),
        synops=np.zeros((n, 1)),
        labels=labels,
        image_indices=np.arange(n),
    )


def test_verdict_needs_a_flat_second_half_and_output_spikes():
    labels = np.array([0, 1, 0, 1])
    ckpt = np.array([1, 2, 4, 8])
    counts = np.zeros((4, 4, 2), dtype=np.int64)
    counts[:, 1:, :] = 0
    counts[np.arange(4), 1:, labels] = 1  # every image right from t = 2 on
    conv = convergence(_record(counts, labels, ckpt))
    assert conv.time_to_accuracy_ms == 2.0 and conv.converged
    late = counts.copy()
    late[0, :3, :] = 0  # image 0 silent until t = 8: accuracy still moving in the second half
    conv = convergence(_record(late, labels, ckpt))
    assert conv.time_to_accuracy_ms == 8.0 and not conv.converged
    silent = np.zeros_like(counts)
    silent[0, :, 0] = 1  # three of four images never spike
    conv = convergence(_record(silent, labels, ckpt))
    assert conv.time_to_accuracy_ms is None and not conv.converged and conv.no_output_spike_fraction == 0.75
    np.testing.assert_array_equal(correct_at(_record(counts, labels, ckpt), 4), [True] * 4)
    with pytest.raises(ValueError, match="no checkpoint at step 3"):
        correct_at(_record(counts, labels, ckpt), 3)


def test_horizon_logic_on_a_tiny_network():
    """Two inputs held on (analog current 1) into two outputs with weights 1/8 and 1/2, label 1: under the
    delay schedule and zero reset output 1 spikes at steps 3, 6, 9, ... and output 0 at 9, 18, ..., so
    output 1 leads from step 3 on: the accuracy is 0 before step 3 and 1 from it on, time to accuracy 3 ms,
    converged."""
    from convert.contract.spec import Dense, NetworkSpec
    from fastsim.simulate import simulate

    w = np.array([[1 / 8, 0.0], [0.0, 1 / 2]])
    spec = NetworkSpec(input_shape=(2,), layers=(Dense(weight=w, threshold=1.0),), encoding="current")
    rec = simulate(spec, np.ones((4, 2)), steps=40, labels=np.ones(4, dtype=np.int64), checkpoints=np.arange(1, 41))
    acc = rec.accuracy_curve()
    np.testing.assert_array_equal(acc, (rec.checkpoints >= 3).astype(float))
    conv = convergence(rec)
    assert conv.time_to_accuracy_ms == 3.0 and conv.converged and conv.tolerance_images == 0
