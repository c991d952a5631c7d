"""Named datasets read from disk: Fashion-MNIST, MNIST, CIFAR-10 and scikit-learn's digits.

Nothing is ever downloaded: a dataset that is not on disk is a
:class:`DatasetNotFoundError` naming the directory looked in and how to get the files.
Images come out as float32 NCHW arrays scaled to [0, 1]; labels as int64.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .formats import read_cifar_batch, read_idx
from .transforms import resize_bilinear

DATA_ROOT = Path("/usr/share/datasets")
DEFAULT_DIRS = {
    "fashion-mnist": DATA_ROOT / "fashion-mnist",
    "mnist": DATA_ROOT / "mnist",
    "cifar10": DATA_ROOT / "cifar10",
}
_HOW_TO_GET = {
    "fashion-mnist": "install it with `sudo apt-get install dataset-fashion-mnist`, or pass "
    "--data-dir pointing at a directory holding the four IDX files",
    "mnist": "put the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...) there, "
    "or pass --data-dir pointing at a directory that holds them",
    "cifar10": "unpack the CIFAR-10 python version (cifar-10-python.tar.gz, holding "
    "data_batch_1..5 and test_batch) there, or pass --data-dir pointing at it",
}
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where we looked; the message says how to get them."""


def _missing(name: str, directory: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name}: {what} not found in {directory}; {_HOW_TO_GET.get(name, '')}"
    )


def _find_idx(directory: Path, stem: str, name: str) -> Path:
    for cand in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz"):
        p = directory / cand
        if p.is_file():
            return p
    raise _missing(name, directory, f"{stem}[.gz]")


def load_idx_dataset(
    name: str = "fashion-mnist",
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-format images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64.

    ``limit`` keeps the first N images (cut before the float conversion).
    """
    if split not in _IDX_NAMES:
        raise ValueError(f"load_idx_dataset: split must be 'train' or 'test', got {split!r}")
    directory = Path(data_dir) if data_dir is not None else DEFAULT_DIRS[name]
    if not directory.is_dir():
        raise _missing(name, directory, "the directory")
    img_stem, lbl_stem = _IDX_NAMES[split]
    images = read_idx(_find_idx(directory, img_stem, name))
    labels = read_idx(_find_idx(directory, lbl_stem, name))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"load_idx_dataset: {name} {split} images {images.shape} and labels "
            f"{labels.shape} do not pair up"
        )
    images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32)[:, None]
    x *= 1.0 / 255.0
    return x, labels.astype(np.int64)


def load_cifar10(
    split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python batches: images (N, 3, 32, 32) float32, labels (N,) int64."""
    directory = Path(data_dir) if data_dir is not None else DEFAULT_DIRS["cifar10"]
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if split not in ("train", "test"):
        raise ValueError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    if not directory.is_dir():
        raise _missing("cifar10", directory, "the directory")
    present = [directory / n for n in names if (directory / n).is_file()]
    if not present:
        raise _missing("cifar10", directory, " / ".join(names))
    parts = [read_cifar_batch(p) for p in present]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_digits(split: str = "train", size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits upsampled to ``size`` x ``size`` (bilinear), in [0, 1].

    The offline fallback for a quick try: 1,797 images, the first 80% train, the rest test.
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError:
        raise DatasetNotFoundError(
            "digits: scikit-learn is not installed; `pip install scikit-learn` "
            "(or `pip install tapegrad[digits]`)"
        ) from None
    d = _sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    x = resize_bilinear(x, size)
    y = d.target.astype(np.int64)
    cut = int(0.8 * len(y))
    return (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])


DATASETS = ("fashion-mnist", "mnist", "cifar10", "digits")


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (images NCHW float32 in [0, 1], labels int64) of a named dataset split;
    ``limit`` keeps the first N."""
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, split, data_dir, limit)
    if name == "cifar10":
        x, y = load_cifar10(split, data_dir)
        return x[:limit], y[:limit]
    if name == "digits":
        x, y = load_digits(split)
        return x[:limit], y[:limit]
    raise ValueError(f"load_dataset: unknown dataset {name!r}; choose from {list(DATASETS)}")
