"""im2col convolution, unfold and fold compiled with Cython + OpenMP (see ``im2col.py``).

Bounds and wraparound checks are set by the build (setup.py), not here, so the tests
can build a checked copy.
"""

cimport openmp
from cython.parallel cimport prange

import numpy as np

from .. import cblas, threads
from . import im2col as _alg
from .im2col import workspace


include "../_common.pxi"
include "../_gemm.pxi"


def im2col(const real[:, :, :, ::1] x, real[:, ::1] cols, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int ho, int wo):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t plane = ho * wo, row, ch, i, j, b, oh, k, ih, off, lo, hi
    cdef real* dst
    cdef const real* src
    nt = _team(c * kh * kw * n * plane)
    with nogil:
        for row in prange(c * kh * kw, schedule="static", num_threads=nt):
            ch = row // (kh * kw)
            i = (row // kw) % kh
            j = row % kw
            off = j * dw - pw
            # columns reading inside the image: one range per tap, no per-pixel branch
            lo = _lo(off, sw, wo)
            hi = _hi(off, sw, w, wo, lo)
            for b in range(n):
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    dst = &cols[row, b * plane + oh * wo]
                    if ih < 0 or ih >= h:
                        for k in range(wo):
                            dst[k] = 0
                        continue
                    for k in range(lo):
                        dst[k] = 0
                    for k in range(hi, wo):
                        dst[k] = 0
                    src = &x[b, ch, ih, 0]
                    if sw == 1:
                        for k in range(lo, hi):
                            dst[k] = src[k + off]
                    else:
                        for k in range(lo, hi):
                            dst[k] = src[k * sw + off]


def col2im(const real[:, ::1] cols, real[:, :, :, ::1] gx, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int ho, int wo):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef int nt
    cdef Py_ssize_t plane = ho * wo, bc, b, ch, i, j, oh, k, ih, iw, row, off, lo, hi
    cdef real* dst
    cdef const real* src
    nt = _team(c * kh * kw * n * plane)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for ih in range(h):
                for iw in range(w):
                    gx[b, ch, ih, iw] = 0
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    off = j * dw - pw
                    lo = _lo(off, sw, wo)
                    hi = _hi(off, sw, w, wo, lo)
                    for oh in range(ho):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        src = &cols[row, b * plane + oh * wo]
                        dst = &gx[b, ch, ih, 0]
                        if sw == 1:
                            for k in range(lo, hi):
                                dst[k + off] += src[k]
                        else:
                            for k in range(lo, hi):
                                dst[k * sw + off] += src[k]


# One image's unfold and fold, serial: the per-thread pieces of the threaded drivers below.
cdef void _unfold1(const real* xb, real* cols, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                   Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                   Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t ho,
                   Py_ssize_t wo) noexcept nogil:
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
            else:
                for k in range(lo, hi):
                    dst[k] = src[k * sw + off]


cdef void _fold1(const real* cols, real* gxb, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                 Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                 Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t ho,
                 Py_ssize_t wo) noexcept nogil:
    cdef Py_ssize_t plane = ho * wo, ch, i, j, oh, k, ih, row, off, lo, hi
    cdef real* dst
    cdef const real* src
    for k in range(c * h * w):
        gxb[k] = 0
    for ch in range(c):  # one channel plane takes all its taps while it is in cache
        for i in range(kh):
            for j in range(kw):
                row = (ch * kh + i) * kw + j
                off = j * dw - pw
                lo = _lo(off, sw, wo)
                hi = _hi(off, sw, w, wo, lo)
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    src = cols + row * plane + oh * wo
                    dst = gxb + (ch * h + ih) * w
                    if sw == 1:
                        for k in range(lo, hi):
                            dst[k + off] += src[k]
                    else:
                        for k in range(lo, hi):
                            dst[k * sw + off] += src[k]


def forward_threads(const real[:, :, :, ::1] x, const real[:, ::1] w2, const real[::1] bias,
                    bint has_bias, real[:, :, :, ::1] y, real[:, :, ::1] cols, int kh, int kw,
                    int sh, int sw, int ph, int pw, int dh, int dw, int groups, size_t gemm,
                    int nt):
    """y[b] = w2 @ unfold(x[b]) (+ bias): each thread takes whole images, unfolds one into
    its own column buffer ``cols[thread]`` and multiplies it straight into ``y[b]``."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t plane = ho * wo, k = (c // groups) * kh * kw, og = o // groups
    cdef Py_ssize_t b, g, oc, q
    cdef int tid
    cdef real bv
    cdef real* cb
    cdef real* yp
    with nogil:
        for b in prange(n, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            cb = &cols[tid, 0, 0]
            _unfold1(&x[b, 0, 0, 0], cb, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)
            for g in range(groups):
                _gemm(gemm, False, False, og, plane, k, &w2[g * og, 0], k,
                      cb + g * k * plane, plane, 0, &y[b, g * og, 0, 0], plane)
            if has_bias:
                for oc in range(o):
                    bv = bias[oc]
                    yp = &y[b, oc, 0, 0]
                    for q in range(plane):
                        yp[q] = yp[q] + bv


def backward_threads(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                     const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, :, :, ::1] gw_parts,
                     real[:, :, ::1] cols, real[:, :, ::1] gcols, bint need_x, bint need_w,
                     int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                     int groups, size_t gemm, int nt):
    """Each thread takes whole images: ``gw_parts[thread, g] += unfold(x[b])_g @ gy[b]_g.T``
    (the weight gradient transposed, summed over the thread's images) and
    ``gx[b] = fold(w2.T @ gy[b])``."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t plane = ho * wo, k = (c // groups) * kh * kw, og = o // groups
    cdef Py_ssize_t b, g
    cdef int tid
    cdef real* cb
    cdef real* gc
    with nogil:
        # static: each thread sums the same images in the same order on every call, so the
        # weight gradient (the per-thread parts summed in thread order) is repeatable
        for b in prange(n, schedule="static", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            if need_w:
                cb = &cols[tid, 0, 0]
                _unfold1(&x[b, 0, 0, 0], cb, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)
                for g in range(groups):
                    _gemm(gemm, False, True, k, og, plane, cb + g * k * plane, plane,
                          &gy[b, g * og, 0, 0], plane, 1, &gw_parts[tid, g, 0, 0], og)
            if need_x:
                gc = &gcols[tid, 0, 0]
                for g in range(groups):
                    _gemm(gemm, True, False, k, plane, og, &w2[g * og, 0], k,
                          &gy[b, g * og, 0, 0], plane, 0, gc + g * k * plane, plane)
                _fold1(gc, &gx[b, 0, 0, 0], c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)


# The threaded drivers need at least this many output pixels per image: below it one GEMM
# per image is too small and the whole batch's columns in one GEMM (im2col.py) is kept.
_THREADS_MIN_PLANE = 64


def _threaded(x, w, stride, padding, ho, wo):
    """The GEMM address when the threaded drivers run this call, else None."""
    if ho * wo < _THREADS_MIN_PLANE or x.size == 0 or w.size == 0:
        return None
    if x.dtype not in (np.float32, np.float64) or _alg._pointwise(w, stride, padding, 1):
        return None
    return cblas.gemm_address(x.dtype)


def _team_size(macs):
    return 1 if macs < _GRAIN else threads.get_num_threads()


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = _alg._out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _alg._out_size(wd, kw, stride[1], padding[1], dilation[1])
    gemm = _threaded(x, w, stride, padding, ho, wo) if groups == 1 or c % groups == 0 else None
    if gemm is None or ho <= 0 or wo <= 0:
        return _alg.forward(im2col, x, w, b, stride, padding, dilation, groups)
    # the batch-wide column limit holds here too (a call refused by one driver is refused
    # by both), though these buffers are per thread
    _alg._check_cols(x, kh, kw, ho, wo, "conv2d (im2col)")
    nt = _team_size(n * o * ho * wo * cg * kh * kw)
    rows = c * kh * kw
    _alg.memory.check_fits("conv2d (im2col)", {
        "column buffers": _alg._growth("cols-t", (nt, rows, ho * wo), x.dtype),
        "output": n * o * ho * wo * x.itemsize,
    })
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    cols = workspace("cols-t", (nt, rows, ho * wo), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    with cblas.single_threaded():
        forward_threads(x, w.reshape(o, cg * kh * kw), bias, b is not None, y, cols, kh, kw,
                        *stride, *padding, *dilation, groups, gemm, nt)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    gemm = _threaded(x, w, stride, padding, ho, wo) if gy.size else None
    if gemm is None or not (need_x or need_w):
        return _alg.backward(im2col, col2im, gy, x, w, stride, padding, dilation, groups,
                             need_x, need_w)
    _alg._check_cols(x, kh, kw, ho, wo, "conv2d (im2col)")
    nt = _team_size(n * o * ho * wo * cg * kh * kw)
    rows, og, k = c * kh * kw, o // groups, cg * kh * kw
    _alg.memory.check_fits("conv2d (im2col) backward", {
        "column buffers": _alg._growth("cols-t", (nt, rows, ho * wo), x.dtype) if need_w else 0,
        "column gradients": (_alg._growth("gcols-t", (nt, rows, ho * wo), x.dtype)
                             if need_x else 0),
        "input gradient": x.nbytes if need_x else 0,
        "weight gradient": (nt + 1) * w.nbytes if need_w else 0,
    })
    gy = np.ascontiguousarray(gy)
    gx = np.empty_like(x) if need_x else np.empty((1, 1, 1, 1), dtype=x.dtype)
    parts = (np.zeros((nt, groups, k, og), dtype=x.dtype) if need_w
             else np.empty((1, 1, 1, 1), dtype=x.dtype))
    cols = (workspace("cols-t", (nt, rows, ho * wo), x.dtype) if need_w
            else np.empty((1, 1, 1), dtype=x.dtype))
    gcols = (workspace("gcols-t", (nt, rows, ho * wo), x.dtype) if need_x
             else np.empty((1, 1, 1), dtype=x.dtype))
    with cblas.single_threaded():
        backward_threads(gy, x, w.reshape(o, k), gx, parts, cols, gcols, need_x, need_w,
                         kh, kw, *stride, *padding, *dilation, groups, gemm, nt)
    gw = None
    if need_w:
        gw_t = parts.sum(axis=0) if nt > 1 else parts[0]
        gw = np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape(w.shape).astype(w.dtype, copy=False)
    return (gx if need_x else None), gw
