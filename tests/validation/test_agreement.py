"""The agreement harness on tiny networks, both engines, both schedules and reset modes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert import datasets
from validation.harness.agreement import agreement, write_report
from validation.harness.compare import binomial_difference_interval, compare_counts

from .conftest import small_mnist_spec


@pytest.fixture(scope="module")
def images():
    test = datasets.load("mnist", "test")
    return test.images[:4], test.labels[:4]


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["delay", "cascade"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_fastsim_float64_equals_brian2_runtime(rng, images, schedule, reset):
    spec = small_mnist_spec(rng, schedule, reset)
    report, recs = agreement(spec, *images, steps=30, engines=("fastsim:float64", "refsim:runtime"))
    ident = report["identical"]
    assert sum(x["pairs"] for x in ident["layers"]) == 4 * sum(spec.population_sizes)
    assert sum(recs[0].layer_counts.ravel()) > 0, "the test network must be active"
    assert ident["exact_fraction"] == 1.0, ident
    assert ident["output_counts_equal"] and ident["first_spike_equal"]


@pytest.mark.parametrize("engine", ["fastsim:float32", "fastsim:float32:tf32x3", "fastsim:float32:events"])
def test_float32_vs_float64_fastsim(rng, images, engine):
    spec = small_mnist_spec(rng, "delay", "subtract")
    report, _ = agreement(spec, *images, steps=50, engines=(engine, "fastsim:float64"))
    ident = report["identical"]
    assert ident["exact_fraction"] >= 0.999
    assert ident["mismatches_unexplained"] == 0


def test_compare_counts_finds_a_planted_mismatch(rng, images):
    spec = small_mnist_spec(rng)
    _, (a, b) = agreement(spec, *images, steps=20, engines=("fastsim:float64", "fastsim:float64"))
    counts = [c.copy() for c in b.neuron_counts]
    counts[0][1, 3] += 2
    planted = type(b)(**{**b.__dict__, "neuron_counts": tuple(counts)})
    out = compare_counts(a, planted)
    assert out["mismatches"] == 1
    assert out["layers"][0]["max_abs_diff"] == 2
    assert out["layers"][0]["mismatches"][0]["neuron"] == 3


def test_binomial_interval():
    assert binomial_difference_interval(0.9, 0.9, 1000, 1000) == pytest.approx(1.96 * np.sqrt(2 * 0.09 / 1000))


def test_report_is_atomic_and_has_provenance(tmp_path, rng, images):
    spec = small_mnist_spec(rng)
    report, recs = agreement(spec, *images, steps=10, engines=("fastsim:float32", "fastsim:float64"))
    paths = write_report(report, recs, tmp_path, "r", {"seed": 0, "images": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md", "r.png"]
    data = json.loads(paths[0].read_text())
    assert data["config"] == {"seed": 0, "images": 4}
    assert data["versions"]["numpy"] == np.__version__
    assert "git_commit" in data
    assert "Identical inputs" in paths[1].read_text()


@pytest.mark.slow
def test_independent_poisson_fastsim_vs_brian2(rng):
    """Brian2's own PoissonGroup against fastsim's counter-based generator: statistics agree."""
    test = datasets.load("mnist", "test")
    spec = small_mnist_spec(rng, "delay", "subtract")
    report, _ = agreement(
        spec, test.images[:30], test.labels[:30], 40, ("fastsim:float64", "refsim:runtime"), poisson_images=30
    )
    pois = report["poisson"]
    assert pois["images"] == 30 and len(pois["layers"]) == len(spec.population_sizes)
    assert pois["accuracy_within_interval"], pois
    assert pois["rates_within_tolerance"], pois["layers"]
    assert all(min(x["mean_spikes_per_image"]) > 0 for x in pois["layers"])


def test_compare_poisson_flags_a_rate_difference():
    from convert.contract.records import SpikeRecord
    from validation.harness.compare import compare_poisson

    gen = np.random.default_rng(0)

    def record(rate: float) -> SpikeRecord:
        n = 200
        return SpikeRecord(
            checkpoints=np.array([50]),
            output_counts=gen.poisson(5, size=(n, 1, 10)),
            layer_counts=gen.poisson(rate, size=(n, 2)),
            first_spike_step=np.zeros(n, dtype=np.int64),
            synops=np.zeros((n, 2)),
            labels=gen.integers(0, 10, n),
            image_indices=np.arange(n),
        )

    assert compare_poisson(record(100), record(100))["rates_within_tolerance"]
    assert not compare_poisson(record(100), record(130))["rates_within_tolerance"]


def test_parse_engine_options():
    from validation.harness.agreement import parse_engine

    assert parse_engine("fastsim") == ("fastsim", {"dtype": "float64", "record_margins": True})
    name, opts = parse_engine("fastsim:tf32x2:float32:cuda:1")
    assert name == "fastsim" and opts == {
        "dtype": "float32",
        "matmul": "tf32x2",
        "device": "cuda:1",
        "record_margins": True,
    }
    assert parse_engine("fastsim:float32:events")[1] == {"dtype": "float32", "kernel": "events", "record_margins": True}
    assert parse_engine("refsim:runtime") == ("refsim", {"device": "runtime"})
    with pytest.raises(ValueError, match="unknown fastsim option 'bf16'"):
        parse_engine("fastsim:bf16")
    with pytest.raises(ValueError, match="engine must be"):
        parse_engine("brian")


def test_an_analog_input_spec_is_compared_on_its_images(rng):
    """A spec with analog input (encoding `current`, what the few-step conversions use) is compared on the
    images themselves, the identical input (before: `supplied input spikes need spec.encoding 'poisson'`);
    independent Poisson runs have no meaning there and are refused. Dyadic intensities keep every sum exact."""
    import dataclasses

    spec = dataclasses.replace(small_mnist_spec(rng, "cascade", "subtract"), encoding="current", v_init=0.5)
    x = (rng.integers(0, 17, (3, 1, 28, 28)) / 16.0).astype(np.float64)
    labels = np.arange(3)
    report, recs = agreement(spec, x, labels, steps=12, engines=("fastsim:float64", "refsim:runtime"))
    assert sum(recs[0].layer_counts.ravel()) > 0, "the test network must be active"
    assert report["identical"]["exact_fraction"] == 1.0, report["identical"]
    with pytest.raises(ValueError, match="no Poisson noise to compare"):
        agreement(spec, x, labels, steps=12, engines=("fastsim:float64", "refsim:runtime"), poisson_images=2)
