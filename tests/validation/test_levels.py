"""validation levels: QCFS's L chosen by the SNN's accuracy at T on the validation split."""

from __future__ import annotations

import json

import pytest

from convert.__main__ import main as convert_main
from validation.paper.levels import select_levels


@pytest.mark.slow
def test_each_level_is_fine_tuned_and_scored_by_its_snn_on_validation(tmp_path):
    relu = tmp_path / "relu"
    argv = ["train", "--dataset", "mnist", "--model", "mlp", "--epochs", "1", "--train-images", "512"]
    assert convert_main([*argv, "--runs", str(relu)]) == 0
    init = relu / "models" / "mnist-mlp.pt"
    result = select_levels("mnist", "mlp", (4, 2), 4, str(init), tmp_path, epochs=1, train_images=512)
    rows = result["candidates"]
    assert [r["levels"] for r in rows] == [2, 4]  # sorted, each once
    for r in rows:
        assert r["images"] == 5000 and 0 < r["snn_validation"] <= 1 and r["key"]
        lo, hi = r["snn_ci95"]
        assert lo <= r["snn_validation"] <= hi
    best = max(rows, key=lambda r: (r["snn_validation"], -r["levels"]))
    assert result["chosen"] == best["levels"] and "test set was not read" in result["criterion"]
    saved = json.loads((tmp_path / "levels" / "mnist-mlp-T4.json").read_text())
    assert saved["chosen"] == result["chosen"] and "git_commit" in saved and "init_weights_sha256" in saved["config"]
    # the candidates are cached by content: a rerun trains nothing and gives the same scores
    again = select_levels("mnist", "mlp", (2, 4), 4, str(init), tmp_path, epochs=1, train_images=512)
    assert [r["train_wall_s"] for r in again["candidates"]] == [r["train_wall_s"] for r in rows]
    assert [r["snn_validation"] for r in again["candidates"]] == [r["snn_validation"] for r in rows]
    with pytest.raises(ValueError, match="candidate L values >= 1"):
        select_levels("mnist", "mlp", (0,), 4, str(init), tmp_path)
