"""Direct depthwise convolution compiled with Numba.

Dilation-1 calls run on phase planes (below, the algorithm of ``direct_cy.pyx``); dilated
calls on the tap loops described here.

Each output row is built tap by tap: ``y[oh, lo:hi] += w[i, j] * x[ih, lo*s+off : ...]``.
For every tap the columns whose input pixel lies inside the image are the contiguous
range ``[lo, hi)``, computed once per tap, so the inner loop has no bounds checks and
vectorises (stride 1); the border columns outside that range read only padding and are
skipped, and rows whose input row is padding are skipped whole. No fastmath: the inner
loop is elementwise (each output accumulates its taps in a fixed order).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from .._direct_numba import (
    col_range,
    fill_plane,
    gather_axpy,
    gather_mul_acc,
    row_sum,
    run_backward,
    run_forward,
    scatter_axpy,
    tap_index,
)
from ..conv.reference import _out_size


@njit(parallel=True, cache=True)
def _forward(x, w, b, y, has_bias, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = y.shape[2], y.shape[3]
    m = o // c
    for p in prange(n * o):  # one (image, output channel) plane per task
        bi = p // o
        oc = p % o
        ic = oc // m
        bias = b[oc] if has_bias else 0.0
        for oh in range(ho):
            yrow = y[bi, oc, oh]
            for ow in range(wo):
                yrow[ow] = bias
            for i in range(kh):
                ih = tap_index(oh, sh, ph, i, dh, h)
                if ih < 0:
                    continue  # border row: the whole tap row reads padding
                xrow = x[bi, ic, ih]
                for j in range(kw):
                    off = j * dw - pw
                    lo, hi = col_range(off, sw, wd, wo)
                    wv = w[oc, 0, i, j]
                    gather_axpy(yrow, xrow, wv, lo, hi, off, sw)


@njit(parallel=True, cache=True)
def _backward_x(gy, w, gx, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = gx.shape
    o, _, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    m = o // c
    for p in prange(n * c):  # each input plane is written by one task only
        bi = p // c
        ic = p % c
        fill_plane(gx[bi, ic], 0)
        for mm in range(m):
            oc = ic * m + mm
            for oh in range(ho):
                gyrow = gy[bi, oc, oh]
                for i in range(kh):
                    ih = tap_index(oh, sh, ph, i, dh, h)
                    if ih < 0:
                        continue
                    gxrow = gx[bi, ic, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wd, wo)
                        wv = w[oc, 0, i, j]
                        scatter_axpy(gxrow, gyrow, wv, lo, hi, off, sw)


@njit(parallel=True, cache=True)
def _backward_w(gy, x, gw, sh, sw, ph, pw, dh, dw):
    n, c, h, wd = x.shape
    o, _, kh, kw = gw.shape
    ho, wo = gy.shape[2], gy.shape[3]
    m = o // c
    for oc in prange(o):
        ic = oc // m
        # elementwise accumulators per tap and column, summed at the end: the inner
        # loop vectorises without reassociating a reduction (no fastmath needed)
        acc = np.zeros((kh, kw, wo), dtype=gw.dtype)
        for bi in range(n):
            for oh in range(ho):
                gyrow = gy[bi, oc, oh]
                for i in range(kh):
                    ih = tap_index(oh, sh, ph, i, dh, h)
                    if ih < 0:
                        continue
                    xrow = x[bi, ic, ih]
                    for j in range(kw):
                        off = j * dw - pw
                        lo, hi = col_range(off, sw, wd, wo)
                        a = acc[i, j]
                        gather_mul_acc(a, gyrow, xrow, lo, hi, off, sw)
        for i in range(kh):
            for j in range(kw):
                gw[oc, 0, i, j] = row_sum(acc[i, j])


# --- phase planes (dilation 1): the algorithm of direct_cy.pyx's _phase_* kernels ---------
# Each (image, channel) plane is padded and split once into sh*sw phase planes
# P[a*sw + b, u, v] = xpad[u*sh + a, v*sw + b], each (Hq, Wq) with one slack row; tap (i, j)
# of output pixel (oh, ow) reads P[(i % sh)*sw + j % sw][oh + i // sh, ow + j // sw], so over
# the flat index t = oh*Wq + ow every tap is a contiguous stream at a fixed offset (stride 1
# or 2 alike) and the loops run along whole planes. The input gradient of phase (a, b) is a
# stride-1 correlation of the padded output gradient with the taps a + sh*i', b + sw*j'.
# Tasks are split into _CHUNKS fixed chunks, each with its own scratch planes.

_CHUNKS = 64


@njit(cache=True, inline="always")
def _cdiv(a, b):
    return (a + b - 1) // b


@njit(cache=True)
def _split(xp, P, ph, pw, sh, sw):
    """Write the image part of every phase plane of P (sh*sw, Hq, Wq); padding stays zero."""
    h, wd = xp.shape
    for a in range(sh):
        u0 = _cdiv(ph - a, sh) if ph > a else 0
        u1 = _cdiv(h + ph - a, sh)
        for bb in range(sw):
            v0 = _cdiv(pw - bb, sw) if pw > bb else 0
            v1 = _cdiv(wd + pw - bb, sw)
            q = P[a * sw + bb]
            for u in range(u0, u1):
                xr = xp[u * sh + a - ph]
                for v in range(v0, v1):
                    q[u, v] = xr[v * sw + bb - pw]


@njit(parallel=True, cache=True)
def _phase_forward(x, w, b, y, has_bias, sh, sw, ph, pw):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = y.shape[2], y.shape[3]
    m = o // c
    hq, wq = _cdiv(h + 2 * ph, sh) + 1, _cdiv(wd + 2 * pw, sw)
    L = ho * wq
    tasks = n * o
    nch = min(_CHUNKS, tasks)
    for ch in prange(nch):
        P = np.zeros((sh * sw, hq, wq), dtype=x.dtype)
        Pf = P.reshape(sh * sw, hq * wq)
        acc = np.empty(L, dtype=x.dtype)
        last = -1
        for p in range(ch * tasks // nch, (ch + 1) * tasks // nch):
            bi = p // o
            oc = p % o
            ic = oc // m
            if bi * c + ic != last:
                _split(x[bi, ic], P, ph, pw, sh, sw)
                last = bi * c + ic
            bias = b[oc] if has_bias else 0.0
            for t in range(L):
                acc[t] = bias
            for i in range(kh):
                for j in range(kw):
                    off = (i // sh) * wq + j // sw
                    src = Pf[(i % sh) * sw + j % sw, off : off + L]
                    wv = w[oc, 0, i, j]
                    for t in range(L):
                        acc[t] += wv * src[t]
            yp = y[bi, oc]
            for oh in range(ho):
                yr = yp[oh]
                for ow in range(wo):
                    yr[ow] = acc[oh * wq + ow]


_LANES = 16  # weight-gradient partial sums per tap (as direct_cy.pyx)


@njit(parallel=True, cache=True)
def _phase_backward_w(gy, x, gw, sh, sw, ph, pw):
    n, c, h, wd = x.shape
    o, _, kh, kw = gw.shape
    ho, wo = gy.shape[2], gy.shape[3]
    m = o // c
    hq, wq = _cdiv(h + 2 * ph, sh) + 1, _cdiv(wd + 2 * pw, sw)
    L = ho * wq
    nb = L // _LANES
    kk = kh * kw
    offs = np.empty(kk, dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            offs[i * kw + j] = ((i % sh) * sw + j % sw) * hq * wq + (i // sh) * wq + j // sw
    nch = min(_CHUNKS, o)
    for ch in prange(nch):  # whole output channels per chunk: no shared sums
        P = np.zeros(sh * sw * hq * wq, dtype=x.dtype)
        P3 = P.reshape(sh * sw, hq, wq)
        G = np.zeros(L, dtype=x.dtype)
        acc = np.empty((kk, _LANES), dtype=x.dtype)
        for oc in range(ch * o // nch, (ch + 1) * o // nch):
            ic = oc // m
            acc[:] = 0
            for bi in range(n):
                _split(x[bi, ic], P3, ph, pw, sh, sw)
                gp = gy[bi, oc]
                for oh in range(ho):
                    for ow in range(wo):
                        G[oh * wq + ow] = gp[oh, ow]
                # per tap, _LANES elementwise partial sums (lane l takes t = t0 + l): the
                # inner loop vectorises without reassociating a reduction, and the partial
                # sums stay in cache; summed at the end
                for blk in range(nb):
                    t0 = blk * _LANES
                    g = G[t0 : t0 + _LANES]
                    for i in range(kk):
                        a = acc[i]
                        src = P[offs[i] + t0 : offs[i] + t0 + _LANES]
                        for lane in range(_LANES):
                            a[lane] += g[lane] * src[lane]
                for t in range(nb * _LANES, L):
                    for i in range(kk):
                        acc[i, t - nb * _LANES] += G[t] * P[offs[i] + t]
            for i in range(kh):
                for j in range(kw):
                    gw[oc, 0, i, j] = row_sum(acc[i * kw + j])


@njit(parallel=True, cache=True)
def _phase_backward_x(gy, w, gx, sh, sw, ph, pw):
    n, c, h, wd = gx.shape
    o, _, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    m = o // c
    qh, qw = (kh - 1) // sh, (kw - 1) // sw
    U, V = _cdiv(h + 2 * ph, sh), _cdiv(wd + 2 * pw, sw)
    wg = V + qw
    L = U * wg
    tasks = n * c
    nch = min(_CHUNKS, tasks)
    for ch in prange(nch):  # each input plane is written by one task only
        # output gradient planes padded by (qh, qw) top-left, one slack row at the end
        G = np.zeros((m, U + qh + 1, wg), dtype=gx.dtype)
        Gf = G.reshape(m, (U + qh + 1) * wg)
        Q = np.empty(L, dtype=gx.dtype)
        for p in range(ch * tasks // nch, (ch + 1) * tasks // nch):
            bi = p // c
            ic = p % c
            for mm in range(m):
                G[mm, qh : qh + ho, qw : qw + wo] = gy[bi, ic * m + mm]
            gxp = gx[bi, ic]
            for a in range(sh):
                u0 = _cdiv(ph - a, sh) if ph > a else 0
                u1 = _cdiv(h + ph - a, sh)
                for bb in range(sw):
                    v0 = _cdiv(pw - bb, sw) if pw > bb else 0
                    v1 = _cdiv(wd + pw - bb, sw)
                    if u1 <= u0 or v1 <= v0:
                        continue
                    Q[:] = 0
                    for mm in range(m):
                        oc = ic * m + mm
                        for i in range(_cdiv(kh - a, sh)):  # taps a + sh*i, bb + sw*j
                            for j in range(_cdiv(kw - bb, sw)):
                                wv = w[oc, 0, a + sh * i, bb + sw * j]
                                off = (qh - i) * wg + qw - j
                                src = Gf[mm, off : off + L]
                                for t in range(L):
                                    Q[t] += wv * src[t]
                    for u in range(u0, u1):
                        g = gxp[u * sh + a - ph]
                        for v in range(v0, v1):
                            g[v * sw + bb - pw] = Q[u * wg + v]


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(wd, kw, stride[1], padding[1], dilation[1])
    if tuple(dilation) == (1, 1):
        args = (*stride, *padding)
        return run_forward("depthwise_conv2d", _phase_forward, x, w, b, (n, o, ho, wo), args)
    args = (*stride, *padding, *dilation)
    return run_forward("depthwise_conv2d", _forward, x, w, b, (n, o, ho, wo), args)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    name, general = "depthwise_conv2d", (*stride, *padding, *dilation)
    if tuple(dilation) != (1, 1):
        return run_backward(name, _backward_x, _backward_w, gy, x, w, need_x, need_w, general)
    phase = (*stride, *padding)
    gx, gw = run_backward(
        name, _phase_backward_x, _phase_backward_w, gy, x, w, need_x, need_w, phase
    )
    if need_w and not np.isfinite(gw).all():
        # the phase planes' weight gradient multiplies the zero gradient of each row's
        # padding columns by image values: a NaN or an infinity in x reaches every tap.
        # Those products only add non-finite values, so a finite result is exact; a
        # non-finite one is recomputed with the direct loops (no pass over x to check it)
        _, gw = run_backward(name, None, _backward_w, gy, x, w, False, True, general)
    return gx, gw
