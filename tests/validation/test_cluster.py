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
from tests.subprocesses import Stderr, sigint_default
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
        assert {SpikeRecord.load(p).meta["ran_on"]["threads"] for p in parts} == {max(1, cluster.usable_cores() // n)}


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


# ------------------------------------------------------------------------------- addresses a user may give
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def _mnist_spec(tmp_path):
    from convert.contract.io import save_spec
    from fastsim.synthetic import random_spec

    return save_spec(random_spec("mlp", seed=3), tmp_path / "mlp.npz")


def _agree(spec, out, *extra: str) -> list[str]:
    argv = ["agree", "--spec", str(spec), "--engines", "fastsim:float64,fastsim:float32", "--out", str(out)]
    return [*argv, "--images", "4", "--steps", "10", *extra]


def test_local_workers_are_bounded_by_the_cores(tmp_path, capsys) -> None:
    """`--dask local:999` started a worker process per N on a 2-core box: refused, naming the most there is."""
    from validation.__main__ import main

    cores = cluster.usable_cores()
    assert cluster.local_workers(f"local:{cores}") == cores
    with pytest.raises(cluster.ClusterError, match=f"this machine has {cores} usable cores, so at most local:{cores}"):
        cluster.local_workers(f"local:{cores + 1}")
    out = tmp_path / "agreement"
    assert main(_agree(_mnist_spec(tmp_path), out, "--dask", "local:999")) == 2
    line = _one_error_line(capsys)
    assert f"argument --dask: local:999: this machine has {cores} usable cores, so at most local:{cores}" in line
    assert not out.exists()
    sweep_cfg = tmp_path / "sweep.toml"
    sweep_cfg.write_text(f'[grid]\nspec = ["{tmp_path / "mlp.npz"}"]\n[run]\nout = "{tmp_path / "s.jsonl"}"\n')
    for flag in (["--dask", "local:999"], ["--workers", "999"]):
        assert main(["sweep", "--config", str(sweep_cfg), *flag]) == 2
        assert "999" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.npz", "sweep.toml"]  # nothing written


class _SilentServer:
    """A TCP server on localhost that accepts connections and never says anything (or, ``http``, an HTTP server)."""

    def __init__(self, kind: str) -> None:
        import http.server
        import socket
        import threading

        if kind == "http":

            class Quiet(http.server.SimpleHTTPRequestHandler):
                def log_message(self, *args) -> None:  # not on the test's stderr
                    pass

            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
            self.port = self.server.server_address[1]
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        else:
            self.server = None
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.conns: list = []
            self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:  # closed
            pass

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        else:
            self.sock.close()
            for c in self.conns:
                c.close()


@pytest.mark.parametrize("kind", ["silent", "http"])
def test_an_address_where_no_scheduler_answers_is_refused_in_time(kind, tmp_path, capsys, monkeypatch) -> None:
    """`--dask HOST:PORT` where a plain TCP server (or an HTTP server) listens waited forever without a word:
    distributed's own timeout covers the connection, not the handshake. Now the whole handshake has a deadline
    (CONNECT_TIMEOUT_S, lowered here), then one line names the address and how to start a scheduler."""
    import time

    from validation.__main__ import main

    server = _SilentServer(kind)
    try:
        address = f"tcp://127.0.0.1:{server.port}"
        start = time.monotonic()
        with pytest.raises(cluster.ClusterError, match="no Dask scheduler answered within 1 s") as err:
            with cluster.connect(address, timeout=1.0):
                pass
        assert time.monotonic() - start < 10
        assert address in str(err.value) and "`dask scheduler`" in str(err.value)
        monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
        out = tmp_path / "agreement"
        assert main(_agree(_mnist_spec(tmp_path), out, "--dask", f"127.0.0.1:{server.port}")) == 2
        line = _one_error_line(capsys)
        assert f"--dask 127.0.0.1:{server.port}: no Dask scheduler answered" in line and "dask scheduler" in line
        assert not out.exists()
    finally:
        server.close()


def test_a_scheduler_answers_and_a_worker_or_a_closed_port_is_named() -> None:
    import socket

    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local:
        with cluster.connect(local.scheduler_address, timeout=5) as client:
            assert client.submit(sum, [40, 2]).result() == 42
        worker = next(iter(local.scheduler_info["workers"]))
        with pytest.raises(cluster.ClusterError, match="a Dask Worker answers there, not a scheduler"):
            cluster.check_scheduler(worker, timeout=5)
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(cluster.ClusterError, match=f"127.0.0.1:{port}: no Dask scheduler answers there"):
        cluster.check_scheduler(f"tcp://127.0.0.1:{port}", timeout=1)  # nothing listens: refused


def _sigint_blocked_here() -> bool:
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_local_workers_never_see_the_terminals_sigint() -> None:
    """The terminal sends Ctrl-C to its whole foreground process group, the `local:N` workers included, and each
    printed a KeyboardInterrupt traceback (when it lost the race with the client closing it). Workers start with
    SIGINT blocked, and so do those the nanny starts again later; the client's own thread keeps it."""
    with cluster.connect("local:2") as client:
        assert not _sigint_blocked_here(), "this process still gets Ctrl-C: it prints the one line and exits 130"
        blocked = client.run(_sigint_blocked_here)
        assert len(blocked) == 2 and all(blocked.values()), blocked
        client.restart()  # new worker processes, started later from the cluster's own threads
        blocked = client.run(_sigint_blocked_here)
        assert len(blocked) == 2 and all(blocked.values()), blocked
    assert not _sigint_blocked_here()


@pytest.mark.slow
def test_ctrl_c_with_local_workers_is_one_line_and_ends_the_workers(tmp_path, mnist_root) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group: the worker processes of `--dask local:2`
    got it too and each printed its KeyboardInterrupt traceback. Now they are started with SIGINT blocked: the
    command prints its one line, exits 130, and closes the cluster, and no worker outlives it."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from convert.cli import INTERRUPTED

    out = tmp_path / "agreement"
    argv = [sys.executable, "-m", "validation", *_agree(_mnist_spec(tmp_path), out)]
    argv[argv.index("--images") + 1], argv[argv.index("--steps") + 1] = "40", "3000"
    proc = subprocess.Popen(
        [*argv, "--dask", "local:2"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, signalled as a terminal signals one
        preexec_fn=sigint_default,
    )
    err = Stderr(proc)
    try:
        err.wait_for(b"agree fastsim:float64", timeout=180)  # until the progress bar shows that the workers simulate
        time.sleep(2.0)
        assert proc.poll() is None, f"the run ended before it could be interrupted: {bytes(err.data).decode()}"
        os.killpg(proc.pid, signal.SIGINT)  # the process and its workers, as Ctrl-C in a terminal
        proc.wait(timeout=120)
        text = err.text()
        assert proc.returncode == 130, text
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
        assert INTERRUPTED in text and not out.exists()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)  # any process left in its group: a worker outliving the command
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("a worker process outlived the interrupted command")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
