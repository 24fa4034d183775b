"""The convert command line end to end on a tiny trained model, and the ANN accuracy of normalized specs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert import ann
from convert.__main__ import main
from convert.io import load_spec
from convert.pipeline import copy_spec, normalized_spec, stats_for


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "3", "--train-images", "512", "--runs"]
    assert main([*argv, str(runs)]) == 0
    return runs


def test_train_writes_checkpoint_and_metrics(tiny_runs):
    metrics = json.loads((tiny_runs / "models" / "mnist-mlp.json").read_text())
    assert metrics["accuracy_mode"].startswith("model.eval()")
    assert 0.5 < metrics["test_accuracy"] <= 1
    assert metrics["config"]["train_images"] == 512 and "git_commit" in metrics and "versions" in metrics


@pytest.mark.parametrize("method", ["baseline", "model", "data", "robust"])
def test_normalize_cli_and_ann_accuracy_unchanged(tiny_runs, method, mnist_test, capsys):
    out = tiny_runs / "specs" / f"{method}.npz"
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", method, "--calib-images", "500"]
    assert main([*argv, "--runs", str(tiny_runs), "--out", str(out), "--nir", str(out.with_suffix(".nir"))]) == 0
    assert "divisor" in capsys.readouterr().out
    spec = load_spec(out)
    assert spec.provenance["method"] == method and len(spec.provenance["divisors"]) == 3
    base = copy_spec("mnist", "mlp", tiny_runs)
    x, y = mnist_test.images[:2000], mnist_test.labels[:2000]
    assert np.array_equal(ann.predict(spec, x), ann.predict(base, x))
    assert ann.accuracy(spec, x, y) == ann.accuracy(base, x, y)


def test_stats_are_cached(tiny_runs):
    base = copy_spec("mnist", "mlp", tiny_runs)
    a = stats_for(base, "mnist", None, tiny_runs, n_calib=300, progress=False)
    b = stats_for(base, "mnist", None, tiny_runs, n_calib=300, progress=False)
    assert a.max == b.max and len(list((tiny_runs / "stats").glob("*.npz"))) >= 1
    assert normalized_spec(base, "data", a)[1].divisors == normalized_spec(base, "data", b)[1].divisors


def test_cli_errors_are_clear(tmp_path, capsys):
    argv = ["normalize", "--dataset", "mnist", "--model", "cnn", "--method", "data", "--runs", str(tmp_path)]
    assert main(argv) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "module, argv",
    [
        ("fastsim", ["run", "--spec", "{missing}", "--dataset", "mnist", "--steps", "5", "--out", "{out}"]),
        ("refsim", ["run", "--spec", "{missing}", "--steps", "5", "--device", "runtime", "--out", "{out}"]),
        ("validation", ["agree", "--spec", "{missing}", "--engines", "fastsim,fastsim:float32", "--out", "{out}"]),
        ("refsim", ["run", "--spec", "{spec}", "--steps", "5", "--device", "cuda_standalone", "--out", "{out}"]),
    ],
)
def test_every_cli_reports_user_errors_with_status_2(module, argv, tiny_runs, tmp_path, capsys):
    import importlib

    spec = tmp_path / "spec.npz"
    argv_spec = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "baseline", "--runs", str(tiny_runs)]
    assert main([*argv_spec, "--out", str(spec)]) == 0
    out = tmp_path / "out.npz"
    fill = {"missing": str(tmp_path / "missing.npz"), "out": str(out), "spec": str(spec)}
    code = importlib.import_module(f"{module}.__main__").main([a.format(**fill) for a in argv])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not out.exists()
