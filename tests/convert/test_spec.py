"""NetworkSpec validation: every bad field raises a SpecError that names it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec, SpecError


def mlp_spec(rng, **kw):
    return NetworkSpec(
        input_shape=(1, 4, 4),
        layers=(Flatten(), Dense(rng.normal(size=(5, 16))), Dense(rng.normal(size=(3, 5)))),
        **kw,
    )


def test_shapes_and_populations(rng):
    spec = mlp_spec(rng)
    assert spec.shapes == [(1, 4, 4), (16,), (5,), (3,)]
    assert spec.population_sizes == [5, 3]
    assert spec.labels == ("0", "1", "2")


def test_cnn_shapes(rng):
    spec = NetworkSpec(
        input_shape=(1, 28, 28),
        layers=(
            Conv2d(rng.normal(size=(12, 1, 5, 5))),
            AvgPool2d(2),
            Conv2d(rng.normal(size=(64, 12, 5, 5))),
            AvgPool2d(2),
            Flatten(),
            Dense(rng.normal(size=(10, 1024))),
        ),
    )
    assert spec.population_sizes == [6912, 1728, 4096, 1024, 10]


def test_arrays_are_read_only_copies(rng):
    w = rng.normal(size=(3, 16))
    layer = Dense(w)
    w[0, 0] = 99.0
    assert layer.weight[0, 0] != 99.0
    with pytest.raises(ValueError):
        layer.weight[0, 0] = 1.0


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda r: Dense(np.full((2, 3), np.nan)), "Dense.weight"),
        (lambda r: Dense(np.array([[1.0, np.inf]])), "Dense.weight"),
        (lambda r: Dense(r.normal(size=(2, 3)), bias=np.ones(3)), r"Dense.bias: expected shape \(2,\)"),
        (lambda r: Dense(r.normal(size=(2, 3)), bias=np.array([1.0, np.nan])), "Dense.bias: 1 biases are NaN"),
        (lambda r: Conv2d(r.normal(size=(2, 1, 3, 3)), bias=np.ones((2, 1))), "Conv2d.bias"),
        (lambda r: Dense(r.normal(size=(2, 3)), threshold=-1.0), "threshold"),
        (lambda r: Dense(r.normal(size=(2, 3)), threshold=0.0), "threshold"),
        (lambda r: Conv2d(r.normal(size=(2, 3))), "Conv2d.weight"),
        (lambda r: Conv2d(r.normal(size=(2, 1, 3, 3)), stride=0), "stride"),
        (lambda r: AvgPool2d(0), "kernel_size"),
    ],
)
def test_bad_layer_fields(rng, make, field):
    with pytest.raises(SpecError, match=field):
        make(rng)


def test_zero_bias_is_none_and_a_bias_is_frozen(rng):
    assert Dense(rng.normal(size=(2, 3)), bias=np.zeros(2)).bias is None
    layer = Dense(rng.normal(size=(2, 3)), bias=[0.5, -1.0])
    assert layer.bias.tolist() == [0.5, -1.0] and not layer.bias.flags.writeable
    assert layer == Dense(layer.weight, bias=[0.5, -1.0]) and layer != Dense(layer.weight)


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"reset": "hard"}, "reset"),
        ({"schedule": "async"}, "schedule"),
        ({"encoding": "rate"}, "encoding"),
        ({"dt_ms": 0.0}, "dt_ms"),
        ({"max_rate_hz": float("nan")}, "max_rate_hz"),
        ({"labels": ("a", "b")}, "labels"),
        ({"readout": "potential"}, "readout"),
        ({"v_init": 1.0}, "v_init"),
        ({"v_init": -0.25}, "v_init"),
        ({"v_init": float("nan")}, "v_init"),
        ({"v_init": True}, "v_init"),
    ],
)
def test_bad_spec_fields(rng, kw, field):
    with pytest.raises(SpecError, match=field):
        mlp_spec(rng, **kw)


def test_shapes_must_chain(rng):
    with pytest.raises(SpecError, match="do not chain"):
        NetworkSpec(input_shape=(1, 4, 4), layers=(Flatten(), Dense(rng.normal(size=(5, 15)))))


def test_unknown_layer(rng):
    class MaxPool:
        pass

    with pytest.raises(SpecError, match="unknown layer type MaxPool"):
        NetworkSpec(input_shape=(1, 4, 4), layers=(MaxPool(), Flatten(), Dense(rng.normal(size=(5, 16)))))


def test_last_layer_must_spike(rng):
    with pytest.raises(SpecError, match="last layer"):
        NetworkSpec(input_shape=(1, 4, 4), layers=(Conv2d(rng.normal(size=(2, 1, 3, 3))), Flatten()))


def test_initial_potentials_are_v_init_times_each_threshold(rng):
    spec = mlp_spec(rng)
    assert spec.initial_potentials == [0.0] * len(spec.thresholds)
    half = dataclasses.replace(spec, v_init=0.5)
    assert half.initial_potentials == [0.5 * t for t in spec.thresholds]
