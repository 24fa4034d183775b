"""Where the project writes (docs/reliability.md, "Files where a user expects them"): every output under the
results folder (``--runs``, else ``$SNN_RUNS``, else ``runs/``), Brian2's builds and numba's cache included, or
where a documented option or variable puts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from convert.contract import paths
from convert.contract.io import save_spec
from fastsim.synthetic import random_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env_runs(tmp_path, monkeypatch) -> Path:
    """$SNN_RUNS pointing at an empty folder (and no $SNN_BUILD): whatever falls back to the default lands there.
    numba's cache stays where it is (it is process-wide: the kernel, imported here first, would keep it there)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR") or str(paths.numba_cache_dir()))
    runs = tmp_path / "env-runs"
    monkeypatch.setenv("SNN_RUNS", str(runs))
    monkeypatch.delenv("SNN_BUILD", raising=False)
    return runs


def test_snn_runs_is_the_default_results_folder(env_runs, tmp_path, monkeypatch, capsys):
    from convert.__main__ import main
    from convert.pipeline import default_runs
    from refsim.devices import build_directory, default_build_root

    assert default_runs() == env_runs
    assert default_build_root() == env_runs / "build" / "refsim"
    assert build_directory("cpp_standalone", "k") == env_runs / "build" / "refsim" / "cpp_standalone-k"
    assert paths.numba_cache_dir() == env_runs / "cache" / "numba"  # where the kernel caches (subprocess test below)
    (env_runs / "models").mkdir(parents=True)
    for suffix in (".pt", ".json"):
        shutil.copy2(REPO / "docs" / "results" / "models" / f"mnist-mlp{suffix}", env_runs / "models")
    assert main(["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "baseline"]) == 0
    assert (env_runs / "specs" / "mnist-mlp-baseline.npz").exists()  # the CLIs' --runs default
    monkeypatch.delenv("SNN_RUNS")
    assert default_runs() == REPO / "runs" and default_build_root() == REPO / "runs" / "build" / "refsim"


def test_the_default_locations_are_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    probes = ["runs/build/refsim/cpp_standalone-0/main.cpp", "runs/cache/numba/fastsim_0/k.nbi"]
    done = subprocess.run(["git", "check-ignore", *probes], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.split() == probes


@pytest.fixture
def brian2_calls(monkeypatch) -> list:
    """refsim's simulate replaced by fastsim float64 (the same counts, no compiler): the build folders asked for."""
    import refsim.simulate  # noqa: F401  (the package's `simulate` attribute is the function: patch the module)
    from fastsim.simulate import simulate

    calls = []

    def fake(spec, images=None, *, build_dir=None, device=None, **kw):
        calls.append(build_dir)
        return simulate(spec, images, device="cpu", dtype="float64", **kw)

    monkeypatch.setattr(sys.modules["refsim.simulate"], "simulate", fake)
    return calls


@pytest.mark.parametrize("build_flag, snn_build", [(False, False), (True, False), (False, True), (True, True)])
def test_agree_writes_under_runs_and_builds_where_asked(
    mnist_root, env_runs, tmp_path, monkeypatch, brian2_calls, build_flag, snn_build
):
    """`validation agree --runs R`: the report under R/agreement (not $SNN_RUNS or runs/), Brian2's projects in
    --build-dir, else $SNN_BUILD, else R/build/refsim."""
    from validation.__main__ import main

    spec = save_spec(random_spec("mlp", seed=3), tmp_path / "where-spec.npz")
    runs = tmp_path / "runs"
    argv = ["agree", "--spec", str(spec), "--root", str(mnist_root), "--images", "2", "--steps", "5"]
    argv += ["--engines", "fastsim:float64,refsim:cpp_standalone", "--runs", str(runs)]
    if build_flag:
        argv += ["--build-dir", str(tmp_path / "flag-build")]
    if snn_build:
        monkeypatch.setenv("SNN_BUILD", str(tmp_path / "env-build"))
    assert main(argv) == 0
    want = tmp_path / ("flag-build" if build_flag else "env-build" if snn_build else "runs/build/refsim")
    assert brian2_calls and all(Path(b) == want for b in brian2_calls)
    assert sorted(p.suffix for p in (runs / "agreement").iterdir()) == [".json", ".md", ".png"]
    assert not env_runs.exists()


def test_the_main_jobs_brian2_checks_build_under_their_runs(mnist_root, env_runs, tmp_path, brian2_calls, capsys):
    """agreement_summary, which runs the Brian2 checks of `reproduce` and `beyond`: <runs>/build/refsim, or the
    folder of their --build-dir (ReproduceConfig.build_dir, run_beyond's build_dir)."""
    from validation.__main__ import main
    from validation.harness.agreement import agreement_summary

    spec = random_spec("mlp", seed=3)
    engines = ("fastsim:float64", "refsim:cpp_standalone")
    runs = tmp_path / "runs"
    agreement_summary(spec, "mnist-where", engines, 2, 5, 0, 0, mnist_root, runs)
    agreement_summary(spec, "mnist-where", engines, 2, 5, 0, 0, mnist_root, runs, tmp_path / "b")
    assert [Path(b) for b in brian2_calls] == [runs / "build" / "refsim", tmp_path / "b"]
    assert not env_runs.exists()
    for command in ("agree", "reproduce", "beyond"):  # the commands that run Brian2 take --build-dir
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--build-dir" in capsys.readouterr().out
    assert main(["beyond", "--runs", str(runs), "--build-dir", str(tmp_path / "b"), "--networks", "mnist-cnn"]) == 2
    assert "no checkpoint of mnist-cnn" in capsys.readouterr().err


def test_numba_caches_under_runs_unless_numba_cache_dir_is_set(tmp_path):
    """The event kernel's compiled code goes to <$SNN_RUNS>/cache/numba (not fastsim/__pycache__), also when
    numba was imported before fastsim; a user's $NUMBA_CACHE_DIR wins."""
    code = (
        "import numba, numpy as np\n"  # imported first, before fastsim sets the variable
        "from fastsim import _events_kernel as k\n"
        "k._mix32(np.uint64(5))\n"
        "print(k._mix32._cache._cache_path)\n"
    )
    for user_dir in (None, tmp_path / "user-numba"):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env["SNN_RUNS"] = str(tmp_path / "runs")
        if user_dir is not None:
            env["NUMBA_CACHE_DIR"] = str(user_dir)
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        where = user_dir if user_dir is not None else tmp_path / "runs" / "cache" / "numba"
        assert Path(done.stdout.strip()).is_relative_to(where)
        assert [p.name for p in where.rglob("_events_kernel._mix32-*.nbi")]
