"""The banded sparse convolution equals the convolution, for any shape, stride, padding and spike density."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from fastsim import bandconv
from fastsim.bandconv import BandConv
from fastsim.encode import PoissonSource
from fastsim.network import Network


@settings(max_examples=60, deadline=None)
@given(
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    rows=st.integers(1, 6),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_band_sum_is_the_convolution(c_in, c_out, h, w, kh, kw, sh, sw, ph, pw, rows, density, seed):
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)  # else the kernel does not fit: no output, nothing to compare
    rng = np.random.default_rng(seed)
    layer = Conv2d(rng.normal(size=(c_out, c_in, kh, kw)), stride=(sh, sw), padding=(ph, pw))
    x = torch.tensor(rng.random((rows, c_in, h, w)) < density, dtype=torch.float64)
    band = BandConv.build(layer, (c_in, h, w), torch.float64, "cpu")
    want = torch.nn.functional.conv2d(x, torch.tensor(layer.weight), stride=(sh, sw), padding=(ph, pw))
    got = band(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_channels_last_input_and_float32_exact_sums(fastsim_rng):
    w = np.round(fastsim_rng.normal(size=(6, 4, 5, 5)) * 16) / 16  # dyadic: every sum is exact
    layer = Conv2d(w, padding=(1, 2))
    x = torch.tensor(fastsim_rng.random((7, 4, 10, 9)) < 0.1, dtype=torch.float32)
    band = BandConv.build(layer, (4, 10, 9), torch.float32, "cpu")
    want = torch.nn.functional.conv2d(x, torch.tensor(w, dtype=torch.float32), padding=(1, 2))
    assert torch.equal(band(x), want)
    assert torch.equal(band(x.contiguous(memory_format=torch.channels_last)), want)
    # the table holds single weights: float32 is the float64 table rounded
    assert torch.equal(band.table, BandConv.build(layer, (4, 10, 9), torch.float64, "cpu").table.float())


def test_engine_takes_the_band_path_and_matches_the_plain_loop(fastsim_rng, monkeypatch):
    """A CNN with sparse spikes into its second convolution: the band path runs, and the time-batched engine
    still gives the plain loop's spikes exactly (dyadic weights, so every sum is exact in any order)."""

    def dyadic(*shape):
        return np.round(fastsim_rng.normal(size=shape) * 8) / 16

    spec = NetworkSpec(
        input_shape=(1, 12, 12),
        layers=(
            Conv2d(dyadic(4, 1, 3, 3), threshold=1.0),
            AvgPool2d(2, threshold=0.5),
            Conv2d(dyadic(5, 4, 3, 3), threshold=0.5),
            Flatten(),
            Dense(dyadic(3, 45), threshold=0.5),
        ),
    )
    net = Network(spec, torch.device("cpu"), torch.float32)
    assert net.stages[2].band is not None
    monkeypatch.setattr(bandconv, "BAND_RATIO", 100.0)  # always the band path (small layers: few rows)
    calls = []
    original = BandConv.__call__
    monkeypatch.setattr(BandConv, "__call__", lambda self, x: calls.append(1) or original(self, x))
    source = PoissonSource(fastsim_rng.random((6, 144)), np.arange(6), 3, 500.0, 1.0, net.device, net.dtype)
    fast = net.finish(net.run(source, 6, 40, np.array([40]), 10), record_neurons=True)
    monkeypatch.undo()
    assert calls, "the banded convolution was never used"
    plain = net.finish(net.run_stepwise(source, 6, 40, np.array([40])), record_neurons=True)
    for a, b in zip(fast.neuron_counts, plain.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)
    assert fast.layer_counts.sum() > 0
