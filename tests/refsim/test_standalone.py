"""Standalone projects: identical records to the runtime device, reruns through run_args, the build cache.

Each project compiles once per session (13-35 s on a 2-core box); the tests reuse it.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.spec import Dense, NetworkSpec
from convert.encoding import poisson_spikes
from refsim.devices import DeviceUnavailable, check_cuda
from refsim.simulate import simulate
from tests.conformance import reference
from tests.records import assert_same_record
from tests.refsim.conftest import dyadic_cnn

STEPS = 30


@pytest.fixture(scope="module")
def cnn_case(standalone_root):
    """A cascade/subtract CNN compiled for batches of 3 images; 5 images run as a full and a padded batch."""
    spec = dyadic_cnn(np.random.default_rng(11), reset="subtract", schedule="cascade")
    rng = np.random.default_rng(12)
    images = rng.integers(0, 256, size=(10, 1, 8, 8), dtype=np.uint8)
    spikes = poisson_spikes(images, np.arange(10), STEPS, seed=3)
    kwargs = dict(steps=STEPS, batch_size=3, record_neurons=True, labels=np.arange(5) % 4)
    first = simulate(
        spec,
        spikes=spikes[:5],
        device="cpp_standalone",
        build_dir=standalone_root,
        image_indices=np.arange(5),
        **kwargs,
    )
    return spec, spikes, kwargs, first


@pytest.mark.standalone
@pytest.mark.slow
def test_cpp_standalone_equals_runtime_on_supplied_spikes(cnn_case):
    spec, spikes, kwargs, first = cnn_case
    assert first.meta["compiled"] and first.meta["device"] == "cpp_standalone"
    runtime = simulate(spec, spikes=spikes[:5], image_indices=np.arange(5), **kwargs)
    assert first.layer_counts[:, -1].sum() > 0
    assert_same_record(first, runtime)


@pytest.mark.standalone
@pytest.mark.slow
def test_rerun_with_new_images_equals_a_fresh_build(cnn_case, standalone_root):
    """New spikes go in through run_args: no recompilation, and the records of a freshly built network."""
    spec, spikes, kwargs, first = cnn_case
    rerun = simulate(
        spec,
        spikes=spikes[5:],
        device="cpp_standalone",
        build_dir=standalone_root,
        image_indices=np.arange(5, 10),
        **kwargs,
    )
    assert rerun.meta["build_dir"] == first.meta["build_dir"]
    assert not rerun.meta["compiled"], "the cached project must be reused without compiling"
    fresh = simulate(spec, spikes=spikes[5:], image_indices=np.arange(5, 10), **kwargs)
    assert_same_record(rerun, fresh)
    want = reference.expected_record(spec, spikes[5:].reshape(5, STEPS, -1), rerun.checkpoints)
    reference.assert_record_matches(rerun, want, "cpp_standalone rerun")
    assert not np.array_equal(rerun.layer_counts, first.layer_counts)


@pytest.mark.standalone
@pytest.mark.slow
def test_cpp_standalone_poisson_input_is_seeded(standalone_root):
    """Brian2's PoissonGroup in C++: spike probability = intensity; the same seed replays the same spikes."""
    spec = NetworkSpec((40,), (Dense(np.full((2, 40), 1 / 16)),), schedule="delay")
    x = np.tile(np.linspace(0, 1, 40), (4, 1))
    run = dict(steps=200, device="cpp_standalone", batch_size=2, seed=9, build_dir=standalone_root)
    a = simulate(spec, x, **run)
    b = simulate(spec, x, **run)
    assert not b.meta["compiled"]
    np.testing.assert_array_equal(a.synops, b.synops)
    rate = a.synops[:, 0].sum() / (2 * 4 * 200)  # synops = input spikes x fanout 2
    assert abs(rate - x[0].sum()) < 0.03 * x[0].sum()
    assert a.meta["seed"] == 9 and a.meta["input"] == "poisson"


@pytest.mark.gpu
@pytest.mark.standalone
@pytest.mark.slow
def test_cuda_standalone_equals_runtime(tmp_path):
    try:
        check_cuda()
    except DeviceUnavailable as err:
        pytest.skip(str(err))
    spec = dyadic_cnn(np.random.default_rng(11), reset="zero", schedule="delay")
    images = np.random.default_rng(13).integers(0, 256, size=(4, 1, 8, 8), dtype=np.uint8)
    spikes = poisson_spikes(images, np.arange(4), STEPS, seed=4)
    kwargs = dict(steps=STEPS, batch_size=3, record_neurons=True)
    gpu = simulate(spec, spikes=spikes, device="cuda_standalone", build_dir=tmp_path, **kwargs)
    assert_same_record(gpu, simulate(spec, spikes=spikes, **kwargs))


@pytest.mark.standalone
@pytest.mark.slow
def test_the_project_keeps_no_synapse_lists_in_python_once_written(standalone_root, monkeypatch):
    """After the project is written, Brian2's Python copies of the synapse lists are freed (a 265 M-synapse
    network's 6 GB); the compiled run, which reads its own files, still equals the runtime device."""
    from convert.contract.spec import Flatten
    from refsim import runners

    seen = []

    def release(device):
        big = sum(1 for v in device.array_cache.values() if v is not None and v.nbytes > 1 << 16)
        runners_release(device)
        after = max((v.nbytes for v in device.array_cache.values() if v is not None), default=0)
        seen.append((big, len(device.static_arrays), after))

    runners_release = runners.release_written_arrays
    monkeypatch.setattr(runners, "release_written_arrays", release)
    rng = np.random.default_rng(21)
    spec = NetworkSpec(
        (1, 16, 16),
        (Flatten(), Dense(rng.integers(-2, 5, (300, 256)) / 16), Dense(rng.integers(-2, 5, (4, 300)) / 8)),
    )
    images = rng.integers(0, 256, size=(3, 1, 16, 16), dtype=np.uint8)
    spikes = poisson_spikes(images, np.arange(3), STEPS, seed=4)
    kwargs = dict(steps=STEPS, record_neurons=True, image_indices=np.arange(3))
    compiled = simulate(spec, spikes=spikes, device="cpp_standalone", build_dir=standalone_root, **kwargs)
    ((big, static, after),) = seen
    assert big > 0 and static == 0 and after <= 1 << 16  # 76 800 synapses: 300 KB per list, all freed
    assert compiled.layer_counts[:, -1].sum() > 0
    assert_same_record(compiled, simulate(spec, spikes=spikes, **kwargs))
