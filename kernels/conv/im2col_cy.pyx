"""im2col convolution, unfold and fold compiled with Cython + OpenMP (see ``im2col.py``).

Bounds and wraparound checks are set by the build (setup.py), not here, so the tests
can build a checked copy.
"""

cimport openmp
from cython.parallel cimport prange

from . import im2col as _alg


include "../_common.pxi"


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


def forward(x, w, b, stride, padding, dilation, groups):
    return _alg.forward(im2col, x, w, b, stride, padding, dilation, groups)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    return _alg.backward(im2col, col2im, gy, x, w, stride, padding, dilation, groups,
                         need_x, need_w)
