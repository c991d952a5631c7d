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
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import functional as F

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


def _takes_rng(t: Callable) -> bool:
    if isinstance(t, (Compose, _Transform, Pad, RandomCrop, RandomHorizontalFlip, Normalize)):
        return True
    try:
        params = inspect.signature(t).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class Compose:
    """Apply transforms in order: ``Compose([Pad(2), RandomCrop(28)])``.

    tapegrad's transforms (and any callable taking two positional arguments) are called as
    ``t(x, rng)``; other callables (a ``lambda x: ...``) as ``t(x)``.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)
        self._rng = [_takes_rng(t) for t in self.transforms]

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        for t, takes in zip(self.transforms, self._rng):
            x = t(x, rng) if takes else t(x)
        return x


class Pad:
    """Zero-pad H and W by ``padding`` on every side (28x28 -> 32x32 with padding=2); takes
    a (C, H, W) image or an (N, C, H, W) batch."""

    def __init__(self, padding: int) -> None:
        if padding < 0:
            raise ValueError(f"Pad: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        p = self.padding
        if not p:
            return x
        return np.pad(x, ((0, 0),) * (x.ndim - 2) + ((p, p), (p, p)))


class RandomCrop:
    """Pad by ``padding`` (zeros), then crop a random ``size`` window per image (of a batch
    or a single (C, H, W) image)."""

    def __init__(self, size: int, padding: int = 0) -> None:
        if size < 1 or padding < 0:
            raise ValueError(f"RandomCrop: need size >= 1, padding >= 0; got {size}, {padding}")
        self.size, self.padding = int(size), int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if x.ndim == 3:
            return self(x[None], rng)[0]
        rng = rng if rng is not None else sample_generator()
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
    """Mirror each image (of a batch or a single (C, H, W) image) left-right with
    probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if x.ndim == 3:
            return self(x[None], rng)[0]
        rng = rng if rng is not None else sample_generator()
        flip = rng.random(x.shape[0]) < self.p
        if not flip.any():
            return x
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out


class Normalize:
    """(x - mean[c]) / std[c] per channel, of a (C, H, W) image or an (N, C, H, W) batch."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {list(std)}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = F._as_array(x)
        if x.ndim not in (3, 4):
            raise ValueError(f"Normalize: expected (C, H, W) or (N, C, H, W), got {x.shape}")
        c = x.shape[-3]
        if c != self.mean.shape[1] and self.mean.shape[1] != 1:
            raise ValueError(
                f"Normalize: {self.mean.shape[1]} channel statistics for input {x.shape}"
            )
        mean, std = (self.mean, self.std) if x.ndim == 4 else (self.mean[0], self.std[0])
        return ((x - mean) / std).astype(np.float32, copy=False)


class _Transform:
    """Base of the per-item transforms: ``t(img, rng=None)`` on a (C, H, W) float array, an
    (N, C, H, W) batch (each image drawing its own parameters) or a Pillow image."""

    random = False

    def __call__(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        if not self.random:
            return self._apply(img)
        rng = rng if rng is not None else sample_generator()
        if not F._is_pil(img) and np.ndim(F._as_array(img)) == 4:
            return np.stack([self._apply(xi, rng) for xi in np.asarray(img)])
        return self._apply(img, rng)

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _interp(interpolation: Any, name: str) -> str:
    return F._mode(interpolation, name)


class ToTensor(_Transform):
    """A Pillow image or an (H, W[, C]) array as a (C, H, W) float32 array, 8-bit values
    scaled to [0, 1] (torchvision's ``ToTensor``, giving a NumPy array:
    :func:`tapegrad.utils.data.default_collate` stacks them into a Tensor)."""

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        return F.to_tensor(img)


class Grayscale(_Transform):
    """``0.2989 R + 0.587 G + 0.114 B`` with ``num_output_channels`` (1 or 3) channels."""

    def __init__(self, num_output_channels: int = 1) -> None:
        if num_output_channels not in (1, 3):
            raise ValueError(
                f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels!r}"
            )
        self.num_output_channels = num_output_channels

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return F.rgb_to_grayscale(img, self.num_output_channels)


class Resize(_Transform):
    """Resize to ``size``: (h, w), or an int matched by the shorter edge keeping the aspect
    ratio (torchvision's ``Resize``; bilinear with antialiasing by default).

    Parameters
    ----------
    size : int or (int, int)
    interpolation : {"bilinear", "nearest"} or torchvision's InterpolationMode
    max_size : int, optional
    antialias : bool, default True
    """

    def __init__(
        self,
        size: int | Sequence[int],
        interpolation: Any = "bilinear",
        max_size: int | None = None,
        antialias: bool = True,
    ) -> None:
        F._check_size(size, "Resize")
        self.size, self.max_size, self.antialias = size, max_size, bool(antialias)
        self.interpolation = _interp(interpolation, "Resize")

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)


class CenterCrop(_Transform):
    """The centred ``size`` window (zeros around an image smaller than it)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = F._pair(size, "CenterCrop")

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        return F.center_crop(img, self.size)


def _range(value: Sequence[float], name: str, what: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not 0 <= lo <= hi:
        raise ValueError(f"{name}: {what} must be (min, max) with 0 <= min <= max, got {value!r}")
    return lo, hi


class RandomResizedCrop(_Transform):
    """A random crop of ``scale`` of the area and aspect ratio in ``ratio`` (log-uniform),
    resized to ``size`` (torchvision's ``RandomResizedCrop``: ten tries, then a centre crop
    clamped to ``ratio``).

    Parameters
    ----------
    size : int or (int, int)
    scale : (float, float), default (0.08, 1.0)
    ratio : (float, float), default (3/4, 4/3)
    interpolation : {"bilinear", "nearest"} or torchvision's InterpolationMode
    antialias : bool, default True
    """

    random = True

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: Any = "bilinear",
        antialias: bool = True,
    ) -> None:
        self.size = F._pair(size, "RandomResizedCrop")
        self.scale = _range(scale, "RandomResizedCrop", "scale")
        self.ratio = _range(ratio, "RandomResizedCrop", "ratio")
        if self.ratio[0] <= 0:
            raise ValueError(f"RandomResizedCrop: ratio must be positive, got {ratio!r}")
        self.interpolation = _interp(interpolation, "RandomResizedCrop")
        self.antialias = bool(antialias)

    @staticmethod
    def get_params(
        img: Any, scale: Sequence[float], ratio: Sequence[float], rng: np.random.Generator
    ) -> tuple[int, int, int, int]:
        """(top, left, height, width) of a random crop of ``img``."""
        height, width = F.image_size(img)
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i = int(rng.integers(0, height - h + 1))
                j = int(rng.integers(0, width - w + 1))
                return i, j, h, w
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        i, j, h, w = self.get_params(img, self.scale, self.ratio, rng)
        return F.resized_crop(img, i, j, h, w, self.size, self.interpolation, self.antialias)


class RandomRotation(_Transform):
    """Rotate by an angle uniform in ``degrees`` (a number d means (-d, d)), counter-clockwise
    (torchvision's ``RandomRotation``; nearest by default, ``fill`` where the source lies
    outside the image).

    Parameters
    ----------
    degrees : float or (float, float)
    interpolation : {"nearest", "bilinear"} or torchvision's InterpolationMode
    expand : bool, default False
    center : (float, float), optional
        (x, y) in pixels; default the image centre.
    fill : float or sequence of float, default 0
    """

    random = True

    def __init__(
        self,
        degrees: float | Sequence[float],
        interpolation: Any = "nearest",
        expand: bool = False,
        center: Sequence[float] | None = None,
        fill: float | Sequence[float] = 0,
    ) -> None:
        if isinstance(degrees, numbers.Number):
            if degrees < 0:
                raise ValueError(f"RandomRotation: degrees must be >= 0 as a number, got {degrees}")
            degrees = (-float(degrees), float(degrees))
        if len(degrees) != 2:
            raise ValueError(
                f"RandomRotation: degrees must be a number or (min, max), got {degrees!r}"
            )
        self.degrees = (float(degrees[0]), float(degrees[1]))
        self.interpolation = _interp(interpolation, "RandomRotation")
        self.expand, self.center, self.fill = bool(expand), center, fill

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        angle = float(rng.uniform(self.degrees[0], self.degrees[1]))
        return F.rotate(img, angle, self.interpolation, self.expand, self.center, self.fill)


def _jitter_range(value: Any, name: str, center: float, bound: tuple[float, float],
                  clip_first_on_zero: bool = True) -> tuple[float, float] | None:  # fmt: skip
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"ColorJitter: {name} must be non-negative, got {value}")
        value = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            value[0] = max(value[0], 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        value = [float(value[0]), float(value[1])]
        if not bound[0] <= value[0] <= value[1] <= bound[1]:
            raise ValueError(f"ColorJitter: {name} values must lie within {bound}, got {value}")
    else:
        raise TypeError(f"ColorJitter: {name} must be a number or (min, max), got {value!r}")
    return None if value[0] == value[1] == center else (value[0], value[1])


class ColorJitter(_Transform):
    """Random brightness, contrast, saturation and hue changes in a random order
    (torchvision's ``ColorJitter``): each factor a number ``v`` meaning
    ``[max(0, 1 - v), 1 + v]`` (hue: ``[-v, v]``, ``v <= 0.5``) or a (min, max) range.
    Saturation and hue leave one-channel images unchanged."""

    random = True

    def __init__(
        self,
        brightness: float | Sequence[float] = 0,
        contrast: float | Sequence[float] = 0,
        saturation: float | Sequence[float] = 0,
        hue: float | Sequence[float] = 0,
    ) -> None:
        inf = float("inf")
        self.brightness = _jitter_range(brightness, "brightness", 1.0, (0, inf))
        self.contrast = _jitter_range(contrast, "contrast", 1.0, (0, inf))
        self.saturation = _jitter_range(saturation, "saturation", 1.0, (0, inf))
        self.hue = _jitter_range(hue, "hue", 0.0, (-0.5, 0.5), clip_first_on_zero=False)

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        order = rng.permutation(4)
        ranges = (self.brightness, self.contrast, self.saturation, self.hue)
        factors = [None if r is None else float(rng.uniform(r[0], r[1])) for r in ranges]
        fns = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        for k in order:
            if factors[k] is not None:
                img = fns[k](img, factors[k])
        return img


class RandomErasing(_Transform):
    """With probability ``p``, set a random rectangle of ``scale`` of the area and aspect
    ratio in ``ratio`` to ``value`` (a number, per-channel values, or ``"random"`` for
    standard normal noise); torchvision's ``RandomErasing``, on (C, H, W) arrays (after
    :class:`ToTensor`). After ten failed tries the image is returned unchanged."""

    random = True

    def __init__(
        self,
        p: float = 0.5,
        scale: Sequence[float] = (0.02, 0.33),
        ratio: Sequence[float] = (0.3, 3.3),
        value: float | Sequence[float] | str = 0,
        inplace: bool = False,
    ) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"RandomErasing: p must lie in [0, 1], got {p}")
        self.scale = _range(scale, "RandomErasing", "scale")
        if self.scale[1] > 1:
            raise ValueError(f"RandomErasing: scale must lie in [0, 1], got {scale!r}")
        self.ratio = _range(ratio, "RandomErasing", "ratio")
        if self.ratio[0] <= 0:
            raise ValueError(f"RandomErasing: ratio must be positive, got {ratio!r}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"RandomErasing: value must be a number, a sequence or 'random', "
                             f"got {value!r}")  # fmt: skip
        self.p, self.value, self.inplace = p, value, bool(inplace)

    def get_params(
        self, img: np.ndarray, rng: np.random.Generator
    ) -> tuple[int, int, int, int, Any] | None:
        """(top, left, height, width, value) of a random rectangle, or None after ten
        failed tries."""
        c, ih, iw = img.shape
        area = ih * iw
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            erase_area = area * rng.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            h = int(round(math.sqrt(erase_area * aspect)))
            w = int(round(math.sqrt(erase_area / aspect)))
            if not (h < ih and w < iw):
                continue
            if isinstance(self.value, str):
                v: Any = rng.standard_normal((c, h, w)).astype(img.dtype)
            else:
                v = np.asarray(self.value, img.dtype)
                if v.ndim:
                    if v.size not in (1, c):
                        raise ValueError(
                            f"RandomErasing: {v.size} values for an image of {c} channels"
                        )
                    v = v.reshape(-1, 1, 1)
            i = int(rng.integers(0, ih - h + 1))
            j = int(rng.integers(0, iw - w + 1))
            return i, j, h, w, v
        return None

    def _apply(self, img: Any, rng: np.random.Generator | None = None) -> Any:
        x = F._as_array(img)
        if x.ndim != 3:
            raise ValueError(f"RandomErasing: expected a (C, H, W) array, got shape {x.shape}")
        if rng.random() >= self.p:
            return x
        params = self.get_params(x, rng)
        if params is None:
            return x
        i, j, h, w, v = params
        out = x if self.inplace else x.copy()
        out[:, i : i + h, j : j + w] = v
        return out
