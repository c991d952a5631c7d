"""Transposed convolution by output phases (sub-pixel decomposition), Cython + OpenMP.

Forward: the output pixels of one phase ``(ry, rx)`` (rows ``ry, ry + sh, ...``, columns
``rx, rx + sw, ...``) take only the filter taps ``(i, j)`` with ``(ry + ph - i*dh) % sh == 0``
and ``(rx + pw - j*dw) % sw == 0``, each reading the input at a fixed offset: a small
stride-1 convolution with that sub-kernel. Per block of images a thread copies them
zero-padded side by side, multiplies each tap's weights by the padded block read in place
(one GEMM per tap through NumPy's cblas, accumulated per phase) and writes each output
row once, from its phases, with its bias: no column matrix scattered and added into the
output afterwards. For stride 2 and a 4x4 kernel each of the four phases
is a 2x2 convolution; for a 3x3 kernel the phases have 2x2, 2x1, 1x2 and 1x1 taps.

Backward: per image, one unfold of the output gradient (conv2d's im2col with the
transposed convolution's stride, padding and dilation) serves both GEMMs: the input
gradient ``w.reshape(C, -1) @ cols`` (conv2d's forward) and the weight gradient
``x[b] @ cols.T`` summed into the thread's part (already in the weight's layout).
"""

cimport openmp
from cython.parallel cimport prange
from libc.string cimport memcpy

include "../_common.pxi"
include "_relu.pxi"
include "../_gemm.pxi"


cdef inline void _phase_rows(real* yrow, const real* src, Py_ssize_t zstride,
                             Py_ssize_t sw, Py_ssize_t wo, real bv) noexcept nogil:
    # one output row from its sw phases' rows (phase rx's at src + rx * zstride, its
    # pixels at columns rx, rx + sw, ...), plus the bias: one contiguous write
    cdef Py_ssize_t u, rx, half
    cdef const real* s0 = src
    cdef const real* s1 = src + zstride
    if sw == 1:
        for u in range(wo):
            yrow[u] = s0[u] + bv
    elif sw == 2:
        half = wo // 2
        for u in range(half):
            yrow[2 * u] = s0[u] + bv
            yrow[2 * u + 1] = s1[u] + bv
        if wo % 2:
            yrow[wo - 1] = s0[half] + bv
    else:
        for rx in range(sw):
            for u in range((wo - rx + sw - 1) // sw):
                yrow[u * sw + rx] = src[rx * zstride + u] + bv


def forward_phases(const real[:, :, :, ::1] x, const real[:, :, ::1] wt,
                   const Py_ssize_t[:, ::1] geo, const Py_ssize_t[:, ::1] taps,
                   const real[::1] bias, bint has_bias, real[:, :, :, ::1] y,
                   real[:, ::1] xpad, real[:, ::1] zbuf, Py_ssize_t[::1] held, int sh,
                   int sw, int pt, int pl, int hp, int wp, size_t gemm, int nt,
                   bint relu=False, unsigned char[:, :, :, ::1] mask=None, Py_ssize_t nb=1,
                   Py_ssize_t og=0):
    """y = the transposed convolution of x, one (block of ``nb`` images, group of ``og``
    output channels; 0: all) task at a time.

    ``geo[p] = (ry, rx, first, count, qh, qw)``: the phase's first output row and column,
    its taps ``taps[first:first + count]`` and its output grid; ``taps[t] = (tap, dy, dx)``:
    the tap's (O, C) weights ``wt[tap]`` and its input offset. Each thread copies its block
    of images into ``xpad[thread]`` (per channel, the block's images one after the other as
    planes of hp x wp, zero border: pt rows above, pl columns to the left; one spare row
    after the last channel; ``held[thread]``: the block it holds, -1 for none), where every
    tap's input is a matrix of C rows (stride nb planes) and (nb - 1) * hp * wp + qh * wp
    columns: the phase's output over the padded planes of the whole block, accumulated tap
    by tap in ``zbuf[thread]`` (the phases one after the other, each
    ``zbuf.shape[1] // len(geo)`` long) by one GEMM per tap reading the images in place.
    The first qw columns of the first qh rows of each image's plane are the phase's output
    pixels: each output row is then written once, contiguously, from its row's phases with
    its bias (with ``relu``, each output plane then as ``relu(v)``, 0 where v < 0 (NaN and
    -0.0 pass), and ``mask`` (y's shape) 1 where not v <= 0, the ReLU epilogue of
    ``kernels/fused``)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3], plane = hp * wp
    cdef Py_ssize_t nph = geo.shape[0], zstride = zbuf.shape[1] // nph
    cdef Py_ssize_t task, blk, grp, p, ry, first, cnt, qh, m, oc0, noc
    cdef Py_ssize_t nblk = (n + nb - 1) // nb
    cdef Py_ssize_t gsize = o if og <= 0 or og > o else og
    cdef Py_ssize_t ngrp = (o + gsize - 1) // gsize
    cdef Py_ssize_t chunk = ngrp if nblk >= 2 * nt else 1
    cdef Py_ssize_t ch, r, k, oc, t, tap, b0, nbb, j, b, cstride
    cdef int tid
    cdef real bv
    cdef real* xb
    cdef real* zb
    cdef real* row
    cdef real* yrow
    cdef const real* src
    with nogil:
        # a thread takes whole blocks (all their channel groups) when there are two or
        # more blocks per thread, so each block is padded once; otherwise single groups
        for task in prange(nblk * ngrp, schedule="dynamic", chunksize=chunk, num_threads=nt):
            blk = task // ngrp
            grp = task % ngrp
            oc0 = grp * gsize
            noc = min(gsize, o - oc0)
            b0 = blk * nb
            nbb = min(nb, n - b0)
            cstride = nbb * plane
            tid = openmp.omp_get_thread_num()
            xb = &xpad[tid, 0]
            if held[tid] != blk:  # the padded copy of the block, once per thread and block
                held[tid] = blk
                for ch in range(c):
                    for j in range(nbb):
                        for r in range(hp):
                            row = xb + ch * cstride + j * plane + r * wp
                            if r < pt or r >= pt + h:
                                for k in range(wp):
                                    row[k] = 0
                            else:
                                src = &x[b0 + j, ch, r - pt, 0]
                                for k in range(pl):
                                    row[k] = 0
                                for k in range(w):
                                    row[pl + k] = src[k]
                                for k in range(pl + w, wp):
                                    row[k] = 0
                for k in range(wp):
                    xb[c * cstride + k] = 0
            for p in range(nph):
                first = geo[p, 2]
                cnt = geo[p, 3]
                qh = geo[p, 4]
                if qh <= 0 or geo[p, 5] <= 0:
                    continue
                m = (nbb - 1) * plane + qh * wp
                zb = &zbuf[tid, 0] + p * zstride
                if cnt == 0:  # a phase no tap reaches: the bias alone
                    for k in range(noc * m):
                        zb[k] = 0
                for t in range(cnt):
                    tap = taps[first + t, 0]
                    _gemm(gemm, False, False, noc, m, c, &wt[tap, oc0, 0], c,
                          xb + (taps[first + t, 1] + pt) * wp + taps[first + t, 2] + pl,
                          cstride, 1 if t > 0 else 0, zb, m)
            for j in range(nbb):
                b = b0 + j
                for oc in range(oc0, oc0 + noc):
                    bv = bias[oc] if has_bias else 0
                    for r in range(ho):
                        ry = r % sh
                        t = r // sh
                        qh = geo[ry * sw, 4]
                        m = (nbb - 1) * plane + qh * wp
                        _phase_rows(&y[b, oc, r, 0],
                                    &zbuf[tid, 0] + ry * sw * zstride + (oc - oc0) * m
                                    + j * plane + t * wp, zstride, sw, wo, bv)
                    if relu:
                        _relu_row(&y[b, oc, 0, 0], &mask[b, oc, 0, 0], ho * wo)


cdef void _unfold1(const real* xb, real* cols, Py_ssize_t ld, Py_ssize_t c, Py_ssize_t h,
                   Py_ssize_t w, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                   Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t ho,
                   Py_ssize_t wo, Py_ssize_t ch0, Py_ssize_t ch1) noexcept nogil:
    # conv2d's unfold of one image xb (c, h, w) to cols (c*kh*kw rows of ho*wo, ``ld``
    # apart): the rows of channels ch0 to ch1 - 1
    cdef Py_ssize_t row, ch, i, j, oh, k, ih, off, lo, hi
    cdef real* dst
    cdef const real* src
    # filter columns outermost: each column's valid range [lo, hi) once, and the row index
    # by multiplication (a division per row cost as much as a short row's copy)
    for j in range(kw):
        off = j * dw - pw
        lo = _lo(off, sw, wo)
        hi = _hi(off, sw, w, wo, lo)
        for ch in range(ch0, ch1):
            for i in range(kh):
                row = (ch * kh + i) * kw + j
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    dst = cols + row * ld + oh * wo
                    if ih < 0 or ih >= h:
                        for k in range(wo):
                            dst[k] = 0
                        continue
                    for k in range(lo):
                        dst[k] = 0
                    for k in range(hi, wo):
                        dst[k] = 0
                    src = xb + (ch * h + ih) * w
                    if sw == 1:
                        for k in range(lo, hi):
                            dst[k] = src[k + off]
                    elif sw == 2:  # a constant stride the compiler turns into vector shuffles
                        for k in range(lo, hi):
                            dst[k] = src[2 * k + off]
                    else:
                        for k in range(lo, hi):
                            dst[k] = src[k * sw + off]


def backward_shared(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                    const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, :, ::1] gw_parts,
                    real[:, :, ::1] cols, bint need_x, bint need_w, int kh, int kw, int sh,
                    int sw, int ph, int pw, int dh, int dw, size_t gemm, int nt):
    """Per image: cols = unfold(gy[b]); gx[b] = w2 @ cols; gw_parts[thread] += x[b] @ cols.T
    (w2 = w.reshape(C, O*kh*kw), groups 1)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t plane = h * w, rows = o * kh * kw, b
    cdef int tid
    cdef real* cb
    with nogil:
        # static: each thread sums the same images in the same order on every call, so the
        # weight gradient (the parts summed in thread order) is repeatable
        for b in prange(n, schedule="static", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            cb = &cols[tid, 0, 0]
            _unfold1(&gy[b, 0, 0, 0], cb, plane, o, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, h, w,
                     0, o)
            if need_x:
                _gemm(gemm, False, False, c, plane, rows, &w2[0, 0], rows, cb, plane, 0,
                      &gx[b, 0, 0, 0], plane)
            if need_w:
                _gemm(gemm, False, True, c, rows, plane, &x[b, 0, 0, 0], plane, cb, plane, 1,
                      &gw_parts[tid, 0, 0], rows)


cdef inline Py_ssize_t _slice(Py_ssize_t total, Py_ssize_t parts) noexcept nogil:
    # rows per thread's slice of a GEMM, a multiple of 16 (whole vectors of the BLAS's
    # tiles) unless one slice takes all
    cdef Py_ssize_t s = (total + parts - 1) // parts
    s = (s + 15) // 16 * 16
    return s if s < total else total


def forward_batched(const real[:, :, :, ::1] x, const real[:, ::1] w2, const real[::1] bias,
                    bint has_bias, real[:, :, :, ::1] y, real[::1] xb, real[::1] cols,
                    int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                    Py_ssize_t chunk, size_t gemm, int nt):
    """y = the transposed convolution of x by one GEMM per ``chunk`` of images: the chunk's
    images side by side as ``xb`` (C, chunk * H * W), ``cols = w2.T @ xb`` (w2 = w.reshape(C,
    O*kh*kw); its rows split among the threads, each a one-thread GEMM) and each (image,
    output channel) plane folded from its rows of cols (its bias first, then its taps in
    (j, i) order), the planes shared among the threads. For small planes, where one GEMM per
    image (col2im) or per phase would have a few dozen columns: here a chunk's images
    together fill the GEMM's columns."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t plane = h * w, rows = w2.shape[1], rs = _slice(rows, nt)
    cdef Py_ssize_t blk, b0, m, ld, t, j, ch, part, r0, nr, oc, i, jj, a, r, off, lo, hi, u
    cdef real bv
    cdef real* yp
    cdef real* row
    cdef const real* src
    with nogil:
        for blk in range((n + chunk - 1) // chunk):
            b0 = blk * chunk
            m = min(chunk, n - b0)
            ld = m * plane
            for t in prange(m * c, schedule="static", num_threads=nt):
                j = t // c
                ch = t % c
                memcpy(&xb[ch * ld + j * plane], &x[b0 + j, ch, 0, 0], plane * sizeof(real))
            for part in prange((rows + rs - 1) // rs, schedule="static", num_threads=nt):
                r0 = part * rs
                nr = min(rs, rows - r0)
                _gemm(gemm, True, False, nr, ld, c, &w2[0, r0], rows, &xb[0], ld, 0,
                      &cols[r0 * ld], ld)
            # output channels outermost: each thread folds (about) the channels whose rows
            # of cols its own GEMM slice wrote, still in its core's cache
            for t in prange(m * o, schedule="static", num_threads=nt):
                oc = t // m
                j = t % m
                yp = &y[b0 + j, oc, 0, 0]
                bv = bias[oc] if has_bias else 0
                for u in range(ho * wo):
                    yp[u] = bv
                # filter columns outermost: each column's valid range computed once
                for jj in range(kw):
                    off = jj * dw - pw
                    lo = _lo(off, sw, w)
                    hi = _hi(off, sw, wo, w, lo)
                    for i in range(kh):
                        src = &cols[((oc * kh + i) * kw + jj) * ld + j * plane]
                        for a in range(h):
                            r = a * sh - ph + i * dh
                            if r < 0 or r >= ho:
                                continue
                            row = yp + r * wo + off
                            for u in range(lo, hi):
                                row[u * sw] += src[a * w + u]


cdef inline double _plane_sum(const real* g, Py_ssize_t size) noexcept nogil:
    # g[0:size] summed in double precision: 8 running sums (lane k takes g[k], g[k + 8],
    # ...; independent chains, one vector of them), then added in lane order
    cdef double lanes[8]
    cdef double total = 0
    cdef Py_ssize_t u, k, full = size // 8 * 8
    for k in range(8):
        lanes[k] = 0
    for u in range(0, full, 8):
        for k in range(8):
            lanes[k] = lanes[k] + g[u + k]
    for k in range(8):
        total = total + lanes[k]
    for u in range(full, size):
        total = total + g[u]
    return total


def backward_batched(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                     const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, ::1] gw,
                     real[::1] xb, real[::1] cols, real[::1] gxb, bint need_x, bint need_w,
                     int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                     Py_ssize_t chunk, size_t gemm, int nt, real[::1] gb=None):
    """Both gradients by one GEMM each per ``chunk`` of images: the chunk's output gradients
    unfolded side by side into ``cols`` (O*kh*kw, chunk * H * W), then ``gx = w2 @ cols``
    (its input channels split among the threads, into ``gxb`` and copied to each image)
    and ``gw += xb @ cols.T`` (xb: the chunk's images side by side, (C, chunk * H * W); its
    columns split among the threads, each writing its own columns of gw: no partial sums
    per thread, the chunks added in order). For small planes, where the per-image GEMMs
    of ``backward_shared`` have a few dozen columns. With ``gb`` (O,): the bias gradient
    too, gy's per-channel sum (images in order, each plane by ``_plane_sum``, in double
    precision), the channels shared among the threads."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t plane = h * w, rows = w2.shape[1]
    cdef Py_ssize_t cs = _slice(c, nt), rs = _slice(rows, nt)
    cdef Py_ssize_t nparts = max((c + cs - 1) // cs if need_x else 0,
                                 (rows + rs - 1) // rs if need_w else 0)
    cdef Py_ssize_t blk, b0, m, ld, t, j, ch, part, c0, r0, oc, u, pix = ho * wo
    cdef Py_ssize_t osz = (o + nt - 1) // nt
    cdef double acc
    with nogil:
        if gb is not None:
            for oc in prange(o, schedule="static", num_threads=nt):
                acc = 0
                for j in range(n):
                    acc = acc + _plane_sum(&gy[j, oc, 0, 0], pix)
                gb[oc] = <real>acc
        for blk in range((n + chunk - 1) // chunk):
            b0 = blk * chunk
            m = min(chunk, n - b0)
            ld = m * plane
            # per thread a range of gy's channels over the chunk's images: the rows of cols
            # its slice of the weight gradient's GEMM reads next, written by its own core
            for t in prange(nt * m, schedule="static", num_threads=nt):
                j = t % m
                ch = t // m * osz
                if ch < o:
                    _unfold1(&gy[b0 + j, 0, 0, 0], &cols[j * plane], ld, o, ho, wo, kh, kw,
                             sh, sw, ph, pw, dh, dw, h, w, ch, min(o, ch + osz))
            if need_w:
                for t in prange(m * c, schedule="static", num_threads=nt):
                    j = t // c
                    ch = t % c
                    memcpy(&xb[ch * ld + j * plane], &x[b0 + j, ch, 0, 0],
                           plane * sizeof(real))
            for part in prange(nparts, schedule="static", num_threads=nt):
                c0 = part * cs
                if need_x and c0 < c:
                    _gemm(gemm, False, False, min(cs, c - c0), ld, rows, &w2[c0, 0], rows,
                          &cols[0], ld, 0, &gxb[c0 * ld], ld)
                r0 = part * rs
                if need_w and r0 < rows:
                    _gemm(gemm, False, True, c, min(rs, rows - r0), ld, &xb[0], ld,
                          &cols[r0 * ld], ld, 1 if b0 > 0 else 0, &gw[0, r0], rows)
            if need_x:
                for t in prange(m * c, schedule="static", num_threads=nt):
                    j = t // c
                    ch = t % c
                    memcpy(&gx[b0 + j, ch, 0, 0], &gxb[ch * ld + j * plane],
                           plane * sizeof(real))
