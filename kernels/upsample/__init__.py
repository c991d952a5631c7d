"""Upsampling kernels: nearest and bilinear interpolation of (N, C, H, W) arrays, with
PyTorch's index and weight rules (``F.interpolate`` / ``nn.Upsample``).

The source rows and columns of every output pixel are computed once per call from the
record (:func:`tables`, NumPy, shared by every variant) and passed to the kernels, so the
variants differ only in how they walk the planes.

Variant interface (``x``/``gy`` C-contiguous float32/float64 (N, C, H, W) / (N, C, Ho, Wo);
index tables int64, weight tables of the input's dtype; validated by
``tapegrad.ops.upsample``)::

    nearest_forward(x, ih, iw) -> y                y[n, c, i, j] = x[n, c, ih[i], iw[j]]
    nearest_backward(gy, ih, iw, h, w) -> gx       gx (N, C, h, w): each gy summed into
                                                   its source pixel
    bilinear_forward(x, h0, h1, hl0, hl1, w0, w1, wl0, wl1) -> y
                                                   y = hl0 * (wl0 * x[h0, w0] + wl1 * x[h0, w1])
                                                     + hl1 * (wl0 * x[h1, w0] + wl1 * x[h1, w1])
    bilinear_backward(gy, h0, h1, hl0, hl1, w0, w1, wl0, wl1, h, w) -> gx
                                                   the transpose: each gy spread over its
                                                   four sources with those weights

The call record is :class:`UpsampleCall`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from .. import examples as ex
from ..calls import KernelCall, nchw, pair
from ..registry import register, set_rule

MODES = ("nearest", "bilinear")


def _scale(scale: float | None, n_in: int, n_out: int, dt: type) -> Any:
    """PyTorch's ``compute_scales_value``: 1 / scale_factor when one is given, else
    in / out, in the arithmetic type ``dt``."""
    if scale is not None and scale > 0:
        return dt(1.0 / scale)
    return dt(n_in) / dt(n_out)


def nearest_index(n_in: int, n_out: int, scale: float | None) -> np.ndarray:
    """Source index of each output position along one axis (PyTorch's ``nearest_idx``:
    ``floor(i * s)`` in float32, clipped to the last input position)."""
    i = np.arange(n_out, dtype=np.int64)
    if n_out == n_in:
        return i
    if n_out == 2 * n_in:
        return i >> 1
    s = _scale(scale, n_in, n_out, np.float32)
    src = np.floor(i.astype(np.float32) * s).astype(np.int64)
    return np.minimum(src, n_in - 1)


def linear_index(
    n_in: int, n_out: int, align_corners: bool, scale: float | None, dtype: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, l0, l1) along one axis: the two source positions of each output position
    and their weights, as PyTorch's ``area_pixel_compute_source_index`` and
    ``compute_indices_weights_linear`` give them (arithmetic in ``dtype``)."""
    dt = np.dtype(dtype).type
    i = np.arange(n_out).astype(dt)
    if align_corners:
        s = dt(n_in - 1) / dt(n_out - 1) if n_out > 1 else dt(0)
        src = s * i
    else:
        s = _scale(scale, n_in, n_out, dt)
        src = np.maximum(s * (i + dt(0.5)) - dt(0.5), dt(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    l1 = np.clip(src - i0.astype(dt), dt(0), dt(1)).astype(dt)
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1.astype(np.int64), (dt(1) - l1).astype(dt), l1


@lru_cache(maxsize=256)
def _tables(call: UpsampleCall) -> tuple[np.ndarray, ...]:
    h, w = call.x_shape[2:]
    ho, wo = call.out_hw
    sh, sw = call.scales if call.scales is not None else (None, None)
    if call.mode == "nearest":
        out = (nearest_index(h, ho, sh), nearest_index(w, wo, sw))
    else:
        out = linear_index(h, ho, call.align_corners, sh, call.dtype) + linear_index(
            w, wo, call.align_corners, sw, call.dtype
        )
    for a in out:
        a.setflags(write=False)
    return out


def tables(call: UpsampleCall) -> tuple[np.ndarray, ...]:
    """The call's index (and weight) tables: ``(ih, iw)`` for nearest, ``(h0, h1, hl0,
    hl1, w0, w1, wl0, wl1)`` for bilinear (read-only, cached per record)."""
    return _tables(call)


@dataclass(frozen=True)
class UpsampleCall(KernelCall):
    """An upsample call: input shape (N, C, H, W), output size (Ho, Wo), mode
    (``nearest`` or ``bilinear``), align_corners, the scale factors the source positions
    use (None: input / output size), dtype."""

    kernel_functions: ClassVar[tuple[str, ...]] = (
        "nearest_forward",
        "nearest_backward",
        "bilinear_forward",
        "bilinear_backward",
    )
    op: ClassVar[str] = "upsample2d"
    functional: ClassVar[str] = "interpolate"
    x_shape: tuple[int, ...]
    out_hw: tuple[int, int]
    mode: str
    align_corners: bool
    scales: tuple[float, float] | None
    dtype: str

    @classmethod
    def of(cls, x, out_hw, mode="nearest", align_corners=False, scales=None) -> UpsampleCall:
        """The record of a call on this array and these arguments (shape and dtype read
        from the array)."""
        sc = None if scales is None else tuple(float(s) for s in scales)
        return cls(pair(x.shape), pair(out_hw), str(mode), bool(align_corners), sc, x.dtype.str)

    def forward(self, mod: ModuleType, x: Any) -> Any:
        """The forward kernel call with variant module ``mod`` (the family's interface)."""
        t = tables(self)
        if self.mode == "nearest":
            return mod.nearest_forward(x, *t)
        return mod.bilinear_forward(x, *t)

    def backward(self, mod: ModuleType, gy: Any) -> Any:
        """The backward kernel call with variant module ``mod`` (the family's interface)."""
        t = tables(self)
        h, w = self.x_shape[2:]
        if self.mode == "nearest":
            return mod.nearest_backward(gy, *t, h, w)
        return mod.bilinear_backward(gy, *t, h, w)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``)."""
        return self.backward(mod, out)

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call."""
        ho, wo = self.out_hw
        return {
            **nchw(self.x_shape),
            "Ho": ho,
            "Wo": wo,
            "mode": self.mode,
            "align_corners": self.align_corners,
        }


def out_size(n_in: int, scale: float) -> int:
    """PyTorch's output size for a scale factor: ``floor(n_in * scale)`` in double."""
    return int(math.floor(float(n_in) * float(scale)))


_P = __name__
register("upsample2d", "reference", f"{_P}.reference")
register("upsample2d", "direct-numba", f"{_P}.direct_numba")
register("upsample2d", "direct-cython", f"{_P}.direct_cy")
set_rule("upsample2d", lambda call: ["direct-numba", "direct-cython"])


# --- example calls and bench cases (kernels/examples.py) ---------------------------------


def _up_label(p: dict) -> str:
    corners = " corners" if p.get("align_corners") else ""
    return f"N{p['N']} C{p['C']} {p['H']}x{p['W']} > {p['Ho']}x{p['Wo']} {p['mode']}{corners}"


def _up_call(F: Any, T: dict, p: dict) -> Any:
    ac = bool(p.get("align_corners")) if p["mode"] == "bilinear" else None
    return F.interpolate(T["x"], size=(p["Ho"], p["Wo"]), mode=p["mode"], align_corners=ac)


def _up_flops(p: dict, direction: str) -> int:
    """Bilinear: 6 multiply-adds per output each way (weights and four taps); nearest: 0,
    counted as 1 per output so the rate column stays defined."""
    n = p["N"] * p["C"] * p["Ho"] * p["Wo"] * (6 if p["mode"] == "bilinear" else 1)
    return ex.per_direction(n, n, direction)


def _up_bytes(p: dict, direction: str) -> int:
    x, y = ex.F32 * ex.elems(p), ex.F32 * p["N"] * p["C"] * p["Ho"] * p["Wo"]
    return ex.per_direction(x + y, y + x, direction)


_UP = {"N": 64, "C": 32, "H": 16, "W": 16, "Ho": 32, "Wo": 32}

UpsampleCall.examples = (
    ex.Example(lambda F, x: F.interpolate(x, scale_factor=2), ((2, 3, 4, 5),)),
    ex.Example(lambda F, x: F.interpolate(x, (7, 3), mode="bilinear"), ((2, 3, 4, 5),), "bilinear"),
)
# past the kernels' serial threshold: the threaded path
UpsampleCall.determinism = ex.Example(
    lambda F, x: F.interpolate(x, scale_factor=1.5, mode="bilinear"), ((4, 6, 64, 64),)
)
UpsampleCall.bench = ex.BenchCase(
    "bytes", ({**_UP, "mode": "nearest"}, {**_UP, "mode": "bilinear"}), _up_label, ex.x_input,
    _up_call, _up_flops, _up_bytes, aliases=("upsample", "interpolate"),
)  # fmt: skip
