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

import math
import threading
from collections.abc import Callable

import numpy as np

from .. import memory
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
    need = math.prod(shape)
    buf = store.get(key)
    if buf is None or buf.size < need:
        buf = store[key] = np.empty(max(need, 1), dtype=dtype)
    return buf[:need].reshape(shape)


def clear_workspace() -> None:
    """Free this thread's scratch buffers and give the heap's free pages back to the system.

    The column and GEMM buffers only grow, so one large batch keeps its buffers for the
    rest of the process; this drops them, then asks glibc to return free heap pages
    (``malloc_trim``), which also undoes what :func:`retain_freed_memory` kept.
    """
    _ws.bufs = {}
    memory.trim()


def _growth(name: str, shape: tuple[int, ...], dtype) -> int:
    """Bytes :func:`workspace` would newly allocate for this request (0 when it fits)."""
    store = getattr(_ws, "bufs", None) or {}
    buf = store.get((name, np.dtype(dtype).str))
    need = math.prod(shape)
    have = 0 if buf is None else buf.size
    return 0 if need <= have else need * np.dtype(dtype).itemsize


def _check_cols(x: np.ndarray, kh: int, kw: int, ho: int, wo: int, fn: str) -> tuple[int, int]:
    """(rows, columns) of the whole batch's column matrix; MemoryError before any
    allocation when it would exceed ``_MAX_COLS_BYTES``."""
    n, c = x.shape[:2]
    rows, width = c * kh * kw, n * ho * wo
    nbytes = rows * width * x.itemsize
    if nbytes > _MAX_COLS_BYTES:
        raise MemoryError(
            f"{fn}: the column buffer would need {nbytes / 2**30:.1f} GiB "
            f"({rows} x {width} {x.dtype}); use a smaller batch or a direct-* variant"
        )
    return rows, width


def _cols_buffer(
    x: np.ndarray, kh: int, kw: int, ho: int, wo: int, fn: str = "conv2d (im2col)"
) -> np.ndarray:
    return workspace("cols", _check_cols(x, kh, kw, ho, wo, fn), x.dtype)


# Batch chunks: above _CHUNK_ABOVE bytes of columns for the whole batch, the columns are
# built for a few images at a time, about _CHUNK_BYTES each, so they stay in cache between
# the unfold, the GEMMs and the fold instead of streaming through memory three times
# (the backward of a 32-channel 3x3 layer at 32x32, batch 64, gained at 1 and 2 threads).
# The forward keeps one big GEMM unless one image alone has 1 MB of columns: the big GEMM
# beat small ones on every smaller layer measured.
_CHUNK_ABOVE = 8 << 20
_CHUNK_BYTES = 2 << 20
_FORWARD_CHUNK_IMAGE = 1 << 20


def _images_per_chunk(n: int, image_cols_bytes: int, forward: bool) -> int:
    if n * image_cols_bytes <= _CHUNK_ABOVE:
        return n
    if forward:
        return 1 if image_cols_bytes >= _FORWARD_CHUNK_IMAGE else n
    return max(1, min(n, round(_CHUNK_BYTES / image_cols_bytes)))


def _pointwise(w: np.ndarray, stride, padding, groups: int) -> bool:
    """A 1x1 kernel, stride 1, no padding, one group: conv2d is a GEMM per image."""
    return w.shape[2:] == (1, 1) and tuple(stride) == (1, 1) and not any(padding) and groups == 1


# below this many pixels per image the weight gradient of a 1x1 conv is one GEMM over the
# batch (after a transposed copy) rather than one per image: a contraction over 16 pixels
# per image measured 2x slower than the copy and a single GEMM
_POINTWISE_BATCHED_MIN_PIXELS = 64


def _pointwise_backward(gy, x, w, need_x: bool, need_w: bool):
    n, c, h, wd = x.shape
    o, p = w.shape[0], h * wd
    w2, gy3, x3 = w.reshape(o, c), gy.reshape(n, o, p), x.reshape(n, c, p)
    gx = None
    if need_x:
        gx = np.empty_like(x)
        gx3, wt = gx.reshape(n, c, p), w2.T
        for i in range(n):  # one 2-D GEMM per image (see forward)
            matmul(wt, gy3[i], out=gx3[i])
    gw = None
    if need_w:
        if p >= _POINTWISE_BATCHED_MIN_PIXELS:
            gw = np.zeros((o, c), dtype=gy.dtype)
            part = np.empty((o, c), dtype=gy.dtype)
            for i in range(n):
                gw += matmul(gy3[i], x3[i].T, out=part)
        else:
            gy_t = np.ascontiguousarray(gy3.transpose(1, 0, 2)).reshape(o, n * p)
            x_t = np.ascontiguousarray(x3.transpose(1, 0, 2)).reshape(c, n * p)
            gw = matmul(gy_t, x_t.T)
        gw = gw.astype(w.dtype, copy=False).reshape(w.shape)
    return gx, gw


def forward(im2col: Callable, x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(wd, kw, stride[1], padding[1], dilation[1])
    w2 = w.reshape(o, cg * kh * kw)
    rows, out_bytes = c * kh * kw, n * o * ho * wo * x.itemsize
    single = _images_per_chunk(n, rows * ho * wo * x.itemsize, True) == 1
    if _pointwise(w, stride, padding, groups) or out_bytes == 0:
        memory.check_fits("conv2d (im2col)", {"output": out_bytes})
    else:
        per_image = {
            "column buffer": _growth("cols", (rows, ho * wo), x.dtype),
            "output": out_bytes,
        }
        batch = {
            "column buffer": _growth("cols", (rows, n * ho * wo), x.dtype),
            "GEMM workspace": _growth("gemm", (o, n * ho * wo), x.dtype),
            "output": out_bytes,
        }
        # the whole batch's columns and GEMM, or when they do not fit one image at a time
        # (its GEMM writes straight into the output)
        if not single and not memory.fits(batch):
            single = True
        memory.check_fits("conv2d (im2col)", per_image if single else batch)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    if y.size == 0 or w2.size == 0:  # an empty batch or output, or nothing to sum: PyTorch's
        y[...] = 0 if b is None else b.reshape(1, o, 1, 1)  # empty result or the bias
        return y
    if _pointwise(w, stride, padding, groups):
        # a 1x1 conv's columns are the image itself: y[i] = w2 @ x[i], no unfold, no copy;
        # one 2-D GEMM per image (benchmarks/pointwise_gemm.py: a stacked matmul over the
        # batch ran slower on 4 of mobilenet_small's 5 pointwise layers, forward + backward)
        x3, y3 = x.reshape(n, c, h * wd), y.reshape(n, o, h * wd)
        for i in range(n):
            matmul(w2, x3[i], out=y3[i])
        if b is not None:
            y += b.reshape(1, o, 1, 1)
        return y
    _check_cols(x, kh, kw, ho, wo, "conv2d (im2col)")
    if single:
        for i in range(n):  # one image: its GEMM writes straight into y[i], no transpose
            cols = workspace("cols", (c * kh * kw, ho * wo), x.dtype)
            im2col(x[i : i + 1], cols, kh, kw, *stride, *padding, *dilation, ho, wo)
            _grouped_gemm(w2, cols, groups, y[i].reshape(o, ho * wo))
        if b is not None:
            y += b.reshape(1, o, 1, 1)
        return y
    cols = _cols_buffer(x, kh, kw, ho, wo)
    im2col(x, cols, kh, kw, *stride, *padding, *dilation, ho, wo)
    y2 = _grouped_gemm(w2, cols, groups, workspace("gemm", (o, cols.shape[1]), x.dtype))
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


def _fit_chunk(nb: int, x, w, rows: int, o: int, p: int, need_x: bool, need_w: bool) -> int:
    """Images per backward chunk: ``nb``, or one at a time when the chunk's buffers and
    the gradients would not fit in memory (MemoryError when one image does not fit)."""

    def buffers(m: int) -> dict[str, int]:
        return {
            "column buffer": _growth("cols", (rows, m * p), x.dtype) if need_w else 0,
            "column gradient": _growth("gcols", (rows, m * p), x.dtype) if need_x else 0,
            "GEMM workspace": _growth("gemm", (o, m * p), x.dtype) if m > 1 else 0,
            "input gradient": x.nbytes if need_x else 0,
            "weight gradient": 2 * w.nbytes if need_w else 0,
        }

    if nb > 1 and not memory.fits(buffers(nb)):
        nb = 1
    memory.check_fits("conv2d (im2col) backward", buffers(nb))
    return nb


def backward(
    im2col: Callable, col2im: Callable, gy, x, w, stride, padding, dilation, groups, need_x, need_w
):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    og, k = o // groups, cg * kh * kw
    rows, p = c * kh * kw, ho * wo
    if x.size == 0 or w.size == 0 or gy.size == 0:  # nothing flows: zero gradients
        return (np.zeros_like(x) if need_x else None), (np.zeros_like(w) if need_w else None)
    if _pointwise(w, stride, padding, groups):
        return _pointwise_backward(gy, x, w, need_x, need_w)
    _check_cols(x, kh, kw, ho, wo, "conv2d (im2col)")
    nb = _images_per_chunk(n, rows * p * x.itemsize, False)
    nb = _fit_chunk(nb, x, w, rows, o, p, need_x, need_w)
    w2 = w.reshape(o, cg * kh * kw)
    gx = np.empty_like(x) if need_x else None
    # gw accumulated transposed, (k, og) per group: cols @ gy2.T keeps the long (n, oh, ow)
    # contraction as the first operand's rows, where OpenBLAS runs ~6x faster than
    # gy2 @ cols.T
    gw_t = np.zeros((groups, k, og), dtype=w.dtype) if need_w else None
    part = np.empty((k, og), dtype=w.dtype) if need_w and nb < n else None
    for n0 in range(0, n, nb):
        m = min(nb, n - n0)
        if m == 1:
            gy2 = gy[n0].reshape(o, p)  # one image: already (o, oh*ow), no transpose
        else:
            gy2 = workspace("gemm", (o, m, ho, wo), gy.dtype)
            np.copyto(gy2, gy[n0 : n0 + m].transpose(1, 0, 2, 3))
            gy2 = gy2.reshape(o, m * p)
        if need_w:
            cols = workspace("cols", (rows, m * p), x.dtype)
            im2col(x[n0 : n0 + m], cols, kh, kw, *stride, *padding, *dilation, ho, wo)
            for g in range(groups):
                a, gy_g = cols[g * k : (g + 1) * k], gy2[g * og : (g + 1) * og].T
                if part is None:
                    matmul(a, gy_g, out=gw_t[g])
                else:
                    gw_t[g] += matmul(a, gy_g, out=part)
        if need_x:
            gcols = workspace("gcols", (rows, m * p), x.dtype)
            for g in range(groups):
                sl = slice(g * og, (g + 1) * og)
                matmul(w2[sl].T, gy2[sl], out=gcols[g * k : (g + 1) * k])
            col2im(gcols, gx[n0 : n0 + m], kh, kw, *stride, *padding, *dilation, ho, wo)
    gw = None
    if need_w:
        gw = np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape(w.shape)
    return gx, gw
