"""Raw numpy readers of the data sets used by nets/ (training) and verify/ (certification).

One reader, shared, so that training-time evaluation and certification see identical arrays.
No torch and no nets import here (verify/ must not depend on them).

Guarantees of :func:`load_arrays`:
- returns ``(x, y)`` with ``x`` float32, C-contiguous, N first, and ``y`` int64 of shape (N,);
- named data sets are NCHW in [0, 1] (MNIST/F-MNIST (N,1,28,28), CIFAR-10 (N,3,32,32),
  digits (N,1,8,8)); pixels are exact: uint8 / 255 (digits: integer / 16);
- nothing is ever unpickled (``np.load(..., allow_pickle=False)``; the CIFAR-10 python version is
  refused); any missing or malformed input raises :class:`common.errors.DataError` with one line.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError

__all__ = [
    "DatasetSpec",
    "DATASETS",
    "canonical_name",
    "default_data_dir",
    "load_arrays",
    "load_npz",
]

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about a named data set."""

    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    needs_data_dir: bool


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", (1, 28, 28), 10, True),
    "fashion-mnist": DatasetSpec("fashion-mnist", (1, 28, 28), 10, True),
    "cifar10": DatasetSpec("cifar10", (3, 32, 32), 10, True),
    "digits": DatasetSpec("digits", (1, 8, 8), 10, False),
}

_ALIASES = {
    "fmnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}

# Official IDX file names (the .gz suffix is optional).
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Folders searched below data_dir: our layout, then torchvision's.
_IDX_DIRS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
}
DIGITS_TRAIN = 1437  # sklearn order: first 1437 = train, last 360 = test


def canonical_name(name: str) -> str | None:
    """The canonical data set name for `name` (case-insensitive, common aliases), else None."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASETS else None


def default_data_dir() -> Path | None:
    """`<repo>/../shared/data` when that folder exists, else None."""
    repo = Path(__file__).resolve().parent.parent
    cand = repo.parent / "shared" / "data"
    return cand if cand.is_dir() else None


def load_arrays(
    name_or_path: str | os.PathLike, split: str = "test", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load a named data set split or a `.npz` file as ``(x float32, y int64)``.

    `name_or_path`: "mnist", "fashion-mnist", "cifar10", "digits" (aliases accepted) or a path to
    a `.npz` with arrays `x` and `y` (then `split` and `data_dir` are ignored).
    `data_dir`: folder holding the data (defaults to :func:`default_data_dir`).
    """
    text = os.fspath(name_or_path)
    name = canonical_name(text)
    if name is None:
        if text.lower().endswith(".npz") or Path(text).is_file():
            return load_npz(text)
        known = ", ".join(sorted(DATASETS))
        raise DataError(f"unknown data set {text!r}: expected one of {known} or a .npz file")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected 'train' or 'test'")
    if name == "digits":
        return _load_digits(split)
    root = _resolve_data_dir(data_dir, name)
    if name == "cifar10":
        return _load_cifar10(root, split)
    return _load_idx_dataset(root, name, split)


# ---------------------------------------------------------------- helpers


def _resolve_data_dir(data_dir, name: str) -> Path:
    if data_dir is None:
        found = default_data_dir()
        if found is None:
            raise DataError(
                f"no data directory for {name!r}: pass --data-dir (../shared/data is absent)"
            )
        return found
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data directory not found: {root}")
    return root


def _finish(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.int64)


def _read_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def parse_idx(raw: bytes, *, expect_ndim: int, source: str = "<bytes>") -> np.ndarray:
    """Parse an IDX (LeCun) ubyte file; validates magic, rank and payload size."""
    if len(raw) < 4:
        raise DataError(f"{source}: not an IDX file (too short)")
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise DataError(f"{source}: not an unsigned-byte IDX file (bad magic)")
    if ndim != expect_ndim:
        raise DataError(f"{source}: IDX rank {ndim}, expected {expect_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != count:
        raise DataError(
            f"{source}: IDX payload has {len(raw) - header} bytes, header says {count}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for fname in (stem + ".gz", stem):
            p = d / fname
            if p.is_file():
                return p
    return None


def _load_idx_dataset(root: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    dirs = [root / sub for sub in _IDX_DIRS[name]]
    img_stem, lbl_stem = _IDX_FILES[split]
    img_path, lbl_path = _find_file(dirs, img_stem), _find_file(dirs, lbl_stem)
    if img_path is None or lbl_path is None:
        looked = ", ".join(str(d / f"{s}[.gz]") for d in dirs for s in (img_stem, lbl_stem))
        raise DataError(f"{name} {split} files not found; looked for {looked}")
    images = parse_idx(_read_maybe_gz(img_path), expect_ndim=3, source=str(img_path))
    labels = parse_idx(_read_maybe_gz(lbl_path), expect_ndim=1, source=str(lbl_path))
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{name} {split}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{lbl_path}: label {int(labels.max())} outside 0..9")
    x = images.astype(np.float32)[:, None, :, :] / np.float32(255.0)
    return _finish(x, labels)


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("the 'digits' data set needs scikit-learn (pip install scikit-learn)")
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), integers 0..16
    target = np.asarray(bunch.target, dtype=np.int64)
    sl = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    x = (images[sl] / 16.0).astype(np.float32)[:, None, :, :]  # k/16 is exact in float32
    return _finish(x, target[sl])


_CIFAR_RECORD = 1 + 3 * 32 * 32


def _load_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    bin_dirs = [root / "cifar-10-batches-bin", root / "cifar10" / "cifar-10-batches-bin"]
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    for d in bin_dirs:
        if d.is_dir():
            return _read_cifar_bin([d / n for n in names])
    subset = [root / "cifar10-subset", root / "cifar10"]
    for d in subset:
        files = sorted(d.glob(f"{split}_[0-9]*.npz")) if d.is_dir() else []
        if files:
            return _read_cifar_npz(files)
    for d in (root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"):
        if d.is_dir():
            raise DataError(
                f"{d} is the CIFAR-10 python (pickle) version, which we refuse to unpickle "
                "(unsafe); download the binary version cifar-10-binary.tar.gz instead"
            )
    looked = ", ".join(str(d) for d in bin_dirs) + ", " + ", ".join(
        str(d / f"{split}_NN.npz") for d in subset
    )
    raise DataError(f"cifar10 {split} not found; looked for {looked}")


def _read_cifar_bin(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        if not p.is_file():
            raise DataError(f"missing CIFAR-10 batch file {p}")
        raw = _read_maybe_gz(p)
        if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
            raise DataError(f"{p}: size {len(raw)} is not a multiple of {_CIFAR_RECORD} bytes")
        rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
        if rec[:, 0].max() > 9:
            raise DataError(f"{p}: label outside 0..9 (not a CIFAR-10 binary batch)")
        ys.append(rec[:, 0].astype(np.int64))
        xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))
    x = np.concatenate(xs).astype(np.float32) / np.float32(255.0)
    return _finish(x, np.concatenate(ys))


def _read_cifar_npz(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        x, y = _npz_arrays(p)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise DataError(f"{p}: expected x uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}")
        xs.append(x.transpose(0, 3, 1, 2))  # HWC -> CHW
        ys.append(_check_labels(y, x.shape[0], p))
    x = np.concatenate(xs).astype(np.float32) / np.float32(255.0)
    return _finish(x, np.concatenate(ys))


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; found {sorted(z.files)}")
            return np.asarray(z["x"]), np.asarray(z["y"])
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except ValueError as e:  # object arrays (would need pickle), corrupt members
        raise DataError(f"{path}: cannot load without unpickling or malformed: {e}") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file: {e}") from None
    except Exception as e:  # zipfile.BadZipFile and friends
        raise DataError(f"{path}: not a valid .npz file: {e}") from None


def _check_labels(y: np.ndarray, n: int, source) -> np.ndarray:
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{source}: y must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: y must hold integer labels, got dtype {y.dtype}")
    if n and int(y.min()) < 0:
        raise DataError(f"{source}: negative label {int(y.min())}")
    return y.astype(np.int64)


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load a user `.npz` with `x` (N first) and `y` (N,) integer labels.

    x uint8 is divided by 255; float x is converted to float32 and must be finite (its range is
    not forced to [0, 1]: the certifier's input domain is a separate setting). Never unpickles.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    x, y = _npz_arrays(p)
    if x.ndim < 2:
        raise DataError(f"{p}: x must have a batch axis and at least one feature axis, got {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{p}: x holds no samples")
    y = _check_labels(y, x.shape[0], p)
    if x.dtype == np.uint8:
        xf = x.astype(np.float32) / np.float32(255.0)
    elif x.dtype in (np.float16, np.float32, np.float64):
        xf = x.astype(np.float32)
        if not np.all(np.isfinite(xf)):
            raise DataError(f"{p}: x contains NaN or infinite values (after conversion to float32)")
    else:
        raise DataError(f"{p}: x must be uint8 or float, got dtype {x.dtype}")
    return _finish(xf, y)
