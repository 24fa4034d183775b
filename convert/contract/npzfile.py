"""Our ``.npz`` files (spec files, statistics caches): a JSON header stored as a uint8 array beside named arrays.

Readable with numpy alone: ``json.loads(bytes(np.load(path)["header"]).decode("utf-8"))``. Writing is atomic;
reading reports damage as a :class:`~convert.contract.spec.SpecError` naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import atomic_path
from convert.layers.base import SpecError


def write_npz(path: str | os.PathLike[str], header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``header`` (JSON) and ``arrays`` to ``path`` atomically."""
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, header=blob, **arrays)
    return Path(path)


def _foreign(path: str | os.PathLike[str]) -> str:
    """What a file that is neither an .npz archive nor an .npy array is, by its first bytes."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file, not an .npz archive; a NIR graph is read with python -m convert import-nir"
    return "neither an .npz archive nor an .npy array"


def read_npz(path: str | os.PathLike[str], what: str, fix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header (an object) and the arrays of one of our ``.npz`` files; damage raises :class:`SpecError`
    naming the file, ``what`` it should be and ``fix``."""
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with z:
                arrays = {k: z[k] for k in z.files}
        header = json.loads(bytes(arrays.pop("header")).decode("utf-8"))
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        detail = "empty file" if isinstance(err, EOFError) else f"{type(err).__name__}: {err}"
        if "pickled (object) data" in str(err):  # np.load's guess for a file that is neither .npz nor .npy
            detail = _foreign(path)
        raise SpecError(f"{path}: damaged or not a {what} file ({detail}); {fix}") from err
    if not isinstance(header, dict):
        raise SpecError(f"{path}: damaged or not a {what} file (its header is a JSON {type(header).__name__}); {fix}")
    return header, arrays
