"""The sweep results file: locked appends from many processes, torn tails, malformed lines, duplicate keys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from validation.grid.results_log import TornLineWarning, append_row, first_by_key, lock_path, read_results

REPO = Path(__file__).resolve().parents[2]

_WRITER = """
import sys
from validation.grid.results_log import append_row
path, writer, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    append_row(path, {"key": f"{writer}-{i}", "cell": {"writer": writer, "i": i}, "result": {"pad": "x" * 3000}})
"""


def _row(key: str, **result) -> dict:
    return {"key": key, "cell": {"name": key}, "result": result}


def _write(path: Path, *rows: dict, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_concurrent_appends_lose_nothing_and_readers_never_see_a_partial_line(tmp_path):
    path = tmp_path / "results.jsonl"
    writers, n = 4, 60
    cmd = [sys.executable, "-c", _WRITER, str(path)]
    procs = [subprocess.Popen([*cmd, f"w{w}", str(n)], cwd=REPO) for w in range(writers)]
    reads = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn line seen by a reader would raise here
        while any(p.poll() is None for p in procs):
            read_results(path)
            reads += 1
            time.sleep(0.005)
    assert [p.wait() for p in procs] == [0] * writers
    rows = read_results(path)
    assert sorted(r["key"] for r in rows) == sorted(f"w{w}-{i}" for w in range(writers) for i in range(n))
    assert path.read_bytes().count(b"\n") == writers * n
    assert lock_path(path).exists() and reads > 0


def test_torn_tail_is_dropped_and_truncated_by_the_next_append(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, _row("a"), _row("b"), tail='{"key": "c", "ce')
    with pytest.warns(TornLineWarning, match=r"r\.jsonl: line 3 is a torn last line.*dropped"):
        assert [r["key"] for r in read_results(path)] == ["a", "b"]
    with pytest.warns(TornLineWarning, match=r"line 3 .*truncated it \(16 bytes\)"):
        append_row(path, _row("c"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["key"] for r in read_results(path)] == ["a", "b", "c"]
    assert path.read_text().endswith("}\n") and path.read_text().count("\n") == 3


def test_unterminated_valid_json_and_garbage_last_lines_are_torn(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, _row("a"), tail=json.dumps(_row("b")))  # complete JSON, but its newline never written
    with pytest.warns(TornLineWarning, match="line 2"):
        assert [r["key"] for r in read_results(path)] == ["a"]
    _write(path, _row("a"), tail="\0\0\0\0\n")  # a crash can leave zeros
    with pytest.warns(TornLineWarning, match="line 2"):
        assert [r["key"] for r in read_results(path)] == ["a"]
    with pytest.warns(TornLineWarning, match="truncated"):
        append_row(path, _row("b"))
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["a", "b"]


def test_a_torn_tail_longer_than_a_read_block_is_truncated_whole(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, _row("a"), tail=json.dumps(_row("big", pad="y" * 200_000))[:150_000])
    with pytest.warns(TornLineWarning, match="line 2"):
        append_row(path, _row("b"))
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["a", "b"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{}", "line 2 is not a results row"),
        ('{"key": 1, "cell": {}, "result": {}}', "line 2 is not a results row"),
        ("[1, 2]", "line 2 is not a results row"),
        ('{"key": "x", "cel', "line 2 is not valid JSON"),
    ],
)
def test_malformed_middle_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "r.jsonl"
    _write(path, _row("a"), tail=f"{bad}\n\n{json.dumps(_row('b'))}\n")
    with pytest.raises(ValueError, match=rf"r\.jsonl: {message}.*delete or repair that line"):
        read_results(path)


def test_a_valid_json_last_line_that_is_not_a_row_is_an_error_not_a_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path, _row("a"), tail="{}\n")
    with pytest.raises(ValueError, match="line 2 is not a results row"):
        read_results(path)


def test_blank_lines_are_skipped_and_the_first_row_of_a_key_wins(tmp_path):
    path = tmp_path / "r.jsonl"
    assert read_results(path) == []
    _write(path, _row("a", v=1), _row("b", v=2), tail="\n" + json.dumps(_row("a", v=3)) + "\n\n")
    rows = read_results(path)
    assert [r["result"]["v"] for r in rows] == [1, 2, 3]
    assert {k: r["result"]["v"] for k, r in first_by_key(rows).items()} == {"a": 1, "b": 2}
