"""The README's "From a model in one call" example, run as written: the README cannot drift from the code."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## From a model in one call"


def example_code(text: str) -> str:
    """The first ```python block of the section."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    block = re.search(r"```python\n(.*?)```", text[start : end if end >= 0 else None], re.S)
    if block is None:
        raise AssertionError(f"README.md: no ```python block under {SECTION!r}")
    return block.group(1)


def test_the_example_is_found() -> None:
    code = example_code(README.read_text(encoding="utf-8"))
    assert "convert.to_snn(" in code and "simulate(" in code


def test_the_readme_example_runs_and_keeps_the_ann_accuracy(tmp_path, monkeypatch, capsys) -> None:
    """Executed in an empty folder (it writes my-net.npz there), with ConversionWarning as an error; the SNN
    after 100 steps keeps the ANN's accuracy within 2 pp, and the README quotes the printed numbers (within 2 pp:
    training on another CPU gives slightly other weights)."""
    from convert import datasets
    from convert.api import ConversionWarning

    try:
        datasets.load("mnist", "train")
    except datasets.DatasetError as err:
        pytest.fail(f"MNIST is needed for this test: run `make data` first ({err})")
    text = README.read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        exec(compile(example_code(text), "README.md", "exec"), {"__name__": "readme_example"})
    wall = time.perf_counter() - start
    out = capsys.readouterr().out
    assert (tmp_path / "my-net.npz").exists()
    found = re.search(r"ANN (\d+\.\d) %, SNN (\d+\.\d) % after 100 steps \((\w+)\)", out)
    assert found, out
    ann, snn = float(found.group(1)), float(found.group(2))
    assert ann > 85 and snn >= ann - 2, out
    # the README quotes this box's line; training on another CPU may move the numbers a little
    quoted = re.search(r"`ANN (\d+\.\d) %, SNN (\d+\.\d) % after 100 steps \((\w+)\)`", text)
    assert quoted, "the README no longer quotes the example's result"
    assert abs(float(quoted.group(1)) - ann) <= 2 and abs(float(quoted.group(2)) - snn) <= 2, (quoted.group(0), out)
    assert wall < 120, f"the example took {wall:.0f} s"
