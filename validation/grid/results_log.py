"""The sweep results file: JSON lines, appended under a lock, read with torn-tail handling.

One finished cell is one line ``{"key": ..., "cell": {...}, "result": {...}, ...}`` ending in ``"\\n"``.

* **Writers** (:func:`append_row`) take an exclusive ``fcntl.flock`` on the sidecar ``<results>.lock`` and
  append the row with one ``os.write`` on an ``O_APPEND`` descriptor, then ``os.fsync``. Concurrent sweeps on
  one file therefore interleave whole lines and lose none; the file is never rewritten or renamed, and the
  lock file stays beside it (removing lock files is racy).
* **Readers** (:func:`read_results`) take a shared lock on the same sidecar, so they never see a line that
  is being written. Without write access to the folder they read unlocked.
* **Torn tail.** The last line, when it does not end in ``"\\n"`` or is not valid JSON, is what a writer
  killed mid-write (or a crash) leaves. Readers drop it with a :class:`TornLineWarning` naming the file and
  line, so its cell is rerun; the next append truncates it away under the lock before writing. (A leading
  newline instead would keep the fragment as a malformed middle line that fails every later read.)
* **Malformed lines.** Any other bad line (invalid JSON, or not an object with a string ``key`` and objects
  ``cell`` and ``result``, e.g. ``{}``) is a ValueError naming the file and the 1-based line number.
* **Duplicate keys.** Two runs may both finish a cell: both lines are kept, and :func:`first_by_key` keeps
  the first (the lines of one key describe the same computation).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_BLOCK = 1 << 16
_FIX = "delete or repair that line (each line is one finished cell; a rerun recomputes a deleted one)"


class TornLineWarning(UserWarning):
    """A results file ended in a torn line (a writer killed mid-write); the line was dropped."""


def lock_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[None]:
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        fd = None  # a read-only folder: read without the lock
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def append_row(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append ``row`` as one JSON line under the exclusive lock (dropping a torn tail first), durably."""
    path = Path(path)
    data = (json.dumps(row, default=float) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, exclusive=True):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _drop_torn_tail(fd, path)
            written = os.write(fd, data)
            while written < len(data):  # regular files write everything at once; this is only a guard
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)


def _drop_torn_tail(fd: int, path: Path) -> None:
    size = os.fstat(fd).st_size
    if size == 0:
        return
    start = _last_line_start(fd, size)
    tail = os.pread(fd, size - start, start)
    if _is_torn(tail):
        line = os.pread(fd, start, 0).count(b"\n") + 1
        _warn(path, line, f"truncated it ({len(tail)} bytes) before appending")
        os.ftruncate(fd, start)


def _last_line_start(fd: int, size: int) -> int:
    """Offset of the first byte of the file's last line (its terminating newline, if any, excluded)."""
    end = size - 1 if os.pread(fd, 1, size - 1) == b"\n" else size
    while end > 0:
        lo = max(0, end - _BLOCK)
        i = os.pread(fd, end - lo, lo).rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        end = lo
    return 0


def _is_torn(line: bytes) -> bool:
    """Whether the last line (with its newline, if any) is one a killed writer left."""
    if not line.endswith(b"\n"):
        return True
    if not line.strip():
        return False
    try:
        json.loads(line)
    except ValueError:
        return True
    return False


def _warn(path: Path, line: int, action: str) -> None:
    warnings.warn(
        f"{path}: line {line} is a torn last line (a writer killed mid-write); {action}; its cell is rerun",
        TornLineWarning,
        stacklevel=3,
    )


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every row of the results file in file order ([] if there is none), a torn last line dropped."""
    path = Path(path)
    if not path.exists():
        return []
    with _locked(path, exclusive=False):
        data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # what follows the last newline: b"" unless the last line is torn
    if tail:
        _warn(path, len(lines) + 1, "dropped it")
    rows = []
    for number, raw in enumerate(lines, 1):
        if raw.strip():
            row = _parse(path, number, raw, last=not tail and number == len(lines))
            if row is not None:
                rows.append(row)
    return rows


def _parse(path: Path, number: int, raw: bytes, last: bool) -> dict[str, Any] | None:
    try:
        row = json.loads(raw)
    except ValueError as err:
        if last:
            _warn(path, number, "dropped it")
            return None
        detail = f"{err.msg}: column {err.colno}" if isinstance(err, json.JSONDecodeError) else str(err)
        raise ValueError(f"{path}: line {number} is not valid JSON ({detail}); {_FIX}") from None
    ok = isinstance(row, dict) and isinstance(row.get("key"), str)
    if not (ok and isinstance(row.get("cell"), dict) and isinstance(row.get("result"), dict)):
        need = "a string 'key' and objects 'cell' and 'result'"
        raise ValueError(f"{path}: line {number} is not a results row (needs {need}); {_FIX}")
    return row


def first_by_key(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per key, in file order: the first line of a key wins."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out.setdefault(row["key"], row)
    return out
