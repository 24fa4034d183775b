"""The validation command line refuses impossible values and mismatched specs in one line, before any work."""

from __future__ import annotations

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
