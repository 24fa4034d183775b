"""Bias correction (convert/bias_correction.py, the method ``calibrated-bc``): each hidden layer's bias moved, per
channel, by the mean error between the ANN's activity and the SNN's after T steps, layer by layer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert import ann, bias_correction, methods
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from convert.pipeline import normalized_spec
from convert.stats import collect_stats
from fastsim import simulate
from fastsim.calibration import simulated_activity


def _clip_floor(z: np.ndarray, steps: int, theta: float = 1.0) -> np.ndarray:
    return np.clip(np.floor(z * steps / theta + 0.5), 0, steps) * theta / steps


def _two_layer(rng: np.random.Generator, readout: str) -> NetworkSpec:
    return NetworkSpec(
        input_shape=(5,),
        layers=(Dense(rng.normal(size=(7, 5)), bias=rng.normal(size=7) * 0.1), Dense(rng.normal(size=(3, 7)))),
        readout=readout,
        encoding="current",
        schedule="cascade",
        reset="subtract",
        v_init=0.5,
    )


@pytest.mark.parametrize("readout", ["membrane", "spikes"])
def test_the_corrections_are_the_mean_errors_written_out(readout):
    """Against numpy: layer 1's correction is mean(ReLU(z) − q_T(z)) per neuron; the output layer is left alone
    under the membrane readout, and under the spikes readout gets its own mean error computed with layer 1
    already corrected."""
    rng = np.random.default_rng(3)
    spec, steps = _two_layer(rng, readout), 4
    x = rng.random((bias_correction.BIAS_IMAGES, 5))  # all of them are used
    new, corrections = bias_correction.bias_corrected(spec, x, steps)
    w1, b1, w2 = spec.layers[0].weight, spec.layers[0].bias, spec.layers[1].weight
    z1 = x @ w1.T + b1
    delta1 = np.mean(np.maximum(z1, 0) - _clip_floor(z1, steps), axis=0)
    np.testing.assert_allclose(corrections[0], delta1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(new.layers[0].bias, b1 + delta1, rtol=1e-12)
    assert np.any(np.abs(delta1) > 1e-3)  # the test is not vacuous
    if readout == "membrane":
        assert corrections[1] is None and new.layers[1].bias is None
    else:
        z2_ann = np.maximum(z1, 0) @ w2.T
        z2 = _clip_floor(x @ w1.T + b1 + delta1, steps) @ w2.T
        delta2 = np.mean(np.maximum(z2_ann, 0) - _clip_floor(z2, steps), axis=0)
        np.testing.assert_allclose(corrections[1], delta2, rtol=1e-10, atol=1e-15)
    assert spec.layers[0].bias is b1  # pure: the spec given is unchanged


def test_a_conv_layer_is_corrected_per_channel_and_a_pool_is_skipped():
    rng = np.random.default_rng(4)
    spec = NetworkSpec(
        input_shape=(1, 6, 6),
        layers=(Conv2d(rng.normal(size=(3, 1, 3, 3))), AvgPool2d(2), Flatten(), Dense(rng.normal(size=(2, 12)))),
        readout="spikes",
        v_init=0.5,
    )
    x = rng.random((50, 1, 6, 6))
    new, corrections = bias_correction.bias_corrected(spec, x, 3)
    z = ann.layer_forward(spec.layers[0], ann.as_input(spec, x)).numpy().reshape(50, 3, 16)
    np.testing.assert_allclose(corrections[0], np.mean(np.maximum(z, 0) - _clip_floor(z, 3), axis=(0, 2)))
    assert corrections[1] is None and corrections[0].shape == (3,) and new.layers[0].bias.shape == (3,)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 12), theta=st.sampled_from([0.5, 1.0, 2.0]))
def test_the_clip_floor_model_is_the_first_layer_that_fastsim_measures(seed, steps, theta):
    """The model bias correction uses by default is exact where docs/qcfs.md says: the first spiking layer of
    an analog-input spec under cascade, θ/2 start, reset by subtraction (dyadic weights, exact sums)."""
    rng = np.random.default_rng(seed)
    layer = Dense(rng.integers(-8, 9, (6, 4)) / 8.0, threshold=theta, bias=rng.integers(-4, 5, 6) / 16.0)
    spec = dataclasses.replace(
        _two_layer(rng, "spikes"), input_shape=(4,), layers=(layer, Dense(rng.integers(-8, 9, (3, 6)) / 8.0))
    )
    x = rng.integers(0, 17, (20, 4)) / 16.0
    model = bias_correction.clip_floor_activity(spec, x, steps)[0]
    measured = simulated_activity(spec, x, steps)[0]
    np.testing.assert_array_equal(model, measured)


def test_the_measured_correction_shrinks_the_mean_error_of_every_hidden_layer(mnist_train, random_mnist_mlp):
    """A 784-32-16-10 MLP with random weights on 256 MNIST training images, T = 4, against fastsim's measured
    activity: after the correction every hidden layer's summed |per-neuron mean error| is below half of what the
    thresholds alone leave (measured: 0.36× and 0.32× of it; the corrected means still move by rounding)."""
    spec = random_mnist_mlp
    images = mnist_train.images[:256]
    calibrated, _ = normalized_spec(spec, "calibrated", collect_stats(spec, images), steps=4)
    corrected, _ = bias_correction.bias_corrected(calibrated, images, 4, simulated_activity)
    target = ann.layer_activities(calibrated, images)
    before = simulated_activity(calibrated, images, 4)
    after = simulated_activity(corrected, images, 4)
    for k in (0, 1):
        err_before = np.abs((target[k] - before[k]).mean(0)).sum()
        err_after = np.abs((target[k] - after[k]).mean(0)).sum()
        assert err_after < 0.5 * err_before, (k, err_before, err_after)


def test_the_method_needs_the_images_and_records_what_it_did():
    rng = np.random.default_rng(6)
    spec = _two_layer(rng, "membrane")
    x = rng.random((40, 5))
    stats = collect_stats(spec, x)
    with pytest.raises(ValueError, match="needs the calibration images themselves"):
        methods.get("calibrated-bc").apply(spec, stats, steps=4)
    with pytest.raises(ValueError, match="needs steps"):
        methods.get("calibrated-bc").apply(spec, stats, x)
    new, report = normalized_spec(spec, "calibrated-bc", stats, x, steps=4, activity=simulated_activity)
    record = new.provenance["bias_correction"]
    assert report.method == "calibrated-bc" and new.provenance["method"] == "calibrated-bc"
    assert record["activity"] == "fastsim.calibration.simulated_activity" and record["images"] == 40
    assert record["max_abs"][1] is None and record["max_abs"][0] > 0
    assert (new.v_init, new.reset) == (0.5, "subtract")
    assert "calibrated-bc" not in {m.name for m in methods.paper_methods()}
    simulate(new, x[:3], steps=4)  # a valid spec every engine takes


@pytest.mark.parametrize("family", ["Residual", "Neurons", "Bias"])
def test_the_one_pass_correction_equals_one_forward_pass_per_layer(family):
    """With the clip-floor model, each layer is corrected as one forward pass reaches it; given the same model
    as an ``activity`` (one pass per layer, the network below corrected), the biases and starts are the same
    floats: the passes compute each layer with the same operations."""
    from convert.bias_correction import bias_corrected, clip_floor_activity
    from convert.potential_correction import potential_corrected
    from tests.conformance.networks import network

    spec = dataclasses.replace(network(family, "cascade", "subtract"), v_init=0.5)
    images = np.random.default_rng(3).integers(0, 256, size=(40, *spec.input_shape), dtype=np.uint8)
    one, deltas = bias_corrected(spec, images, 8)
    per_layer, deltas_again = bias_corrected(spec, images, 8, activity=clip_floor_activity)
    assert one == per_layer and any(d is not None for d in deltas)
    for a, b in zip(deltas, deltas_again, strict=True):
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
    started, _ = potential_corrected(one, images, 8)
    started_again, _ = potential_corrected(one, images, 8, activity=clip_floor_activity)
    assert started == started_again and started.v_init_neurons is not None
