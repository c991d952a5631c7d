"""Transposed convolution by output phases (sub-pixel decomposition), Cython + OpenMP.

Forward: the output pixels of one phase ``(ry, rx)`` (rows ``ry, ry + sh, ...``, columns
``rx, rx + sw, ...``) take only the filter taps ``(i, j)`` with ``(ry + ph - i*dh) % sh == 0``
and ``(rx + pw - j*dw) % sw == 0``, each reading the input at a fixed offset: a small
stride-1 convolution with that sub-kernel. Per image and phase a thread unfolds the input
for the phase's taps, multiplies the phase's weights by it (one GEMM through NumPy's
cblas) and writes each output pixel once with its bias: no column matrix scattered and
added into the output afterwards. For stride 2 and a 4x4 kernel each of the four phases
is a 2x2 convolution; for a 3x3 kernel the phases have 2x2, 2x1, 1x2 and 1x1 taps.

Backward: per image, one unfold of the output gradient (conv2d's im2col with the
transposed convolution's stride, padding and dilation) serves both GEMMs: the input
gradient ``w.reshape(C, -1) @ cols`` (conv2d's forward) and the weight gradient
``x[b] @ cols.T`` summed into the thread's part (already in the weight's layout).
"""

cimport openmp
from cython.parallel cimport prange

include "../_common.pxi"
include "../_gemm.pxi"


def forward_phases(const real[:, :, :, ::1] x, const real[:, :, ::1] wt,
                   const Py_ssize_t[:, ::1] geo, const Py_ssize_t[:, ::1] taps,
                   const real[::1] bias, bint has_bias, real[:, :, :, ::1] y,
                   real[:, ::1] xpad, real[:, ::1] zbuf, Py_ssize_t[::1] held, int sh,
                   int sw, int pt, int pl, int hp, int wp, size_t gemm, int nt,
                   bint relu=False, unsigned char[:, :, :, ::1] mask=None):
    """y = the transposed convolution of x, one (image, phase) task at a time.

    ``geo[p] = (ry, rx, first, count, qh, qw)``: the phase's first output row and column,
    its taps ``taps[first:first + count]`` and its output grid; ``taps[t] = (tap, dy, dx)``:
    the tap's (O, C) weights ``wt[tap]`` and its input offset. Each thread copies its image
    into ``xpad[thread]`` (C planes of hp x wp, zero border: pt rows above, pl columns to
    the left, one spare row; ``held[thread]``: the image it holds, -1 for none), where every tap's input is a matrix of C rows (stride one
    plane) and qh * wp columns: the phase's output over the padded width, accumulated tap
    by tap in ``zbuf`` by GEMMs reading the image in place. The first qw columns of each
    row are the phase's output pixels, written once with their bias (with ``relu``: as
    ``relu(v)``, 0 where v < 0 (NaN and -0.0 pass), and ``mask`` (y's shape) 1 where not
    v <= 0, the ReLU epilogue of ``kernels/fused``)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], plane = hp * wp
    cdef Py_ssize_t nph = geo.shape[0], task, b, p, ry, rx, first, cnt, qh, qw, m
    cdef Py_ssize_t chunk = nph if n >= 2 * nt else 1
    cdef Py_ssize_t ch, r, k, oc, t, u, tap
    cdef int tid
    cdef real bv, v
    cdef real* xb
    cdef unsigned char* mrow
    cdef real* zb
    cdef real* row
    cdef real* yrow
    cdef const real* src
    with nogil:
        # a thread takes whole images (all their phases) when the batch has two or more per
        # thread, so each image is padded once; otherwise single phases, for small batches
        for task in prange(n * nph, schedule="dynamic", chunksize=chunk, num_threads=nt):
            b = task // nph
            p = task % nph
            tid = openmp.omp_get_thread_num()
            xb = &xpad[tid, 0]
            if held[tid] != b:  # the padded copy of image b, once per thread and image
                held[tid] = b
                for ch in range(c):
                    for r in range(hp):
                        row = xb + ch * plane + r * wp
                        if r < pt or r >= pt + h:
                            for k in range(wp):
                                row[k] = 0
                        else:
                            src = &x[b, ch, r - pt, 0]
                            for k in range(pl):
                                row[k] = 0
                            for k in range(w):
                                row[pl + k] = src[k]
                            for k in range(pl + w, wp):
                                row[k] = 0
                for k in range(wp):
                    xb[c * plane + k] = 0
            ry = geo[p, 0]
            rx = geo[p, 1]
            first = geo[p, 2]
            cnt = geo[p, 3]
            qh = geo[p, 4]
            qw = geo[p, 5]
            m = qh * wp
            zb = &zbuf[tid, 0]
            if qh > 0 and qw > 0:
                for t in range(cnt):
                    tap = taps[first + t, 0]
                    _gemm(gemm, False, False, o, m, c, &wt[tap, 0, 0], c,
                          xb + (taps[first + t, 1] + pt) * wp + taps[first + t, 2] + pl, plane,
                          1 if t > 0 else 0, zb, m)
                for oc in range(o):
                    bv = bias[oc] if has_bias else 0
                    for t in range(qh):
                        yrow = &y[b, oc, ry + sh * t, rx]
                        if relu:
                            mrow = &mask[b, oc, ry + sh * t, rx]
                            for u in range(qw):
                                v = (zb[oc * m + t * wp + u] if cnt > 0 else 0) + bv
                                mrow[u * sw] = 0 if v <= 0 else 1
                                yrow[u * sw] = 0 if v < 0 else v
                        elif cnt > 0:
                            src = zb + oc * m + t * wp
                            if sw == 2:
                                for u in range(qw):
                                    yrow[2 * u] = src[u] + bv
                            else:
                                for u in range(qw):
                                    yrow[u * sw] = src[u] + bv
                        else:  # a phase no tap reaches: the bias alone
                            for u in range(qw):
                                yrow[u * sw] = bv


cdef void _unfold1(const real* xb, real* cols, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                   Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                   Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t ho,
                   Py_ssize_t wo) noexcept nogil:
    # conv2d's unfold of one image xb (c, h, w) to cols (c*kh*kw, ho*wo)
    cdef Py_ssize_t plane = ho * wo, row, ch, i, j, oh, k, ih, off, lo, hi
    cdef real* dst
    cdef const real* src
    for row in range(c * kh * kw):
        ch = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        off = j * dw - pw
        lo = _lo(off, sw, wo)
        hi = _hi(off, sw, w, wo, lo)
        for oh in range(ho):
            ih = oh * sh - ph + i * dh
            dst = cols + row * plane + oh * wo
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
            _unfold1(&gy[b, 0, 0, 0], cb, o, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, h, w)
            if need_x:
                _gemm(gemm, False, False, c, plane, rows, &w2[0, 0], rows, cb, plane, 0,
                      &gx[b, 0, 0, 0], plane)
            if need_w:
                _gemm(gemm, False, True, c, rows, plane, &x[b, 0, 0, 0], plane, cb, plane, 1,
                      &gw_parts[tid, 0, 0], rows)
