"""common.datasets: IDX / CIFAR binary / npz readers, validation, digits split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from common import datasets as ds
from common.errors import DataError


def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    head = b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return head + arr.tobytes()


def _write_idx_set(folder: Path, split: str, images, labels, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    img_stem, lbl_stem = ds._IDX_FILES[split]
    for stem, arr in ((img_stem, images), (lbl_stem, labels)):
        raw = _idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)


@pytest.fixture
def idx_data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[1, 0, 0] = 0, 255
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "name,sub", [("mnist", "mnist"), ("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw")]
)
def test_idx_layouts(tmp_path, idx_data, name, sub, gz):
    images, labels = idx_data
    _write_idx_set(tmp_path / sub, "test", images, labels, gz)
    x, y = ds.load_arrays(name, "test", data_dir=tmp_path)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (7, 1, 28, 28) and x.flags.c_contiguous
    np.testing.assert_array_equal(x[:, 0] * 255, images.astype(np.float32))
    np.testing.assert_array_equal(y, labels)
    assert x.min() == 0.0 and x.max() == 1.0


def test_idx_missing_lists_what_was_looked_for(tmp_path):
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte") as e:
        ds.load_arrays("mnist", "test", data_dir=tmp_path)
    assert "MNIST/raw" in str(e.value)


def test_idx_bad_magic_and_truncation(tmp_path, idx_data):
    images, labels = idx_data
    _write_idx_set(tmp_path / "mnist", "train", images, labels, gz=False)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte"
    raw = p.read_bytes()
    p.write_bytes(raw[:-5])
    with pytest.raises(DataError, match="payload"):
        ds.load_arrays("mnist", "train", data_dir=tmp_path)
    p.write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(DataError, match="magic"):
        ds.load_arrays("mnist", "train", data_dir=tmp_path)


def test_idx_count_mismatch(tmp_path, idx_data):
    images, labels = idx_data
    _write_idx_set(tmp_path / "mnist", "train", images, labels[:5], gz=True)
    with pytest.raises(DataError, match="7 images but 5 labels"):
        ds.load_arrays("mnist", "train", data_dir=tmp_path)


def test_cifar_binary(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    pix = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    lab = np.array([3, 0, 9], dtype=np.uint8)
    rec = np.concatenate([lab[:, None], pix.reshape(3, -1)], axis=1)
    (d / "test_batch.bin").write_bytes(rec.tobytes())
    x, y = ds.load_arrays("cifar-10", "test", data_dir=tmp_path)
    assert x.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(x * 255, pix.astype(np.float32))
    np.testing.assert_array_equal(y, lab)
    with pytest.raises(DataError, match="missing CIFAR-10 batch"):
        ds.load_arrays("cifar10", "train", data_dir=tmp_path)


def test_cifar_pickle_version_refused(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="pickle"):
        ds.load_arrays("cifar10", "test", data_dir=tmp_path)


def test_cifar_npz_subset_layout(tmp_path):
    d = tmp_path / "cifar10-subset"
    d.mkdir()
    rng = np.random.default_rng(2)
    hwc = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    np.savez(d / "test_00.npz", x=hwc, y=np.array([1, 2, 3, 4], dtype=np.uint8))
    np.savez(d / "train_labels_all.npz", y=np.zeros(10, dtype=np.uint8))
    x, y = ds.load_arrays("cifar10", "test", data_dir=tmp_path)
    assert x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(x[2, 1] * 255, hwc[2, :, :, 1].astype(np.float32))
    np.testing.assert_array_equal(y, [1, 2, 3, 4])


def test_digits_split_deterministic():
    xtr, ytr = ds.load_arrays("digits", "train")
    xte, yte = ds.load_arrays("digits", "test")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert xtr.min() == 0.0 and xtr.max() == 1.0
    np.testing.assert_array_equal(np.unique(xtr * 16), np.arange(17))  # exact k/16 values
    from sklearn.datasets import load_digits

    b = load_digits()
    np.testing.assert_array_equal(yte, b.target[1437:])
    np.testing.assert_array_equal(xtr[5, 0] * 16, b.images[5])
    x2, _ = ds.load_arrays("digits", "train")
    np.testing.assert_array_equal(xtr, x2)


def test_npz_ok_uint8_and_float(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, x=np.full((2, 1, 2, 2), 255, np.uint8), y=np.array([0, 1], np.int32))
    x, y = ds.load_arrays(str(p))
    assert x.dtype == np.float32 and np.all(x == 1.0) and y.dtype == np.int64
    np.savez(p, x=np.zeros((3, 4), np.float64), y=np.array([0, 1, 2]))
    x, y = ds.load_arrays(p)
    assert x.shape == (3, 4) and x.dtype == np.float32


@pytest.mark.parametrize(
    "x,y,msg",
    [
        (np.zeros((2, 3), np.float32), np.array([0, 1, 2]), "shape"),
        (np.zeros((2, 3), np.float32), np.array([0.0, 1.0]), "integer"),
        (np.zeros((2, 3), np.float32), np.array([0, -1]), "negative"),
        (np.array([[np.nan, 0.0], [0.0, 0.0]]), np.array([0, 1]), "NaN"),
        (np.zeros((2, 3), np.int32), np.array([0, 1]), "dtype"),
        (np.zeros(2, np.float32), np.array([0, 1]), "feature axis"),
    ],
)
def test_npz_validation(tmp_path, x, y, msg):
    p = tmp_path / "bad.npz"
    np.savez(p, x=x, y=y)
    with pytest.raises(DataError, match=msg):
        ds.load_arrays(p)


def test_npz_refuses_pickle_and_missing_keys(tmp_path):
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.array([object(), object()], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError, match="unpickling"):
        ds.load_arrays(p)
    np.savez(p, images=np.zeros((2, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError, match="missing"):
        ds.load_arrays(p)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError):
        ds.load_arrays(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="not found"):
        ds.load_arrays(tmp_path / "absent.npz")


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(DataError, match="unknown data set"):
        ds.load_arrays("imagenet")
    with pytest.raises(DataError, match="split"):
        ds.load_arrays("digits", "val")
    with pytest.raises(DataError, match="data directory not found"):
        ds.load_arrays("mnist", data_dir=tmp_path / "nope")


@pytest.mark.data
def test_real_mnist_when_present():
    root = ds.default_data_dir()
    if root is None or not (root / "mnist").is_dir():
        pytest.skip("../shared/data/mnist is absent")
    x, y = ds.load_arrays("mnist", "test", data_dir=root)
    assert x.shape == (10000, 1, 28, 28) and list(y[:5]) == [7, 2, 1, 0, 4]
