"""Per-channel thresholds (convert/channel_thresholds.py, the method ``calibrated-channel``): a λ per channel of
every hidden layer, folded into its rows and the next weighted layer's columns, the ANN unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convert import ann, calibration, channel_thresholds, methods
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec
from convert.pipeline import normalized_spec
from convert.stats import collect_stats


def _cnn(rng: np.random.Generator, pool) -> NetworkSpec:
    return NetworkSpec(
        input_shape=(1, 8, 8),
        layers=(
            Conv2d(rng.normal(size=(4, 1, 3, 3)), bias=rng.normal(size=4) * 0.1),
            pool,
            Conv2d(rng.normal(size=(5, 4, 2, 2))),
            Flatten(),
            Dense(rng.normal(size=(3, 20))),
        ),
        readout="membrane",
    )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.sampled_from([2, 4, 16]), gate=st.booleans())
def test_the_ann_is_unchanged_and_every_threshold_stays_one(seed, steps, gate):
    """Through average pooling or a max-pooling gate, Flatten and into a Dense layer: the same logits (up to
    float rounding), θ = 1 everywhere, the output layer's rows untouched."""
    rng = np.random.default_rng(seed)
    spec = _cnn(rng, MaxPool2d(2) if gate else AvgPool2d(2))
    x = rng.random((30, 1, 8, 8))
    new, chosen = channel_thresholds.channel_scaled(spec, x, steps)
    _, before = ann.activations(spec, ann.as_input(spec, x))
    _, after = ann.activations(new, ann.as_input(new, x))
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9)
    assert new.thresholds == spec.thresholds
    assert chosen[-1] is None  # the output layer keeps its rows (its membranes are the class scores)
    assert chosen[0] is not None and chosen[0].shape == (4,) and np.all(chosen[0] > 0)


def test_each_lambda_is_the_channels_own_clip_floor_choice():
    rng = np.random.default_rng(2)
    spec = _cnn(rng, AvgPool2d(2))
    x = rng.random((40, 1, 8, 8))
    new, chosen = channel_thresholds.channel_scaled(spec, x, 4)
    acts = ann.layer_activities(spec, x)[0].reshape(40, 4, -1)
    for c in range(4):
        a = acts[:, c].ravel()
        assert chosen[0][c] == calibration.calibrated_scale(a[a > 0], 4)[0]
    np.testing.assert_allclose(new.layers[0].weight[2], spec.layers[0].weight[2] / chosen[0][2])
    np.testing.assert_allclose(new.layers[0].bias[2], spec.layers[0].bias[2] / chosen[0][2])
    expected = spec.layers[2].weight * chosen[0][None, :, None, None] / chosen[2][:, None, None, None]
    np.testing.assert_allclose(new.layers[2].weight, expected)  # its columns by layer 0's λ, its rows by its own
    # the second conv feeds the Dense layer through Flatten: its channel c is a block of 4 columns
    np.testing.assert_allclose(new.layers[4].weight[:, 4:8], spec.layers[4].weight[:, 4:8] * chosen[2][1])


def test_a_layer_read_by_a_skip_edge_keeps_its_scale():
    rng = np.random.default_rng(3)
    spec = NetworkSpec(
        input_shape=(6,),
        layers=(
            Dense(rng.normal(size=(6, 6))),
            Dense(rng.normal(size=(6, 6))),
            Dense(rng.normal(size=(6, 6)), skip_source=0, skip_weight=np.float64(1.0)),
            Dense(rng.normal(size=(2, 6))),
        ),
    )
    new, chosen = channel_thresholds.channel_scaled(spec, rng.random((50, 6)), 4)
    # 0 is a skip's source, 2 a skip's target (an identity edge has one gain), 3 the output: only 1 changes
    assert chosen[0] is None and chosen[1] is not None and chosen[2] is None and chosen[3] is None
    x = ann.as_input(spec, rng.random((10, 6)))
    torch.testing.assert_close(ann.activations(new, x)[1], ann.activations(spec, x)[1], rtol=1e-9, atol=1e-9)


def test_the_method_needs_images_and_records_the_ranges():
    rng = np.random.default_rng(4)
    spec = _cnn(rng, AvgPool2d(2))
    x = rng.random((60, 1, 8, 8))
    stats = collect_stats(spec, x)
    with pytest.raises(ValueError, match="needs the calibration images themselves"):
        methods.get("calibrated-channel").apply(spec, stats, steps=4)
    new, report = normalized_spec(spec, "calibrated-channel", stats, x, steps=4)
    record = new.provenance["channel_thresholds"]
    assert report.method == "calibrated-channel" and record["steps"] == 4 and record["images"] == 60
    assert record["range"][0][0] <= record["range"][0][1] and record["range"][-1] is None
    assert (new.v_init, new.reset) == (0.5, "subtract") and new.provenance["calibrated"]["steps"] == 4
