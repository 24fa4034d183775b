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
