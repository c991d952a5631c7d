"""Direct depthwise convolution with Cython + OpenMP: the same loops as ``direct_numba``.

Per tap, the output columns that read inside the image form one range ``[lo, hi)``;
the inner loop runs over it through raw row pointers with no checks, so the C compiler
vectorises it (stride 1). Rows and columns outside read padding only and are skipped.
"""

import numpy as np

from ..memory import check_fits

cimport openmp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free, malloc


include "../_common.pxi"


cdef inline real _edge(const real* xp, const real* wp, Py_ssize_t h, Py_ssize_t wd,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t ih0, Py_ssize_t iw0,
                       Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """Sum of the taps of one output pixel, checking each input pixel (border pixels)."""
    cdef Py_ssize_t i, j, ih, iw
    cdef real s = 0
    for i in range(kh):
        ih = ih0 + i * dh
        if ih < 0 or ih >= h:
            continue
        for j in range(kw):
            iw = iw0 + j * dw
            if 0 <= iw < wd:
                s = s + wp[i * kw + j] * xp[ih * wd + iw]
    return s


def _forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b, real[:, :,
             :, ::1] y, bint has_bias, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], m = o // c
    cdef Py_ssize_t p, bi, oc, ic, oh, ow, i, j, ih, off, lo, hi, flo, fhi
    cdef real bias, wv, w0, w1, w2, w3, w4, w5, w6, w7, w8
    cdef real* yrow
    cdef const real* xrow
    cdef const real* x0
    cdef const real* x1
    cdef const real* x2
    cdef const real* xp
    cdef const real* wp
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    # 3x3 kernels at stride 1 (the common depthwise layer): output rows whose three input
    # rows lie inside the image take one fused pass over the columns [flo, fhi) where all
    # nine taps read inside the image, one store per output pixel and no per-tap loop
    # overhead (rows are short: per-tap loops spent most of their time in setup). The few
    # border pixels sum their taps with checks; other rows and shapes take the tap loops.
    # Stride 2 takes the same fused pass (its loads two columns apart).
    cdef bint fuse = kh == 3 and kw == 3 and (sh == 1 or sh == 2) and (sw == 1 or sw == 2)
    flo = _lo(-pw, sw, wo)
    fhi = _hi(2 * dw - pw, sw, wd, wo, flo)
    with nogil:
        for p in prange(n * o, schedule="static", num_threads=nt):
            bi = p // o
            oc = p % o
            ic = oc // m
            bias = b[oc] if has_bias else 0
            xp = &x[bi, ic, 0, 0]
            wp = &w[oc, 0, 0, 0]
            for oh in range(ho):
                yrow = &y[bi, oc, oh, 0]
                ih = oh * sh - ph
                if fuse and ih >= 0 and ih + 2 * dh < h:
                    x0 = xp + ih * wd
                    x1 = x0 + dh * wd
                    x2 = x1 + dh * wd
                    w0 = wp[0]
                    w1 = wp[1]
                    w2 = wp[2]
                    w3 = wp[3]
                    w4 = wp[4]
                    w5 = wp[5]
                    w6 = wp[6]
                    w7 = wp[7]
                    w8 = wp[8]
                    # x0/x1/x2 shifted so that column ow reads ow, ow + dw, ow + 2*dw
                    x0 = x0 - pw
                    x1 = x1 - pw
                    x2 = x2 - pw
                    if sw == 1:
                        for ow in range(flo, fhi):
                            yrow[ow] = bias + (
                                (w0 * x0[ow] + w1 * x0[ow + dw] + w2 * x0[ow + 2 * dw])
                                + (w3 * x1[ow] + w4 * x1[ow + dw] + w5 * x1[ow + 2 * dw])
                                + (w6 * x2[ow] + w7 * x2[ow + dw] + w8 * x2[ow + 2 * dw]))
                    else:
                        for ow in range(flo, fhi):
                            yrow[ow] = bias + (
                                (w0 * x0[2 * ow] + w1 * x0[2 * ow + dw]
                                 + w2 * x0[2 * ow + 2 * dw])
                                + (w3 * x1[2 * ow] + w4 * x1[2 * ow + dw]
                                   + w5 * x1[2 * ow + 2 * dw])
                                + (w6 * x2[2 * ow] + w7 * x2[2 * ow + dw]
                                   + w8 * x2[2 * ow + 2 * dw]))
                    for ow in range(flo):
                        yrow[ow] = bias + _edge(xp, wp, h, wd, 3, 3, ih, ow * sw - pw, dh, dw)
                    for ow in range(fhi, wo):
                        yrow[ow] = bias + _edge(xp, wp, h, wd, 3, 3, ih, ow * sw - pw, dh, dw)
                    continue
                for ow in range(wo):
                    yrow[ow] = bias
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    xrow = &x[bi, ic, ih, 0]
                    for j in range(kw):
                        off = j * dw - pw
                        lo = _lo(off, sw, wo)
                        hi = _hi(off, sw, wd, wo, lo)
                        wv = w[oc, 0, i, j]
                        if sw == 1:
                            for ow in range(lo, hi):
                                yrow[ow] += wv * xrow[ow + off]
                        else:
                            for ow in range(lo, hi):
                                yrow[ow] += wv * xrow[ow * sw + off]


def _backward_x(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w, real[:, :, :, ::1] gx,
                int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t p, bi, ic, mm, oc, oh, ow, i, j, ih, iw, off, lo, hi
    cdef real wv
    cdef const real* gyrow
    cdef real* gxrow
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil:
        for p in prange(n * c, schedule="static", num_threads=nt):
            bi = p // c
            ic = p % c
            for ih in range(h):
                for iw in range(wd):
                    gx[bi, ic, ih, iw] = 0
            for mm in range(m):
                oc = ic * m + mm
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        gxrow = &gx[bi, ic, ih, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            wv = w[oc, 0, i, j]
                            if sw == 1:
                                for ow in range(lo, hi):
                                    gxrow[ow + off] += wv * gyrow[ow]
                            else:
                                for ow in range(lo, hi):
                                    gxrow[ow * sw + off] += wv * gyrow[ow]


cdef inline void _edge_w(real* acc, const real* xp, real g, Py_ssize_t wd, Py_ssize_t wo,
                         Py_ssize_t ow, Py_ssize_t iw0, Py_ssize_t dh,
                         Py_ssize_t dw) noexcept nogil:
    """Border column ow of an inside row (3x3, stride 1 or 2): add g * x to each tap's
    accumulator whose input column iw0 + j*dw is inside; xp is input row 0 of the tap."""
    cdef Py_ssize_t i, j, iw
    for i in range(3):
        for j in range(3):
            iw = iw0 + j * dw
            if 0 <= iw < wd:
                acc[(i * 3 + j) * wo + ow] += g * xp[i * dh * wd + iw]


def _backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x, real[:, :, :, ::1] gw,
                int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t oc, ic, bi, oh, ow, i, j, ih, off, lo, hi, t
    cdef real* acc = NULL
    cdef real* a
    cdef const real* gyrow
    cdef const real* xrow
    cdef real s
    cdef const real* x0
    cdef const real* x1
    cdef const real* x2
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    cdef bint fuse = kh == 3 and kw == 3 and (sh == 1 or sh == 2) and (sw == 1 or sw == 2)
    cdef Py_ssize_t flo = _lo(-pw, sw, wo)
    cdef Py_ssize_t fhi = _hi(2 * dw - pw, sw, wd, wo, flo)
    with nogil, parallel(num_threads=nt):
        # elementwise accumulators per tap and column, summed at the end: the inner
        # loop vectorises without reassociating a reduction
        acc = <real*>calloc(kh * kw * wo + 1, sizeof(real))
        for oc in prange(o, schedule="static"):
            ic = oc // m
            for t in range(kh * kw * wo):
                acc[t] = 0
            for bi in range(n):
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    ih = oh * sh - ph
                    if fuse and ih >= 0 and ih + 2 * dh < h:
                        # as in _forward: the nine taps of an inside row in one pass over
                        # [flo, fhi); tap (i, j) reads x row ih + i*dh at column
                        # ow + j*dw - pw; border columns check each tap (_edge_w)
                        x0 = &x[bi, ic, ih, 0] - pw
                        x1 = x0 + dh * wd
                        x2 = x1 + dh * wd
                        for t in range(9):
                            # one loop per tap: one accumulator stream, so the compiler's
                            # runtime alias check passes and the loop runs vectorised
                            a = acc + t * wo
                            xrow = x0 + (t // 3) * dh * wd + (t % 3) * dw
                            if sw == 1:
                                for ow in range(flo, fhi):
                                    a[ow] += gyrow[ow] * xrow[ow]
                            else:
                                for ow in range(flo, fhi):
                                    a[ow] += gyrow[ow] * xrow[2 * ow]
                        for ow in range(flo):
                            _edge_w(acc, x0 + pw, gyrow[ow], wd, wo, ow, ow * sw - pw, dh, dw)
                        for ow in range(fhi, wo):
                            _edge_w(acc, x0 + pw, gyrow[ow], wd, wo, ow, ow * sw - pw, dh, dw)
                        continue
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        xrow = &x[bi, ic, ih, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            a = acc + (i * kw + j) * wo
                            for ow in range(lo, hi):
                                a[ow] += gyrow[ow] * xrow[ow * sw + off]
            for i in range(kh):
                for j in range(kw):
                    s = 0
                    a = acc + (i * kw + j) * wo
                    for ow in range(wo):
                        s = s + a[ow]
                    gw[oc, 0, i, j] = s
        free(acc)


# ---------------------------------------------------------------------------------------
# Phase planes (dilation 1, any stride and kernel size). Each (image, channel) plane is
# padded and split once into sh*sw phase planes P[a, b][u, v] = xpad[u*sh + a, v*sw + b]
# (zeros where xpad is padding), each (Hq, Wq) with one slack row. Tap (i, j) of output
# pixel (oh, ow) reads P[i % sh, j % sw][oh + i // sh, ow + j // sw]: over the flat index
# t = oh*Wq + ow every tap is a contiguous, unit-stride stream at a fixed offset, for
# stride 2 as for stride 1, with no border tests; the inner loops run along t (whole
# planes, not short rows) and vectorise. The output is computed with row pitch Wq (the
# columns past wo are discarded). The weight gradient runs the same streams against the
# output gradient laid out with pitch Wq (zeros past wo); the input gradient splits its
# planes by output phase: phase (a, b) of the padded input gradient is a small stride-1
# correlation of the output gradient with the taps i = a + sh*i', j = b + sw*j' (the
# transposed convolution as sh*sw sub-pixel convolutions, no scatter).

cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline void _split(const real* xp, real* P, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ph,
                        Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t Hq,
                        Py_ssize_t Wq) noexcept nogil:
    """Write the image part of every phase plane (the padding part stays zero)."""
    cdef Py_ssize_t a, bb, u, v, u0, u1, v0, v1
    cdef real* q
    cdef const real* xr
    for a in range(sh):
        u0 = _cdiv(ph - a, sh) if ph > a else 0
        u1 = _cdiv(h + ph - a, sh)
        for bb in range(sw):
            v0 = _cdiv(pw - bb, sw) if pw > bb else 0
            v1 = _cdiv(wd + pw - bb, sw)
            q = P + (a * sw + bb) * Hq * Wq
            for u in range(u0, u1):
                xr = xp + (u * sh + a - ph) * wd + (bb - pw)
                if sw == 1:
                    for v in range(v0, v1):
                        q[u * Wq + v] = xr[v]
                else:
                    for v in range(v0, v1):
                        q[u * Wq + v] = xr[v * sw]


cdef inline void _taps_row(real* acc, const real* P, const real* wr, Py_ssize_t kw,
                           Py_ssize_t sw, Py_ssize_t plane, Py_ssize_t L, bint init,
                           real bias) noexcept nogil:
    """acc[t] (= bias if init, else +=) sum_j wr[j] * P_b(j)[t + j // sw] for one tap row;
    P is the row's first phase plane (b = 0), at its row offset."""
    cdef Py_ssize_t t, j
    cdef const real* s0
    cdef const real* s1
    cdef const real* s2
    cdef const real* s3
    cdef const real* s4
    cdef real w0, w1, w2, w3, w4
    if kw == 3 or kw == 5:
        s0 = P
        s1 = P + (1 % sw) * plane + 1 // sw
        s2 = P + (2 % sw) * plane + 2 // sw
        w0 = wr[0]
        w1 = wr[1]
        w2 = wr[2]
        if kw == 3:
            if init:
                for t in range(L):
                    acc[t] = bias + (w0 * s0[t] + w1 * s1[t] + w2 * s2[t])
            else:
                for t in range(L):
                    acc[t] = acc[t] + (w0 * s0[t] + w1 * s1[t] + w2 * s2[t])
            return
        s3 = P + (3 % sw) * plane + 3 // sw
        s4 = P + (4 % sw) * plane + 4 // sw
        w3 = wr[3]
        w4 = wr[4]
        if init:
            for t in range(L):
                acc[t] = bias + (w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t] + w4 * s4[t])
        else:
            for t in range(L):
                acc[t] = acc[t] + (w0 * s0[t] + w1 * s1[t] + w2 * s2[t] + w3 * s3[t]
                                   + w4 * s4[t])
        return
    if init:
        for t in range(L):
            acc[t] = bias
    for j in range(kw):
        s0 = P + (j % sw) * plane + j // sw
        w0 = wr[j]
        for t in range(L):
            acc[t] = acc[t] + w0 * s0[t]


def _phase_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b,
                   real[:, :, :, ::1] y, bint has_bias, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], m = o // c
    cdef Py_ssize_t Hq = _cdiv(h + 2 * ph, sh) + 1, Wq = _cdiv(wd + 2 * pw, sw)
    cdef Py_ssize_t plane = Hq * Wq, L = ho * Wq
    cdef Py_ssize_t p, bi, oc, ic, i, oh, ow
    cdef Py_ssize_t* last = NULL
    cdef real* P = NULL
    cdef real* acc = NULL
    cdef real* yp
    cdef real bias
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil, parallel(num_threads=nt):
        P = <real*>calloc(sh * sw * plane + 1, sizeof(real))
        acc = <real*>malloc((L + 1) * sizeof(real))
        last = <Py_ssize_t*>malloc(sizeof(Py_ssize_t))
        last[0] = -1  # the plane split in P (kept across this thread's tasks: M > 1)
        for p in prange(n * o, schedule="static"):
            bi = p // o
            oc = p % o
            ic = oc // m
            if bi * c + ic != last[0]:
                _split(&x[bi, ic, 0, 0], P, h, wd, ph, pw, sh, sw, Hq, Wq)
                last[0] = bi * c + ic
            bias = b[oc] if has_bias else 0
            for i in range(kh):
                _taps_row(acc, P + ((i % sh) * sw) * plane + (i // sh) * Wq, &w[oc, 0, i, 0],
                          kw, sw, plane, L, i == 0, bias)
            yp = &y[bi, oc, 0, 0]
            for oh in range(ho):
                for ow in range(wo):
                    yp[oh * wo + ow] = acc[oh * Wq + ow]
        free(P)
        free(acc)
        free(last)


cdef enum:
    _LANES = 16  # weight-gradient partial sums per tap (two AVX2 / one AVX-512 vector)


def _phase_backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                      real[:, :, :, ::1] gw, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t Hq = _cdiv(h + 2 * ph, sh) + 1, Wq = _cdiv(wd + 2 * pw, sw)
    cdef Py_ssize_t plane = Hq * Wq, L = ho * Wq, nb = L // _LANES, kk = kh * kw
    cdef Py_ssize_t oc, ic, bi, i, ii, jj, t, t0, blk, l, oh, ow
    cdef real* P = NULL
    cdef real* G = NULL
    cdef real* acc = NULL
    cdef Py_ssize_t* offs = NULL
    cdef real* a
    cdef const real* src
    cdef const real* gp
    cdef const real* g
    cdef real s
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil, parallel(num_threads=nt):
        # per tap, _LANES elementwise partial sums: block t0 of the flat index adds
        # G[t0 + l] * tap[t0 + l] to lane l (the inner loop vectorises without reassociating
        # a reduction, and the partial sums stay in L1), the lanes summed at the end; each
        # thread owns whole output channels (no atomics)
        P = <real*>calloc(sh * sw * plane + 1, sizeof(real))
        G = <real*>calloc(L + 1, sizeof(real))
        acc = <real*>malloc((kk * _LANES + 1) * sizeof(real))
        offs = <Py_ssize_t*>malloc((kk + 1) * sizeof(Py_ssize_t))
        for ii in range(kh):
            for jj in range(kw):
                offs[ii * kw + jj] = ((ii % sh) * sw + jj % sw) * plane + (ii // sh) * Wq + jj // sw
        for oc in prange(o, schedule="static"):
            ic = oc // m
            for t in range(kk * _LANES):
                acc[t] = 0
            for bi in range(n):
                _split(&x[bi, ic, 0, 0], P, h, wd, ph, pw, sh, sw, Hq, Wq)
                gp = &gy[bi, oc, 0, 0]
                for oh in range(ho):
                    for ow in range(wo):
                        G[oh * Wq + ow] = gp[oh * wo + ow]
                for blk in range(nb):
                    t0 = blk * _LANES
                    g = G + t0
                    for i in range(kk):
                        a = acc + i * _LANES
                        src = P + offs[i] + t0
                        for l in range(_LANES):
                            a[l] = a[l] + g[l] * src[l]
                for t in range(nb * _LANES, L):
                    for i in range(kk):
                        acc[i * _LANES + t - nb * _LANES] += G[t] * P[offs[i] + t]
            for i in range(kk):
                s = 0
                a = acc + i * _LANES
                for l in range(_LANES):
                    s = s + a[l]
                gw[oc, 0, i // kw, i % kw] = s
        free(P)
        free(G)
        free(acc)
        free(offs)


def _phase_backward_x(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w,
                      real[:, :, :, ::1] gx, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t qh = (kh - 1) // sh, qw = (kw - 1) // sw
    cdef Py_ssize_t U = _cdiv(h + 2 * ph, sh), V = _cdiv(wd + 2 * pw, sw)
    cdef Py_ssize_t Wg = V + qw, L = U * Wg
    cdef Py_ssize_t p, bi, ic, mm, oc, a, bb, i, j, t, u, v, u0, u1, v0, v1, oh, ow
    cdef real* G = NULL
    cdef real* Q = NULL
    cdef real* gxp
    cdef real* g
    cdef const real* src
    cdef const real* gp
    cdef real wv
    cdef bint first
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil, parallel(num_threads=nt):
        # one slack row: the columns past V of the last row read past the plane
        G = <real*>calloc(m * (U + qh) * Wg + Wg + 1, sizeof(real))
        Q = <real*>malloc((L + 1) * sizeof(real))
        for p in prange(n * c, schedule="static"):
            bi = p // c
            ic = p % c
            for mm in range(m):  # each output gradient plane, padded by (qh, qw) top-left
                g = G + mm * (U + qh) * Wg
                gp = &gy[bi, ic * m + mm, 0, 0]
                for oh in range(ho):
                    for ow in range(wo):
                        g[(oh + qh) * Wg + ow + qw] = gp[oh * wo + ow]
            gxp = &gx[bi, ic, 0, 0]
            for a in range(sh):
                u0 = _cdiv(ph - a, sh) if ph > a else 0
                u1 = _cdiv(h + ph - a, sh)
                for bb in range(sw):
                    v0 = _cdiv(pw - bb, sw) if pw > bb else 0
                    v1 = _cdiv(wd + pw - bb, sw)
                    if u1 <= u0 or v1 <= v0:
                        continue
                    first = True
                    for mm in range(m):
                        oc = ic * m + mm
                        for i in range(_cdiv(kh - a, sh)):  # taps a + sh*i, bb + sw*j
                            for j in range(_cdiv(kw - bb, sw)):
                                wv = w[oc, 0, a + sh * i, bb + sw * j]
                                src = G + mm * (U + qh) * Wg + (qh - i) * Wg + qw - j
                                if first:
                                    for t in range(L):
                                        Q[t] = wv * src[t]
                                    first = False
                                else:
                                    for t in range(L):
                                        Q[t] = Q[t] + wv * src[t]
                    if first:  # no tap lands on this phase (stride > kernel)
                        for t in range(L):
                            Q[t] = 0
                    for u in range(u0, u1):
                        g = gxp + (u * sh + a - ph) * wd + bb - pw
                        for v in range(v0, v1):
                            g[v * sw] = Q[u * Wg + v]
        free(G)
        free(Q)


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    shape = (n, o, ho, wo)
    check_fits("depthwise_conv2d (direct)", {"output": int(np.prod(shape)) * x.itemsize})
    y = np.empty(shape, dtype=x.dtype)
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    if dilation == (1, 1):
        _phase_forward(x, w, bb, y, b is not None, *stride, *padding)
    else:
        _forward(x, w, bb, y, b is not None, *stride, *padding, *dilation)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    check_fits(
        "depthwise_conv2d (direct) backward",
        {"input gradient": x.nbytes if need_x else 0, "weight gradient": w.nbytes if need_w else 0},
    )
    gx = gw = None
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    phase = dh == dw == 1
    if need_x:
        gx = np.empty_like(x)
        kh, kw = w.shape[2], w.shape[3]
        qh, qw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
        if phase and sh == sw == 1 and w.shape[0] == x.shape[1] and qh >= 0 and qw >= 0:
            # stride 1, one output channel per input channel: the input gradient is the
            # forward convolution of gy with the flipped kernel and padding k - 1 - padding
            wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
            _phase_forward(gy, wf, np.zeros(1, dtype=gy.dtype), gx, False, 1, 1, qh, qw)
        elif phase:
            _phase_backward_x(gy, w, gx, sh, sw, ph, pw)
        else:
            _backward_x(gy, w, gx, *stride, *padding, *dilation)
    if need_w:
        gw = np.empty_like(w)
        # the phase planes' weight gradient multiplies the zero gradient of each row's
        # padding columns by image values: a NaN or an infinity in x would reach every tap,
        # so such calls take the direct loops
        if phase and np.isfinite(x).all():
            _phase_backward_w(gy, x, gw, sh, sw, ph, pw)
        else:
            _backward_w(gy, x, gw, *stride, *padding, *dilation)
    return gx, gw
