"""The registry of normalization methods: one function and one entry add a method to every part of the project."""

from __future__ import annotations

import numpy as np
import pytest

from convert import methods, normalize
from convert.contract.spec import Dense, Flatten, NetworkSpec
from convert.pipeline import normalized_spec


def halved_threshold(spec: NetworkSpec, threshold: float = 1.0):
    """A toy method: the direct copy with half the requested threshold."""
    return normalize.baseline(spec, threshold / 2)


@pytest.fixture
def toy_method():
    method = methods.register(
        methods.Method("toy", halved_threshold, needs_stats=False, options=("threshold",), label="toy θ/2", color="C9")
    )
    yield method
    methods.unregister("toy")


def _spec() -> NetworkSpec:
    return NetworkSpec(input_shape=(1, 2, 2), layers=(Flatten(), Dense(np.full((3, 4), 0.5))))


def test_builtin_methods_and_errors():
    assert methods.names()[:4] == ("baseline", "model", "data", "robust")
    assert [m.needs_stats for m in methods.all_methods()][:4] == [False, False, True, True]
    with pytest.raises(ValueError, match="baseline, model, data, robust"):
        methods.get("mystery")
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.Method("data", normalize.data_based, needs_stats=True))
    with pytest.raises(ValueError, match="needs activation statistics"):
        normalized_spec(_spec(), "robust")
    assert methods.get("robust").title(percentile=99.5) == "robust p99.5"


def test_a_registered_method_reaches_every_part_of_the_project(toy_method, tmp_path, capsys):
    from convert.__main__ import main as convert_main
    from validation.grid.sweep import load_config
    from validation.paper import rows
    from validation.paper.table2_report import markdown

    spec, report = normalized_spec(_spec(), "toy", threshold=3.0, percentile=50.0)  # extra options are ignored
    assert spec.thresholds == [1.5] and report.method == "toy" and spec.provenance["method"] == "toy"

    # rows of Table 2 and lines of the figures: the toy method and, since it takes a threshold, a tuned row
    table = rows.rows()
    assert [r.name for r in table][-2:] == ["toy", "toy-tuned"]
    assert rows.color("toy") == "C9" and rows.color("toy-tuned") == rows.TUNED_COLOR
    entry = {
        "dataset": "mnist",
        "model": "mlp",
        "row": "toy",
        "label": table[-2].label(),
        "accuracy_at_T_mean": 0.5,
        "accuracy_at_T_std": 0.0,
        "ci95_at_T": (0.2, 0.8),
        "accuracy_mean": 0.5,
        "accuracy_std": 0.0,
        "ci95_first_seed": (0.2, 0.8),
        "images": 5,
        "replication": None,
        "ann_test_accuracy": 0.9,
    }
    md = markdown({"config": {"steps": 10, "n_images": 5, "seeds": [0]}, "entries": [entry]})
    assert "| toy θ/2 |" in md and "50.00 (20.0–80.0)" in md

    # the command line offers it (the run then stops at the missing checkpoint, not at the method's name)
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "toy", "--runs", str(tmp_path)]
    assert convert_main(argv) == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and "invalid choice" not in err

    # sweeps accept it; an unknown method is refused with the known ones
    cfg = tmp_path / "s.toml"
    cfg.write_text('[grid]\nmethod = ["toy", "data"]\n')
    assert load_config(cfg)["grid"]["method"] == ["toy", "data"]
    cfg.write_text('[grid]\nmethod = ["mystery"]\n')
    with pytest.raises(ValueError, match="toy"):
        load_config(cfg)


def test_the_toy_method_is_gone_after_unregistering():
    """Registering and unregistering within the test: it holds alone and in any order of the suite."""
    assert "toy" not in methods.names()
    methods.register(methods.Method("toy", halved_threshold, needs_stats=False, options=("threshold",)))
    try:
        assert methods.names()[-1] == "toy"
    finally:
        methods.unregister("toy")
    assert "toy" not in methods.names()
    with pytest.raises(ValueError, match="toy"):
        methods.get("toy")
