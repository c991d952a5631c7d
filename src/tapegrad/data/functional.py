"""Image functions behind the per-item transforms, with torchvision's tensor semantics.

Each takes an image as a (C, H, W) float array (values in [0, 1] for the colour functions),
a (N, C, H, W) batch, or a Pillow image (converted to a (C, H, W) float32 array in [0, 1],
and back to a Pillow image of the same mode on the way out, rounding to 8 bits), and
returns the same kind. The results follow ``torchvision.transforms.v2.functional`` on
tensors: bilinear resizing with antialiasing (as PIL and ``torch.nn.functional.interpolate
(..., antialias=True)``), rotation about the image centre counter-clockwise in degrees, the
colour adjustments' blends and HSV conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_MODES = ("nearest", "bilinear")


def _mode(interpolation: Any, fn: str) -> str:
    """Interpolation as a string: accepts "nearest"/"bilinear" and torchvision's
    InterpolationMode (anything whose ``value`` is one of them)."""
    mode = getattr(interpolation, "value", interpolation)
    if mode not in _MODES:
        raise ValueError(
            f"{fn}: interpolation must be one of {list(_MODES)}, got {interpolation!r}"
        )
    return mode


def _as_array(img: Any) -> np.ndarray:
    """An ndarray as itself, a Tensor as its array, anything else through np.asarray."""
    if isinstance(img, np.ndarray):
        return img
    data = getattr(img, "data", None)
    return data if isinstance(data, np.ndarray) else np.asarray(img)


def _is_pil(img: Any) -> bool:
    return type(img).__module__.startswith("PIL.")


def _pil_to_chw(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    out = a.transpose(2, 0, 1).astype(np.float32)
    if a.dtype == np.uint8:
        out *= 1.0 / 255.0
    return out


def _chw_to_pil(x: np.ndarray, mode: str) -> Any:
    from PIL import Image

    a = np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)
    a = a.transpose(1, 2, 0)
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a, mode=mode)


def _image_fn(fn: Callable) -> Callable:
    """Let ``fn`` (written for (C, H, W) float arrays) take batches and Pillow images."""

    def wrapped(img: Any, *args: Any, **kwargs: Any) -> Any:
        if _is_pil(img):
            return _chw_to_pil(fn(_pil_to_chw(img), *args, **kwargs), img.mode)
        x = _as_array(img)
        if x.ndim == 4:
            return np.stack([fn(xi, *args, **kwargs) for xi in x])
        if x.ndim != 3:
            raise ValueError(
                f"{fn.__name__}: expected an image (C, H, W), a batch (N, C, H, W) or a Pillow "
                f"image, got shape {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        return fn(x, *args, **kwargs)

    wrapped.__name__, wrapped.__qualname__ = fn.__name__, fn.__qualname__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def image_size(img: Any) -> tuple[int, int]:
    """(height, width) of a (..., H, W) array or a Pillow image."""
    if _is_pil(img):
        return img.size[1], img.size[0]
    s = np.shape(_as_array(img))
    return int(s[-2]), int(s[-1])


def _resize_weights(src: int, dst: int, mode: str, antialias: bool) -> np.ndarray:
    """(dst, src) interpolation matrix along one axis (torch's/PIL's filters)."""
    scale = src / dst
    w = np.zeros((dst, src), np.float64)
    rows = np.arange(dst)
    if mode == "nearest":
        w[rows, np.minimum(np.floor(rows * scale).astype(np.int64), src - 1)] = 1.0
        return w
    if antialias and scale > 1.0:
        # triangle filter widened by the scale, normalised over the pixels it covers
        support = scale
        for i in range(dst):
            center = scale * (i + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), src)
            j = np.arange(lo, hi)
            k = np.maximum(0.0, 1.0 - np.abs((j - center + 0.5) / scale))
            w[i, lo:hi] = k / k.sum()
        return w
    pos = np.maximum((rows + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), src - 1)
    hi = np.minimum(lo + 1, src - 1)
    lam = pos - lo
    np.add.at(w, (rows, lo), 1.0 - lam)
    np.add.at(w, (rows, hi), lam)
    return w


def output_size(
    height: int, width: int, size: int | Sequence[int], max_size: int | None = None
) -> tuple[int, int]:
    """The (height, width) :func:`resize` gives: ``size`` (h, w), or an int matched by the
    shorter edge keeping the aspect ratio (the longer edge at most ``max_size``)."""
    if isinstance(size, (int, np.integer)) or len(size) == 1:
        s = int(size if isinstance(size, (int, np.integer)) else size[0])
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = s, int(s * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
        return (new_long, new_short) if width <= height else (new_short, new_long)
    if max_size is not None:
        raise ValueError("resize: max_size is only allowed with an int size")
    return int(size[0]), int(size[1])


def _check_size(size: Any, fn: str) -> None:
    vals = [size] if isinstance(size, (int, np.integer)) else list(size)
    if not 1 <= len(vals) <= 2 or any(int(v) < 1 for v in vals):
        raise ValueError(f"{fn}: size must be a positive int or (h, w), got {size!r}")


@_image_fn
def resize(
    img: Any,
    size: int | Sequence[int],
    interpolation: Any = "bilinear",
    max_size: int | None = None,
    antialias: bool = True,
) -> Any:
    """Resize to ``size``: (h, w), or an int for the shorter edge keeping the aspect ratio.

    Parameters
    ----------
    img : numpy.ndarray or PIL.Image.Image
        (C, H, W) or (N, C, H, W) float array, or a Pillow image.
    size : int or (int, int)
    interpolation : {"bilinear", "nearest"} or torchvision's InterpolationMode
    max_size : int, optional
        Longest edge allowed with an int ``size``.
    antialias : bool, default True
        Widen the bilinear filter when shrinking (PIL's and torchvision's default).

    Returns
    -------
    The resized image, float32 for arrays.
    """
    _check_size(size, "resize")
    mode = _mode(interpolation, "resize")
    _, h, w = img.shape
    oh, ow = output_size(h, w, size, max_size)
    if (oh, ow) == (h, w):
        return img
    wy = _resize_weights(h, oh, mode, antialias).astype(np.float32)
    wx = _resize_weights(w, ow, mode, antialias).astype(np.float32)
    return np.ascontiguousarray(wy @ img.astype(np.float32, copy=False) @ wx.T)


@_image_fn
def crop(img: Any, top: int, left: int, height: int, width: int) -> Any:
    """The ``height`` x ``width`` window at (``top``, ``left``); parts outside the image are
    zeros (as torchvision)."""
    c, h, w = img.shape
    out = np.zeros((c, height, width), img.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, h), min(left + width, w)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top : y1 - top, x0 - left : x1 - left] = img[:, y0:y1, x0:x1]
    return out


def _pair(size: int | Sequence[int], fn: str) -> tuple[int, int]:
    _check_size(size, fn)
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    size = list(size)
    return (int(size[0]), int(size[0])) if len(size) == 1 else (int(size[0]), int(size[1]))


def center_crop(img: Any, output_size: int | Sequence[int]) -> Any:
    """The centred ``output_size`` window (offsets rounded as torchvision); an image smaller
    than the window is first zero-padded, the odd pixel of padding going right and down."""
    ch, cw = _pair(output_size, "center_crop")
    h, w = image_size(img)
    if ch > h or cw > w:
        pad_top = (ch - h) // 2 if ch > h else 0
        pad_left = (cw - w) // 2 if cw > w else 0
        h, w = max(h, ch), max(w, cw)
        img = crop(img, -pad_top, -pad_left, h, w)
        if (h, w) == (ch, cw):
            return img
    return crop(img, int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)), ch, cw)


def resized_crop(
    img: Any,
    top: int,
    left: int,
    height: int,
    width: int,
    size: int | Sequence[int],
    interpolation: Any = "bilinear",
    antialias: bool = True,
) -> Any:
    """:func:`crop` then :func:`resize` to ``size``."""
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


@_image_fn
def rotate(
    img: Any,
    angle: float,
    interpolation: Any = "nearest",
    expand: bool = False,
    center: Sequence[float] | None = None,
    fill: float | Sequence[float] | None = None,
) -> Any:
    """Rotate counter-clockwise by ``angle`` degrees about ``center`` (pixel (x, y); default
    the image centre), as torchvision: output pixels whose source lies outside the image
    take ``fill`` (default 0); ``expand`` grows the output to hold the whole rotated
    image."""
    mode = _mode(interpolation, "rotate")
    c, h, w = img.shape
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = (0.0, 0.0) if center is None else (center[0] - w * 0.5, center[1] - h * 0.5)
    # inverse map: output point (relative to the image centre) -> input point
    m = np.array([[cos, -sin, 0.0], [sin, cos, 0.0]])
    m[0, 2] = m[0, 0] * -cx + m[0, 1] * -cy + cx
    m[1, 2] = m[1, 0] * -cx + m[1, 1] * -cy + cy
    oh, ow = h, w
    if expand:
        pts = np.array([[-0.5 * w, -0.5 * h, 1], [-0.5 * w, 0.5 * h, 1], [0.5 * w, 0.5 * h, 1],
                        [0.5 * w, -0.5 * h, 1]])  # fmt: skip
        new = pts @ m.T
        tol = 1e-4
        hi = np.ceil(np.trunc(new.max(0) / tol) * tol)
        lo = np.floor(np.trunc(new.min(0) / tol) * tol)
        ow, oh = (int(v) for v in hi - lo)
    xs = np.arange(ow, dtype=np.float32) - ow * 0.5 + 0.5
    ys = np.arange(oh, dtype=np.float32) - oh * 0.5 + 0.5
    m32 = m.astype(np.float32)
    sx = m32[0, 0] * xs[None, :] + m32[0, 1] * ys[:, None] + m32[0, 2] + (w - 1) * 0.5
    sy = m32[1, 0] * xs[None, :] + m32[1, 1] * ys[:, None] + m32[1, 2] + (h - 1) * 0.5
    x = img.astype(np.float32, copy=False)
    if mode == "nearest":
        ix, iy = np.rint(sx).astype(np.int64), np.rint(sy).astype(np.int64)
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        out = np.where(inside, x[:, np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)], 0.0)
        mask = inside.astype(np.float32)
    else:
        x0, y0 = np.floor(sx), np.floor(sy)
        out = np.zeros((c, oh, ow), np.float32)
        mask = np.zeros((oh, ow), np.float32)
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                wgt = (1 - np.abs(sx - xi)) * (1 - np.abs(sy - yi))
                ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                wgt = np.where(ok, wgt, 0.0).astype(np.float32)
                xi = np.clip(xi, 0, w - 1).astype(np.int64)
                yi = np.clip(yi, 0, h - 1).astype(np.int64)
                out += x[:, yi, xi] * wgt
                mask += wgt
    if fill is not None and np.any(np.asarray(fill) != 0):
        f = np.broadcast_to(np.asarray(fill, np.float32).reshape(-1, 1, 1), (c, 1, 1))
        if mode == "nearest":
            out = np.where(mask[None] < 0.5, f, out)
        else:
            out = out * mask + (1.0 - mask) * f
    return np.ascontiguousarray(out, dtype=np.float32)


def _gray(x: np.ndarray) -> np.ndarray:
    if x.shape[0] == 1:
        return x
    return (0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2]).astype(x.dtype)[None]


def _blend(a: np.ndarray, b: np.ndarray, ratio: float) -> np.ndarray:
    return np.clip(ratio * a + (1.0 - ratio) * b, 0.0, 1.0).astype(a.dtype, copy=False)


def _check_factor(value: float, fn: str) -> None:
    if not value >= 0:
        raise ValueError(f"{fn}: factor must be >= 0, got {value!r}")


def _check_rgb(x: np.ndarray, fn: str) -> None:
    if x.shape[0] not in (1, 3):
        raise ValueError(f"{fn}: expected 1 or 3 channels, got image of shape {x.shape}")


@_image_fn
def adjust_brightness(img: Any, brightness_factor: float) -> Any:
    """``img * brightness_factor`` clipped to [0, 1]."""
    _check_factor(brightness_factor, "adjust_brightness")
    return _blend(img, np.zeros_like(img), brightness_factor)


@_image_fn
def adjust_contrast(img: Any, contrast_factor: float) -> Any:
    """Blend with the mean grey level: ``f * img + (1 - f) * mean(gray(img))``, clipped."""
    _check_factor(contrast_factor, "adjust_contrast")
    _check_rgb(img, "adjust_contrast")
    return _blend(img, np.mean(_gray(img), dtype=np.float32).astype(img.dtype), contrast_factor)


@_image_fn
def adjust_saturation(img: Any, saturation_factor: float) -> Any:
    """Blend with the grey image (one-channel images are returned unchanged)."""
    _check_factor(saturation_factor, "adjust_saturation")
    _check_rgb(img, "adjust_saturation")
    if img.shape[0] == 1:
        return img
    return _blend(img, _gray(img), saturation_factor)


def _rgb2hsv(x: np.ndarray) -> np.ndarray:
    r, g, b = x
    maxc, minc = x.max(0), x.min(0)
    eqc = maxc == minc
    cr = maxc - minc
    s = cr / np.where(eqc, 1.0, maxc)
    div = np.where(eqc, 1.0, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    h = np.where(maxc == r, bc - gc, 0.0)
    h = h + np.where((maxc == g) & (maxc != r), 2.0 + rc - bc, 0.0)
    h = h + np.where((maxc != g) & (maxc != r), 4.0 + gc - rc, 0.0)
    h = np.fmod(h / 6.0 + 1.0, 1.0)
    return np.stack([h, s, maxc]).astype(x.dtype, copy=False)


def _hsv2rgb(x: np.ndarray) -> np.ndarray:
    h, s, v = x
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p = np.clip(v * (1.0 - s), 0.0, 1.0)
    q = np.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = np.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    conds = [i == k for k in range(6)]
    r = np.select(conds, [v, q, p, p, t, v])
    g = np.select(conds, [t, v, v, q, p, p])
    b = np.select(conds, [p, p, t, v, v, q])
    return np.stack([r, g, b]).astype(x.dtype, copy=False)


@_image_fn
def adjust_hue(img: Any, hue_factor: float) -> Any:
    """Shift the hue by ``hue_factor`` turns, in [-0.5, 0.5] (one-channel images are
    returned unchanged)."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"adjust_hue: hue_factor must lie in [-0.5, 0.5], got {hue_factor!r}")
    _check_rgb(img, "adjust_hue")
    if img.shape[0] == 1:
        return img
    hsv = _rgb2hsv(img)
    hsv[0] = np.fmod(hsv[0] + hue_factor, 1.0)
    hsv[0] = np.where(hsv[0] < 0, hsv[0] + 1.0, hsv[0])  # Python's % (torch's remainder)
    return _hsv2rgb(hsv)


@_image_fn
def erase(img: Any, i: int, j: int, h: int, w: int, v: Any) -> Any:
    """A copy of ``img`` with the ``h`` x ``w`` window at (``i``, ``j``) set to ``v`` (a
    number, per-channel values or an array broadcasting to (C, h, w))."""
    out = img.copy()
    out[:, i : i + h, j : j + w] = v
    return out


def to_tensor(pic: Any) -> np.ndarray:
    """A Pillow image or an (H, W[, C]) array as a (C, H, W) float32 array; 8-bit values
    are scaled to [0, 1] (torchvision's ``to_tensor``, as a NumPy array)."""
    if _is_pil(pic):
        if pic.mode not in ("L", "RGB", "RGBA", "1", "P", "LA", "CMYK", "YCbCr", "I", "F"):
            pic = pic.convert("RGB")
        if pic.mode == "P":
            pic = pic.convert("RGB")
        a = np.asarray(pic)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8) * 255
    else:
        a = _as_array(pic)
        if a.ndim not in (2, 3):
            raise ValueError(f"to_tensor: expected an (H, W) or (H, W, C) array, got {a.shape}")
    if a.ndim == 2:
        a = a[:, :, None]
    out = np.ascontiguousarray(a.transpose(2, 0, 1))
    if out.dtype == np.uint8:
        return out.astype(np.float32) * np.float32(1.0 / 255.0)
    return out.astype(np.float32, copy=False) if out.dtype != np.float64 else out


@_image_fn
def rgb_to_grayscale(img: Any, num_output_channels: int = 1) -> Any:
    """``0.2989 R + 0.587 G + 0.114 B``, repeated to ``num_output_channels`` (1 or 3)."""
    if num_output_channels not in (1, 3):
        raise ValueError(
            f"rgb_to_grayscale: num_output_channels must be 1 or 3, got {num_output_channels}"
        )
    _check_rgb(img, "rgb_to_grayscale")
    g = _gray(img)
    return np.repeat(g, num_output_channels, axis=0)
