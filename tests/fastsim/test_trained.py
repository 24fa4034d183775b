"""fastsim on a trained, data-normalized MNIST MLP: precision agreement and rate correspondence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from convert import ann, normalize
from fastsim.simulate import simulate


@pytest.mark.slow
def test_float32_matches_float64_per_neuron(trained_mnist_mlp):
    base, stats, test = trained_mnist_mlp
    spec, _ = normalize.data_based(base, stats)
    kw = dict(steps=100, seed=3, record_neurons=True, labels=test.labels[:100])
    r32 = simulate(spec, test.images[:100], dtype="float32", record_margins=True, **kw)
    r64 = simulate(spec, test.images[:100], dtype="float64", record_margins=True, **kw)
    equal = total = 0
    upstream = np.zeros(100, dtype=bool)
    for li, (a, b) in enumerate(zip(r32.neuron_counts, r64.neuron_counts, strict=True)):
        mismatch = a != b
        equal += int((~mismatch).sum())
        total += a.size
        # a mismatch is a membrane that came within float32 rounding of threshold, or propagates such an event
        # upstream (which may move a spike in time without changing a count)
        near = np.minimum(r32.margins[li], r64.margins[li]) < 1e-4
        assert np.all(near[mismatch] | upstream[np.nonzero(mismatch)[0]])
        upstream |= mismatch.any(axis=1) | near.any(axis=1)
    assert equal / total >= 0.999, f"{total - equal} of {total} per-neuron counts differ"
    assert np.mean(r32.predictions() == r64.predictions()) >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_rate_correspondence_within_half_a_point(trained_mnist_mlp, reset):
    base, stats, test = trained_mnist_mlp
    spec, _ = normalize.data_based(base, stats)
    spec = dataclasses.replace(spec, reset=reset)
    images, labels = test.images[:1000], test.labels[:1000]
    ann_acc = ann.accuracy(spec, images, labels)
    rec = simulate(spec, images, steps=300, seed=0, labels=labels)
    assert rec.accuracy() >= ann_acc - 0.005, (rec.accuracy(), ann_acc)
