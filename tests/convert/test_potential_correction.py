"""Potential correction (convert/potential_correction.py, the method ``calibrated-pc``) and the spec's per-neuron
start potentials (``v_init_neurons``): their checks, their file format and their fingerprint."""

from __future__ import annotations

import numpy as np
import pytest

from convert import ann, methods, potential_correction
from convert.contract.fingerprint import spec_fingerprint
from convert.contract.io import load_spec, save_spec
from convert.contract.spec import Dense, NetworkSpec, SpecError
from convert.pipeline import normalized_spec
from convert.stats import collect_stats
from fastsim import simulate
from fastsim.calibration import simulated_activity

_BELOW_ONE = float(np.nextafter(1.0, 0.0))


def _two_layer(rng: np.random.Generator, **fields) -> NetworkSpec:
    return NetworkSpec(
        input_shape=(5,),
        layers=(Dense(rng.normal(size=(7, 5)), bias=rng.normal(size=7) * 0.1), Dense(rng.normal(size=(3, 7)))),
        readout="membrane",
        encoding="current",
        schedule="cascade",
        reset="subtract",
        v_init=0.5,
        **fields,
    )


def test_the_first_layers_starts_are_the_closed_form_written_out():
    """Against numpy: f_i = clip(½ + T · mean(ReLU(z_i) − q_T(z_i)), 0, 1⁻) with q the clip-floor from ½; the
    membrane output layer keeps v_init."""
    rng = np.random.default_rng(3)
    spec, steps = _two_layer(rng), 4
    x = rng.random((200, 5))
    new, chosen = potential_correction.potential_corrected(spec, x, steps)
    z = x @ spec.layers[0].weight.T + spec.layers[0].bias
    q = np.clip(np.floor(z * steps + 0.5), 0, steps) / steps
    expected = np.clip(0.5 + steps * np.mean(np.maximum(z, 0) - q, axis=0), 0, _BELOW_ONE)
    np.testing.assert_allclose(new.v_init_neurons[0], expected, rtol=1e-12, atol=1e-15)
    assert np.any(np.abs(expected - 0.5) > 1e-3)  # not vacuous
    assert chosen[1] is None and np.all(new.v_init_neurons[1] == 0.5)


def test_the_measured_correction_shrinks_the_mean_rate_error(mnist_train, random_mnist_mlp):
    """784-32-16-10 random MLP, 256 MNIST training images, T = 8, against fastsim: after calibrated-bc the
    starts shrink each hidden layer's summed |per-neuron mean error| further (measured: 0.47× and 0.43×)."""
    spec = random_mnist_mlp
    images = mnist_train.images[:256]
    stats = collect_stats(spec, images)
    bc, _ = normalized_spec(spec, "calibrated-bc", stats, images, steps=8, activity=simulated_activity)
    pc, _ = potential_correction.potential_corrected(bc, images, 8, simulated_activity)
    target = ann.layer_activities(bc, images)
    before, after = simulated_activity(bc, images, 8), simulated_activity(pc, images, 8)
    for k in (0, 1):
        err_before = np.abs((target[k] - before[k]).mean(0)).sum()
        err_after = np.abs((target[k] - after[k]).mean(0)).sum()
        assert err_after < 0.7 * err_before, (k, err_before, err_after)


def test_the_method_records_the_starts_and_every_engine_takes_the_spec(tmp_path):
    rng = np.random.default_rng(6)
    spec = _two_layer(rng)
    x = rng.random((40, 5))
    stats = collect_stats(spec, x)
    with pytest.raises(ValueError, match="needs the calibration images themselves"):
        methods.get("calibrated-pc").apply(spec, stats, steps=4)
    new, report = normalized_spec(spec, "calibrated-pc", stats, x, steps=4)
    record = new.provenance["potential_correction"]
    assert report.method == "calibrated-pc" and record["steps"] == 4 and record["starts"][1] is None
    assert 0 <= record["starts"][0]["min"] <= record["starts"][0]["max"] < 1
    assert "bias_correction" in new.provenance and "channel_thresholds" in new.provenance
    path = save_spec(new, tmp_path / "pc.npz")
    again = load_spec(path)
    assert again == new and spec_fingerprint(again) == spec_fingerprint(new)
    a = simulate(again, x[:5], steps=4, kernel="events", dtype="float64", record_neurons=True)
    b = simulate(again, x[:5], steps=4, kernel="torch", dtype="float64", record_neurons=True)
    for ca, cb in zip(a.neuron_counts, b.neuron_counts, strict=True):
        np.testing.assert_array_equal(ca, cb)


def test_per_neuron_starts_are_checked_and_keyed():
    rng = np.random.default_rng(7)
    spec = _two_layer(rng)
    good = [np.full(7, 0.25), np.full(3, 0.5)]
    keyed = NetworkSpec(spec.input_shape, spec.layers, v_init_neurons=good)
    assert spec_fingerprint(keyed) != spec_fingerprint(NetworkSpec(spec.input_shape, spec.layers))
    cases = [
        ([np.zeros(7)], "1 arrays for 2 spiking populations"),
        ([np.zeros(6), np.zeros(3)], r"v_init_neurons\[0\]: shape \(6,\) for a population of 7 neurons"),
        ([np.zeros(7), np.array([0.1, 1.0, 0.2])], r"v_init_neurons\[1\]: 1 start potentials outside \[0, 1\)"),
        ([np.full(7, np.nan), np.zeros(3)], "7 start potentials outside"),
        ([np.full(7, -0.1), np.zeros(3)], "outside"),
    ]
    for value, message in cases:
        with pytest.raises(SpecError, match=message):
            NetworkSpec(spec.input_shape, spec.layers, v_init_neurons=value)


def test_a_float32_file_keeps_the_starts_in_float64(tmp_path):
    rng = np.random.default_rng(8)
    spec = _two_layer(rng, v_init_neurons=[np.full(7, _BELOW_ONE), np.full(3, 0.5)])
    again = load_spec(save_spec(spec, tmp_path / "s.npz", precision="float32"))
    assert again.v_init_neurons[0].dtype == np.float64 and np.all(again.v_init_neurons[0] == _BELOW_ONE)
