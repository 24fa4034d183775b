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


def test_normalize_shows_the_statistics_bar(tiny_runs, capsys):
    """The statistics (16-90 s on the main job's calibration set) show a bar of images on stderr; stdout keeps
    the command's own lines."""
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "data", "--calib-images", "700"]
    assert main([*argv, "--runs", str(tiny_runs), "--out", str(tiny_runs / "specs" / "bar.npz")]) == 0
    out, err = capsys.readouterr()
    assert "activation stats" in err and "700/700" in err
    assert "activation stats" not in out and "divisor" in out


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


def test_normalize_cli_calibrates_for_a_target_number_of_steps(tiny_runs, capsys):
    """--method calibrated --steps T: λ per layer chosen for T, reset by subtraction and θ/2 start, the default
    name says T; without --steps it is one clear error and writes nothing."""
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "calibrated", "--calib-images", "500"]
    argv += ["--runs", str(tiny_runs)]
    assert main([*argv, "--steps", "8"]) == 0
    spec = load_spec(tiny_runs / "specs" / "mnist-mlp-calibrated-T8.npz")
    assert (spec.v_init, spec.reset, spec.provenance["calibrated"]["steps"]) == (0.5, "subtract", 8)
    capsys.readouterr()
    assert main([*argv, "--out", str(tiny_runs / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "--method calibrated needs --steps T" in err and len(err.strip().splitlines()) == 1
    assert not (tiny_runs / "bad.npz").exists()


@pytest.mark.parametrize("method", ["calibrated-channel", "calibrated-bc"])
def test_normalize_cli_passes_the_calibration_images_to_the_methods_that_need_them(tiny_runs, capsys, method):
    """The per-channel and bias-corrected calibrations read the calibration images themselves (the first
    ``--calib-images``): the spec records how many, and without --steps the method is one clear error."""
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", method, "--calib-images", "300"]
    argv += ["--runs", str(tiny_runs)]
    assert main([*argv, "--steps", "4"]) == 0
    spec = load_spec(tiny_runs / "specs" / f"mnist-mlp-{method}-T4.npz")
    key = "channel_thresholds" if method == "calibrated-channel" else "bias_correction"
    assert spec.provenance[key]["steps"] == 4 and spec.provenance[key]["images"] == min(
        300, 256 if "bc" in method else 1024
    )
    capsys.readouterr()
    assert main(argv) == 2
    assert f"--method {method} needs --steps T" in capsys.readouterr().err


# ------------------------------------------------------------------------------- faulty model files
def _model_file(kind: str, tmp_path):
    """A model file a user might pass to `convert extract` or `convert export-nir`, broken in one way."""
    import h5py
    import torch
    from torch import nn

    def export(model, shape, name):
        path = tmp_path / name
        torch.export.save(torch.export.export(model, (torch.zeros(2, *shape),)), path)
        return path

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10)).eval()
    path = tmp_path / "model.pt2"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        good = export(mlp, (1, 28, 28), "good.pt2").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif kind == "pickle":
        torch.save(mlp.state_dict(), path)
    elif kind in ("train-mode", "no-running-stats"):
        bn = nn.BatchNorm1d(8, track_running_stats=kind == "train-mode")
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), bn, nn.ReLU(), nn.Linear(8, 10))
        path = export(model.train() if kind == "train-mode" else model.eval(), (1, 28, 28), "bn.pt2")
    elif kind == "3x32x32":
        model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 30 * 30, 10)).eval()
        path = export(model, (3, 32, 32), "cifar.pt2")
    elif kind == "hdf5":
        path = tmp_path / "graph.nir"
        with h5py.File(path, "w") as f:
            f["node"] = [1, 2, 3]
    return path


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("empty", "model.pt2: not a torch.export archive (an empty file); write one with torch.export.save("),
        ("truncated", "model.pt2: not a torch.export archive (not a zip archive: truncated, damaged"),
        ("pickle", "model.pt2: not a torch.export archive (a torch.save file (a pickled model or state dict)"),
        ("train-mode", "call model.eval() before torch.export.export"),
        ("no-running-stats", "track_running_stats=False: even in eval mode it normalizes each batch by"),
        ("3x32x32", "the model takes 3×32×32 inputs; mnist images are 1×28×28"),
    ],
)
def test_extract_refuses_a_faulty_model_file_in_one_line(kind, fragment, tmp_path, capsys):
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    path, out = _model_file(kind, tmp_path), tmp_path / "out.npz"
    capsys.readouterr()
    for name in ("torch", "torch.export"):  # the loggers whose handlers print torch's tracebacks to stderr
        logging.getLogger(name).addHandler(handler)
    try:
        assert main(["extract", "--model", str(path), "--dataset", "mnist", "--out", str(out)]) == 2
    finally:
        for name in ("torch", "torch.export"):
            logging.getLogger(name).removeHandler(handler)
    err = _one_error_line(capsys)
    assert fragment in err and "sums two tensors" not in err and "convert in eval mode" not in err
    assert records == []  # torch logged nothing (its handler would have printed a traceback)
    assert not out.exists()


def test_extract_of_a_flat_mlp_runs_in_fastsim(tmp_path, capsys):
    """A model taking flattened images, input (784,), extracts for mnist and runs in fastsim on 28×28 images."""
    import torch
    from torch import nn

    from fastsim.__main__ import main as fastsim_main

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    path, spec, record = tmp_path / "flat.pt2", tmp_path / "flat.npz", tmp_path / "record.npz"
    torch.export.save(torch.export.export(model, (torch.zeros(2, 784),)), path)
    assert main(["extract", "--model", str(path), "--dataset", "mnist", "--out", str(spec)]) == 0
    assert load_spec(spec).input_shape == (784,)
    argv = ["run", "--spec", str(spec), "--dataset", "mnist", "--images", "20", "--steps", "20"]
    argv += ["--kernel", "torch", "--compile", "off", "--no-progress", "--out", str(record)]
    assert fastsim_main(argv) == 0, capsys.readouterr().err
    assert record.exists() and "20 images x 20 steps" in capsys.readouterr().out


def test_a_nir_graph_given_as_a_spec_is_named(tmp_path, capsys):
    """export-nir --spec of an HDF5 file (a NIR graph): one line naming it and import-nir, not numpy's
    "pickled (object) data" advice."""
    out = tmp_path / "x.nir"
    assert main(["export-nir", "--spec", str(_model_file("hdf5", tmp_path)), "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert "an HDF5 file, not an .npz archive; a NIR graph is read with python -m convert import-nir" in err
    assert "pickled" not in err and not out.exists()


def test_an_empty_or_truncated_checkpoint_is_named(tmp_path, capsys):
    """normalize on a damaged checkpoint: one line saying what the file is, without torch's miniz advice."""
    models = tmp_path / "models"
    models.mkdir()
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "baseline", "--runs", str(tmp_path)]
    (models / "mnist-mlp.pt").write_bytes(b"")
    assert main(argv) == 2
    assert "mnist-mlp.pt: not a checkpoint written by `python -m convert train`; retrain (an empty file)" in (
        _one_error_line(capsys)
    )
    (models / "mnist-mlp.pt").write_bytes(b"PK\x03\x04" + bytes(60))
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert "PytorchStreamReader failed" in err and "internal miniz error" not in err
    assert not (tmp_path / "specs").exists()


# ------------------------------------------------------------------------------- seeds and outputs
SEED_CLIS = [
    ("convert", ["train", "--dataset", "mnist", "--model", "mlp", "--runs", "{tmp}", "--seed", "{seed}"]),
    ("fastsim", ["run", "--spec", "{tmp}/s.npz", "--steps", "5", "--out", "{tmp}/r.npz", "--seed", "{seed}"]),
    ("refsim", ["run", "--spec", "{tmp}/s.npz", "--steps", "5", "--out", "{tmp}/r.npz", "--seed", "{seed}"]),
    ("validation", ["agree", "--spec", "{tmp}/s.npz", "--out", "{tmp}/a", "--seed", "{seed}"]),
    ("validation", ["diagnose", "--spec", "{tmp}/s.npz", "--out", "{tmp}/d", "--seed", "{seed}"]),
    ("validation", ["interop", "--docs", "{tmp}", "--seed", "{seed}"]),
    ("validation", ["table2", "--runs", "{tmp}", "--seeds", "0", "{seed}"]),
    ("validation", ["figures", "--runs", "{tmp}", "--seeds", "{seed}"]),
    ("validation", ["seeds", "--runs", "{tmp}", "--seeds", "0", "{seed}"]),
]


@pytest.mark.parametrize("seed", [2**64, 2**63, 2**32, -1])
@pytest.mark.parametrize("module, argv", SEED_CLIS, ids=[f"{m}-{a[0]}" for m, a in SEED_CLIS])
def test_every_seed_argument_is_bounded_at_parse_time(module, argv, seed, tmp_path, capsys):
    """`validation seeds --seeds 0 2**64` failed after seed 0's work (torch: `Overflow when unpacking long long`);
    every seed feeds a 32-bit generator somewhere (the input hash, Brian2's numpy one), so every seed argument
    takes [0, 2^32) and refuses the rest before anything runs."""
    import importlib

    main_ = importlib.import_module(f"{module}.__main__").main
    assert main_([a.format(tmp=tmp_path, seed=seed) for a in argv]) == 2
    err = _one_error_line(capsys)
    assert "must be a seed from 0 to 4294967295 (2^32 - 1)" in err and str(seed) in err, err
    assert not any(tmp_path.iterdir())  # refused at parse time: nothing trained, simulated or written


def test_seed_types_accept_the_whole_range():
    import argparse

    from convert.cli import SEED_LIMIT, check_seed, seed_int

    assert seed_int("0") == 0 and seed_int(str(SEED_LIMIT - 1)) == 2**32 - 1
    for bad in ("1.5", "x", str(SEED_LIMIT)):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_int(bad)
    assert check_seed(7, "grid.seed") == 7
    for bad in (2**32, -1, 1.5, True, "3", None):
        with pytest.raises(ValueError, match="grid.seed must be an integer from 0 to 4294967295"):
            check_seed(bad, "grid.seed")


def test_worker_counts_are_bounded_by_the_cores():
    import argparse

    from convert.cli import usable_cores, worker_count

    cores = usable_cores()
    assert worker_count("0") == 0 and worker_count(str(cores)) == cores
    for bad in (str(cores + 1), "999", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_count(bad)


OUT_CLIS = [
    ("fastsim", ["run", "--spec", "{tmp}/s.npz", "--steps", "5", "--out", "{node}"]),
    ("refsim", ["run", "--spec", "{tmp}/s.npz", "--steps", "5", "--out", "{node}"]),
    ("convert", ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "data", "--out", "{node}"]),
    ("convert", ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "data", "--nir", "{node}"]),
    ("convert", ["export-nir", "--spec", "{tmp}/s.npz", "--out", "{node}"]),
    ("convert", ["extract", "--model", "{tmp}/m.pt", "--out", "{node}"]),
    ("convert", ["import-nir", "--nir", "{tmp}/g.nir", "--out", "{node}"]),
]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "character-device"])
@pytest.mark.parametrize("module, argv", OUT_CLIS, ids=[f"{m}-{a[0]}-{a[-2]}" for m, a in OUT_CLIS])
def test_out_onto_a_link_or_a_node_is_refused(module, argv, kind, tmp_path, capsys):
    """`--out /dev/null` replaced the device node with a regular file, `--out link.npz` the link (not its
    target): refused at parse time in one line, the node and the link left as they were."""
    import importlib
    import os
    import stat

    node = tmp_path / "node"
    if kind == "symlink":
        (tmp_path / "target.npz").write_text("keep")
        node.symlink_to(tmp_path / "target.npz")
    elif kind == "fifo":
        os.mkfifo(node)
    else:
        try:
            os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers, in the test's folder
        except OSError as err:
            pytest.skip(f"cannot make a device node here: {err}")
    before = sorted((p.name, os.lstat(p).st_mode, os.lstat(p).st_ino) for p in tmp_path.iterdir())
    main_ = importlib.import_module(f"{module}.__main__").main
    assert main_([a.format(tmp=tmp_path, node=node) for a in argv]) == 2
    err = _one_error_line(capsys)
    assert f"{node} exists and is a" in err and "not a regular file" in err, err
    assert sorted((p.name, os.lstat(p).st_mode, os.lstat(p).st_ino) for p in tmp_path.iterdir()) == before
