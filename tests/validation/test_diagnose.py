"""validation.harness.diagnose: the rate model against the SNN, per layer, and the first layer where the match
breaks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from convert.contract.spec import Dense, Flatten, NetworkSpec
from fastsim.simulate import simulate
from validation.harness.diagnose import diagnose, expected_rates, headline, markdown, plot


def _spec(scale1: float = 1.0, scale2: float = 1.0, reset: str = "subtract") -> NetworkSpec:
    """16 inputs → 12 → 4, positive weights: a subtract-reset network whose rates follow the ANN's."""
    rng = np.random.default_rng(3)
    w1 = rng.uniform(0, 0.12, (12, 16)) * scale1
    w2 = rng.uniform(0, 0.25, (4, 12)) * scale2
    return NetworkSpec((1, 4, 4), (Flatten(), Dense(w1), Dense(w2)), reset=reset)


def _run(spec: NetworkSpec, steps: int = 400):
    images = np.random.default_rng(4).integers(0, 256, (30, 1, 4, 4)).astype(np.uint8)
    rec = simulate(spec, images, steps=steps, seed=1, record_neurons=True, dtype="float64", labels=np.zeros(30))
    return diagnose(spec, images, rec)


def test_the_rate_model_is_the_ann_divided_by_the_thresholds() -> None:
    spec = _spec()
    images = np.full((2, 1, 4, 4), 255, dtype=np.uint8)  # x = 1: every input spikes every step
    halved = dataclasses.replace(spec, layers=(Flatten(), Dense(spec.layers[1].weight, threshold=2.0), spec.layers[2]))
    r, r2 = expected_rates(spec, images), expected_rates(halved, images)
    np.testing.assert_allclose(r[0], np.tile(spec.layers[1].weight.sum(1), (2, 1)))
    np.testing.assert_allclose(r2[0], r[0] / 2)
    np.testing.assert_allclose(r2[1], r[1] / 2)  # the layer below fires half as often


def test_the_expected_rates_are_the_ann_forward_of_every_kind() -> None:
    """diagnose's rates come from convert.ann's one forward pass: on the every-kind network (bias, max-pool
    gate, identity and 1x1-conv skip edges) with every θ = 1 and analog input, the rates are the ANN's
    activations exactly; with its own thresholds, each layer's are the ANN's with the layers below divided by
    their θ. Before, the skip currents were left out (the Fashion ResNet's first population with a skip was
    off by up to 0.83 spikes per step)."""
    import torch

    from convert.ann import activations, as_input, layer_forward
    from convert.contract.spec import is_spiking
    from tests.conformance.networks import current_input, network

    spec = network("Residual", "cascade", "subtract", encoding="current")
    unit = dataclasses.replace(
        spec,
        layers=tuple(dataclasses.replace(la, threshold=1.0) if is_spiking(la) else la for la in spec.layers),
    )
    images = current_input(spec, 6)
    acts, _ = activations(unit, as_input(unit, images))
    rates = expected_rates(unit, images)
    assert len(rates) == len(acts) == len(spec.spiking_indices)
    for r, a in zip(rates, acts, strict=True):
        np.testing.assert_array_equal(r, a.numpy())
    # the skip edges matter here: a forward without them gives other rates for the layers that receive one
    x, plain = as_input(unit, images), []
    with torch.inference_mode():
        for layer in unit.layers:
            x = layer_forward(layer, x)
            if is_spiking(layer):
                x = torch.relu(x)
                plain.append(x.reshape(len(x), -1).numpy())
    assert not np.allclose(plain[2], rates[2])
    # thresholds: r_l = ReLU(W r_(l-1) + b + S r_j) / θ_l, checked for the first layer and the last
    own = expected_rates(spec, images)
    first = spec.layers[0]
    np.testing.assert_allclose(own[0], acts[0].numpy() / first.threshold, rtol=1e-12)
    assert all((r >= 0).all() for r in own) and not np.allclose(own[-1], rates[-1])


def test_a_matching_network_is_ok_and_the_numbers_are_sane() -> None:
    result = _run(_spec())
    assert result["first_broken"] is None and "matches" in result["verdict"]
    for d in result["layers"]:
        assert d["correlation"] > 0.95 and 0.8 < d["slope"] < 1.2 and d["saturated"] == 0 and d["broken"] is None


def test_saturation_and_silence_are_named_at_the_first_layer_that_breaks() -> None:
    saturated = _run(_spec(scale1=12.0))  # layer 0 driven far above one spike per step
    assert saturated["first_broken"] == 0 and saturated["layers"][0]["broken"] == "saturated"
    assert "scale of this layer is too small" in saturated["verdict"]
    # silence: a record whose layer 1 never fired although the ANN drives it (a perfect IF neuron fires
    # ⌊T·I/θ⌋ times, so in a simulation silence comes from the input's noise, latency or the layers below)
    spec = _spec()
    images = np.random.default_rng(4).integers(0, 256, (30, 1, 4, 4)).astype(np.uint8)
    rec = simulate(spec, images, steps=200, seed=1, record_neurons=True, dtype="float64")
    c0, c1 = rec.neuron_counts
    silent = diagnose(spec, images, dataclasses.replace(rec, neuron_counts=(c0, np.zeros_like(c1))))
    assert silent["first_broken"] == 1 and silent["layers"][1]["broken"] == "silent"
    assert silent["layers"][1]["silent"] == 1.0 and "T too short" in silent["verdict"]
    # the summary line of each: first broken layer, its pattern, the first layer's slope
    assert headline(saturated) == {
        "first_broken": 0,
        "pattern": "saturated",
        "first_slope": saturated["layers"][0]["slope"],
    }
    assert headline(silent)["pattern"] == "silent" and headline(silent)["first_broken"] == 1


def test_a_zero_reset_loss_is_explained() -> None:
    result = _run(_spec(scale1=5.0, reset="zero"))
    assert result["layers"][0]["slope"] < 0.8 and "reset to zero discards the charge" in result["verdict"]


def test_outputs_and_bad_input(tmp_path) -> None:
    result = _run(_spec())
    table = markdown(result)
    assert table.count("\n| 0 |") == 1 and "| ok |" in table
    plot(result, tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".*"))
    spec = _spec()
    images = np.zeros((3, 1, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="record_neurons=True"):
        diagnose(spec, images, simulate(spec, images, steps=5))
    with pytest.raises(ValueError, match="2 were given"):
        diagnose(spec, images[:2], simulate(spec, images, steps=5, record_neurons=True))


def test_the_command_writes_the_table_the_plot_and_the_numbers(tmp_path, capsys) -> None:
    from convert import datasets
    from convert.contract.io import save_spec
    from validation.__main__ import main

    try:
        datasets.load("mnist", "test")
    except datasets.DatasetError as err:
        pytest.skip(f"MNIST is not prepared (run `make data`): {err}")
    rng = np.random.default_rng(0)
    spec = NetworkSpec(
        (1, 28, 28),
        (Flatten(), Dense(rng.uniform(0, 0.02, (20, 784))), Dense(rng.uniform(0, 0.2, (10, 20)))),
        labels=datasets.CLASSES["mnist"],
        provenance={"dataset": "mnist"},
    )
    path = save_spec(spec, tmp_path / "net.npz")
    out = tmp_path / "diag"
    assert main(["diagnose", "--spec", str(path), "--images", "20", "--steps", "50", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"diagnose.md", "diagnose.png", "diagnose.json"}
    assert "| 1 | Dense | 10 |" in (out / "diagnose.md").read_text()
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["diagnose", "--spec", str(path), "--images", "20000", "--steps", "5", "--out", str(bad)]) == 2
    assert "exceeds the mnist test split" in capsys.readouterr().err and not bad.exists()


def _mnist_spec(tmp_path, name: str, layers: tuple, **fields):
    from convert import datasets
    from convert.contract.io import save_spec

    try:
        datasets.load("mnist", "test")
    except datasets.DatasetError as err:
        pytest.skip(f"MNIST is not prepared (run `make data`): {err}")
    spec = NetworkSpec((1, 28, 28), layers, labels=datasets.CLASSES["mnist"], provenance={"dataset": "mnist"}, **fields)
    return save_spec(spec, tmp_path / name)


def _diagnose_cli(spec_path, out) -> list[str]:
    return ["diagnose", "--spec", str(spec_path), "--images", "10", "--steps", "20", "--out", str(out)]


def test_a_spec_for_padded_images_runs_with_pad_to_spec_and_is_one_clear_error_without(tmp_path, capsys) -> None:
    """A spec of 32x32 input (a torchvision model's) on 28x28 MNIST: one line naming --pad-to-spec, no output;
    with it, the images are zero-padded, centred, as the torchvision stage pads them."""
    from convert import datasets
    from convert.contract.io import save_spec
    from validation.__main__ import main
    from validation.commands.common import fitted

    _mnist_spec(tmp_path, "skip-unless-mnist.npz", (Flatten(), Dense(np.zeros((10, 784)))))
    rng = np.random.default_rng(1)
    layers = (Flatten(), Dense(rng.uniform(0, 0.02, (10, 1024))))
    spec = NetworkSpec((1, 32, 32), layers, labels=datasets.CLASSES["mnist"], provenance={"dataset": "mnist"})
    path = save_spec(spec, tmp_path / "wide.npz")
    out = tmp_path / "diag"
    capsys.readouterr()
    assert main(_diagnose_cli(path, out)) == 2
    err = capsys.readouterr().err
    assert "takes (1, 32, 32) images" in err and "--pad-to-spec" in err and not out.exists()
    assert main([*_diagnose_cli(path, out), "--pad-to-spec"]) == 0
    assert (out / "diagnose.md").exists()
    images = datasets.load("mnist", "test").images[:3]
    wide = fitted(spec, images, True, path)
    assert wide.shape == (3, 1, 32, 32) and np.array_equal(wide[:, 0, 2:30, 2:30], images.reshape(3, 28, 28))
    assert wide[:, :, :2].sum() == 0 and wide[:, :, :, 30:].sum() == 0


def test_a_membrane_readout_without_hidden_layers_is_one_clear_error(tmp_path, capsys) -> None:
    """Before: ZeroDivisionError traceback from the plot, after the simulation."""
    from validation.__main__ import main

    rng = np.random.default_rng(0)
    path = _mnist_spec(tmp_path, "one.npz", (Flatten(), Dense(rng.uniform(0, 0.02, (10, 784)))), readout="membrane")
    out = tmp_path / "diag"
    assert main(_diagnose_cli(path, out)) == 2
    err = capsys.readouterr().err
    assert "no spiking population to diagnose" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_silent_network_writes_valid_json_and_matches(tmp_path) -> None:
    """A network the ANN and the SNN both leave silent: its layers match (error 0) and diagnose.json has no
    NaN (JSON has none; before, ``NaN`` was written and strict readers refused the file)."""
    import json

    from validation.__main__ import main

    rng = np.random.default_rng(0)
    layers = (Flatten(), Dense(-rng.uniform(0, 0.02, (20, 784))), Dense(rng.uniform(0, 0.2, (10, 20))))
    path = _mnist_spec(tmp_path, "silent.npz", layers)
    out = tmp_path / "diag"
    assert main(_diagnose_cli(path, out)) == 0
    text = (out / "diagnose.json").read_text()
    record = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in diagnose.json"))
    assert record["first_broken"] is None and all(d["correlation"] is None for d in record["layers"])
    assert "matches" in record["verdict"]


def test_a_spec_name_that_is_not_utf8_leaves_all_three_files(tmp_path) -> None:
    """Before: diagnose.png and diagnose.json were written, then the Markdown page failed on the name's byte
    0xe9 (exit 2, two of three files left). Now the name is shown as ``\\xe9`` and all three are written."""
    import os

    from validation.__main__ import main

    rng = np.random.default_rng(0)
    layers = (Flatten(), Dense(rng.uniform(0, 0.02, (20, 784))), Dense(rng.uniform(0, 0.2, (10, 20))))
    good = _mnist_spec(tmp_path, "net.npz", layers)
    name = os.fsdecode(b"caf\xe9.npz")
    path = good.with_name(name)
    good.rename(path)
    out = tmp_path / "diag"
    assert main(_diagnose_cli(path, out)) == 0
    assert {p.name for p in out.iterdir()} == {"diagnose.md", "diagnose.png", "diagnose.json"}
    assert (out / "diagnose.md").read_text().startswith("# Diagnosis of caf\\xe9.npz")


def test_a_link_among_the_three_files_is_refused_before_anything_runs(tmp_path, capsys) -> None:
    """diagnose.md a symbolic link to the user's own file: refused before the simulation, the link and its
    target untouched, diagnose.png and diagnose.json not written."""
    from validation.__main__ import main

    rng = np.random.default_rng(0)
    layers = (Flatten(), Dense(rng.uniform(0, 0.02, (20, 784))), Dense(rng.uniform(0, 0.2, (10, 20))))
    path = _mnist_spec(tmp_path, "net.npz", layers)
    out = tmp_path / "diag"
    out.mkdir()
    mine = tmp_path / "notes.md"
    mine.write_text("mine")
    (out / "diagnose.md").symlink_to(mine)
    assert main(_diagnose_cli(path, out)) == 2
    err = capsys.readouterr().err
    assert "diagnose.md" in err and len(err.strip().splitlines()) == 1 and "fastsim" not in err
    assert sorted(p.name for p in out.iterdir()) == ["diagnose.md"] and (out / "diagnose.md").is_symlink()
    assert mine.read_text() == "mine"


def test_the_clip_floor_is_the_first_layers_exact_error_at_a_few_steps() -> None:
    """Analog input, cascade, reset by subtraction from f·θ: the first layer's counts are the clip-floor of its
    ANN rates (docs/qcfs.md), so its error equals the floor error and it does not depart, for a scalar start
    and for one start per neuron; a record whose second layer fires too often is named, with the shift's sign."""
    from validation.harness.diagnose import floor_rates

    rates = np.array([0.0, 0.06, 0.5, 0.93, 0.95, 2.0])
    np.testing.assert_array_equal(floor_rates(rates, 8, 0.5), [0, 0, 0.5, 0.875, 1, 1])
    np.testing.assert_array_equal(floor_rates(np.array([[0.3, 0.3]]), 4, np.array([0.0, 0.9])), [[0.25, 0.5]])
    base = dataclasses.replace(_spec(), encoding="current", schedule="cascade", v_init=0.5)
    per_neuron = dataclasses.replace(
        base, v_init_neurons=(np.linspace(0, 0.95, 12), np.full(4, 0.25)), readout="spikes"
    )
    images = np.random.default_rng(4).integers(0, 256, (30, 1, 4, 4)).astype(np.uint8)
    for spec in (base, per_neuron):
        rec = simulate(spec, images, steps=8, seed=1, record_neurons=True, dtype="float64", labels=np.zeros(30))
        result = diagnose(spec, images, rec)
        first = result["layers"][0]
        assert first["floor_error"] > 0  # T = 8 quantizes these rates
        assert first["error"] == pytest.approx(first["floor_error"], abs=1e-12) and not first["departs"]
        assert "T = 8" in result["verdict"]
        c0, c1 = rec.neuron_counts
        louder = diagnose(spec, images, dataclasses.replace(rec, neuron_counts=(c0, np.minimum(c1 + 3, 8))))
        assert louder["first_departs"] == 1 and louder["layers"][1]["shift"] > 0
        assert "spiking layer 1 (Dense) is the first that departs" in louder["verdict"]
        assert "more spikes than the ANN asks" in louder["verdict"] and "departs" in markdown(louder)
    long = _run(base, steps=200)  # beyond a few steps the verdict is the rate match alone
    assert long["first_departs"] is None and "beyond quantization" not in long["verdict"]


def test_saturation_is_intended_where_the_method_clips() -> None:
    """A calibrated or QCFS spec clips its largest activations on purpose (Method.clips): the same saturated
    layer that a data-based spec is told about is no fault there."""
    from convert import methods

    assert methods.get("calibrated-pc").clips and methods.get("qcfs").clips and not methods.get("data").clips
    data = _run(dataclasses.replace(_spec(scale1=2.0), provenance={"method": "data"}))
    clipping = _run(dataclasses.replace(_spec(scale1=2.0), provenance={"method": "calibrated"}))
    assert data["layers"][0]["broken"] == "saturated"
    assert clipping["layers"][0]["saturated"] == data["layers"][0]["saturated"] > 0.01
    assert clipping["layers"][0]["broken"] is None and clipping["layers"][0]["clipped"]
    # against min(ANN rate, 1): the clipped layer follows its target closely, where the raw rates do not
    assert clipping["layers"][0]["correlation"] > 0.99 > 0.9 > data["layers"][0]["correlation"]
