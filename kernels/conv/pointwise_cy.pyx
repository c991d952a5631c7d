"""1x1 convolutions (any stride, no padding, one group) as GEMMs on the NCHW data as it lies,
compiled with Cython + OpenMP.

A 1x1 convolution of one image is ``y[b] = w2 @ x[b]`` with ``w2`` (O, C) and ``x[b]``
(C, H*W): no unfold. Each OpenMP thread takes whole images (static schedule) and calls
NumPy's own ``cblas_?gemm`` on one BLAS thread, so the images' GEMMs run side by side
instead of one small multithreaded GEMM after another (the forward hands out images
dynamically, the backward statically: see below). With a stride the thread first
gathers its image's sampled pixels (C, Ho*Wo) into its own buffer.

Backward, per image: ``gx[b] = w2.T @ gy[b]`` (scattered back to the sampled pixels when
strided) and ``gw_parts[thread] += gy[b] @ x[b].T``; the parts are summed in thread
order after the loop, so the weight gradient is the same on every call. Calls of any
other shape go to ``im2col-cython``.

Bounds and wraparound checks are set by the build (setup.py), not here.
"""

cimport openmp
from cython.parallel cimport prange

import numpy as np

from .. import cblas, memory, threads
from . import im2col_cy as _fallback
from .im2col import workspace


include "../_common.pxi"
include "../_gemm.pxi"


cdef inline void _gather(const real* xb, real* dst, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                         Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ho,
                         Py_ssize_t wo) noexcept nogil:
    # dst[ci, oh, ow] = xb[ci, oh * sh, ow * sw]
    cdef Py_ssize_t ci, oh, ow
    cdef const real* src
    cdef real* d
    for ci in range(c):
        for oh in range(ho):
            src = xb + (ci * h + oh * sh) * w
            d = dst + (ci * ho + oh) * wo
            for ow in range(wo):
                d[ow] = src[ow * sw]


cdef inline void _scatter(const real* src, real* gxb, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                          Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ho, Py_ssize_t wo,
                          bint add) noexcept nogil:
    # gxb[ci, oh * sh, ow * sw] = src[ci, oh, ow] and every other pixel 0; with ``add``,
    # gxb[ci, oh * sh, ow * sw] += src[ci, oh, ow] and the other pixels left as they are
    cdef Py_ssize_t k, ci, oh, ow
    cdef const real* s
    cdef real* d
    if not add:
        for k in range(c * h * w):
            gxb[k] = 0
    for ci in range(c):
        for oh in range(ho):
            s = src + (ci * ho + oh) * wo
            d = gxb + (ci * h + oh * sh) * w
            if add:
                for ow in range(wo):
                    d[ow * sw] = d[ow * sw] + s[ow]
            else:
                for ow in range(wo):
                    d[ow * sw] = s[ow]


def forward_threads(const real[:, :, :, ::1] x, const real[:, ::1] w2, const real[::1] bias,
                    bint has_bias, real[:, :, :, ::1] y, real[:, ::1] buf, int sh, int sw,
                    size_t gemm, int nt):
    """y[b] = w2 @ x[b][:, ::sh, ::sw] (+ bias), whole images per thread."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t p = ho * wo, b, oc, q
    cdef bint strided = sh != 1 or sw != 1
    cdef int tid
    cdef real bv
    cdef const real* src
    cdef real* yp
    with nogil:
        # dynamic: no sum crosses images, and a thread that loses its core to another
        # process leaves its remaining images to the others
        for b in prange(n, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            src = &x[b, 0, 0, 0]
            if strided:
                _gather(src, &buf[tid, 0], c, h, w, sh, sw, ho, wo)
                src = &buf[tid, 0]
            _gemm(gemm, False, False, o, p, c, &w2[0, 0], c, src, p, 0, &y[b, 0, 0, 0], p)
            if has_bias:
                for oc in range(o):
                    bv = bias[oc]
                    yp = &y[b, oc, 0, 0]
                    for q in range(p):
                        yp[q] = yp[q] + bv


def backward_threads(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                     const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, :, ::1] parts,
                     real[:, ::1] buf, bint need_x, bint need_w, int sh, int sw, size_t gemm,
                     int nt, bint accumulate=False):
    """gx[b] = scatter(w2.T @ gy[b]); parts[thread] += gy[b] @ x[b][:, ::sh, ::sw].T.
    With ``accumulate``, gx holds a gradient already and the input gradient is added to
    it (the GEMM's beta = 1, or an add at the sampled pixels only when strided)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t p = ho * wo, b
    cdef bint strided = sh != 1 or sw != 1
    cdef int tid
    cdef const real* src
    with nogil:
        # static: each thread sums the same images in the same order on every call
        for b in prange(n, schedule="static", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            if need_w:
                src = &x[b, 0, 0, 0]
                if strided:
                    _gather(src, &buf[tid, 0], c, h, w, sh, sw, ho, wo)
                    src = &buf[tid, 0]
                _gemm(gemm, False, True, o, c, p, &gy[b, 0, 0, 0], p, src, p, 1,
                      &parts[tid, 0, 0], c)
            if need_x:
                if strided:
                    _gemm(gemm, True, False, c, p, o, &w2[0, 0], c, &gy[b, 0, 0, 0], p, 0,
                          &buf[tid, 0], p)
                    _scatter(&buf[tid, 0], &gx[b, 0, 0, 0], c, h, w, sh, sw, ho, wo,
                             accumulate)
                else:
                    _gemm(gemm, True, False, c, p, o, &w2[0, 0], c, &gy[b, 0, 0, 0], p,
                          1 if accumulate else 0, &gx[b, 0, 0, 0], p)


def applies(w_shape, padding, dilation, groups) -> bool:
    """A 1x1 kernel, no padding, one group (any stride; dilation does not matter)."""
    return tuple(w_shape[2:]) == (1, 1) and not any(padding) and groups == 1


def _gemm_for(x, w, gy_or_y_size):
    if x.size == 0 or w.size == 0 or gy_or_y_size == 0:
        return None
    if x.dtype not in (np.float32, np.float64) or w.dtype != x.dtype:
        return None
    return cblas.gemm_address(x.dtype)


def _team_size(macs):
    return 1 if macs < _GRAIN else threads.get_num_threads()


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o = w.shape[0]
    sh, sw = int(stride[0]), int(stride[1])
    ho, wo = (h - 1) // sh + 1 if h else 0, (wd - 1) // sw + 1 if wd else 0
    gemm = _gemm_for(x, w, n * o * ho * wo) if applies(w.shape, padding, dilation, groups) else None
    if gemm is None:
        return _fallback.forward(x, w, b, stride, padding, dilation, groups)
    strided = (sh, sw) != (1, 1)
    nt = _team_size(n * o * ho * wo * c)
    memory.check_fits("conv2d (pointwise)", {
        "sampled pixels": nt * c * ho * wo * x.itemsize if strided else 0,
        "output": n * o * ho * wo * x.itemsize,
    })
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    buf = (workspace("pointwise-t", (nt, c * ho * wo), x.dtype) if strided
           else np.empty((1, 1), dtype=x.dtype))
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    with cblas.single_threaded():
        forward_threads(x, w.reshape(o, c), bias, b is not None, y, buf, sh, sw, gemm, nt)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    return _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, None)


def backward_accumulate(gy, x, w, stride, padding, dilation, groups, need_w, acc):
    """``backward`` with the input gradient added into ``acc`` (x's shape and dtype, C-
    contiguous, writable: a gradient the tape already holds for x) instead of a new
    array: ``(acc, gw)``. Strided calls add only at the sampled pixels, so the zeros of
    a strided 1x1 call's input gradient are never written or read again."""
    return _backward(gy, x, w, stride, padding, dilation, groups, True, need_w, acc)


def _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, acc):
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = gy.shape[2:]
    sh, sw = int(stride[0]), int(stride[1])
    gemm = _gemm_for(x, w, gy.size) if applies(w.shape, padding, dilation, groups) else None
    if gemm is None or not (need_x or need_w) or gy.dtype != x.dtype:
        gx, gw = _fallback.backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w)
        if acc is not None:
            gx = np.add(acc, gx, out=acc)
        return gx, gw
    strided = (sh, sw) != (1, 1)
    nt = _team_size(n * o * ho * wo * c)
    memory.check_fits("conv2d (pointwise) backward", {
        "sampled pixels": nt * c * ho * wo * x.itemsize if strided else 0,
        "input gradient": x.nbytes if need_x and acc is None else 0,
        "weight gradient": (nt + 1) * w.nbytes if need_w else 0,
    })
    gy = np.ascontiguousarray(gy)
    if acc is not None:
        gx = acc
    else:
        gx = np.empty_like(x) if need_x else np.empty((1, 1, 1, 1), dtype=x.dtype)
    parts = (np.zeros((nt, o, c), dtype=x.dtype) if need_w
             else np.empty((1, 1, 1), dtype=x.dtype))
    buf = (workspace("pointwise-t", (nt, c * ho * wo), x.dtype) if strided
           else np.empty((1, 1), dtype=x.dtype))
    with cblas.single_threaded():
        backward_threads(gy, x, w.reshape(o, c), gx, parts, buf, need_x, need_w, sh, sw, gemm,
                         nt, acc is not None)
    gw = None
    if need_w:
        gw2 = parts[0]
        for t in range(1, nt):  # thread order: the same sum on every call
            gw2 = gw2 + parts[t]
        gw = gw2.reshape(w.shape)
    return (gx if need_x else None), gw
