"""Comparing two SpikeRecords: exactly where the arithmetic is exact, within the rounding of a sum where not.

Exact equality holds only where every number is exact in floating point whatever the order of summation:
integer counts, and sums of dyadic weights (multiples of 1/16) driven by 0/1 spikes or dyadic analog input.
A float quantity that two engines sum in different orders (the synaptic events of an analog input k/255, the
membrane of an output layer fed analog currents) is compared with :func:`sum_tolerance`, which bounds the
difference of two orders of one sum from its number of terms and its size. The summation order depends on the
engine, and within one engine on the SIMD path numba, torch or BLAS picks on the CPU at hand, so a test that
asks for bit equality of such a sum passes on one machine and fails on another.
"""

from __future__ import annotations

import numpy as np

from convert.contract.records import SpikeRecord

UNIT_ROUNDOFF = {np.dtype(np.float64): 2.0**-53, np.dtype(np.float32): 2.0**-24}

INTEGER_FIELDS = ("checkpoints", "output_counts", "layer_counts", "first_spike_step", "labels", "image_indices")
FLOAT_FIELDS = ("synops", "synops_curve", "output_potential")


def sum_tolerance(n_terms: int, magnitude, dtype=np.float64) -> np.ndarray:
    """The largest difference between two summation orders of ``n_terms`` terms whose absolute values add up
    to at most ``magnitude``: each order is within (n − 1)·u·Σ|x_i| of the exact sum (Higham, *Accuracy and
    Stability of Numerical Algorithms*, 2nd ed., eq. 4.4, to first order in u), so two orders differ by at
    most twice that. One more n·u covers the products that make the terms (c · x_i · fan-out_i)."""
    u = UNIT_ROUNDOFF[np.dtype(dtype)]
    return 3 * max(int(n_terms), 1) * u * np.asarray(magnitude, dtype=np.float64)


def assert_same_record(a: SpikeRecord, b: SpikeRecord) -> None:
    """Every field bit for bit: only for records whose arithmetic is exact (see the module docstring)."""
    for name in INTEGER_FIELDS + FLOAT_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert (a.neuron_counts is None) == (b.neuron_counts is None)
    for x, y in zip(a.neuron_counts or (), b.neuron_counts or (), strict=True):
        np.testing.assert_array_equal(x, y, err_msg="neuron_counts")


def assert_close_record(
    a: SpikeRecord, b: SpikeRecord, synops_terms: int, potential_terms: int = 1, potential_scale: float = 0.0
) -> None:
    """Counts, steps and indices exactly; the float sums within their rounding (:func:`sum_tolerance`).

    ``synops_terms``: the number of terms of one synaptic-event sum (the inputs of a layer); the terms are
    non-negative, so their absolute values add up to the sum itself. ``potential_terms`` and
    ``potential_scale``: the number of terms of one output membrane (steps × fan-in) and a bound on the sum of
    their absolute values (steps × the largest Σ_i |w_ji| of the output layer, for inputs in [0, 1])."""
    for name in INTEGER_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for x, y in zip(a.neuron_counts or (), b.neuron_counts or (), strict=True):
        np.testing.assert_array_equal(x, y, err_msg="neuron_counts")
    for name in ("synops", "synops_curve"):
        x, y = getattr(a, name), getattr(b, name)
        bound = sum_tolerance(synops_terms, np.maximum(np.abs(x), np.abs(y)))
        assert np.all(np.abs(x - y) <= bound), f"{name}: max |diff| {np.max(np.abs(x - y)):.3g} exceeds the bound"
    if a.output_potential is not None or b.output_potential is not None:
        x, y = a.output_potential, b.output_potential
        bound = sum_tolerance(potential_terms, potential_scale)
        assert np.all(np.abs(x - y) <= bound), f"output_potential: max |diff| {np.max(np.abs(x - y)):.3g} > {bound:.3g}"
