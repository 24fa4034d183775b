"""Table 2 on a real Dask cluster (distributed.LocalCluster): the same entries and records as without Dask,
with 1 and 2 workers; a worker killed mid-run loses nothing and nothing is counted twice."""

from __future__ import annotations

import os
import shutil
import signal

import numpy as np
import pytest

from convert.__main__ import main as convert_main
from convert.contract.records import SpikeRecord
from validation import cluster
from validation.paper.experiments import EvalConfig, Job, PartTask, simulate_part
from validation.paper.table2 import run_table2

pytest.importorskip("distributed")

PAIRS = (("mnist", "mlp"),)
CFG = EvalConfig(
    n_images=40, steps=20, seeds=(0,), thresholds=(1.0, 2.0), search_images=20, holdout=100, calib_images=300
)
CFG = EvalConfig(**{**CFG.to_dict(), "part_images": 10})


def test_local_addresses_are_parsed_and_bad_ones_explained() -> None:
    assert cluster.local_workers("local:2") == 2 and cluster.local_workers("tcp://10.0.0.1:8786") is None
    for bad in ("local:0", "local:two", "local:"):
        with pytest.raises(cluster.ClusterError, match="write local:N"):
            cluster.local_workers(bad)


def test_each_worker_picks_its_device_only_when_asked() -> None:
    worker = {"device": "worker", "dtype": "float32", "kernel": "auto"}
    assert cluster.worker_options(worker, {"GPU": 1}, cuda=True) == {"device": "cuda", "kernel": "torch"}
    assert cluster.worker_options(worker, {"GPU": 1}, cuda=False) == {"device": "cpu", "kernel": "events"}
    assert cluster.worker_options(worker, {}, cuda=True) == {"device": "cpu", "kernel": "events"}
    assert cluster.worker_options({"device": "cpu", "kernel": "events"}, {"GPU": 1}, cuda=True) == {}


def test_the_worker_device_needs_a_cluster() -> None:
    from fastsim.synthetic import random_spec

    task = PartTask(np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8), 0, 1, 5, 0, np.array([5]), {}, "k")
    task = PartTask(**{**task.__dict__, "options": EvalConfig(device="worker").simulator_options})
    with pytest.raises(ValueError, match="needs a cluster: add --dask"):
        simulate_part(task, random_spec("mlp", seed=0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("trained")
    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "1", "--train-images", "256"]
    assert convert_main([*argv, "--runs", str(runs)]) == 0
    return runs


def _fresh(trained, tmp_path, name):
    runs = tmp_path / name
    shutil.copytree(trained / "models", runs / "models")
    return runs


def _records(runs, results) -> list[SpikeRecord]:
    return [SpikeRecord.load(runs / "table2" / p) for e in results["entries"] for p in e["records"]]


_TIMING = ("wall_s", "image_steps_per_s", "provenance", "ran_on", "timing")


def _same(a: list[dict], b: list[dict]) -> None:
    strip = [{k: v for k, v in e.items() if k not in _TIMING} for e in a]
    assert strip == [{k: v for k, v in e.items() if k not in _TIMING} for e in b]


@pytest.mark.slow
def test_table2_on_1_and_2_workers_equals_the_single_process_run(trained, tmp_path) -> None:
    alone = run_table2(CFG, None, _fresh(trained, tmp_path, "alone"), pairs=PAIRS, progress=False)
    for n in (1, 2):
        runs = _fresh(trained, tmp_path, f"local{n}")
        results = run_table2(CFG, None, runs, pairs=PAIRS, progress=False, dask=f"local:{n}")
        _same(results["entries"], alone["entries"])
        for a, b in zip(_records(runs, results), _records(tmp_path / "alone", alone), strict=True):
            np.testing.assert_array_equal(a.output_counts, b.output_counts)
            np.testing.assert_array_equal(a.synops_curve, b.synops_curve)
        parts = sorted((runs / "table2" / "records" / "parts").glob("*.npz"))
        assert parts and all("ran_on" in SpikeRecord.load(p).meta for p in parts)  # each part says who ran it
        workers = {SpikeRecord.load(p).meta["ran_on"]["worker"] for p in parts}
        assert 1 <= len(workers) <= n
        assert {SpikeRecord.load(p).meta["ran_on"]["threads"] for p in parts} == {max(1, (os.cpu_count() or 1) // n)}


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_nothing(trained, tmp_path) -> None:
    """SIGKILL one of two workers after the first part arrives: its tasks run again elsewhere (or on its
    restarted replacement), every part is written once and the records equal the single-process ones."""
    from convert.pipeline import copy_spec

    spec = copy_spec("mnist", "mlp", trained)
    cfg = EvalConfig(**{**CFG.to_dict(), "n_images": 80, "steps": 400})
    job = Job(spec, "mnist", "mlp", 0, 80, 400)
    out = tmp_path / "cluster"
    parts = cluster.missing_parts([job], cfg, None, out)
    assert len(parts) == 8
    arrived, lost = [], []
    with cluster.connect("local:2") as client:
        pids = client.run(os.getpid)

        def on_part(image_steps: int) -> None:
            if not arrived:  # kill a worker that is running a task now
                busy = {w: keys for w, keys in client.processing().items() if keys}
                victim = next(iter(busy))
                lost.extend((victim, k.removeprefix("part-")) for k in busy[victim])
                os.kill(pids[victim], signal.SIGKILL)
            arrived.append(image_steps)

        written = cluster.simulate_parts(client, parts, on_part)
    assert written == 8 and arrived == [10 * 400] * 8  # nothing counted twice
    assert lost, "a worker was killed while it ran a task"
    by_key = {p.task.key: SpikeRecord.load(p.path).meta["ran_on"]["worker"] for p in parts}
    assert all(by_key[key] != victim for victim, key in lost), "its tasks ran again on another worker"
    assert job.missing_parts(cfg, out) == []
    from validation.paper.experiments import evaluate

    joined = evaluate(job, None, cfg, out)
    alone = evaluate(job, None, cfg, tmp_path / "alone")
    np.testing.assert_array_equal(joined.output_counts, alone.output_counts)
    np.testing.assert_array_equal(joined.synops_curve, alone.synops_curve)


@pytest.mark.slow
def test_agreement_and_diagnosis_sharded_over_workers_equal_one_process(tmp_path) -> None:
    """fastsim float64 against the reference loop and a diagnosis, images cut in blocks of 3 over two workers:
    the joined records equal the single-process ones neuron for neuron."""
    from fastsim.synthetic import mnist_like, random_spec
    from validation.harness.agreement import _run, agreement
    from validation.harness.diagnose import run_diagnosis
    from validation.harness.engines import run

    spec = random_spec("mlp", seed=1)
    images = mnist_like(8, np.random.default_rng(0))
    labels = np.arange(8, dtype=np.uint8) % 10
    engines = ("fastsim:float64", "fastsim:float64:torch")
    here, recs_here = agreement(spec, images, labels, 40, engines, poisson_images=4)
    with cluster.connect("local:2") as client:
        there, recs_there = agreement(
            spec, images, labels, 40, engines, poisson_images=4, runner=cluster.sharded(client, _run, block=3)
        )
        sharded_run = cluster.sharded(client, run, block=3)
        diag_there = run_diagnosis(
            spec, "x", images, labels, 40, tmp_path / "b", {}, progress=False, runner=sharded_run
        )
    diag_here = run_diagnosis(spec, "x", images, labels, 40, tmp_path / "a", {}, progress=False)
    assert there["identical"] == here["identical"] and there["poisson"] == here["poisson"]
    for a, b in zip(recs_here, recs_there, strict=True):
        for x, y in zip(a.neuron_counts, b.neuron_counts, strict=True):
            np.testing.assert_array_equal(x, y)
    assert len(recs_there[0].meta["ran_on"]) == 3  # blocks of 3, 3, 2 images
    assert diag_there["markdown"] == diag_here["markdown"]


def test_the_cluster_estimate_scales_with_cores_and_counts_the_overhead() -> None:
    here = os.cpu_count() or 1
    one = cluster.expected_seconds(3600.0, 100, here)
    assert one == pytest.approx(3600.0 + cluster.OVERHEAD_S_PER_TASK * 100 / here)
    assert cluster.expected_seconds(3600.0, 100, 4 * here) == pytest.approx(one / 4)
    text = cluster.estimate_lines(3600.0, 100)
    assert all(f"{c:>4} cores" in text for c in cluster.CORE_COUNTS)
    assert "16 cores" in cluster.estimate_lines(3600.0, 100, 16) and "128 cores" not in cluster.estimate_lines(1, 1, 16)


@pytest.mark.slow
def test_brian2_runs_on_the_workers_and_agrees_with_fastsim_spike_for_spike() -> None:
    """Brian2 on the workers (its import needs a worker's main thread: a worker plugin does it there), blocks
    of 2 images; a dyadic network, so every count is exact in both engines."""
    from tests.fastsim.specs import dyadic_mlp, random_images
    from validation.harness.agreement import _run, agreement

    rng = np.random.default_rng(5)
    spec = dyadic_mlp(rng)
    images = random_images(rng, 4, (6, 6))
    with cluster.connect("local:2") as client:
        report, recs = agreement(
            spec,
            images,
            np.zeros(4, np.uint8),
            30,
            ("fastsim:float64", "refsim:runtime"),
            runner=cluster.sharded(client, _run, block=2),
        )
        assert cluster.ImportBrian2.name in client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.worker_plugins)
        )
    assert report["identical"]["exact_fraction"] == 1.0 and recs[1].n_images == 4
    assert len(recs[1].meta["ran_on"]) == 2
