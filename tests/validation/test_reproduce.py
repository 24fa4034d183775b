"""The main job's set-up: its expected wall time (validation/paper/estimate.py) and starting from given checkpoints."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from convert import models
from validation.paper import estimate
from validation.paper.networks import use_given_models
from validation.paper.reproduce import ReproduceConfig, print_estimate, stage_units
from validation.paper.table2 import PAIRS

REFERENCE = {
    "total_s": 1500.0,
    "machine": {"cpu_count": 2},
    "calibration": {"events_image_steps_per_s": 100_000.0, "train_images_per_s": 2_000.0},
    "stages": [
        {"key": "training", "stage": "training + Table 1", "wall_s": 600.0, "units": 60.0},
        {"key": "table2", "stage": "Table 2", "wall_s": 900.0, "units": 1e8},
    ],
}


def test_expected_seconds_scale_with_work_and_speed() -> None:
    same = {"events_image_steps_per_s": 100_000.0, "train_images_per_s": 2_000.0}
    assert estimate.expected_seconds({"training": 60.0, "table2": 1e8}, REFERENCE, same) == {
        "training": 600.0,
        "table2": 900.0,
    }
    slower = {"events_image_steps_per_s": 50_000.0, "train_images_per_s": 2_000.0}  # only the engine is slower
    got = estimate.expected_seconds({"training": 30.0, "table2": 1e8}, REFERENCE, slower)
    assert got == {"training": 300.0, "table2": 1800.0}
    assert estimate.expected_seconds({"training": 0.0, "table2": 1e8}, REFERENCE, same)["training"] == 0.0


def test_stage_units_follow_the_config(tmp_path) -> None:
    assert stage_units(ReproduceConfig())["training"] == 0.0  # the default starts from the published networks
    cfg = ReproduceConfig(models=None)
    units = stage_units(cfg)
    assert units["training"] > 0 and units["table2"] > 0
    smaller = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, n_images=5000))
    fast = units["table2"] - stage_units(smaller)["table2"]  # the fast rows' half of the image-steps
    slow_part = units["table2"] - 2 * fast
    assert fast > 0 and slow_part > 0  # model-based rows run on their own images and horizon
    assert stage_units(dataclasses.replace(cfg, models=tmp_path))["training"] == 0.0
    assert stage_units(dataclasses.replace(cfg, select=True))["training"] > units["training"]
    assert stage_units(dataclasses.replace(cfg, agreement_all=True))["agreement"] > units["agreement"]
    assert units["beyond"] == units["diagnose"] == 0.0  # off by default
    deeper = stage_units(dataclasses.replace(cfg, beyond_stages=True))
    assert deeper["beyond"] > 0 and deeper["diagnose"] > 0 and deeper["training"] > units["training"]


def test_the_published_networks_are_there_and_load() -> None:
    """The main job's default start: the six checkpoints in docs/results/models/ load as the project's
    networks and their metrics name the test accuracy Table 1 prints."""
    from convert.train import load_model
    from validation.paper.networks import PUBLISHED_MODELS, models_name

    assert ReproduceConfig().networks == PAIRS  # the default main job: the paper's four
    for ds, model in ReproduceConfig(beyond_stages=True).networks:  # and the deeper ones
        assert models_name(load_model(PUBLISHED_MODELS / f"{ds}-{model}.pt")) == model
        metrics = json.loads((PUBLISHED_MODELS / f"{ds}-{model}.json").read_text())
        assert metrics["dataset"] == ds and metrics["model"] == model and 0.85 < metrics["test_accuracy"] <= 1


def test_the_estimate_is_printed_against_a_published_run(tmp_path, capsys) -> None:
    reference = tmp_path / "reproduce.json"
    speed = print_estimate(ReproduceConfig(), reference)  # no published run: says so
    assert "no estimate" in capsys.readouterr().out
    assert speed["events_image_steps_per_s"] > 0 and speed["train_images_per_s"] > 0
    reference.write_text(json.dumps(REFERENCE))
    print_estimate(ReproduceConfig(), reference)
    out = capsys.readouterr().out
    assert "expected wall time on this machine" in out and "training" in out and "table2" in out


def _checkpoint(folder, ds: str, model: str) -> None:
    torch.manual_seed(0)
    net = models.build(model)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "state_dict": net.state_dict(), "metrics": {}}, folder / f"{ds}-{model}.pt")
    (folder / f"{ds}-{model}.json").write_text(json.dumps({"test_accuracy": 0.1}))


def test_given_models_are_checked_and_copied(tmp_path) -> None:
    given, runs = tmp_path / "given", tmp_path / "runs"
    for ds, model in PAIRS:
        _checkpoint(given, ds, model)
    use_given_models(given, runs)
    for ds, model in PAIRS:
        for suffix in (".pt", ".json"):
            name = f"{ds}-{model}{suffix}"
            assert (runs / "models" / name).read_bytes() == (given / name).read_bytes()
    (given / "fashion-cnn.json").unlink()
    with pytest.raises(ValueError, match="fashion-cnn.json"):
        use_given_models(given, tmp_path / "runs2")
    _checkpoint(given, "fashion", "cnn")
    (given / "fashion-cnn.pt").write_bytes((given / "mnist-mlp.pt").read_bytes())  # an MLP under a CNN's name
    with pytest.raises(ValueError, match="another architecture"):
        use_given_models(given, tmp_path / "runs3")


def test_training_is_estimated_from_the_calibration_when_the_published_run_trained_nothing() -> None:
    reference = {**REFERENCE, "stages": [{**REFERENCE["stages"][0], "units": 0.0}, REFERENCE["stages"][1]]}
    speed = {"events_image_steps_per_s": 100_000.0, "train_images_per_s": 5_500.0}
    got = estimate.expected_seconds({"training": 60.0, "table2": 1e8}, reference, speed)
    assert got["training"] == 60.0 * 55_000 / 5_500.0 and got["table2"] == 900.0


def test_the_main_job_is_one_list_of_named_stages_run_by_one_timed_loop(tmp_path, capsys) -> None:
    from validation.paper.reproduce import STAGES, Stage, run_stages

    cfg = ReproduceConfig()
    assert [s.key for s in STAGES] == list(stage_units(cfg))  # every stage has the units the estimate scales
    assert all(isinstance(s.name(cfg), str) and s.name(cfg) for s in STAGES)
    calls = []
    stub = (
        Stage("a", lambda c: "stage a", lambda c, r, w, d: calls.append(("a", dict(d))) or 1),
        Stage("b", lambda c: f"stage b of {c.eval.n_images}", lambda c, r, w, d: calls.append(("b", dict(d))) or 2),
    )
    done, log = run_stages(stub, cfg, None, tmp_path, {"a": 3.0, "b": 4.0})
    assert done == {"a": 1, "b": 2} and calls == [("a", {}), ("b", {"a": 1})]  # each sees the ones before it
    assert [(e["key"], e["stage"], e["units"]) for e in log] == [("a", "stage a", 3.0), ("b", "stage b of 10000", 4.0)]
    assert all(e["wall_s"] >= 0 for e in log) and "[reproduce] stage b of 10000" in capsys.readouterr().out
