"""Provenance and atomic output: what every results file records, and how it is written.

Every results file records the seed, the config, package versions and the git commit; every file is written
to a temporary file in the target folder and renamed, so an interrupted run never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PACKAGES = ("torch", "numpy", "scipy", "brian2", "brian2cuda", "nir", "matplotlib", "tqdm")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that determine results (None where absent)."""
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def git_commit() -> str | None:
    """The commit of the checkout holding this package, with '+dirty' if it has changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """A short description of the machine, for benchmark and results files."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def provenance(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """The block every results file carries: config, seed, versions, git commit and machine."""
    return {
        "config": config or {},
        "seed": seed,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "machine": machine(),
    }


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where Linux shows it (``/proc``); elsewhere
    by the ``os.umask`` round trip, under a lock (that briefly sets the mask to 0 for the whole process)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


class OutputPathError(OSError):
    """An output path that exists and is not a regular file (a user error: one line, exit status 2; an OSError,
    as ``IsADirectoryError`` is, so that a cache skipped on a read-only folder is skipped here too)."""


_NOT_REGULAR = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def check_output(path: str | os.PathLike[str]) -> None:
    """Refuse (:class:`OutputPathError`) an output ``path`` that exists and is not a regular file: a symbolic
    link, a directory, a device (``/dev/null``), a FIFO or a socket. Every write renames a new file onto its
    path, which would replace the link or the node with a regular file; a missing path or a regular file is fine.
    Only the last component is looked at (a folder above may be a link)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
    if stat.S_ISLNK(mode):
        kind += f" (to {os.readlink(path)})"
    raise OutputPathError(
        f"{path} exists and is {kind}, not a regular file: writing would replace it with a regular file; "
        "write to a new path or to a regular file (remove it first if you mean to replace it)"
    )


def check_outputs(*paths: str | os.PathLike[str]) -> None:
    """:func:`check_output` of every path, before a writer of several files writes the first of them."""
    for path in paths:
        check_output(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    ``suffix`` keeps the file extension that some writers insist on (``np.savez`` appends ``.npz``). The
    file gets the mode a plain ``open(path, "w")`` would give (0o666 minus the umask), not mkstemp's 0o600.
    An existing ``path`` that is not a regular file is refused before anything is written (:func:`check_output`).
    """
    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_report(
    folder: str | os.PathLike[str], stem: str, result: dict[str, Any], markdown: str, config: dict, seed: int | None
) -> None:
    """``<folder>/<stem>.json`` (``result`` with the :func:`provenance` of ``config`` and ``seed``) and
    ``<stem>.md`` (``markdown``), each written atomically; the folder is made if missing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{stem}.json", {**result, **provenance(config, seed)})
    write_text_atomic(folder / f"{stem}.md", markdown)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
