"""Atomic output: results get the mode the umask asks for, not mkstemp's 0600."""

from __future__ import annotations

import os

import pytest

from convert.contract.provenance import atomic_path, current_umask, write_text_atomic


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
