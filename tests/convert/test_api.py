"""convert.to_snn: a model to a normalized, checked spec in one call; the one-class warnings; its command line."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import convert
from convert import datasets
from convert.api import ConversionWarning, to_snn
from convert.contract.io import load_spec

# the SNN of the small trained MLP below (reset by subtraction, data-based, 100 steps, 500 test images) keeps
# its ANN's accuracy within this many percentage points (measured: within 1)
ACCURACY_FLOOR_PP = 3.0


@pytest.fixture(scope="module")
def small_mlp(mnist_train) -> nn.Module:
    """784-64-10 with biases, three epochs on 5 000 training images (about a second)."""
    torch.manual_seed(0)
    x = torch.tensor(mnist_train.images[:5000], dtype=torch.float32).unsqueeze(1) / 255
    y = torch.tensor(mnist_train.labels[:5000], dtype=torch.long)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(3):
        for i in range(0, 5000, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 100]), y[i : i + 100]).backward()
            opt.step()
    return model.eval()


def test_the_snn_keeps_the_ann_accuracy(small_mlp, mnist_train, mnist_test) -> None:
    from fastsim import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        spec, report = convert.to_snn(small_mlp, calibration=mnist_train.images[:2000])
    assert spec.reset == "subtract" and spec.provenance["method"] == report.method == "data"
    assert len(report.divisors) == 2 and report.thresholds == (1.0, 1.0)
    check = spec.provenance["to_snn"]["check"]
    assert check == {"images": 256, "ann_classes": 10}
    x, y = mnist_test.images[:500], mnist_test.labels[:500]
    with torch.no_grad():
        ann = float((small_mlp(torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255).argmax(1).numpy() == y).mean())
    record = simulate(spec, x, steps=100, labels=y)
    assert record.meta["kernel"] == "events"  # kernel="auto" on a CPU
    assert ann > 0.8
    assert 100 * record.accuracy() >= 100 * ann - ACCURACY_FLOOR_PP, (record.accuracy(), ann)


def test_a_dataset_name_means_the_main_jobs_calibration_set(small_mlp, monkeypatch) -> None:
    """calibration="mnist": the first 20 000 training images outside the last 5 000, as `convert normalize`."""
    import convert.api
    from convert.pipeline import calibration_images

    seen = {}
    real = convert.api.collect_stats

    def collect(spec, images, **kw):
        seen["images"] = images
        return real(spec, images[:500], **kw)

    monkeypatch.setattr(convert.api, "collect_stats", collect)
    spec, _ = to_snn(small_mlp, calibration="mnist", method="robust", percentile=99.0)
    assert np.array_equal(seen["images"], calibration_images("mnist", None, 20_000, 5_000))
    assert spec.labels == tuple(datasets.CLASSES["mnist"]) and spec.provenance["dataset"] == "mnist"
    where = spec.provenance["to_snn"]["calibration"]
    assert where == {"images": 20_000, "dataset": "mnist", "split": "train", "first": 20_000, "holdout": 5_000}


def test_options_reach_the_method_and_the_spec(small_mlp, mnist_train) -> None:
    images = mnist_train.images[:300]
    spec, report = to_snn(
        small_mlp, calibration=images, method="robust", percentile=99.0, schedule="cascade", v_init=0.5, check=False
    )
    assert report.method == "robust" and report.options == {"percentile": 99.0}
    assert (spec.schedule, spec.v_init, spec.reset) == ("cascade", 0.5, "subtract")
    assert "check" not in spec.provenance["to_snn"]
    zero, report = to_snn(small_mlp, calibration=images, method="baseline", threshold=2.0, reset="zero")
    assert zero.reset == "zero" and report.thresholds == (2.0, 2.0)
    with pytest.raises(TypeError, match="unknown option.*percentil.*method options are .*percentile"):
        to_snn(small_mlp, calibration=images, percentil=99)
    with pytest.raises(ValueError, match="method must be one of"):
        to_snn(small_mlp, calibration=images, method="magic")


def test_bias_correction_gets_the_calibration_images(small_mlp, mnist_train) -> None:
    """``calibrated-bc`` takes the calibration images to_snn was given (its first BIAS_IMAGES) and, with
    ``activity=``, a simulator's measurement; without images it is refused before any work."""
    from convert.bias_correction import BIAS_IMAGES
    from fastsim.calibration import simulated_activity

    images = mnist_train.images[:300]
    spec, report = to_snn(small_mlp, calibration=images, method="calibrated-bc", steps=8, activity=simulated_activity)
    record = spec.provenance["bias_correction"]
    assert report.method == "calibrated-bc" and record["images"] == BIAS_IMAGES and record["steps"] == 8
    assert record["activity"] == "fastsim.calibration.simulated_activity"
    assert any(getattr(layer, "bias", None) is not None for layer in spec.layers)
    with pytest.raises(ValueError, match="needs calibration images"):
        to_snn(small_mlp, input_shape=(1, 28, 28), method="calibrated-bc", steps=8)


def test_an_exported_program_and_a_pt2_file_give_the_same_spec(small_mlp, mnist_train, tmp_path) -> None:
    images = mnist_train.images[:300]
    program = torch.export.export(small_mlp, (torch.zeros(1, 1, 28, 28),))
    path = tmp_path / "net.pt2"
    torch.export.save(program, path)
    (a, ra), (b, rb), (c, rc) = (to_snn(m, calibration=images, check=False) for m in (small_mlp, program, str(path)))
    assert ra.divisors == rb.divisors == rc.divisors and a.input_shape == b.input_shape == c.input_shape == (1, 28, 28)
    for x, y in ((a, b), (a, c)):
        for la, lb in zip(x.layers, y.layers, strict=True):
            if hasattr(la, "weight"):
                np.testing.assert_array_equal(la.weight, lb.weight)
    with pytest.raises(ValueError, match=r"input_shape=\(1, 32, 32\), but the exported program takes"):
        to_snn(program, input_shape=(1, 32, 32), calibration=images)


def test_normalize_cli_converts_a_pt2_archive(small_mlp, tmp_path, capsys) -> None:
    """`convert normalize --model F.pt2`: reset by subtraction, the default name runs/specs/<stem>-<method>.npz,
    the report and the check printed; --reset zero is honoured."""
    from convert.__main__ import main

    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(small_mlp, (torch.zeros(1, 1, 28, 28),)), path)
    argv = ["normalize", "--model", str(path), "--dataset", "mnist", "--method", "data", "--calib-images", "500"]
    assert main([*argv, "--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "runs" / "specs" / "tiny-data.npz"
    assert f"wrote {written}" in out and "divisor" in out and "check: the ANN gives 10 classes" in out
    spec = load_spec(written)
    assert spec.reset == "subtract" and spec.provenance["to_snn"]["calibration"]["images"] == 500
    assert main([*argv, "--reset", "zero", "--out", str(tmp_path / "zero.npz")]) == 0
    assert load_spec(tmp_path / "zero.npz").reset == "zero"
    assert main([*argv[:2], str(tmp_path / "net.onnx"), *argv[3:]]) == 2
    assert "or a torch.export archive (.pt2)" in capsys.readouterr().err


def test_normalize_cli_keeps_reset_to_zero_for_the_papers_models(monkeypatch, tmp_path) -> None:
    import convert.pipeline
    from convert.__main__ import main

    seen = {}

    def fake_copy(dataset, model, runs, **fields):
        seen.update(fields)
        raise OSError("stop here")

    monkeypatch.setattr(convert.pipeline, "copy_spec", fake_copy)
    assert (
        main(["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "model", "--runs", str(tmp_path)]) == 2
    )
    assert seen["reset"] == "zero"


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_a_network_that_gives_one_class_is_warned_about_where_it_runs(small_mlp, mnist_train, reset) -> None:
    """Degenerate on purpose: thresholds of 100 with output 3's bias raised to 2 (the ANN still gives several
    classes; in the SNN that constant current reaches θ in 50 steps while the hidden layer hardly fires): class 3
    for every image. fastsim.simulate warns with the remedy for the spec's reset; so does `fastsim run`."""
    from convert.contract.records import OneClassWarning
    from fastsim import simulate

    model = copy.deepcopy(small_mlp)
    with torch.no_grad():
        model[3].bias[3] = 2.0
    images, labels = mnist_train.images[:200], mnist_train.labels[:200]
    spec, _ = to_snn(model, calibration=images, method="baseline", threshold=100.0, reset=reset)
    advice = "convert it with reset by subtraction" if reset == "zero" else "try another normalization"
    with pytest.warns(OneClassWarning, match=f"every one of the 20 images got class 3.*{advice}"):
        simulate(spec, images[:20], steps=100, labels=labels[:20])
    silent, _ = to_snn(small_mlp, calibration=images, method="baseline", threshold=1e6, reset=reset)
    with pytest.warns(OneClassWarning, match="got no decision \\(no output spike\\)"):
        simulate(silent, images[:20], steps=100, labels=labels[:20])
    with warnings.catch_warnings():  # too few images, or labels of one class: no evidence, no warning
        warnings.simplefilter("error", OneClassWarning)
        simulate(spec, images[:9], steps=100, labels=labels[:9])
        simulate(spec, images[:20], steps=100, labels=np.zeros(20, dtype=np.int64))
        simulate(spec, images[:20], steps=100)


def test_an_ann_that_gives_one_class_is_warned_about(small_mlp, mnist_train) -> None:
    model = copy.deepcopy(small_mlp)
    with torch.no_grad():
        model[3].weight.zero_()
        model[3].bias.copy_(torch.arange(10.0))
    with pytest.warns(ConversionWarning, match="the ANN itself predicts class 9 for every one"):
        to_snn(model, calibration=mnist_train.images[:100], method="model")


def test_bad_inputs_are_clear_value_errors(small_mlp, mnist_train) -> None:
    images = mnist_train.images[:50]
    nan = images.astype(np.float64) / 255
    nan[3, 10, 10] = np.nan
    cases = [
        (dict(calibration=nan), r"1 pixel values are NaN or infinite \(in 1 of 50 images\)"),
        (dict(calibration=images[:0]), "expected a non-empty batch of images"),
        (dict(calibration=images * 1.0), r"must lie in \[0, 1\].*divide uint8 images by 255"),
        (dict(calibration=images, input_shape=(1, 32, 32)), r"(cannot|does not) run on .*\(1, 32, 32\)"),
        (dict(calibration=images.reshape(50, -1)[:, :700]), r"\(700,\).*taken from the calibration images"),
        (dict(calibration=images[:, :20, :20], input_shape=(1, 28, 28)), r"one image has shape \(20, 20\)"),
        (dict(calibration=None), "method 'data' needs calibration images"),
        (dict(calibration="cifar"), "a dataset name must be one of mnist, fashion"),
        (dict(calibration=images, reset="none"), "reset must be one of subtract, zero"),
        (dict(calibration="mnist", dataset="fashion"), "the labels are the dataset's"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            to_snn(small_mlp, **kwargs)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        to_snn(np.zeros(3), calibration=images)
