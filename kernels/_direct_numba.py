"""Index and row helpers of the direct Numba kernels (conv, depthwise, conv_transpose).

The three direct kernels walk the same geometry: for a row of output positions ``o`` and a
tap at offset ``off`` (``j * dilation - padding``), the input position is
``o * stride + off``, and the positions whose input lies inside a row of ``w`` pixels form
one range ``[lo, hi)`` (:func:`col_range`), computed once per tap so the inner loops have no
bounds tests. Along that range they do one of three row updates, written here once:

- :func:`gather_axpy`   ``dst[lo:hi] += wv * src[lo*s+off : ... : s]`` (conv forward)
- :func:`scatter_axpy`  ``dst[lo*s+off : ... : s] += wv * src[lo:hi]`` (conv input gradient)
- :func:`gather_mul_acc` ``acc[lo:hi] += g[lo:hi] * src[lo*s+off : ... : s]`` (weight gradient)

and :func:`fill_plane` / :func:`row_sum` set a plane and sum a weight-gradient row. The
Python side of the three (allocate, check the memory budget, call the kernel) is
:func:`run_forward` and :func:`run_backward`.

Each takes zero-based views (indices provably >= 0, so Numba drops the negative-index
wraparound) and a stride-1 branch with contiguous slices, so LLVM vectorises the inner
loop; no fastmath (every loop is elementwise). The helpers are ``inline="always"``: Numba
copies them into each kernel before compiling, so a kernel runs the same code as when the
loops were written out in it. Numba's cache keys a kernel on its own file: after changing
this one, clear the compiled cache (``~/.cache/tapegrad/numba``) or touch the kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from .memory import check_fits


@njit(cache=True, inline="always")
def col_range(off, s, w, wo):
    """Positions ``o`` in ``[0, wo)`` with ``0 <= o*s + off < w``, as ``(lo, hi)``
    (``hi == lo`` when there are none)."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    hi = 0 if w - off <= 0 else (w - off + s - 1) // s
    return min(lo, wo), max(min(hi, wo), min(lo, wo))


@njit(cache=True, inline="always")
def tap_index(o, s, p, i, d, n):
    """The input index ``o*s - p + i*d`` of tap ``i`` at output position ``o``, or -1 when it
    falls outside ``[0, n)`` (a padding row)."""
    t = o * s - p + i * d
    return t if 0 <= t < n else -1


# Each helper writes its loop twice: in the stride-1 branch the slices are contiguous
# arrays (Numba types them 'C'), and the loop vectorises; one variable holding either slice
# would be typed 'A' (any layout) in both branches and lose that.


@njit(cache=True, inline="always")
def gather_axpy(dst, src, wv, lo, hi, off, s):
    """``dst[k] += wv * src[k*s + off]`` for k in ``[lo, hi)``."""
    if hi > lo:
        d = dst[lo:hi]
        if s == 1:
            x1 = src[lo + off : hi + off]
            for k in range(hi - lo):
                d[k] += wv * x1[k]
        else:
            xs = src[lo * s + off : (hi - 1) * s + off + 1 : s]
            for k in range(hi - lo):
                d[k] += wv * xs[k]


@njit(cache=True, inline="always")
def scatter_axpy(dst, src, wv, lo, hi, off, s):
    """``dst[k*s + off] += wv * src[k]`` for k in ``[lo, hi)``."""
    if hi > lo:
        g = src[lo:hi]
        if s == 1:
            d1 = dst[lo + off : hi + off]
            for k in range(hi - lo):
                d1[k] += wv * g[k]
        else:
            ds = dst[lo * s + off : (hi - 1) * s + off + 1 : s]
            for k in range(hi - lo):
                ds[k] += wv * g[k]


@njit(cache=True, inline="always")
def gather_mul_acc(acc, g, src, lo, hi, off, s):
    """``acc[k] += g[k] * src[k*s + off]`` for k in ``[lo, hi)``."""
    if hi > lo:
        a = acc[lo:hi]
        gg = g[lo:hi]
        if s == 1:
            x1 = src[lo + off : hi + off]
            for k in range(hi - lo):
                a[k] += gg[k] * x1[k]
        else:
            xs = src[lo * s + off : (hi - 1) * s + off + 1 : s]
            for k in range(hi - lo):
                a[k] += gg[k] * xs[k]


@njit(cache=True, inline="always")
def fill_plane(plane, v):
    """``plane[:, :] = v`` for a 2-D view (the task's own output or gradient plane)."""
    for r in range(plane.shape[0]):
        for k in range(plane.shape[1]):
            plane[r, k] = v


@njit(cache=True, inline="always")
def row_sum(a):
    """The sum of a 1-D row, accumulated in float64 in index order."""
    s = 0.0
    for k in range(a.shape[0]):
        s += a[k]
    return s


def run_forward(name: str, kernel, x, w, b, shape: tuple, args: tuple) -> np.ndarray:
    """Allocate the output of ``shape`` (within the memory budget) and run
    ``kernel(x, w, bias, y, has_bias, *args)``."""
    check_fits(f"{name} (direct)", {"output": math.prod(shape) * x.itemsize})
    y = np.empty(shape, dtype=x.dtype)
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    kernel(x, w, bb, y, b is not None, *args)
    return y


def run_backward(name: str, backward_x, backward_w, gy, x, w, need_x, need_w, args: tuple):
    """(gx, gw), each allocated and computed only when needed (None otherwise):
    ``backward_x(gy, w, gx, *args)`` and ``backward_w(gy, x, gw, *args)``."""
    check_fits(
        f"{name} (direct) backward",
        {"input gradient": x.nbytes if need_x else 0, "weight gradient": w.nbytes if need_w else 0},
    )
    gx = gw = None
    if need_x:
        gx = np.empty_like(x)
        backward_x(gy, w, gx, *args)
    if need_w:
        gw = np.empty_like(w)
        backward_w(gy, x, gw, *args)
    return gx, gw
