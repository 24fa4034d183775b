"""The oracle itself: the reference loop's linear maps and fan-outs, checked by independent means.

(Its time loop is checked against the hand-worked golden table in test_golden.py.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convert.spec import AvgPool2d, Conv2d, Flatten
from tests.conformance import reference
from tests.conformance.networks import FAMILIES, network


@pytest.mark.parametrize("family", FAMILIES)
def test_linear_maps_are_torchs(family):
    spec = network(family, "delay", "zero")
    rng = np.random.default_rng(3)
    for layer, shape in zip(spec.layers, spec.shapes, strict=False):
        x = rng.random((2, *shape))
        got = reference.linear_map(layer, x, shape)
        t = torch.as_tensor(x)
        if isinstance(layer, Conv2d):
            want = F.conv2d(t, torch.as_tensor(np.array(layer.weight)), stride=layer.stride, padding=layer.padding)
        elif isinstance(layer, AvgPool2d):
            want = F.avg_pool2d(t, layer.kernel_size, stride=layer.stride)
        elif isinstance(layer, Flatten):
            want = t.flatten(1)
        else:
            want = t @ torch.as_tensor(np.array(layer.weight)).T
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12, err_msg=type(layer).__name__)


@pytest.mark.parametrize("family", FAMILIES)
def test_fanouts_count_the_synapses(family):
    """Brute force: a synapse j <- i exists where the layer map with non-zero weights sends e_i to j."""
    spec = network(family, "delay", "zero")
    pathways = [[]]
    for layer, shape in zip(spec.layers, spec.shapes, strict=False):
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
