"""Table 1 from the metrics files: accuracies, the chosen setting and the cost of the selection."""

from __future__ import annotations

import json

import pytest

from convert.table1 import write_table1


def test_table1_reports_the_selection(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    metrics = {
        "train_accuracy": 0.995,
        "validation_accuracy": 0.9891,
        "test_accuracy": 0.9877,
        "epochs": 20,
        "train_wall_s": 190.0,
        "selection": {
            "candidates": [
                {"overrides": {"lr": 0.001, "dropout": [0.2, 0.5], "epochs": 20}},
                {"overrides": {"lr": 0.001, "dropout": [0.1, 0.3], "epochs": 20}},
            ],
            "chosen": 1,
            "selection_wall_s": 380.0,
        },
    }
    (models / "mnist-mlp.json").write_text(json.dumps(metrics))
    md = write_table1(tmp_path)
    assert "| mnist | mlp | 99.50 | 98.91 | 98.77 |" in md
    assert "lr 0.001, dropout [0.1, 0.3] (2) | 380 |" in md
    assert (tmp_path / "table1.csv").read_text().startswith("dataset,model,train,validation,test")


def test_table1_without_models_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="convert train"):
        write_table1(tmp_path)
