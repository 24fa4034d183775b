"""validation torchvision: each family converted or refused with its reason, trained briefly (cached by
content), ANN vs SNN on the same test images, and a results file a rerun resumes from."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from validation.paper.torchvision_models import padded, recipe, train_key
from validation.paper.torchvision_table import VisionConfig, run_table


def test_images_are_padded_to_the_models_size_centred():
    images = np.arange(2 * 28 * 28, dtype=np.uint16).reshape(2, 28, 28) % 251 + 1
    out = padded(images.astype(np.uint8), 32)
    assert out.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(out[:, 0, 2:30, 2:30], images)
    assert out.sum() == images.astype(np.int64).sum()  # zeros around the image
    with pytest.raises(ValueError, match="cannot pad 28x28 images to 16x16"):
        padded(images.astype(np.uint8), 16)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown torchvision families \\['resnet9'\\]"):
        VisionConfig(models=("resnet9",))
    with pytest.raises(ValueError, match="must rise to steps=32"):
        VisionConfig(checkpoints=(16,))
    with pytest.raises(ValueError, match="agreement_device must be one of"):
        VisionConfig(agreement_device="cuda")


def test_the_training_key_follows_what_determines_the_weights(mnist_root):
    cfg = VisionConfig()
    assert train_key("resnet18", cfg) != train_key("resnet34", cfg)
    assert train_key("resnet18", cfg) != train_key("resnet18", VisionConfig(lr=2e-3))
    assert train_key("resnet18", cfg) == train_key("resnet18", VisionConfig(test_images=10))  # evaluation only
    assert recipe("alexnet", cfg).lr == 3e-4 and recipe("resnet18", cfg) == cfg


@pytest.mark.slow
def test_a_converted_and_a_refused_family_and_a_resumed_rerun(tmp_path, mnist_root):
    cfg = VisionConfig(
        models=("squeezenet1_1", "mobilenet_v2"),
        train_images=256,
        calib_images=256,
        test_images=60,
        steps=8,
        checkpoints=(4, 8),
        agreement_images=0,
    )
    result = run_table(cfg, mnist_root, tmp_path)
    squeeze, mobile = result["rows"]
    assert squeeze["converts"] and not mobile["converts"]
    assert "ReLU6" in mobile["reason"] and "parts with no spiking equivalent" in mobile["reason"]
    assert squeeze["images"] == 60 and squeeze["training"]["train_images"] == 256
    assert (squeeze["training"]["epochs"], squeeze["training"]["lr"]) == (3, 3e-4)  # its own recipe
    assert squeeze["provenance"]["merged_branches"]  # its Fire modules' cats, merged into one layer each
    for s in squeeze["snn"]:
        lo, hi = s["ci95"]
        assert lo <= s["snn_accuracy"] <= hi and s["vs_ann"]["n"] == 60
    assert [s["steps"] for s in squeeze["snn"]] == [4, 8]
    assert squeeze["agreement"] == {"run": False, "why": "not asked (agreement_images 0)"}
    saved = json.loads((tmp_path / "torchvision" / "table.json").read_text())
    assert saved["seed"] == 0 and "git_commit" in saved and saved["config"]["train_images"] == 256
    md = (tmp_path / "torchvision" / "table.md").read_text()
    assert "1 of 2 families convert" in md and "**mobilenet_v2**" in md
    # a rerun reads each finished model's file: same rows, the weights not trained again
    models = sorted((tmp_path / "torchvision" / "models").glob("*.pt"))
    stamp = [p.stat().st_mtime_ns for p in models]
    again = run_table(cfg, mnist_root, tmp_path)
    assert again["rows"] == json.loads(json.dumps(result["rows"]))  # as written (tuples become lists)
    assert [p.stat().st_mtime_ns for p in models] == stamp
    # a rerun that changes only the agreement settings keeps the row and reads the cached spec
    specs = sorted((tmp_path / "torchvision" / "specs").glob("squeezenet1_1-*.npz"))
    assert len(specs) == 1
    spec_stamp = specs[0].stat().st_mtime_ns
    tighter = dataclasses.replace(cfg, agreement_images=1, agreement_max_synapses=1000)
    third = run_table(tighter, mnist_root, tmp_path)
    row = third["rows"][0]
    assert row["agreement"]["run"] is False and "over this run's" in row["agreement"]["why"]
    assert {k: v for k, v in row.items() if k != "agreement"} == {
        k: v for k, v in again["rows"][0].items() if k != "agreement"
    }
    assert specs[0].stat().st_mtime_ns == spec_stamp
    # a row whose family the converter reads differently now (another direct copy) is stale: rerun
    path = tmp_path / "torchvision" / "squeezenet1_1.json"
    saved = json.loads(path.read_text())
    saved["row"]["direct_copy"], saved["row"]["images"] = "an older converter's", -1
    path.write_text(json.dumps(saved))
    fourth = run_table(tighter, mnist_root, tmp_path)
    assert fourth["rows"][0]["images"] == 60 and fourth["rows"][0]["direct_copy"] == row["direct_copy"]
    assert specs[0].stat().st_mtime_ns == spec_stamp  # the spec's key holds the direct copy: read, not redone


def test_the_benchmarks_find_the_one_converted_spec_or_say_to_run_the_stage(tmp_path):
    from convert.contract.io import save_spec
    from tests.conformance.networks import network
    from validation.paper.torchvision_table import converted_spec

    with pytest.raises(FileNotFoundError, match=r"found 0: run `python -m validation torchvision --models resnet18`"):
        converted_spec("resnet18", tmp_path)
    specs = tmp_path / "torchvision" / "specs"
    specs.mkdir(parents=True)
    spec = network("MaxPool", "cascade", "subtract")
    save_spec(spec, specs / "resnet18-0123456789abcdef.npz")
    save_spec(spec, specs / "resnet34-0123456789abcdef.npz")  # another model's is not read
    path, found = converted_spec("resnet18", tmp_path)
    assert path.name == "resnet18-0123456789abcdef.npz" and found == spec
    save_spec(spec, specs / "resnet18-fedcba9876543210.npz")
    with pytest.raises(FileNotFoundError, match="found 2"):
        converted_spec("resnet18", tmp_path)
