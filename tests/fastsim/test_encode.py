"""The torch encoder against the numpy reference of convert/encoding.py: bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convert import encoding as ref
from fastsim import encode


def test_mix32_matches_numpy_on_edge_values() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([[0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], rng.integers(0, 2**32, 1000)])
    x = x.astype(np.int64)
    got = encode.mix32(torch.as_tensor(x)).numpy()
    assert np.array_equal(got, ref.mix32(x))
    assert got.min() >= 0 and got.max() <= 0xFFFFFFFF
    assert np.array_equal(encode.mul32(torch.as_tensor(x), ref._C2).numpy(), (x.astype(object) * ref._C2) % 2**32)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    first_index=st.integers(0, 2**32 - 8),
    start=st.integers(0, 10_000),
    max_rate=st.sampled_from([1000.0, 400.0, 2000.0]),
    dt=st.sampled_from([1.0, 0.5]),
)
def test_poisson_spikes_bit_exact(seed: int, first_index: int, start: int, max_rate: float, dt: float) -> None:
    rng = np.random.default_rng(seed % 1000)
    images = rng.integers(0, 256, size=(5, 3, 7)).astype(np.uint8)
    images[0] = 0
    images[1] = 255
    indices = first_index + np.arange(5) * 2
    want = ref.poisson_spikes(images, indices, 6, seed, max_rate, dt, start_step=start)
    got = encode.poisson_spikes(images, indices, 6, seed, max_rate, dt, start_step=start).numpy()
    assert got.dtype == np.bool_ and got.shape == (5, 6, 21)
    assert np.array_equal(got, want)
    assert not got[0].any()  # intensity 0 never spikes
    if max_rate * dt >= 1000.0:
        assert got[1].all()  # probability >= 1 always spikes


def test_float_intensities_bit_exact() -> None:
    """Float images in [0, 1] use the same float64 thresholds, including values at the hash's edges."""
    rng = np.random.default_rng(3)
    x = rng.random((4, 50))
    x[0, :5] = [0.0, 1.0, 2.0**-32, 0.5, 1 - 2.0**-40]
    want = ref.poisson_spikes(x, np.arange(4), 20, seed=11)
    assert np.array_equal(encode.poisson_spikes(x, np.arange(4), 20, seed=11).numpy(), want)


def test_spike_probability_is_intensity() -> None:
    x = np.full((1, 4000), 0.3)
    rate = encode.poisson_spikes(x, np.array([0]), 25, seed=5).numpy().mean()
    assert abs(rate - 0.3) < 0.01


def test_spikes_depend_on_image_index_not_batch() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(6, 10)).astype(np.uint8)
    together = encode.poisson_spikes(images, np.arange(6), 9, seed=2).numpy()
    alone = np.concatenate([encode.poisson_spikes(images[i : i + 1], [i], 9, seed=2).numpy() for i in range(6)])
    assert np.array_equal(together, alone)
    other_seed = encode.poisson_spikes(images, np.arange(6), 9, seed=3).numpy()
    assert not np.array_equal(together, other_seed)


def test_bad_seed_raises() -> None:
    with pytest.raises(ValueError, match="seed"):
        encode.image_keys(2**32, torch.zeros(1, dtype=torch.int64))


def test_poisson_input_counts_at_a_step_inside_the_served_chunks() -> None:
    """input_counts(c) counts the steps t < c, also where c falls inside a served chunk (synops_curve)."""
    rng = np.random.default_rng(4)
    x = rng.random((3, 50)) * (rng.random((3, 50)) < 0.6)
    src = encode.PoissonSource(x, np.arange(3), 11, 1000.0, 1.0, torch.device("cpu"), torch.float64)
    spikes = torch.cat([src.chunk(0, 10), src.chunk(10, 10)])  # (20, 3, 50), served in two chunks
    for c in (1, 4, 10, 13, 20):
        np.testing.assert_array_equal(src.input_counts(c).numpy(), spikes[:c].sum(0).numpy(), err_msg=f"c={c}")
    assert src.input_counts(20).sum() > 0
    with pytest.raises(ValueError, match="only 20 steps have been served"):
        src.input_counts(21)
