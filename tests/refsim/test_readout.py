"""refsim's readout against fastsim float64 on identical input spikes, with weights that are not dyadic.

With Gaussian weights the membrane sums round, and Brian2 adds synapse by synapse where torch takes matrix
products: the output potentials of the membrane readout agree to float64 rounding (not bit for bit), the
spikes, predictions and synaptic-event curves exactly. (Exact agreement on dyadic networks, every engine
against the reference loop, is tests/conformance.)
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.spec import Dense, NetworkSpec
from fastsim.simulate import simulate as fastsim_simulate
from refsim.simulate import simulate

STEPS, N = 30, 4
CHECKPOINTS = np.array([1, 3, 7, 20, STEPS])


def _case(schedule: str, reset: str = "subtract"):
    """16 -> 20 -> 12 -> 5 (Gaussian weights), its output layer read by its membrane; input spikes."""
    rng = np.random.default_rng(23)
    layers = (
        Dense(rng.normal(0.15, 0.3, (20, 16)), threshold=1.0),
        Dense(rng.normal(0.1, 0.3, (12, 20)), threshold=0.8),
        Dense(rng.normal(0.0, 0.5, (5, 12)), threshold=1.0),
    )
    spec = NetworkSpec((16,), layers, reset=reset, schedule=schedule, readout="membrane")
    spikes = rng.random((N, STEPS, 16)) < 0.5
    return spec, spikes


def _assert_agree(a, b, where: str) -> None:
    for name in ("output_counts", "layer_counts", "first_spike_step", "synops", "synops_curve"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{where}: {name}")
    np.testing.assert_allclose(a.output_potential, b.output_potential, rtol=1e-12, atol=1e-12, err_msg=where)
    for c in range(len(a.checkpoints)):
        np.testing.assert_array_equal(a.predictions(c), b.predictions(c), err_msg=f"{where}: checkpoint {c}")


@pytest.mark.parametrize("schedule", ["delay", "cascade"])
def test_membrane_readout_equals_fastsim_float64(schedule):
    spec, spikes = _case(schedule)
    labels = np.arange(N) % 5
    kw = dict(spikes=spikes, steps=STEPS, checkpoints=CHECKPOINTS, labels=labels)
    ref = simulate(spec, **kw)
    fast = fastsim_simulate(spec, dtype="float64", **kw)
    assert ref.readout == fast.readout == "membrane" and ref.meta["readout"] == "membrane"
    assert np.all(ref.layer_counts[:, :-1] > 0) and np.all(ref.layer_counts[:, -1] == 0)
    assert np.all(ref.predictions() >= 0), "potentials that differ: every image is decided"
    _assert_agree(ref, fast, f"refsim runtime vs fastsim float64, {schedule}")
    np.testing.assert_array_equal(ref.synops_curve[:, -1], ref.synops)


@pytest.mark.standalone
@pytest.mark.slow
def test_membrane_readout_cpp_standalone_equals_runtime(standalone_root):
    """One compiled project (cascade: every slot set explicitly), 4 images in batches of 3: the second batch
    is padded, and the potential trace of the padding must be dropped."""
    spec, spikes = _case("cascade", reset="zero")
    kw = dict(spikes=spikes, steps=STEPS, checkpoints=CHECKPOINTS, batch_size=3)
    compiled = simulate(spec, device="cpp_standalone", build_dir=standalone_root, **kw)
    assert compiled.meta["device"] == "cpp_standalone" and compiled.output_potential.shape == (N, 5, 5)
    _assert_agree(compiled, simulate(spec, **kw), "cpp_standalone vs runtime")
