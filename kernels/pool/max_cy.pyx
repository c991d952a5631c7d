"""Max pooling with Cython + OpenMP: the same loops as ``max_numba``."""

import numpy as np

cimport openmp
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset


include "../_common.pxi"


def _forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] idx,
             int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, i, j, ih, iw
    cdef real best, v
    cdef real[:, ::1] hv
    cdef int[:, ::1] ha
    cdef int arg
    cdef bint inside = (ph == 0 and pw == 0 and (ho - 1) * sh + (kh - 1) * dh < h
                        and (wo - 1) * sw + (kw - 1) * dw < w)
    # the raw-pointer paths below skip buffer checks: take them only on consistent shapes
    inside = inside and _same4(y.shape, idx.shape) and y.shape[0] == n and y.shape[1] == c
    if inside and n * c * ho * wo == 0:
        return
    if inside and kh == 2 and kw == 2 and sh == 2 and sw == 2 and dh == 1 and dw == 1:
        # per-thread scratch of one plane's row pairs
        nt = _team(n * c * ho * wo * 4)
        hv = np.empty((nt, 2 * ho * wo), dtype=np.float32 if real is float else np.float64)
        ha = np.empty((nt, 2 * ho * wo), dtype=np.int32)
        _forward_2x2(x, y, idx, hv, ha)
        return
    if inside:
        _forward_inside(x, y, idx, kh, kw, sh, sw, dh, dw)
        return
    nt = _team(n * c * ho * wo * kh * kw)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for oh in range(ho):
                for ow in range(wo):
                    best = -INFINITY
                    arg = -1
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        for j in range(kw):
                            iw = ow * sw - pw + j * dw
                            if iw < 0 or iw >= w:
                                continue
                            v = x[b, ch, ih, iw]
                            if v > best or v != v or arg < 0:
                                best = v
                                arg = <int>(ih * w + iw)
                    y[b, ch, oh, ow] = best
                    idx[b, ch, oh, ow] = arg


# Every window inside the input (no padding, no ceil-mode overhang): no bounds checks, the
# first tap seeds the maximum, later taps replace it when strictly greater or NaN - the same
# argmax as the general loop above (first in scan order on ties; a NaN propagates, its
# index the last NaN in scan order, as in PyTorch).
cdef void _forward_inside(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] idx,
                          int kh, int kw, int sh, int sw, int dh, int dw) noexcept:
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, oh, ow, i, j, p
    cdef real best, v
    cdef int arg
    cdef const real* xp
    cdef real* yp
    cdef int* ip
    nt = _team(n * c * ho * wo * kh * kw)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            xp = &x[0, 0, 0, 0] + bc * h * w
            yp = &y[0, 0, 0, 0] + bc * ho * wo
            ip = &idx[0, 0, 0, 0] + bc * ho * wo
            for oh in range(ho):
                for ow in range(wo):
                    p = oh * sh * w + ow * sw
                    best = xp[p]
                    arg = <int>p
                    for i in range(kh):
                        for j in range(kw):
                            v = xp[p + i * dh * w + j * dw]
                            if v > best or v != v:
                                best = v
                                arg = <int>(p + i * dh * w + j * dw)
                    yp[oh * wo + ow] = best
                    ip[oh * wo + ow] = arg


# The common 2x2 stride-2 window (LeNet, VGG), in two passes without branches. Each tap
# replaces the running maximum when strictly greater or NaN (the rule of the loops above:
# first maximum in scan order on ties, the last NaN), written as selects so the compiler
# turns each pass into vector compares and blends (random data makes a compare-and-jump
# loop mispredict about half the time). Pass 1 reduces the horizontal pairs of every input
# row of the plane in one run over the plane (one loop of h * wo, long enough for whole
# vectors even when a row holds fewer outputs than a vector has lanes); pass 2 reduces the
# two rows of each window. Pass 1 then pass 2 picks the same tap as the scan: the pair of
# the second row wins only when its maximum is strictly greater than, or is, a NaN.
cdef inline void _pairs(const real* r, real* hv, int* ha, Py_ssize_t m) noexcept nogil:
    # hv[k], ha[k]: the maximum of r[2k], r[2k + 1] and which of the two (0 or 1)
    cdef Py_ssize_t k
    cdef real a, b
    cdef bint t
    for k in range(m):
        a = r[2 * k]
        b = r[2 * k + 1]
        t = (b > a) | (b != b)
        hv[k] = b if t else a
        ha[k] = 1 if t else 0


cdef inline void _rows(const real* h0, const int* a0, const real* h1, const int* a1,
                       real* yp, int* ip, Py_ssize_t wo, int p0, int w) noexcept nogil:
    cdef Py_ssize_t ow
    cdef real a, b
    cdef bint t
    for ow in range(wo):
        a = h0[ow]
        b = h1[ow]
        t = (b > a) | (b != b)
        yp[ow] = b if t else a
        ip[ow] = p0 + <int>(2 * ow) + (w + a1[ow] if t else a0[ow])


cdef void _forward_2x2(const real[:, :, :, ::1] x, real[:, :, :, ::1] y,
                       int[:, :, :, ::1] idx, real[:, ::1] hv, int[:, ::1] ha) noexcept:
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt, me
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, oh, r
    cdef const real* xp
    cdef real* yp
    cdef int* ip
    cdef real* hp
    cdef int* ap
    nt = _team(n * c * ho * wo * 4)
    if nt > hv.shape[0]:
        nt = <int>hv.shape[0]
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            me = openmp.omp_get_thread_num()
            hp = &hv[me, 0]
            ap = &ha[me, 0]
            xp = &x[0, 0, 0, 0] + bc * h * w
            yp = &y[0, 0, 0, 0] + bc * ho * wo
            ip = &idx[0, 0, 0, 0] + bc * ho * wo
            if w == 2 * wo:  # rows back to back: the plane's pairs in one run
                _pairs(xp, hp, ap, 2 * ho * wo)
            else:
                for r in range(2 * ho):
                    _pairs(xp + r * w, hp + r * wo, ap + r * wo, wo)
            for oh in range(ho):
                _rows(hp + 2 * oh * wo, ap + 2 * oh * wo, hp + (2 * oh + 1) * wo,
                      ap + (2 * oh + 1) * wo, yp + oh * wo, ip + oh * wo, wo,
                      <int>(2 * oh * w), <int>w)


cdef inline bint _same4(Py_ssize_t* a, Py_ssize_t* b) noexcept:
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[3] == b[3]


def _backward(const real[:, :, :, ::1] gy, const int[:, :, :, ::1] idx, real[:, :, :, ::1] gx):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw, k, hw = h * w
    cdef int a
    cdef real* gxp
    cdef const real* gyp
    cdef const int* ip
    if _same4(gy.shape, idx.shape) and gy.shape[0] == n and gy.shape[1] == c:
        if n * c == 0 or hw == 0:
            return
        nt = _team(n * c * hw)
        with nogil:
            for bc in prange(n * c, schedule="static", num_threads=nt):
                # raw plane pointers: a zero-fill plus one indexed add per output
                gxp = &gx[0, 0, 0, 0] + bc * hw
                gyp = &gy[0, 0, 0, 0] + bc * ho * wo
                ip = &idx[0, 0, 0, 0] + bc * ho * wo
                memset(gxp, 0, hw * sizeof(real))
                for k in range(ho * wo):
                    a = ip[k]
                    if a >= 0 and a < hw:
                        gxp[a] += gyp[k]
        return
    nt = _team(n * c * h * w)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for ih in range(h):
                for iw in range(w):
                    gx[b, ch, ih, iw] = 0
            for oh in range(ho):
                for ow in range(wo):
                    a = idx[b, ch, oh, ow]
                    if a >= 0:
                        gx[b, ch, a // w, a % w] += gy[b, ch, oh, ow]


def forward(x, kernel, stride, padding, dilation, out_hw):
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    idx = np.empty((n, c, *out_hw), dtype=np.int32)
    _forward(x, y, idx, *kernel, *stride, *padding, *dilation)
    return y, idx


def backward(gy, idx, x_shape):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward(gy, idx, gx)
    return gx
