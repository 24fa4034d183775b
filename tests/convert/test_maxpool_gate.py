"""The max-pool gate of any stride, padding and ceil_mode: torch's windows and output size, the spec file."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convert.contract.fingerprint import spec_fingerprint
from convert.contract.io import from_dict, to_dict
from convert.contract.spec import Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, SpecError
from convert.layers.maxpool2d import unit_windows

SETTINGS = [
    (k, s, p, ceil)
    for k, s, p, ceil in itertools.product((1, 2, 3, 4), (1, 2, 3), (0, 1, 2), (False, True))
    if p <= k // 2
]


@pytest.mark.parametrize("k,s,p,ceil", SETTINGS)
def test_the_windows_are_torchs(k, s, p, ceil):
    """For every setting and a few input sizes: the output shape is torch's, and the max over each window's
    members (padding left out) is F.max_pool2d's."""
    layer = MaxPool2d(k, s, p, ceil)
    for h, w in ((5, 5), (6, 9), (8, 7)):
        x = torch.rand(1, 2, h, w, dtype=torch.float64)
        want = F.max_pool2d(x, k, s, p, ceil_mode=ceil)
        assert layer.output_shape((2, h, w)) == tuple(want.shape[1:])
        members = layer.members((2, h, w))
        flat = x.reshape(-1).numpy()
        got = np.where(members >= 0, flat[np.maximum(members, 0)], -np.inf).max(1)
        np.testing.assert_array_equal(got, want.reshape(-1).numpy())
        ptr, windows = unit_windows(members, 2 * h * w)
        for j in range(0, 2 * h * w, 7):  # each unit's windows are exactly those that hold it
            np.testing.assert_array_equal(windows[ptr[j] : ptr[j + 1]], np.flatnonzero((members == j).any(1)))


def test_bad_settings_are_refused():
    with pytest.raises(SpecError, match="padding must be an int from 0 to kernel_size // 2 = 1"):
        MaxPool2d(3, 2, 2)
    with pytest.raises(SpecError, match="stride must be a positive int or None"):
        MaxPool2d(3, 0)
    with pytest.raises(SpecError, match="ceil_mode must be true or false"):
        MaxPool2d(3, 2, 1, "yes")
    assert MaxPool2d(2, 2) == MaxPool2d(2) and MaxPool2d(2, 2).is_plain  # stride = kernel is the plain gate


def _spec(gate: MaxPool2d) -> NetworkSpec:
    rng = np.random.default_rng(0)
    conv = Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1)
    n = int(np.prod(gate.output_shape((2, 7, 7))))
    return NetworkSpec((1, 7, 7), (conv, gate, Flatten(), Dense(rng.normal(size=(3, n)))))


def test_a_plain_gate_is_written_as_before_and_a_new_one_round_trips():
    plain, header = _spec(MaxPool2d(2)), to_dict(_spec(MaxPool2d(2)))[0]
    assert header["layers"][1] == {"type": "MaxPool2d", "kernel_size": 2}  # files and keys as before
    stem = _spec(MaxPool2d(3, 2, 1, True))
    header, arrays = to_dict(stem)
    assert header["layers"][1] == {"type": "MaxPool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    back = from_dict(header, arrays)
    assert back.layers[1] == stem.layers[1] and spec_fingerprint(back) == spec_fingerprint(stem)
    assert spec_fingerprint(stem) != spec_fingerprint(_spec(MaxPool2d(3, 2, 1))) != spec_fingerprint(plain)
    header["layers"][1]["ceil_mode"] = "true"
    with pytest.raises(SpecError, match=r"ceil_mode: must be true or false"):
        from_dict(header, arrays)
