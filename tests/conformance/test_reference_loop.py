"""The oracle itself: the reference loop's linear maps and fan-outs, checked by independent means.

(Its time loop is checked against the hand-worked golden table in test_golden.py.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convert.contract.spec import AvgPool2d, Conv2d, Flatten, MaxPool2d, Neurons
from tests.conformance import reference
from tests.conformance.networks import FAMILIES, network


@pytest.mark.parametrize("family", FAMILIES)
def test_linear_maps_are_torchs(family):
    spec = network(family, "delay", "zero")
    rng = np.random.default_rng(3)
    for layer, shape in zip(spec.layers, spec.shapes, strict=False):
        if isinstance(layer, MaxPool2d):  # a gate, not a linear map: test_gate_step_is_the_argmax_of_counts
            continue
        x = rng.random((2, *shape))
        got = reference.linear_map(layer, x, shape)
        t = torch.as_tensor(x)
        if isinstance(layer, Conv2d):
            w = torch.as_tensor(np.array(layer.weight))
            want = F.conv2d(t, w, stride=layer.stride, padding=layer.padding, groups=layer.groups)
        elif isinstance(layer, AvgPool2d):
            want = F.avg_pool2d(t, layer.kernel_size, stride=layer.stride)
        elif isinstance(layer, Flatten):
            want = t.flatten(1)
        elif isinstance(layer, Neurons):  # no map from below: fed by its skip edges only
            want = torch.zeros(2, *layer.shape, dtype=t.dtype)
        else:
            want = t @ torch.as_tensor(np.array(layer.weight)).T
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12, err_msg=type(layer).__name__)


@pytest.mark.parametrize("family", FAMILIES)
def test_fanouts_count_the_synapses(family):
    """Brute force: a synapse j <- i exists where the layer map with non-zero weights sends e_i to j."""
    spec = network(family, "delay", "zero")
    pathways = [[]]
    for layer, shape in zip(spec.layers, spec.shapes, strict=False):
        if isinstance(layer, MaxPool2d):  # the synapses leave from the gate's output units
            continue
        pathways[-1].append((layer, shape))
        if not isinstance(layer, Flatten):
            pathways.append([])
    for k, (pathway, got) in enumerate(zip(pathways[:-1], reference.fanouts(spec), strict=True)):
        shape = pathway[0][1]
        n_in = int(np.prod(shape))
        h = np.eye(n_in).reshape(n_in, *shape)
        for layer, s in pathway:
            if hasattr(layer, "weight"):  # weights 1 everywhere: no synapse cancels to zero
                layer = dataclasses.replace(layer, weight=np.ones_like(layer.weight))
            h = reference.linear_map(layer, h, s)
        np.testing.assert_array_equal(got, (h.reshape(n_in, -1) != 0).sum(axis=1), err_msg=f"layer {k}")
    for k, skip, got in reference.skip_fanouts(spec):  # a skip edge's synapses, by the same brute force
        shape = spec.shapes[skip.source + 1]
        n_in = int(np.prod(shape))
        ones = dataclasses.replace(skip, weight=np.ones_like(skip.weight))
        h = reference.skip_map(ones, np.eye(n_in), shape)
        np.testing.assert_array_equal(got, (h.reshape(n_in, -1) != 0).sum(axis=1), err_msg=f"skip into {k}")


@pytest.mark.parametrize(
    "k,stride,padding,ceil", [(2, None, 0, False), (3, None, 0, False), (3, 2, 1, False), (3, 2, 0, True)]
)
def test_gate_step_is_the_argmax_of_counts(k, stride, padding, ceil):
    """The reference's gate, against torch's max-pooling of a unique key: count · HW + (HW − 1 − the unit's
    index in its channel), whose maximum in a window is the unit with the most spikes so far and, among those,
    the first (row-major in the window is C order); torch pads with −∞, so padding never wins. Plain gates,
    and overlapping, padded and ceil-mode ones."""
    from convert.contract.spec import MaxPool2d

    rng = np.random.default_rng(k)
    shape = (2, 2 * k + 1, 2 * k)  # one row past the last whole window: dropped by a plain gate
    layer = MaxPool2d(k, stride, padding, ceil)
    counts = rng.integers(0, 3, size=(4, *shape)).astype(np.float64)
    spikes = (rng.random((4, *shape)) < 0.5).astype(np.float64)
    after = counts + spikes
    got = reference.gate_step(layer, shape, spikes, counts)
    np.testing.assert_array_equal(counts, after)  # the counts now include this step's spikes
    hw = shape[1] * shape[2]
    index_in_channel = np.arange(hw).reshape(shape[1:])
    key = torch.as_tensor(after * hw + (hw - 1 - index_in_channel))
    _, index = F.max_pool2d(key, k, layer.step, padding, ceil_mode=ceil, return_indices=True)
    want = torch.as_tensor(spikes).flatten(2).gather(2, index.flatten(2)).reshape(index.shape)
    np.testing.assert_array_equal(got, want.numpy())
    assert 0 < got.sum() < spikes.sum(), "some spikes pass and some are held back"
