"""The (i, j, w) synapse lists reproduce each layer's linear map exactly (against torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from refsim.connectivity import connections, fanout, spec_fanouts
from tests.conformance.reference import fanouts as reference_fanouts
from tests.refsim.conftest import dyadic_cnn


def _conv_reference(layer: Conv2d, s: np.ndarray) -> np.ndarray:
    w = torch.as_tensor(np.array(layer.weight))
    return F.conv2d(torch.as_tensor(s)[None], w, stride=layer.stride, padding=layer.padding)[0].numpy().ravel()


@settings(max_examples=25, deadline=None)
@given(
    oc=st.integers(1, 3),
    ic=st.integers(1, 3),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    hw=st.tuples(st.integers(4, 9), st.integers(4, 9)),
    seed=st.integers(0, 2**16),
)
def test_conv_synapses_reproduce_torch_conv_exactly(oc, ic, k, stride, padding, hw, seed):
    rng = np.random.default_rng(seed)
    layer = Conv2d(rng.integers(-8, 9, size=(oc, ic, *k)).astype(np.float64), stride=stride, padding=padding)
    shape = (ic, *hw)
    s = (rng.random(shape) < 0.5).astype(np.float64)
    conn = connections(layer, shape)
    got = conn.dense_matrix() @ s.ravel()
    np.testing.assert_array_equal(got, _conv_reference(layer, s))  # integer weights: exact sums
    assert conn.n_post == int(np.prod(layer.output_shape(shape)))
    pairs = conn.i.astype(np.int64) * conn.n_post + conn.j
    assert len(np.unique(pairs)) == len(pairs), "one synapse per (pre, post) pair"


def test_conv_with_float_weights_matches_torch():
    rng = np.random.default_rng(1)
    layer = Conv2d(rng.normal(size=(5, 3, 3, 2)), stride=(2, 1), padding=(1, 2))
    s = rng.random((3, 11, 7))
    got = connections(layer, (3, 11, 7)).dense_matrix() @ s.ravel()
    np.testing.assert_allclose(got, _conv_reference(layer, s), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("k", "stride", "shape"), [(2, 2, (3, 8, 8)), (3, 2, (2, 9, 7)), (2, 1, (1, 5, 5))])
def test_avgpool_synapses_reproduce_torch_avg_pool(k, stride, shape):
    layer = AvgPool2d(k, stride=stride)
    s = (np.random.default_rng(2).random(shape) < 0.5).astype(np.float64)
    conn = connections(layer, shape)
    assert np.all(conn.w == 1.0 / k**2)
    ref = F.avg_pool2d(torch.as_tensor(s)[None], k, stride=stride)[0].numpy().ravel()
    np.testing.assert_allclose(conn.dense_matrix() @ s.ravel(), ref, rtol=0, atol=1e-15)


def test_dense_synapses_are_the_weight_matrix():
    w = np.arange(12.0).reshape(3, 4)
    conn = connections(Dense(w), (4,))
    np.testing.assert_array_equal(conn.dense_matrix(), w)
    np.testing.assert_array_equal(fanout(conn), [3, 3, 3, 3])


def test_fanouts_match_an_independent_count(rng):
    spec = dyadic_cnn(rng)
    for got, want in zip(spec_fanouts(spec), reference_fanouts(spec), strict=True):
        np.testing.assert_array_equal(got, want)


def test_unknown_layer_type_is_named():
    class Mystery:
        pass

    with pytest.raises(TypeError, match="Mystery"):
        connections(Mystery(), (3,))


def test_paper_cnn_synapses_are_the_layer_maps():
    """28x28-12c5-2s-64c5-2s-10 (1 422 848 synapses): every layer's synapse list applied to random spikes gives
    torch's convolution, pooling or product, and the fan-outs are the reference's. (How fast the lists build
    is a benchmark's business, not a test's.)"""
    from scipy.sparse import coo_matrix

    rng = np.random.default_rng(0)
    spec = NetworkSpec(
        (1, 28, 28),
        (
            Conv2d(rng.normal(size=(12, 1, 5, 5))),
            AvgPool2d(2),
            Conv2d(rng.normal(size=(64, 12, 5, 5))),
            AvgPool2d(2),
            Flatten(),
            Dense(rng.normal(size=(10, 1024))),
        ),
    )
    shape, total = spec.input_shape, 0
    for layer in spec.layers:
        if not isinstance(layer, Flatten):
            conn = connections(layer, shape)
            total += len(conn.i)
            s = (rng.random(shape) < 0.3).astype(np.float64)
            got = coo_matrix((conn.w, (conn.j, conn.i)), shape=(conn.n_post, conn.n_pre)).tocsr() @ s.ravel()
            x = torch.as_tensor(s)[None]
            if isinstance(layer, Conv2d):
                want = _conv_reference(layer, s)
            elif isinstance(layer, AvgPool2d):
                want = F.avg_pool2d(x, layer.kernel_size, stride=layer.stride)[0].numpy().ravel()
            else:
                want = np.asarray(layer.weight) @ s.ravel()
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=type(layer).__name__)
        shape = layer.output_shape(shape)
    assert total == 12 * 25 * 24 * 24 + 12 * 24 * 24 + 64 * 12 * 25 * 8 * 8 + 64 * 8 * 8 + 10 * 1024 == 1_422_848
    for got, want in zip(spec_fanouts(spec), reference_fanouts(spec), strict=True):
        np.testing.assert_array_equal(got, want)
