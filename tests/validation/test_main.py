"""The validation command line refuses impossible values and mismatched specs in one line, before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert import datasets
from convert.contract.io import save_spec
from convert.contract.spec import Dense, Flatten, NetworkSpec
from validation.__main__ import main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def mnist_spec(tmp_path):
    rng = np.random.default_rng(0)
    spec = NetworkSpec(
        (1, 28, 28),
        (Flatten(), Dense(np.abs(rng.normal(size=(10, 784))) * 0.01)),
        labels=datasets.CLASSES["mnist"],
        provenance={"dataset": "mnist"},
    )
    return save_spec(spec, tmp_path / "mnist-spec.npz")


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--dataset", "fashion"], "was converted for dataset 'mnist', not 'fashion'"),
        (["--images", "20000"], "--images 20000 exceeds the mnist test split (10000 images)"),
        (["--images", "5", "--poisson-images", "6"], "--poisson-images 6 exceeds --images 5"),
        (["--images", "0"], "argument --images: must be a positive integer"),
        (["--steps", "0"], "argument --steps"),
    ],
)
def test_agree_refuses(mnist_spec, tmp_path, capsys, extra, fragment):
    out = tmp_path / "agreement"
    argv = ["agree", "--spec", str(mnist_spec), "--engines", "fastsim:float64,fastsim:float32", "--out", str(out)]
    assert main([*argv, *extra]) == 2
    assert fragment in _one_error_line(capsys)
    assert not out.exists()


def test_a_spec_runs_on_its_own_dataset_by_default(tmp_path, capsys):
    """Without --dataset, diagnose reads the images of the dataset the spec was converted for (a Fashion-MNIST
    spec on Fashion-MNIST), where it used to take MNIST's and refuse the spec."""
    rng = np.random.default_rng(0)
    spec = NetworkSpec(
        (1, 28, 28),
        (Flatten(), Dense(np.abs(rng.normal(size=(10, 784))) * 0.01)),
        labels=datasets.CLASSES["fashion"],
        provenance={"dataset": "fashion"},
    )
    path = save_spec(spec, tmp_path / "fashion-spec.npz")
    out = tmp_path / "diag"
    assert main(["diagnose", "--spec", str(path), "--images", "4", "--steps", "5", "--out", str(out)]) == 0
    assert json.loads((out / "diagnose.json").read_text())["config"]["dataset"] == "fashion"


@pytest.mark.parametrize("command", ["table2", "figures"])
@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--images", "20000"], "argument --images: 20000 exceeds the 10000 images of a test split"),
        (["--images", "0"], "argument --images: must be a positive integer"),
        (["--steps", "0"], "argument --steps"),
        (["--seeds", "0", "-1"], "argument --seeds"),
    ],
)
def test_table2_and_figures_refuse_impossible_sizes(tmp_path, capsys, command, extra, fragment):
    assert main([command, "--runs", str(tmp_path), *extra]) == 2
    assert fragment in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--networks", "mnist-lenet"], "'mnist-lenet' is not a network: give dataset-model"),
        (["--networks", "cifar-vgg"], "'cifar-vgg' is not a network"),
        (["--out", "../elsewhere"], "give a folder name under the runs folder"),
        (["--thresholds", "0"], "argument --thresholds"),
        (["--rows", "data", "nope"], "unknown rows ['nope']"),
        (["--networks", "mnist-cnn"], "no checkpoint of mnist-cnn in"),
    ],
)
def test_beyond_refuses(tmp_path, capsys, extra, fragment):
    assert main(["beyond", "--runs", str(tmp_path), *extra]) == 2
    assert fragment in _one_error_line(capsys)
    assert not any(tmp_path.iterdir())


def _published(runs, *names: str):
    """``runs/models`` holding the published checkpoints of ``names`` (dataset-model) only."""
    import shutil

    from validation.paper.networks import PUBLISHED_MODELS

    (runs / "models").mkdir(parents=True)
    for name in names:
        for ext in ("pt", "json"):
            shutil.copyfile(PUBLISHED_MODELS / f"{name}.{ext}", runs / "models" / f"{name}.{ext}")
    return sorted(p.relative_to(runs) for p in runs.rglob("*"))


@pytest.mark.parametrize("command", ["table2", "figures"])
def test_table2_and_figures_refuse_a_network_without_a_checkpoint(tmp_path, capsys, command):
    """`validation table2` with mnist-mlp trained alone printed (and wrote) a table of that network only, exit 0:
    now one line names every missing checkpoint file and the command that trains it, and nothing is written."""
    before = _published(tmp_path, "mnist-mlp")
    assert main([command, "--runs", str(tmp_path), "--images", "10", "--steps", "10", "--seeds", "0"]) == 2
    err = _one_error_line(capsys)
    assert "no checkpoint of mnist-cnn, fashion-mlp, fashion-cnn (3 of the 4 networks asked for)" in err, err
    assert "fashion-cnn.pt" in err and "fashion-cnn.json" in err and "mnist-mlp.pt" not in err
    assert f"python -m convert train --dataset fashion --model cnn --runs {tmp_path}" in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no table written


def test_beyond_refuses_a_network_without_a_checkpoint(tmp_path, capsys):
    """`validation beyond --networks mnist-mlp fashion-mlp` with one of them trained left the other out, exit 0."""
    before = _published(tmp_path, "mnist-mlp")
    argv = ["beyond", "--runs", str(tmp_path), "--networks", "mnist-mlp", "fashion-mlp", "--images", "10"]
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert "no checkpoint of fashion-mlp (1 of the 2 networks asked for)" in err and "train it with" in err, err
    assert "python -m convert train --dataset fashion --model mlp" in err and "copy the published one" in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_existing_report_that_is_a_link_is_refused_before_the_simulations(mnist_spec, tmp_path, capsys):
    """Every file of a multi-file writer (agree: json, md, png) is checked before the first is written."""
    out = tmp_path / "agreement"
    out.mkdir()
    (tmp_path / "mine.md").write_text("keep")
    (out / "x.md").symlink_to(tmp_path / "mine.md")
    argv = ["agree", "--spec", str(mnist_spec), "--engines", "fastsim:float64,fastsim:float32", "--out", str(out)]
    assert main([*argv, "--name", "x", "--images", "2", "--steps", "5"]) == 2
    assert f"{out / 'x.md'} exists and is a symbolic link" in _one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["x.md"] and (tmp_path / "mine.md").read_text() == "keep"


def test_multi_file_writers_write_all_or_nothing(tmp_path):
    """A writer of several files refuses a link or a node at any of them before writing the first."""
    import os

    from convert.contract.provenance import OutputPathError
    from validation.harness.agreement import write_report
    from validation.paper.table2_report import write_outputs

    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(OutputPathError, match="x.png exists and is a FIFO"):
        write_report({"engines": ["a", "b"]}, None, tmp_path, "x", {})
    (tmp_path / "elsewhere.csv").write_text("keep")
    (tmp_path / "table2.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(OutputPathError, match="table2.csv exists and is a symbolic link"):
        write_outputs({"entries": []}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.csv", "table2.csv", "x.png"]
    assert (tmp_path / "elsewhere.csv").read_text() == "keep"
