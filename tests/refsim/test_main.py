"""The command line ``python -m refsim run`` on a small synthetic dataset (runtime device)."""

from __future__ import annotations

import numpy as np
import pytest

from convert import datasets
from convert.contract.io import save_spec
from convert.contract.records import SpikeRecord
from convert.contract.spec import Dense, Flatten, NetworkSpec
from convert.datasets import raw_paths
from convert.encoding import poisson_spikes
from convert.rawfiles import write_idx
from refsim.__main__ import main
from refsim.simulate import simulate
from tests.refsim.conftest import dyadic


@pytest.fixture(scope="module")
def fake_fashion(tmp_path_factory):
    """A 'fashion' test split of 10 000 sparse random images under a temporary data root; their hashes stand in
    for the recorded ones while this module runs (every load checks them)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    images = np.zeros((10_000, 28, 28), dtype=np.uint8)
    images[:, 10:18, 10:18] = rng.integers(0, 256, size=(10_000, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 10, size=10_000).astype(np.uint8)
    img_path, lbl_path = raw_paths("fashion", "test", root)
    write_idx(img_path, images)
    write_idx(lbl_path, labels)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets.SHA256, ("fashion", "test", "images"), datasets.sha256_array(images))
        mp.setitem(datasets.SHA256, ("fashion", "test", "labels"), datasets.sha256_array(labels))
        yield root, images, labels


@pytest.fixture
def spec_file(tmp_path):
    rng = np.random.default_rng(1)
    weight = dyadic(rng, (10, 784), low=0, high=4)
    spec = NetworkSpec((1, 28, 28), (Flatten(), Dense(weight, threshold=1.0)), schedule="cascade")
    path = tmp_path / "spec.npz"
    save_spec(spec, path)
    return spec, path


def test_cli_run_with_supplied_spikes_writes_the_record(fake_fashion, spec_file, tmp_path, capsys):
    root, images, labels = fake_fashion
    spec, path = spec_file
    out = tmp_path / "result.npz"
    argv = ["run", "--spec", str(path), "--dataset", "fashion", "--root", str(root), "--images", "3", "--start", "4"]
    argv += ["--steps", "12", "--device", "runtime", "--input", "spikes", "--seed", "5", "--batch-size", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "image-steps/s" in printed
    record = SpikeRecord.load(out)
    np.testing.assert_array_equal(record.labels, labels[4:7])
    np.testing.assert_array_equal(record.image_indices, [4, 5, 6])
    spikes = poisson_spikes(images[4:7], np.arange(4, 7), 12, 5, spec.max_rate_hz, spec.dt_ms)
    direct = simulate(spec, spikes=spikes, steps=12)
    np.testing.assert_array_equal(record.output_counts, direct.output_counts)
    np.testing.assert_array_equal(record.synops, direct.synops)
    prov = record.meta["provenance"]
    assert prov["seed"] == 5 and prov["config"]["input"] == "spikes" and "versions" in prov
    assert record.meta["input_generator"] == "convert.encoding.poisson_spikes"


def test_cli_run_membrane_readout_prints_its_accuracy(fake_fashion, spec_file, tmp_path, capsys):
    """A membrane-readout spec: the record holds the potentials and the printed accuracy is read from them."""
    import dataclasses

    from convert.contract.records import predict_potential

    root, images, labels = fake_fashion
    spec, _ = spec_file
    path = tmp_path / "membrane.npz"
    save_spec(dataclasses.replace(spec, readout="membrane"), path)
    out = tmp_path / "result.npz"
    argv = ["run", "--spec", str(path), "--dataset", "fashion", "--root", str(root), "--images", "4"]
    assert main([*argv, "--steps", "10", "--device", "runtime", "--out", str(out)]) == 0
    record = SpikeRecord.load(out)
    assert record.readout == "membrane" and record.output_counts.sum() == 0
    accuracy = np.mean(predict_potential(record.output_potential[:, -1]) == labels[:4])
    assert f"accuracy {100 * accuracy:.2f} % (membrane readout" in capsys.readouterr().out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_cli_rejects_an_input_that_contradicts_the_spec(fake_fashion, spec_file, tmp_path, capsys):
    root, _, _ = fake_fashion
    _, path = spec_file
    argv = ["run", "--spec", str(path), "--dataset", "fashion", "--root", str(root), "--images", "1"]
    out = tmp_path / "x.npz"
    assert main([*argv, "--steps", "5", "--device", "runtime", "--input", "current", "--out", str(out)]) == 2
    assert "--input current does not fit" in _one_error_line(capsys)
    assert not out.exists()


def test_cli_refuses_a_spec_of_another_dataset(fake_fashion, spec_file, tmp_path, capsys):
    root, _, _ = fake_fashion
    spec, _ = spec_file
    path = tmp_path / "mnist-spec.npz"
    save_spec(NetworkSpec(spec.input_shape, spec.layers, provenance={"dataset": "mnist"}), path)
    out = tmp_path / "x.npz"
    argv = ["run", "--spec", str(path), "--dataset", "fashion", "--root", str(root), "--images", "1", "--steps", "5"]
    assert main([*argv, "--device", "runtime", "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert str(path) in err and "converted for dataset 'mnist', not 'fashion'" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "selection, fragment",
    [
        (["--images", "20000"], "--images 20000 exceeds the fashion test split (10000 images)"),
        (["--images", "10", "--start", "9995"], "ask for at most 5"),
        (["--start", "10000"], "--start 10000"),
        (["--start", "-1"], "argument --start"),
        (["--images", "0"], "argument --images"),
        (["--steps", "0"], "argument --steps"),
    ],
)
def test_cli_refuses_impossible_selections(fake_fashion, spec_file, tmp_path, capsys, selection, fragment):
    root, _, _ = fake_fashion
    _, path = spec_file
    out = tmp_path / "x.npz"
    argv = ["run", "--spec", str(path), "--dataset", "fashion", "--root", str(root), "--steps", "5", *selection]
    assert main([*argv, "--device", "runtime", "--out", str(out)]) == 2
    assert fragment in _one_error_line(capsys)
    assert not out.exists()
