"""Fashion-MNIST for the experiments: a fixed, class-balanced subset, scaled to [0, 1].

Uses ``tapegrad.data.load_idx_dataset`` when present; otherwise reads the IDX files
(optionally gzipped) from ``/usr/share/datasets/fashion-mnist`` (or
``$TAPEGRAD_DATA/fashion-mnist``) directly.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = (
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Boot",
)


def _dir() -> Path:
    root = os.environ.get("TAPEGRAD_DATA")
    return Path(root) / "fashion-mnist" if root else Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"fashion-mnist: {path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_local(split: str) -> tuple[np.ndarray, np.ndarray]:
    d = _dir()
    out = []
    for stem in _FILES[split]:
        for cand in (d / (stem + ".gz"), d / stem):
            if cand.exists():
                out.append(_read_idx(cand))
                break
        else:
            raise FileNotFoundError(
                f"fashion-mnist: {stem}[.gz] not found in {d}; install the dataset there "
                "(Debian: the IDX files of Fashion-MNIST) or set TAPEGRAD_DATA"
            )
    return out[0], out[1]


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (N, 28, 28) uint8 and labels (N,) of ``split`` ('train' or 'test')."""
    try:
        from ..data import load_idx_dataset
    except ImportError:
        return _load_local(split)
    images, labels = load_idx_dataset("fashion-mnist", split)
    return np.asarray(images), np.asarray(labels)


def subset(split: str, per_class: int, seed: int, skip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class (float32 in [0, 1], shape (N, 1, 28, 28)), shuffled.

    ``skip`` images per class are passed over first, so two calls on one split with
    different ``skip`` give disjoint subsets.
    """
    images, labels = load(split)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    picked = []
    for c in range(10):
        idx = order[labels[order] == c]
        picked.append(idx[skip : skip + per_class])
    idx = rng.permutation(np.concatenate(picked))
    x = images[idx].astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    return x.reshape(len(idx), 1, 28, 28), labels[idx].astype(np.int64)
