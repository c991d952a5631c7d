"""Transforms: batched (N, C, H, W) arrays in, arrays out, with an optional generator; the
per-item ones also take a single (C, H, W) image.

Random transforms take the generator they are given (the :class:`DataLoader` of
:mod:`tapegrad.data` passes its per-epoch one); without one they draw from
:func:`sample_generator`, which :class:`tapegrad.utils.data.DataLoader` derives for every
item from ``(seed, epoch, index)``, so augmentation is reproducible from the seed whatever
the number of worker processes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence

import numpy as np

_SAMPLE_RNG: contextvars.ContextVar[np.random.Generator | None] = contextvars.ContextVar(
    "tapegrad_sample_rng", default=None
)


def sample_generator() -> np.random.Generator:
    """The generator random transforms draw from when they are not given one.

    Inside :class:`tapegrad.utils.data.DataLoader` (in the calling process or a worker) it
    is the current item's generator, seeded from ``(seed, epoch, index)``; elsewhere it is
    tapegrad's generator (:func:`tapegrad.manual_seed`).

    Returns
    -------
    numpy.random.Generator
    """
    rng = _SAMPLE_RNG.get()
    if rng is not None:
        return rng
    from ..creation import generator

    return generator()


@contextlib.contextmanager
def sample_generator_scope(rng: np.random.Generator) -> Iterator[np.random.Generator]:
    """Make ``rng`` the :func:`sample_generator` inside the ``with`` block (the loader
    wraps each ``dataset[i]`` in one)."""
    token = _SAMPLE_RNG.set(rng)
    try:
        yield rng
    finally:
        _SAMPLE_RNG.reset(token)


def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, h, w) -> (N, C, size, size), bilinear with aligned corners at pixel centres."""
    n, c, h, w = x.shape

    def weights(src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size) + 0.5) * src / size - 0.5
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    ylo, yhi, wy = weights(h)
    xlo, xhi, wx = weights(w)
    rows = x[:, :, ylo] * (1 - wy)[:, None] + x[:, :, yhi] * wy[:, None]
    out = rows[..., xlo] * (1 - wx) + rows[..., xhi] * wx
    return np.ascontiguousarray(out, dtype=np.float32)


class Compose:
    """Apply batched transforms in order: ``Compose([Pad(2), RandomCrop(28)])``.

    Each transform takes ``(x, rng)`` with ``x`` an (N, C, H, W) array and returns an array.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x


class Pad:
    """Zero-pad H and W by ``padding`` on every side (28x28 -> 32x32 with padding=2)."""

    def __init__(self, padding: int) -> None:
        if padding < 0:
            raise ValueError(f"Pad: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        p = self.padding
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


class RandomCrop:
    """Pad by ``padding`` (zeros), then crop a random ``size`` window per image."""

    def __init__(self, size: int, padding: int = 0) -> None:
        if size < 1 or padding < 0:
            raise ValueError(f"RandomCrop: need size >= 1, padding >= 0; got {size}, {padding}")
        self.size, self.padding = int(size), int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        xp = Pad(self.padding)(x)
        n, _, h, w = xp.shape
        s = self.size
        if s > h or s > w:
            raise ValueError(f"RandomCrop: crop {s} larger than padded image {(h, w)}")
        ys = rng.integers(0, h - s + 1, size=n)
        xs = rng.integers(0, w - s + 1, size=n)
        # one gather through index arrays instead of a Python loop over images
        rows = ys[:, None] + np.arange(s)[None, :]  # (N, s)
        cols = xs[:, None] + np.arange(s)[None, :]
        ni = np.arange(n)[:, None, None, None]
        ci = np.arange(xp.shape[1])[None, :, None, None]
        return xp[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        flip = rng.random(x.shape[0]) < self.p
        if not flip.any():
            return x
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out


class Normalize:
    """(x - mean[c]) / std[c] per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {list(std)}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if x.shape[1] != self.mean.shape[1] and self.mean.shape[1] != 1:
            raise ValueError(
                f"Normalize: {self.mean.shape[1]} channel statistics for input {x.shape}"
            )
        return ((x - self.mean) / self.std).astype(np.float32, copy=False)
