"""Atomic output: results get the mode the umask asks for, not mkstemp's 0600, and never replace a symbolic link,
a directory, a device or a FIFO."""

from __future__ import annotations

import os
import stat

import pytest

from convert.contract.provenance import (
    OutputPathError,
    atomic_path,
    check_output,
    check_outputs,
    current_umask,
    write_report,
    write_text_atomic,
)


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    write_text_atomic(tmp_path / "a.txt", "x")
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == mode
    with atomic_path(tmp_path / "b.npz", suffix=".npz") as tmp:  # a writer that fills the temp file itself
        tmp.write_bytes(b"y")
    assert os.stat(tmp_path / "b.npz").st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.npz"]


def test_failed_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "c.txt") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def _node(tmp_path, kind: str):
    """An existing path of ``kind`` that is not a regular file (a test skips where it cannot be made)."""
    path = tmp_path / f"{kind}.npz"
    target = tmp_path / "target.txt"
    target.write_text("keep")
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "dangling-symlink":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "character-device":
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
        except (PermissionError, OSError) as err:
            pytest.skip(f"cannot make a device node here: {err}")
    return path


NODES = ["symlink", "dangling-symlink", "directory", "fifo", "character-device"]


@pytest.mark.parametrize("kind", NODES)
def test_atomic_writes_refuse_a_path_that_is_not_a_regular_file(tmp_path, kind):
    """`--out /dev/null` (or onto a link) replaced the node (the link) with a regular file: refused, unchanged."""
    path = _node(tmp_path, kind)
    before = os.lstat(path)
    words = {"symlink": "symbolic link", "dangling-symlink": "symbolic link", "character-device": "character device"}
    words["fifo"] = "FIFO"
    with pytest.raises(OutputPathError, match=f"{path} exists and is a {words.get(kind, kind)}") as err:
        write_text_atomic(path, "x")
    assert "\n" not in str(err.value) and "not a regular file" in str(err.value)
    with pytest.raises(OutputPathError):
        with atomic_path(path, suffix=".npz") as tmp:
            tmp.write_bytes(b"y")
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert (tmp_path / "target.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "target.txt"]), "no temporary file"


def test_a_missing_path_or_a_regular_file_is_written(tmp_path):
    check_output(tmp_path / "new.txt")
    check_output(tmp_path / "no-folder" / "new.txt")
    write_text_atomic(tmp_path / "a.txt", "old")
    write_text_atomic(tmp_path / "a.txt", "new")  # a regular file is replaced as before
    assert (tmp_path / "a.txt").read_text() == "new"
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    write_text_atomic(tmp_path / "link" / "b.txt", "b")  # only the last component must be a regular file
    assert (tmp_path / "dir" / "b.txt").read_text() == "b"
    with pytest.raises(OutputPathError, match="link"):
        check_outputs(tmp_path / "a.txt", tmp_path / "link")


def test_a_report_is_its_numbers_with_their_provenance_and_its_markdown(tmp_path):
    import json

    write_report(tmp_path / "new", "row", {"rows": [1, 2]}, "# row\n", {"model": "m"}, 3)
    saved = json.loads((tmp_path / "new" / "row.json").read_text())
    assert saved["rows"] == [1, 2] and saved["config"] == {"model": "m"} and saved["seed"] == 3
    assert {"versions", "git_commit", "machine"} <= set(saved)
    assert (tmp_path / "new" / "row.md").read_text() == "# row\n"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["row.json", "row.md"]  # no temporary file left
