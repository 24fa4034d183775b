"""The sparse spike product and the engine's fast paths give the same numbers as the plain ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastsim.encode import PoissonSource
from fastsim.network import Network
from fastsim.simulate import simulate
from fastsim.sparse import SpikeRows, spike_matmul
from tests.fastsim.specs import dyadic_cnn, dyadic_mlp, random_images

FIELDS = ("output_counts", "layer_counts", "first_spike_step", "synops")


def test_spike_rows_round_trip_and_product(fastsim_rng) -> None:
    dense = torch.as_tensor(fastsim_rng.random((9, 2, 3, 4)) < 0.2).double()
    dense[4] = 0  # an empty row
    rows = SpikeRows.from_dense(dense)
    assert rows.nnz == int(dense.sum()) and rows.n_rows == 9 and rows.n_cols == 24
    assert torch.equal(rows.to_dense(torch.float64), dense.reshape(9, 24))
    weight_t = torch.as_tensor(fastsim_rng.integers(-8, 8, (24, 5)) / 8.0)
    assert torch.equal(spike_matmul(rows, weight_t), dense.reshape(9, 24) @ weight_t)
    empty = SpikeRows.from_dense(torch.zeros(3, 24, dtype=torch.float64))
    assert torch.equal(spike_matmul(empty, weight_t), torch.zeros(3, 5, dtype=torch.float64))


def test_poisson_rows_equal_dense_chunk(fastsim_rng) -> None:
    x = random_images(fastsim_rng, 5, (30,)) / 255.0
    src = PoissonSource(x, np.arange(5), 7, 1000.0, 1.0, torch.device("cpu"), torch.float32)
    dense = src.chunk(3, 4).reshape(20, 30)
    rows = src.chunk_rows(3, 4)
    assert torch.equal(rows.to_dense(torch.float32), dense)
    counts = src.input_counts(7)  # steps 0..6 served (steps 3..6 twice)
    assert torch.equal(counts, 2 * dense.reshape(4, 5, 30).sum(0).double())  # both chunks counted


@pytest.mark.parametrize("make_spec", [dyadic_mlp, dyadic_cnn])
def test_sparse_and_dense_products_agree(make_spec, fastsim_rng, monkeypatch) -> None:
    spec = make_spec(fastsim_rng)
    x = random_images(fastsim_rng, 6, spec.input_shape).reshape(6, -1) / 255.0
    results = []
    for density in (0.0, 1.0):  # never / always the sparse product
        monkeypatch.setitem(Network.SPARSE_DENSITY, torch.float32, density)
        net = Network(spec, torch.device("cpu"), torch.float32)
        src = PoissonSource(x, np.arange(6), 1, 1000.0, 1.0, torch.device("cpu"), torch.float32)
        results.append(net.finish(net.run(src, 6, 40, np.array([1, 10, 40]), 10), True))
    assert results[0].layer_counts.sum() > 0
    for name in FIELDS:
        assert np.array_equal(getattr(results[0], name), getattr(results[1], name)), name


@pytest.mark.slow
@pytest.mark.parametrize("make_spec", [dyadic_mlp, dyadic_cnn])
def test_compiled_engine_equals_eager(make_spec, fastsim_rng) -> None:
    """torch.compile fuses the scan, the hash, pooling and small convolutions: same records."""
    spec = make_spec(fastsim_rng)
    images = random_images(fastsim_rng, 8, spec.input_shape)
    eager = simulate(spec, images, steps=25, compile=False, record_neurons=True, kernel="torch")
    compiled = simulate(spec, images, steps=25, compile=True, record_neurons=True, kernel="torch")
    assert compiled.meta["compiled"]
    for name in FIELDS:
        assert np.array_equal(getattr(eager, name), getattr(compiled, name)), name
    for a, b in zip(eager.neuron_counts, compiled.neuron_counts, strict=True):
        assert np.array_equal(a, b)
