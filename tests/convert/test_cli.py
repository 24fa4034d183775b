"""The convert command line end to end on a tiny trained model, and the ANN accuracy of normalized specs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert import ann
from convert.__main__ import main
from convert.contract.io import load_spec
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
    assert (
        main([*argv, "--runs", str(tiny_runs), "--out", str(out), "--nir", str(out.with_suffix(".nir")), "--lossy"])
        == 0
    )
    assert "divisor" in capsys.readouterr().out
    spec = load_spec(out)
    assert spec.provenance["method"] == method and len(spec.provenance["divisors"]) == 3
    base = copy_spec("mnist", "mlp", tiny_runs)
    x, y = mnist_test.images[:2000], mnist_test.labels[:2000]
    assert np.array_equal(ann.predict(spec, x), ann.predict(base, x))
    assert ann.accuracy(spec, x, y) == ann.accuracy(base, x, y)


def test_normalize_cli_sets_encoding_and_readout(tiny_runs, capsys):
    """--encoding/--readout reach the spec and its default file name; the defaults leave both as before."""
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "baseline", "--runs", str(tiny_runs)]
    assert main([*argv, "--encoding", "current", "--readout", "membrane"]) == 0
    path = tiny_runs / "specs" / "mnist-mlp-baseline-current-membrane.npz"
    assert f"wrote {path}" in capsys.readouterr().out
    spec = load_spec(path)
    assert (spec.encoding, spec.readout) == ("current", "membrane")
    assert main(argv) == 0
    default = load_spec(tiny_runs / "specs" / "mnist-mlp-baseline.npz")
    assert (default.encoding, default.readout) == ("poisson", "spikes")
    assert main([*argv, "--readout", "potential"]) == 2
    assert "argument --readout: invalid choice" in capsys.readouterr().err


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


# ------------------------------------------------------------------------------- impossible values
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--epochs", "0"], "argument --epochs: must be a positive integer, got '0'"),
        (["train", "--train-images", "0"], "argument --train-images: must be a positive integer or `all`"),
        (
            ["train", "--train-images", "70000"],
            "--train-images 70000 exceeds the mnist training split less 5000 validation images (55000",
        ),
        (["train", "--batch-size", "-1"], "argument --batch-size"),
        (["train", "--lr", "0"], "argument --lr: must be a positive number"),
        (["normalize", "--method", "data", "--calib-images", "0"], "argument --calib-images"),
        (["normalize", "--method", "data", "--calib-images", "60001"], "exceeds the mnist training split less"),
        (["normalize", "--method", "baseline", "--threshold", "-2"], "argument --threshold"),
    ],
)
def test_impossible_values_are_one_line_errors(argv, fragment, tmp_path, capsys):
    command, rest = argv[0], argv[1:]
    full = [command, "--dataset", "mnist", "--model", "mlp", "--runs", str(tmp_path), *rest]
    assert main(full) == 2
    assert fragment in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_all_means_all(monkeypatch, tmp_path):
    """`--train-images all` / `--calib-images all` reach the code as None (the whole training split)."""
    import convert.pipeline
    import convert.select

    seen = {}

    def fake_train(cfg, candidates, root, runs, force=False):
        seen["train_images"] = cfg.train_images
        raise OSError("stop here")

    def fake_stats(base, dataset, root, runs, n_calib=None, holdout=0):
        seen["n_calib"], seen["holdout"] = n_calib, holdout
        raise OSError("stop here")

    monkeypatch.setattr(convert.select, "select_and_train", fake_train)
    monkeypatch.setattr(convert.pipeline, "copy_spec", lambda *a, **k: None)
    monkeypatch.setattr(convert.pipeline, "stats_for", fake_stats)
    common = ["--dataset", "mnist", "--model", "mlp", "--runs", str(tmp_path)]
    assert main(["train", *common, "--train-images", "all"]) == 2
    assert main(["normalize", *common, "--method", "data", "--calib-images", "ALL"]) == 2
    assert seen == {"train_images": None, "n_calib": None, "holdout": 5000}
    seen.clear()
    assert main(["train", *common]) == 2 and main(["normalize", *common, "--method", "robust"]) == 2
    # defaults: train on all; calibrate as the main job does (20 000 images outside the 5 000 held out)
    assert seen == {"train_images": None, "n_calib": 20_000, "holdout": 5000}


BAD = "argparse error"


@pytest.mark.parametrize(
    "parse, text, value",
    [
        ("positive_int", "3", 3),
        ("positive_int", "0", BAD),
        ("positive_int", "x", BAD),
        ("nonnegative_int", "0", 0),
        ("nonnegative_int", "-1", BAD),
        ("positive_float", "1e-3", 1e-3),
        ("positive_float", "inf", BAD),
        ("positive_float", "nan", BAD),
        ("count_or_all", "all", None),
        ("count_or_all", "12", 12),
        ("count_or_all", "0", BAD),
        ("count_or_all", "-3", BAD),
    ],
)
def test_argument_types(parse, text, value):
    import argparse

    from convert import cli

    func = getattr(cli, parse)
    if value == BAD:
        with pytest.raises(argparse.ArgumentTypeError):
            func(text)
    else:
        assert func(text) == value


def test_check_count_names_the_split_size():
    from convert.cli import at_most, check_count

    assert check_count("--images", None, 10_000, "the mnist test split") == 10_000
    assert check_count("--images", 5, 10_000, "the mnist test split", start=3) == 5
    assert check_count("--images", None, 10_000, "the mnist test split", start=9_990) == 10
    with pytest.raises(ValueError, match=r"--images 20000 exceeds the mnist test split \(10000 images\)"):
        check_count("--images", 20_000, 10_000, "the mnist test split")
    with pytest.raises(ValueError, match="at most 5"):
        check_count("--images", 10, 10_000, "the mnist test split", start=9_995)
    with pytest.raises(ValueError, match="--start 10000"):
        check_count("--images", 1, 10_000, "the mnist test split", start=10_000)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="20000 exceeds the 10000 images of a test split"):
        at_most(10_000, "a test split")("20000")


def test_normalize_cli_sets_the_initial_potential(tiny_runs, capsys):
    """--v-init reaches the spec (with the reset) and its default file name; a value outside [0, 1) is one clear
    error and writes nothing."""
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "data", "--calib-images", "500"]
    argv += ["--runs", str(tiny_runs), "--reset", "subtract"]
    assert main([*argv, "--v-init", "0.5"]) == 0
    spec = load_spec(tiny_runs / "specs" / "mnist-mlp-data-vinit0.5.npz")
    assert (spec.v_init, spec.reset) == (0.5, "subtract")
    capsys.readouterr()
    assert main([*argv, "--v-init", "1", "--out", str(tiny_runs / "bad.npz")]) != 0
    err = capsys.readouterr().err
    assert "v_init must be a fraction of the threshold in [0, 1)" in err and len(err.strip().splitlines()) == 1
    assert not (tiny_runs / "bad.npz").exists()
