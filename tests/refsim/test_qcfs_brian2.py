"""Brian2 holds a converted QCFS network spike for spike (issue 32): θ/2 start, reset by subtraction, λ folded
into the weights, both schedules, analog and Poisson input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convert.from_torch import from_torch
from convert.qcfs import QCFS
from fastsim import simulate as fastsim_simulate
from refsim.simulate import simulate as refsim_simulate


def _dyadic_qcfs_model(rng: np.random.Generator) -> nn.Module:
    """12 → 8 → 6 → 3 with QCFS (L = 4, λ = 2 and 1/2): dyadic weights and biases (k/16) and λ powers of two,
    so every membrane sum is exact in float64 in any order (Brian2 adds synapse by synapse)."""
    model = nn.Sequential(nn.Linear(12, 8), QCFS(4, 2.0), nn.Linear(8, 6), QCFS(4, 0.5), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.tensor(rng.integers(-4, 9, m.weight.shape) / 16.0))
                m.bias.copy_(torch.tensor(rng.integers(-2, 3, m.bias.shape) / 16.0))
    return model.eval()


@pytest.mark.parametrize("schedule", ["cascade", "delay"])
@pytest.mark.parametrize("encoding", ["current", "poisson"])
def test_brian2_equals_fastsim_on_a_converted_qcfs_network(schedule, encoding) -> None:
    rng = np.random.default_rng(7)
    spec = from_torch(_dyadic_qcfs_model(rng), input_shape=(12,), schedule=schedule, encoding=encoding)
    assert (spec.reset, spec.v_init, spec.provenance["method"]) == ("subtract", 0.5, "qcfs")
    # analog input: dyadic intensities (k/16) so that the constant currents are exact too
    images = rng.integers(0, 17, (6, 12)) / 16.0 if encoding == "current" else rng.integers(0, 256, (6, 12))
    images = images.astype(np.float64) if encoding == "current" else images.astype(np.uint8)
    kw = dict(steps=24, record_neurons=True)
    if encoding == "poisson":  # the pinned counter-based input, given to both as spike trains
        from convert.encoding import poisson_spikes

        spikes = poisson_spikes(images, np.arange(len(images)), 24, 3, spec.max_rate_hz, spec.dt_ms).astype(bool)
        fast = fastsim_simulate(spec, spikes=spikes, dtype="float64", kernel="torch", **kw)
        ref = refsim_simulate(spec, spikes=spikes, device="runtime", **kw)
    else:
        fast = fastsim_simulate(spec, images, dtype="float64", kernel="torch", **kw)
        ref = refsim_simulate(spec, images, device="runtime", **kw)
    assert sum(int(c.sum()) for c in fast.neuron_counts) > 0  # the network is not silent
    for a, b in zip(fast.neuron_counts, ref.neuron_counts, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.output_counts, ref.output_counts)
