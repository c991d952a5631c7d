"""The im2col algorithm, shared by its Numba and Cython variants.

Forward: unfold x into columns ``cols[(c, i, j), (n, oh, ow)]`` (one row per filter tap
and input channel, one column per output pixel of the whole batch), then one GEMM per
group through NumPy's BLAS: ``y2[o, (n, oh, ow)] = w2[o, (c, i, j)] @ cols``.
Backward: ``gw = gy2 @ cols.T`` and ``gcols = w2.T @ gy2``, folded back by col2im.

A backend supplies ``im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)`` and
``col2im(cols, gx, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)``; both write into the
preallocated output they are given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ..blas import matmul
from .reference import _out_size

_MAX_COLS_BYTES = 8 * 2**30  # refuse a column buffer larger than this, before allocating


_ws = threading.local()


def workspace(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable scratch array of ``shape`` (contents undefined), kept per thread.

    The column buffer of a typical layer is tens of MB; a fresh ``np.empty`` each call
    costs its page faults on first touch (a third of the forward time measured on the
    benchmark layer). The buffer only grows and is reused by every later call of this
    thread, so it must not outlive the call that asked for it (results never alias it).
    """
    key = (name, np.dtype(dtype).str)
    store = getattr(_ws, "bufs", None)
    if store is None:
        store = _ws.bufs = {}
    need = int(np.prod(shape))
    buf = store.get(key)
    if buf is None or buf.size < need:
        buf = store[key] = np.empty(max(need, 1), dtype=dtype)
    return buf[:need].reshape(shape)


def clear_workspace() -> None:
    """Free this thread's scratch buffers."""
    _ws.bufs = {}


def _cols_buffer(
    x: np.ndarray, kh: int, kw: int, ho: int, wo: int, fn: str = "conv2d (im2col)"
) -> np.ndarray:
    n, c = x.shape[:2]
    rows, width = c * kh * kw, n * ho * wo
    nbytes = rows * width * x.itemsize
    if nbytes > _MAX_COLS_BYTES:
        raise MemoryError(
            f"{fn}: the column buffer would need {nbytes / 2**30:.1f} GiB "
            f"({rows} x {width} {x.dtype}); use a smaller batch or a direct-* variant"
        )
    return workspace("cols", (rows, width), x.dtype)


def forward(im2col: Callable, x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(wd, kw, stride[1], padding[1], dilation[1])
    cols = _cols_buffer(x, kh, kw, ho, wo)
    im2col(x, cols, kh, kw, *stride, *padding, *dilation, ho, wo)
    y2 = _grouped_gemm(
        w.reshape(o, -1), cols, groups, workspace("gemm", (o, cols.shape[1]), x.dtype)
    )
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    src = y2.reshape(o, n, ho, wo).transpose(1, 0, 2, 3)
    if b is not None:
        np.add(src, b.reshape(1, o, 1, 1), out=y)
    else:
        np.copyto(y, src)
    return y


def _grouped_gemm(w2: np.ndarray, cols: np.ndarray, groups: int, out: np.ndarray) -> np.ndarray:
    if groups == 1:
        return matmul(w2, cols, out=out)
    o, k = w2.shape
    og = o // groups
    for g in range(groups):
        matmul(w2[g * og : (g + 1) * og], cols[g * k : (g + 1) * k], out=out[g * og : (g + 1) * og])
    return out


def backward(
    im2col: Callable, col2im: Callable, gy, x, w, stride, padding, dilation, groups, need_x, need_w
):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    og, k = o // groups, cg * kh * kw
    gy2 = workspace("gemm", (o, n, ho, wo), gy.dtype)
    np.copyto(gy2, gy.transpose(1, 0, 2, 3))
    gy2 = gy2.reshape(o, -1)
    w2 = w.reshape(o, -1)
    gx = gw = None
    if need_w:
        cols = _cols_buffer(x, kh, kw, ho, wo)
        im2col(x, cols, kh, kw, *stride, *padding, *dilation, ho, wo)
        gw2 = np.empty_like(w2)
        for g in range(groups):
            rows = slice(g * og, (g + 1) * og)
            # computed transposed, cols @ gy2.T: with the long (n, oh, ow) contraction as
            # the first operand's rows OpenBLAS runs ~6x faster than gy2 @ cols.T here
            gw2[rows] = matmul(cols[g * k : (g + 1) * k], gy2[rows].T).T
        gw = gw2.reshape(w.shape)
    if need_x:
        gcols = _cols_buffer(x, kh, kw, ho, wo)
        for g in range(groups):
            rows = slice(g * og, (g + 1) * og)
            matmul(w2[rows].T, gy2[rows], out=gcols[g * k : (g + 1) * k])
        gx = np.empty_like(x)
        col2im(gcols, gx, kh, kw, *stride, *padding, *dilation, ho, wo)
    return gx, gw
