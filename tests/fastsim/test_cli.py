"""The command line: ``python -m fastsim run`` writes a record, errors exit with a message; bench helpers."""

from __future__ import annotations

import numpy as np
import pytest

from convert import datasets
from convert.contract.io import save_spec
from convert.contract.records import SpikeRecord
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from fastsim.__main__ import main
from fastsim.bench import dense_flops, markdown
from fastsim.synthetic import random_spec
from tests.convert.test_io import MALFORMED, write_malformed
from tests.fastsim.specs import dyadic_mlp


@pytest.fixture(scope="module")
def fastsim_mnist_root():
    try:
        datasets.load("mnist", "test")
    except datasets.DatasetError as err:
        pytest.skip(f"MNIST is not prepared (run `make data`): {err}")
    return datasets.default_root()


def test_run_writes_record(tmp_path, fastsim_mnist_root, capsys) -> None:
    spec_path = tmp_path / "mlp.npz"
    save_spec(random_spec("mlp", seed=3), spec_path)
    out = tmp_path / "res" / "record.npz"
    argv = ["run", "--spec", str(spec_path), "--images", "6", "--steps", "12", "--seed", "5", "--out", str(out)]
    assert main([*argv, "--no-progress", "--root", str(fastsim_mnist_root)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "image-steps/s" in printed
    rec = SpikeRecord.load(out)
    assert rec.n_images == 6 and rec.steps == 12
    assert np.array_equal(rec.labels, datasets.load("mnist", "test").labels[:6])
    assert rec.meta["provenance"]["seed"] == 5 and rec.meta["dataset"] == "mnist"
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def test_run_membrane_readout_prints_its_accuracy(tmp_path, fastsim_mnist_root, capsys) -> None:
    import dataclasses

    from convert.contract.records import predict_potential

    spec_path = tmp_path / "mlp.npz"
    save_spec(dataclasses.replace(random_spec("mlp", seed=3), readout="membrane", encoding="current"), spec_path)
    out = tmp_path / "record.npz"
    argv = ["run", "--spec", str(spec_path), "--images", "6", "--steps", "12", "--out", str(out)]
    assert main([*argv, "--no-progress", "--root", str(fastsim_mnist_root)]) == 0
    rec = SpikeRecord.load(out)
    assert rec.readout == "membrane" and rec.output_potential.shape == (6, len(rec.checkpoints), 10)
    accuracy = np.mean(predict_potential(rec.output_potential[:, -1]) == rec.labels)
    assert f"accuracy {100 * accuracy:.2f} % (membrane readout" in capsys.readouterr().out


def test_run_errors_are_messages(tmp_path, fastsim_mnist_root, capsys) -> None:
    spec_path = tmp_path / "small.npz"
    save_spec(dyadic_mlp(np.random.default_rng(0)), spec_path)  # takes (1, 6, 6) inputs, not 28x28
    argv = ["run", "--spec", str(spec_path), "--images", "2", "--steps", "3", "--out", str(tmp_path / "r.npz")]
    assert main([*argv, "--root", str(fastsim_mnist_root), "--no-progress"]) == 2
    assert "input_shape" in capsys.readouterr().err
    argv[argv.index("3")] = "0"
    assert main([*argv, "--root", str(fastsim_mnist_root)]) == 2
    assert "steps" in capsys.readouterr().err
    assert main(["run", "--spec", str(tmp_path / "missing.npz"), "--steps", "3", "--out", "x.npz"]) == 2
    assert "no such spec file" in capsys.readouterr().err


def test_dense_flops_and_markdown() -> None:
    spec = random_spec("mlp", seed=0)
    assert dense_flops(spec) == 2 * (784 * 1200 + 1200 * 1200 + 1200 * 10)
    cnn = random_spec("cnn", seed=0)
    synapses = [24 * 24 * 12 * 25, 12 * 12 * 12 * 4, 8 * 8 * 64 * 12 * 25, 4 * 4 * 64 * 4, 1024 * 10]
    assert dense_flops(cnn) == 2 * sum(synapses)  # conv1, pool1, conv2, pool2, dense
    row = {
        "network": "mlp",
        "dtype": "float32",
        "batch_size": 8,
        "image_steps_per_s": 1234.5,
        "dense_flops_per_image_step": 4_785_600,
        "dense_gflops_equivalent": 5.9,
        "plain_loop_image_steps_per_s": 1000.0,
        "speedup_vs_plain_loop": 1.23,
        "speedup_vs_spikingjelly": None,
        "spike_density_per_layer": [0.05, 0.1],
        "images": 8,
        "steps": 10,
    }
    result = {"device": "cpu", "machine": {"cpu_count": 2}, "versions": {"torch": "x"}, "images_source": "s"}
    text = markdown({**result, "networks": "n", "rows": [row]})
    assert "| mlp | float32 | fp32 | torch | 8 | 1,234 |" in text and "1.23x" in text and "n/a" in text


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True])
def test_bench_rejects_bad_repeats(repeats) -> None:
    from fastsim.bench import run_benchmark

    with pytest.raises(ValueError, match="repeats must be a positive int"):
        run_benchmark("cpu", quick=True, repeats=repeats)


def test_bench_row_with_split_weights_reports_agreement() -> None:
    import torch

    from fastsim.bench import _row

    spec = dyadic_mlp(np.random.default_rng(3))
    images = np.random.default_rng(0).integers(0, 256, size=(6, *spec.input_shape), dtype=np.uint8)
    x = torch.as_tensor(images.reshape(6, -1) / 255.0)
    args = dict(steps=12, batch=None, compile=False, repeats=1)
    ref_row, ref = _row("m", spec, images, x, case=("float64", "fp32", "torch"), **args)
    row, _ = _row("m", spec, images, x, case=("float32", "tf32x2", "torch"), reference=ref, **args)
    assert ref_row["agreement_vs_float64"] is None and row["matmul"] == "tf32x2"
    assert row["agreement_vs_float64"] == {"neurons": 1.0, "predictions": 1.0}  # dyadic weights: exact sums
    assert "tf32x2" in markdown(
        {"device": "cpu", "machine": {}, "versions": {}, "images_source": "s", "networks": "n", "rows": [ref_row, row]}
    )


@pytest.mark.parametrize("field", ["n_images", "steps"])
def test_bench_rejects_bad_sizes(field) -> None:
    from fastsim.bench import run_benchmark

    with pytest.raises(ValueError, match=f"{field} must be a positive int"):
        run_benchmark("cpu", quick=True, **{field: 0})


# ------------------------------------------------------------------------------- bad inputs, one line each
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def _mnist_spec(rng, **kw) -> NetworkSpec:
    return NetworkSpec((1, 28, 28), (Flatten(), Dense(np.abs(rng.normal(size=(10, 784))) * 0.01)), **kw)


@pytest.mark.parametrize(
    "recorded, asked",
    [
        ({"provenance": {"dataset": "mnist"}}, "fashion"),
        ({"labels": datasets.CLASSES["fashion"]}, "mnist"),  # an old spec without provenance: its labels tell
    ],
)
def test_run_refuses_a_spec_of_another_dataset(tmp_path, fastsim_mnist_root, capsys, recorded, asked) -> None:
    spec_path = tmp_path / "spec.npz"
    save_spec(_mnist_spec(np.random.default_rng(0), **recorded), spec_path)
    out = tmp_path / "r.npz"
    argv = ["run", "--spec", str(spec_path), "--dataset", asked, "--steps", "3", "--out", str(out)]
    assert main([*argv, "--root", str(fastsim_mnist_root), "--no-progress"]) == 2
    err = _one_error_line(capsys)
    assert str(spec_path) in err and "was converted for dataset" in err and f"not '{asked}'" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "images, fragment",
    [
        ("20000", "--images 20000 exceeds the mnist test split (10000 images)"),
        ("0", "argument --images: must be a positive integer or `all`"),
        ("-5", "argument --images"),
    ],
)
def test_run_refuses_impossible_image_counts(tmp_path, fastsim_mnist_root, capsys, images, fragment) -> None:
    spec_path = tmp_path / "spec.npz"
    save_spec(_mnist_spec(np.random.default_rng(0), provenance={"dataset": "mnist"}), spec_path)
    out = tmp_path / "r.npz"
    argv = ["run", "--spec", str(spec_path), "--images", images, "--steps", "2", "--out", str(out)]
    assert main([*argv, "--root", str(fastsim_mnist_root), "--no-progress"]) == 2
    assert fragment in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_run_reports_a_malformed_spec_in_one_line(tmp_path, capsys, name) -> None:
    rng = np.random.default_rng(1234)
    spec = NetworkSpec(
        (1, 8, 8),
        (Conv2d(rng.normal(size=(3, 1, 3, 3))), AvgPool2d(2), Flatten(), Dense(rng.normal(size=(4, 27)))),
    )
    path, fragment = write_malformed(name, tmp_path, spec)
    out = tmp_path / "r.npz"
    assert main(["run", "--spec", str(path), "--steps", "3", "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert str(path) in err and fragment in err and "python -m convert normalize" in err
    assert not out.exists()


def test_run_warns_when_every_image_gets_one_class(tmp_path, fastsim_mnist_root, capsys) -> None:
    """A spec whose output never fires (θ = 10⁹, reset to zero): a warning line says so and what to try (reset by
    subtraction); the speed line names
    the kernel that ran (the default --kernel auto: events on a CPU). A working spec prints no warning."""
    import dataclasses

    spec = random_spec("mlp", seed=3)
    top = dataclasses.replace(spec.layers[-1], threshold=1e9)
    silent = dataclasses.replace(spec, layers=(*spec.layers[:-1], top), reset="zero")
    argv = ["run", "--images", "6", "--steps", "12", "--no-progress", "--root", str(fastsim_mnist_root)]
    for name, s in (("silent", silent), ("working", spec)):
        save_spec(s, tmp_path / f"{name}.npz")
        assert main([*argv, "--spec", str(tmp_path / f"{name}.npz"), "--out", str(tmp_path / f"{name}-r.npz")]) == 0
        printed = capsys.readouterr().out
        assert "kernel events" in printed
        assert SpikeRecord.load(tmp_path / f"{name}-r.npz").meta["kernel"] == "events"
        warned = "warning: every one of the 6 images got no decision (no output spike)" in printed
        assert warned == (name == "silent") and ("--reset subtract" in printed) == warned
