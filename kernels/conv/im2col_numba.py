"""im2col convolution, unfold and fold compiled with Numba (see ``im2col.py``)."""

from __future__ import annotations

from numba import njit, prange

from . import im2col as _alg


@njit(parallel=True, cache=True)
def im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n, c, h, w = x.shape
    plane = ho * wo
    for row in prange(c * kh * kw):  # rows are independent: one per (channel, tap)
        ch = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        for b in range(n):
            base = b * plane
            for oh in range(ho):
                ih = oh * sh - ph + i * dh
                col = base + oh * wo
                if ih < 0 or ih >= h:
                    for ow in range(wo):
                        cols[row, col + ow] = 0
                    continue
                for ow in range(wo):
                    iw = ow * sw - pw + j * dw
                    if 0 <= iw < w:
                        cols[row, col + ow] = x[b, ch, ih, iw]
                    else:
                        cols[row, col + ow] = 0


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
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    col = b * plane + oh * wo
                    for ow in range(wo):
                        iw = ow * sw - pw + j * dw
                        if 0 <= iw < w:
                            gx[b, ch, ih, iw] += cols[row, col + ow]


def forward(x, w, b, stride, padding, dilation, groups):
    return _alg.forward(im2col, x, w, b, stride, padding, dilation, groups)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    return _alg.backward(
        im2col, col2im, gy, x, w, stride, padding, dilation, groups, need_x, need_w
    )
