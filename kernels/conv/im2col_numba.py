"""im2col convolution, unfold and fold compiled with Numba (see ``im2col.py``)."""

from __future__ import annotations

from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from .._direct_numba import col_range
from . import im2col as _alg


@njit(parallel=True, cache=True)
def im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n, c, h, w = x.shape
    plane = ho * wo
    for row in prange(c * kh * kw):  # rows are independent: one per (channel, tap)
        ch = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        off = j * dw - pw
        # columns reading inside the image: one range per tap, so the copy loop has no
        # per-pixel branch; the border columns outside it are zero padding
        lo, hi = col_range(off, sw, w, wo)
        crow = cols[row]
        for b in range(n):
            for oh in range(ho):
                ih = oh * sh - ph + i * dh
                dst = crow[b * plane + oh * wo : b * plane + (oh + 1) * wo]
                if ih < 0 or ih >= h:
                    for k in range(wo):
                        dst[k] = 0
                    continue
                for k in range(lo):
                    dst[k] = 0
                for k in range(hi, wo):
                    dst[k] = 0
                if hi > lo:
                    xrow = x[b, ch, ih]
                    d = dst[lo:hi]
                    if sw == 1:
                        src = xrow[lo + off : hi + off]
                    else:
                        src = xrow[lo * sw + off : (hi - 1) * sw + off + 1 : sw]
                    for k in range(hi - lo):  # zero-based views: no wraparound checks
                        d[k] = src[k]


@njit(parallel=True, cache=True)
def col2im(cols, gx, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n, c, h, w = gx.shape
    plane = ho * wo
    for bc in prange(n * c):  # each (image, channel) plane is written by one thread only
        b = bc // c
        ch = bc % c
        for ih in range(h):
            for iw in range(w):
                gx[b, ch, ih, iw] = 0
        for i in range(kh):
            for j in range(kw):
                row = (ch * kh + i) * kw + j
                off = j * dw - pw
                lo, hi = col_range(off, sw, w, wo)
                if hi <= lo:
                    continue
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    col = b * plane + oh * wo
                    src = cols[row, col + lo : col + hi]
                    if sw == 1:
                        dst = gx[b, ch, ih, lo + off : hi + off]
                    else:
                        dst = gx[b, ch, ih, lo * sw + off : (hi - 1) * sw + off + 1 : sw]
                    for k in range(hi - lo):
                        dst[k] += src[k]


def forward(x, w, b, stride, padding, dilation, groups):
    return _alg.forward(im2col, x, w, b, stride, padding, dilation, groups)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    return _alg.backward(
        im2col, col2im, gy, x, w, stride, padding, dilation, groups, need_x, need_w
    )
