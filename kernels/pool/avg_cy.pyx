"""Average pooling with Cython + OpenMP: the same loops as ``avg_numba``."""

import numpy as np

cimport openmp
from cython.parallel cimport prange


include "../_common.pxi"


cdef inline Py_ssize_t _start(Py_ssize_t o, Py_ssize_t s, Py_ssize_t p) noexcept nogil:
    return o * s - p


cdef inline Py_ssize_t _end(Py_ssize_t start, Py_ssize_t k, Py_ssize_t n,
                            Py_ssize_t p) noexcept nogil:
    return start + k if start + k < n + p else n + p


def _forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int kh, int kw, int sh, int sw,
             int ph, int pw, bint cip):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef int nt = 0
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw, hs, he, ws, we, h0, h1, w0, w1, div
    cdef double s
    nt = _team(n * c * (h * w + ho * wo * kh * kw))
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for oh in range(ho):
                hs = _start(oh, sh, ph)
                he = _end(hs, kh, h, ph)
                h0 = hs if hs > 0 else 0
                h1 = he if he < h else h
                for ow in range(wo):
                    ws = _start(ow, sw, pw)
                    we = _end(ws, kw, w, pw)
                    w0 = ws if ws > 0 else 0
                    w1 = we if we < w else w
                    div = (he - hs) * (we - ws) if cip else (h1 - h0) * (w1 - w0)
                    s = 0
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            s = s + x[b, ch, ih, iw]
                    y[b, ch, oh, ow] = <real>(s / div)


def _backward(const real[:, :, :, ::1] gy, real[:, :, :, ::1] gx, int kh, int kw, int sh, int sw,
              int ph, int pw, bint cip):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef int nt = 0
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw, hs, he, ws, we, h0, h1, w0, w1, div
    cdef real g
    nt = _team(n * c * (h * w + ho * wo * kh * kw))
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for ih in range(h):
                for iw in range(w):
                    gx[b, ch, ih, iw] = 0
            for oh in range(ho):
                hs = _start(oh, sh, ph)
                he = _end(hs, kh, h, ph)
                h0 = hs if hs > 0 else 0
                h1 = he if he < h else h
                for ow in range(wo):
                    ws = _start(ow, sw, pw)
                    we = _end(ws, kw, w, pw)
                    w0 = ws if ws > 0 else 0
                    w1 = we if we < w else w
                    div = (he - hs) * (we - ws) if cip else (h1 - h0) * (w1 - w0)
                    g = gy[b, ch, oh, ow] / div
                    for ih in range(h0, h1):
                        for iw in range(w0, w1):
                            gx[b, ch, ih, iw] += g


def forward(x, kernel, stride, padding, out_hw, count_include_pad):
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    _forward(x, y, *kernel, *stride, *padding, bool(count_include_pad))
    return y


def backward(gy, x_shape, kernel, stride, padding, count_include_pad):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward(gy, gx, *kernel, *stride, *padding, bool(count_include_pad))
    return gx
