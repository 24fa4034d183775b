"""`validation publish`: the README's results block is regenerated from the results files, never retyped."""

from __future__ import annotations

import json

import pytest

from validation.paper.publish import END, START, publish


def _entry(row: str, acc: float) -> dict:
    return {
        "dataset": "mnist",
        "model": "mlp",
        "row": row,
        "label": row,
        "images": 10,
        "horizon_steps": 30,
        "accuracy_at_T_mean": acc,
        "accuracy_at_T_std": 0.0,
        "ci95_at_T": (acc - 0.1, acc + 0.05),
        "accuracy_mean": acc,
        "accuracy_std": 0.0,
        "accuracies": [acc],
        "ci95_first_seed": (acc - 0.1, acc + 0.05),
        "ann_test_accuracy": 0.9,
        "ann_accuracy_same_images": 0.9,
        "convergence": {"time_to_accuracy_ms": 12.0, "converged": True, "horizon_ms": 30.0},
        "replication": None,
    }


def _runs(tmp_path):
    runs = tmp_path / "runs"
    out = runs / "table2" / "n10-t30-float32"
    out.mkdir(parents=True)
    results = {"config": {"steps": 30, "n_images": 10, "seeds": [0]}, "entries": [_entry("data", 0.87)]}
    (out / "table2.json").write_text(json.dumps(results))
    (out / "table2.md").write_text("table")
    (runs / "REPORT.md").write_text("report")
    stages = [{"stage": "training + Table 1", "wall_s": 60.0}, {"stage": "Table 2", "wall_s": 120.0}]
    meta = {"stages": stages, "total_s": 180.0, "machine": {"cpu_count": 2}, "git_commit": "abc1234567"}
    (runs / "reproduce.json").write_text(json.dumps(meta))
    return runs


def test_publish_rewrites_only_the_results_block(tmp_path):
    runs = _runs(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold numbers 12.34\n{END}\noutro\n")
    written = publish(runs, tmp_path / "docs", readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{END}\noutro\n")
    assert "old numbers" not in text and "87.00" in text and "3.0 min" in text and "abc1234567" in text
    assert (tmp_path / "docs" / "REPORT.md").read_text() == "report" and readme in written


def test_publish_needs_the_markers(tmp_path):
    runs = _runs(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("no block here\n")
    with pytest.raises(ValueError, match="results:start"):
        publish(runs, tmp_path / "docs", readme)
    assert readme.read_text() == "no block here\n"


def test_commands_are_published_without_local_folders():
    from validation.paper.publish import _public

    local = "python -m validation reproduce --runs /some/where --images 2000 --slow-images 200 --horizon-images 500"
    assert _public(local) == "make reproduce-small"
    assert _public("python -m validation reproduce --root=/data") == "make reproduce"
    assert _public("python -m validation reproduce --root data --beyond") == "make reproduce-beyond"
    assert _public("python -m validation reproduce --images 500") == "python -m validation reproduce --images 500"


def test_publish_adds_the_beyond_table_and_the_diagnosis(tmp_path):
    """With `make reproduce-beyond`'s results, the block holds the deeper networks' table (with the commit that
    made it) and the diagnosis summary whose picture links point at the published copies, which are copied."""
    runs = _runs(tmp_path)
    entry = {
        "dataset": "fashion",
        "model": "vgg",
        "row": "data-subtract-half",
        "threshold": 1.0,
        "ann_accuracy_same_images": 0.9465,
        "accuracy_at_T_mean": 0.9312,
        "ci95_at_T": (0.92, 0.94),
        "vs_ann": {"p_value": 1e-3},
        "time_within_pp_ms": {"1.0": 120.0, "0.1": 240.0},
        "synops_per_image_at_T": 1.5e8,
        "ann_macs_per_image": 1.77e7,
    }
    config = {"eval": {"n_images": 2000, "steps": 300, "seeds": [0]}, "networks": [["fashion", "vgg"]]}
    beyond = {"config": config, "entries": [entry], "agreement": [], "git_commit": "fedcba9876543"}
    (runs / "beyond").mkdir()
    (runs / "beyond" / "beyond.json").write_text(json.dumps(beyond))
    (runs / "beyond" / "beyond.md").write_text("beyond")
    picture = "diagnose/fashion-vgg-data/diagnose.png"
    (runs / "diagnose" / "fashion-vgg-data").mkdir(parents=True)
    (runs / picture).write_bytes(b"png")
    (runs / "diagnose" / "fashion-vgg-data" / "diagnose.md").write_text("diagnosis")
    layer = {"slope": 0.76, "broken": None, "layer": 0}
    layers = [layer, {**layer, "layer": 1}, {**layer, "layer": 2, "slope": 0.6, "broken": "correlation"}]
    (runs / "diagnose" / "fashion-vgg-data" / "diagnose.json").write_text(json.dumps({"layers": layers}))
    meta = json.loads((runs / "reproduce.json").read_text())
    verdict = "spiking layer 2 (Conv2d) is the first that breaks"
    meta["diagnose"] = [
        {"network": "fashion-vgg-data", "snn_accuracy": 0.92, "first_broken": 2, "verdict": verdict, "picture": picture}
    ]
    (runs / "reproduce.json").write_text(json.dumps(meta))
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    docs = tmp_path / "docs" / "results"
    publish(runs, docs, readme)
    block = readme.read_text()
    assert "Beyond the paper's two networks (git commit `fedcba9876`):" in block
    assert "| fashion-vgg | data-subtract-half | 1 | 94.65 | 93.12 (92.00–94.00) | -1.53 |" in block
    # the summary of an older run (a verdict only) gets its headline from the network's diagnose.json
    assert f"| fashion-vgg-data | 92.00 | 2 | correlation | 0.76 | [per layer](docs/results/{picture}) |" in block
    assert "- correlation: the rates follow the ANN only loosely" in block
    assert "- slope below 0.8 in the first layer" in block
    assert "- silent:" not in block and verdict not in block
    assert (docs / picture).read_bytes() == b"png" and (docs / "beyond.md").read_text() == "beyond"


def test_publish_refuses_a_destination_that_is_a_link_and_writes_nothing(tmp_path, capsys):
    """`docs/results/table2.md` as a link to a file of one's own: publish wrote the table through the link, into
    that file, exit 0. Every destination is checked first: one line, the link and its file as they were, the
    README and the runs' REPORT.md untouched, nothing copied."""
    from validation.__main__ import main

    runs = _runs(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold numbers 12.34\n{END}\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "mine.md").write_text("my own notes")
    (docs / "table2.md").symlink_to(tmp_path / "mine.md")
    report = (runs / "REPORT.md").read_text()
    assert main(["publish", "--runs", str(runs), "--docs", str(docs), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{docs / 'table2.md'} exists and is a symbolic link" in err, err
    assert (tmp_path / "mine.md").read_text() == "my own notes" and (docs / "table2.md").is_symlink()
    assert [p.name for p in docs.iterdir()] == ["table2.md"]
    assert "old numbers 12.34" in readme.read_text() and (runs / "REPORT.md").read_text() == report
