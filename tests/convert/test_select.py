"""Model selection: chosen on the held-out validation split, the test split read once for the winner only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert import datasets, select
from convert.select import select_and_train, split_train
from convert.train import TrainConfig

BASE = TrainConfig(dataset="mnist", model="mlp", epochs=1, batch_size=64, train_images=512, validation_images=500)
# lr 10 diverges: a candidate that must lose on validation accuracy
CANDIDATES = ({"lr": 10.0}, {"lr": 1e-3}, {"lr": 1e-3, "dropout": (0.0, 0.0)})


def test_the_validation_split_is_the_untrained_tail():
    tx, ty, vx, vy = split_train("mnist", None, BASE)
    train = datasets.load("mnist", "train")
    assert len(tx) == 512 and len(vx) == 500
    np.testing.assert_array_equal(ty.numpy(), train.labels[:512])
    np.testing.assert_array_equal(vy.numpy(), train.labels[-500:])
    with pytest.raises(ValueError, match="exceeds the 59500 training images left"):
        split_train("mnist", None, TrainConfig(train_images=59_600, validation_images=500))


@pytest.mark.slow
def test_selection_uses_validation_only_and_records_every_candidate(tmp_path, monkeypatch):
    real_load, real_fit = datasets.load, select.train_model
    events: list[str] = []
    fitted: list[float] = []

    def spy_load(dataset, split, *args, **kwargs):
        events.append(split)
        return real_load(dataset, split, *args, **kwargs)

    def spy_fit(config, *args, **kwargs):
        events.append("fit")
        fitted.append(config.lr)
        return real_fit(config, *args, **kwargs)

    monkeypatch.setattr(datasets, "load", spy_load)
    monkeypatch.setattr(select, "train_model", spy_fit)
    m = select_and_train(BASE, CANDIDATES, None, tmp_path, progress=False)
    assert events.count("test") == 1 and events[-1] == "test", "the test split is read once, after every fit"
    sel = m["selection"]
    scores = [c["validation_accuracy"] for c in sel["candidates"]]
    assert sel["chosen"] == int(np.argmax(scores)) != 0  # the diverging candidate loses
    assert [c["overrides"] for c in sel["candidates"]] == json.loads(json.dumps(list(CANDIDATES)))
    assert m["validation_accuracy"] == max(scores) and 0 < m["test_accuracy"] <= 1
    saved = json.loads((tmp_path / "models" / "mnist-mlp.json").read_text())
    assert saved["selection"]["chosen"] == sel["chosen"] and "git_commit" in saved

    # resumable and content-addressed: the same question trains nothing; a changed one only what is new
    fitted.clear()
    again = select_and_train(BASE, CANDIDATES, None, tmp_path, progress=False)
    assert fitted == [] and again["test_accuracy"] == m["test_accuracy"]
    more = select_and_train(BASE, (*CANDIDATES, {"lr": 3e-3}), None, tmp_path, progress=False)
    assert fitted == [3e-3] and len(more["selection"]["candidates"]) == 4
