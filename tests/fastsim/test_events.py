"""The event-driven engine (kernel='events') against the time-batched torch engine, and its tables.

The dyadic specs make every sum exact in both dtypes, whatever the order, so the two engines must give
identical records there; on specs with arbitrary weights they must agree exactly in float64 (the summation
order moves a sum by ~1e-16, which crosses a threshold essentially never) and to the fastsim float32
criterion (≥ 99.99 % of per-neuron counts) in float32. The semantics themselves are held for this engine too
by tests/conformance (engines fastsim-events-*).
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from fastsim.encode import poisson_spikes
from fastsim.events import build_tables, internal_order
from fastsim.network import Network, check_kernel
from fastsim.simulate import simulate
from fastsim.synthetic import mnist_like, random_spec
from tests.fastsim.specs import dyadic_cnn, dyadic_mlp, random_images
from tests.records import assert_close_record, assert_same_record

VARIANTS = [
    dict(schedule=s, reset=r, readout=o)
    for s in ("delay", "cascade")
    for r in ("zero", "subtract")
    for o in ("spikes", "membrane")
]


def dense_weights(tables, layer: int) -> np.ndarray:
    """The (post, pre) weight matrix of ``layer`` in spec order, rebuilt from the run tables."""
    n_pre, n_post = int(tables.pre_sizes[layer]), int(tables.sizes[layer])
    w = np.zeros((n_post, n_pre))
    pre_spec = tables.input_spec_index if layer == 0 else tables.spec_index[tables.v_off[layer - 1] :]
    post_spec = tables.spec_index[tables.v_off[layer] :]
    for i in range(n_pre):
        p = tables.ptr_off[layer] + i
        for r in range(tables.ptr[p], tables.ptr[p + 1]):
            for q in range(tables.run_len[r]):
                post, weight = tables.run_post[r] + q, tables.weights[tables.run_w[r] + q]
                if post >= n_post:  # a run's zero padding past the layer's last neuron
                    assert weight == 0
                    continue
                w[post_spec[post], pre_spec[i]] += weight
    return w


def test_internal_order_is_channels_last() -> None:
    order = internal_order((2, 3, 4))
    assert order[:3].tolist() == [0, 12, 1]  # (y=0, x=0, c=0), (0, 0, 1), (0, 1, 0)
    assert sorted(order.tolist()) == list(range(24))
    assert internal_order((7,)).tolist() == list(range(7))


def test_tables_hold_the_operators_weights(fastsim_rng) -> None:
    spec = dyadic_cnn(fastsim_rng)
    tables = build_tables(spec, torch.float64)
    net = Network(spec, torch.device("cpu"), torch.float64)
    for layer, stage in enumerate(net.stages):
        n_pre = int(np.prod(stage.in_shape))
        eye = torch.eye(n_pre, dtype=torch.float64).view(n_pre, *stage.in_shape)
        expected = stage.synapse(eye).reshape(n_pre, -1).T.numpy()
        assert np.array_equal(dense_weights(tables, layer), expected), layer
    # a convolution's fan-out comes in runs longer than one neuron (channels-last), pooling's in runs of one
    assert tables.run_len.max() > 1
    assert np.array_equal(tables.fanout[: spec.n_inputs], net.stages[0].fanout.numpy()[tables.input_spec_index])


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v.values()))
@pytest.mark.parametrize("make_spec", [dyadic_cnn, dyadic_mlp])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dyadic_records_equal_the_torch_engine(make_spec, variant, dtype, fastsim_rng) -> None:
    spec = dataclasses.replace(make_spec(fastsim_rng), **variant)
    images = random_images(fastsim_rng, 12, spec.input_shape)
    kw = dict(steps=40, seed=5, image_indices=np.arange(50, 62), record_neurons=True, dtype=dtype)
    torch_rec = simulate(spec, images, kernel="torch", **kw)
    events_rec = simulate(spec, images, kernel="events", **kw)
    assert torch_rec.layer_counts.sum() > 0
    assert_same_record(torch_rec, events_rec)
    assert events_rec.meta["kernel"] == "events"


@pytest.mark.parametrize("make_spec", [dyadic_cnn, dyadic_mlp])
def test_current_input_and_given_spikes(make_spec, fastsim_rng) -> None:
    """Dyadic analog input (k/16) and given spike trains: every sum is exact, so the records are identical."""
    spec = make_spec(fastsim_rng)
    x = fastsim_rng.integers(0, 17, size=(6, *spec.input_shape)) / 16.0
    current = dataclasses.replace(spec, encoding="current", schedule="cascade", readout="membrane")
    a = simulate(current, x, steps=25, record_neurons=True, dtype="float64", kernel="torch")
    b = simulate(current, x, steps=25, record_neurons=True, dtype="float64", kernel="events")
    assert a.layer_counts[:, :-1].sum() > 0 and np.abs(a.output_potential).sum() > 0
    assert_same_record(a, b)
    images = random_images(fastsim_rng, 6, spec.input_shape)
    spikes = poisson_spikes(images, np.arange(6), 25, seed=3)
    a = simulate(spec, spikes=spikes, steps=25, record_neurons=True, kernel="torch")
    b = simulate(spec, spikes=spikes, steps=25, record_neurons=True, kernel="events")
    assert a.layer_counts.sum() > 0
    assert_same_record(a, b)


@pytest.mark.parametrize("make_spec", [dyadic_cnn, dyadic_mlp])
def test_analog_current_input_within_rounding(make_spec, fastsim_rng) -> None:
    """uint8 images as analog input (x = k/255, not exact in binary): the input's synaptic events and the
    output membrane are float sums that the two engines (and BLAS on different CPUs) add in different orders,
    so they agree within :func:`tests.records.sum_tolerance`. The thresholds are scaled by 1 + 1/π, which no
    sum of k/255 times multiples of 1/16 can reach exactly, so no membrane lies within rounding of a threshold
    and the spike counts are equal."""
    base = make_spec(fastsim_rng)
    layers = tuple(
        dataclasses.replace(layer, threshold=layer.threshold * (1 + 1 / np.pi))
        if hasattr(layer, "threshold")
        else layer
        for layer in base.layers
    )
    spec = dataclasses.replace(base, layers=layers, encoding="current", schedule="cascade", readout="membrane")
    images = random_images(fastsim_rng, 6, spec.input_shape)
    steps = 25
    a = simulate(spec, images, steps=steps, record_neurons=True, dtype="float64", kernel="torch")
    b = simulate(spec, images, steps=steps, record_neurons=True, dtype="float64", kernel="events")
    assert a.layer_counts[:, :-1].sum() > 0
    out = spec.layers[-1].weight
    fan_in = out.reshape(len(out), -1).shape[1]
    scale = steps * np.abs(out).reshape(len(out), -1).sum(1).max()
    assert_close_record(a, b, synops_terms=spec.n_inputs, potential_terms=steps * fan_in, potential_scale=scale)


def test_batches_do_not_change_the_record(fastsim_rng) -> None:
    spec = dyadic_cnn(fastsim_rng)
    images = random_images(fastsim_rng, 10, spec.input_shape)
    recs = [simulate(spec, images, steps=30, kernel="events", batch_size=b, seed=2) for b in (1, 3, 10)]
    for rec in recs[1:]:
        assert_same_record(recs[0], rec)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_arbitrary_weights_float64_exact_float32_within_criterion(kind) -> None:
    spec = random_spec(kind, seed=11)
    images = mnist_like(24, np.random.default_rng(12))
    kw = dict(steps=120, seed=1, record_neurons=True)
    ref = simulate(spec, images, dtype="float64", kernel="torch", **kw)
    assert ref.layer_counts[:, -1].sum() > 0
    assert_same_record(ref, simulate(spec, images, dtype="float64", kernel="events", **kw))
    f32 = simulate(spec, images, dtype="float32", kernel="events", **kw)
    same = np.concatenate([(a == b).ravel() for a, b in zip(ref.neuron_counts, f32.neuron_counts, strict=True)])
    assert same.mean() >= 0.9999
    assert np.mean(ref.predictions() == f32.predictions()) >= 0.99


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    hidden=st.integers(1, 12),
    theta=st.sampled_from([0.25, 0.5, 1.0, 1.5]),
    schedule=st.sampled_from(["delay", "cascade"]),
    reset=st.sampled_from(["zero", "subtract"]),
)
def test_property_random_dense_nets_equal_in_float64(seed, hidden, theta, schedule, reset) -> None:
    rng = np.random.default_rng(seed)
    spec = NetworkSpec(
        input_shape=(1, 3, 3),
        layers=(
            Flatten(),
            Dense(rng.normal(0, 0.6, (hidden, 9)), threshold=theta),
            Dense(rng.normal(0, 0.6, (3, hidden)), threshold=1.0),
        ),
        schedule=schedule,
        reset=reset,
    )
    images = rng.integers(0, 256, (4, 1, 3, 3)).astype(np.uint8)
    kw = dict(steps=20, seed=seed, record_neurons=True, dtype="float64")
    assert_same_record(simulate(spec, images, kernel="torch", **kw), simulate(spec, images, kernel="events", **kw))


def test_pool_after_padded_strided_conv_tables(fastsim_rng) -> None:
    spec = NetworkSpec(
        input_shape=(2, 7, 7),
        layers=(
            Conv2d(fastsim_rng.normal(size=(3, 2, 3, 3)), threshold=1.0, padding=1, stride=2),
            AvgPool2d(2, threshold=0.5),
            Flatten(),
            Dense(fastsim_rng.normal(size=(4, 12)), threshold=1.0),
        ),
    )
    images = fastsim_rng.integers(0, 256, (5, 2, 7, 7)).astype(np.uint8)
    kw = dict(steps=30, seed=4, record_neurons=True, dtype="float64")
    a = simulate(spec, images, kernel="torch", **kw)
    assert a.layer_counts.sum() > 0
    assert_same_record(a, simulate(spec, images, kernel="events", **kw))


def test_bad_requests_say_what_to_use(fastsim_rng) -> None:
    spec = dyadic_mlp(fastsim_rng)
    images = random_images(fastsim_rng, 2, spec.input_shape)
    with pytest.raises(ValueError, match="CPU engine"):
        check_kernel("events", torch.device("cuda"), torch.float32)
    with pytest.raises(ValueError, match="matmul"):
        simulate(spec, images, steps=5, kernel="events", matmul="tf32x2")
    with pytest.raises(ValueError, match="record_margins"):
        simulate(spec, images, steps=5, kernel="events", record_margins=True)


@settings(max_examples=25, deadline=None)
@given(
    c=st.integers(1, 3),
    oc=st.integers(1, 4),
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    pool=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_local_probing_gives_the_one_hot_tables(c, oc, h, w, kh, kw, stride, padding, pool, seed) -> None:
    """A convolution's or pool's tables from one probe per (channel, kernel offset) class are exactly the
    tables of one probe per input unit, for any kernel, stride and padding that fit."""
    from fastsim.event_tables import _edge_table, known_matrix, local_geometry
    from fastsim.layers import ConvOp, PoolOp

    if pool:
        k = min(kh, h, w)
        op = PoolOp(k, stride, 0.25)
    else:
        if kh > h + 2 * padding or kw > w + 2 * padding:
            return
        weight = torch.as_tensor(np.random.default_rng(seed).normal(size=(oc, c, kh, kw)))
        weight[weight.abs() < 0.3] = 0.0  # zero weights: no synapse, no run
        op = ConvOp(weight, (stride, stride), (padding, padding))
    in_shape = (c, h, w)
    out_shape = tuple(op(torch.zeros(1, *in_shape, dtype=torch.float64)).shape[1:])
    pre, post = internal_order(in_shape), internal_order(out_shape)
    assert local_geometry((op,)) is not None
    got = _edge_table(op, in_shape, pre, post, np.float64, known_matrix((op,), op, in_shape))
    want = _edge_table(op, in_shape, pre, post, np.float64)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert local_geometry((op, op)) is None


def test_the_identity_skip_matrix_gives_the_one_hot_tables() -> None:
    from fastsim.event_tables import _edge_table, known_matrix
    from fastsim.skips import Gain

    op = Gain(torch.tensor(0.375, dtype=torch.float64))
    in_shape = (3, 4, 5)
    order = internal_order(in_shape)
    got = _edge_table(op, in_shape, order, order, np.float32, known_matrix((op,), op, in_shape))
    want = _edge_table(op, in_shape, order, order, np.float32)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.all(got[2] == np.float32(0.375)) and np.all(got[1] == 1)


def test_ctrl_c_stops_the_kernel_within_a_chunk_and_is_raised(sigint_raises) -> None:
    """KeyboardInterrupt reaches the waiting thread while the kernel runs; the kernel is told to stop (it
    would otherwise run forever here) and has returned before the interrupt propagates."""
    import _thread

    from fastsim.events import _interruptible

    seen = []

    def kernel(x, stop) -> None:
        while stop[0] == 0:  # a kernel that only ends when asked to
            time.sleep(0.01)
        seen.append(x)

    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        _interruptible(kernel, (7,))
    assert seen == [7]


def test_an_error_in_the_kernel_reaches_the_caller() -> None:
    from fastsim.events import _interruptible

    def kernel(stop) -> None:
        raise ValueError("bad table")

    with pytest.raises(ValueError, match="bad table"):
        _interruptible(kernel, ())


def test_the_compiled_kernel_stops_when_asked(sigint_raises) -> None:
    """Ctrl-C during a batch that would take minutes ends it within seconds (the kernel reads its stop flag
    every chunk of steps); before, the interrupt waited for the whole batch."""
    import _thread

    spec = random_spec("mlp", seed=3)
    images = mnist_like(4, np.random.default_rng(0))
    simulate(spec, images, steps=64, kernel="events", dtype=torch.float32)  # compiled (or loaded) first
    threading.Timer(1.0, _thread.interrupt_main).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        simulate(spec, images, steps=2_000_000, checkpoints=[2_000_000], kernel="events", dtype=torch.float32)
    assert time.monotonic() - start < 30


def test_a_network_without_synapses_runs_as_in_the_torch_engine() -> None:
    """All-zero weights (no synapse at all, so no run of the event tables): the kernel's buffers were padded by
    ``run_len.max()`` of an empty array, a numba SystemError; now it runs, and a bias alone drives the
    neurons exactly as in the torch engine."""
    spec = NetworkSpec(
        (6,),
        (
            Dense(np.zeros((4, 6)), threshold=1.0, bias=np.array([0.25, 0.0, 0.5, 0.125])),
            Dense(np.zeros((3, 4)), threshold=1.0),
        ),
        reset="subtract",
    )
    images = np.random.default_rng(0).integers(0, 256, (5, 6)).astype(np.uint8)
    events = simulate(spec, images, steps=40, kernel="events", dtype="float64", record_neurons=True)
    torch_ = simulate(spec, images, steps=40, kernel="torch", dtype="float64", record_neurons=True)
    assert_same_record(events, torch_)
    # bias 1/4 per step under `delay` (each step's threshold test sees the charge of the steps before it):
    # 39 steps of charge are tested in 40 steps, floor(39 / 4) = 9 spikes; no synapse carries them on
    assert events.neuron_counts[0][:, 0].tolist() == [9] * 5 and events.output_counts.sum() == 0
