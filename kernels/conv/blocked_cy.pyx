"""Direct convolution blocked in vector registers, compiled with Cython + OpenMP.

For calls with few channels, where im2col's column buffer and small GEMMs cost more than
the arithmetic. Each thread takes whole images: it copies one image, zero-padded, into
its own buffer split by column phase (``xq[c, row, p, q] = xpad[c, row, q * s + p]`` for
stride ``s``), so every filter tap reads ``_VW`` consecutive values for ``_VW`` consecutive
output columns whatever the stride, with no border test. The output is computed in tiles
of ``_OB`` output channels by ``_VW`` output columns: ``_OB * _VW`` accumulators that the
C compiler keeps in vector registers while it runs over (input channel, kh, kw), one
vector load of the input and ``_OB`` broadcast weights per tap.

The input gradient of a stride-1 call with 8 or more input channels is the same
convolution of the output gradient with the flipped, transposed filters; other input
gradients go to ``im2col-cython``; the weight gradient of 3x3 stride-1 calls is
``flat-cython``'s (register tiles over the flattened output positions) on images with
enough output positions, else ``winograd-cython``'s; others take ``im2col-cython``'s (its
threaded drivers), as do dilated and grouped calls.

Bounds and wraparound checks are set by the build (setup.py), not here.
"""

cimport openmp
from cython.parallel cimport prange

import numpy as np

from .. import memory, threads
from . import flat_cy as _flat
from . import im2col_cy as _fallback
from . import winograd_cy as _winograd
from .im2col import workspace


include "../_common.pxi"
include "_direct.pxi"


cdef enum:
    _VW = 16  # output columns per tile (one AVX-512 float32 vector)
    _OB = 8   # output channels per tile


# The tile's inner loop in C: GCC vector types of 64 bytes (16 floats or 8 doubles; one
# AVX-512 register, two AVX2 or four SSE ones), ``_OB`` x ``_VW`` accumulators as local
# vectors, each tap one unaligned vector load of the input and ``_OB`` scalar-times-vector
# multiply-adds with the tap's weights. Every output adds its taps in (ci, i, j) order.
cdef extern from *:
    """
    #define TG_BL_TILE(T, S)                                                            \
    typedef T tg_bl_v##S __attribute__((vector_size(64)));                              \
    typedef T tg_bl_u##S __attribute__((vector_size(64), aligned(sizeof(T)), may_alias)); \
    static inline void tg_bl_tile_##S(const T* xq, const T* wt, Py_ssize_t c,            \
            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t s, Py_ssize_t hp, Py_ssize_t wq,    \
            Py_ssize_t op, Py_ssize_t oh, Py_ssize_t ow0, Py_ssize_t oc0, T* out) {      \
        enum { V = 64 / sizeof(T), NV = 16 / V };                                       \
        tg_bl_v##S a[8][NV];                                                            \
        Py_ssize_t ci, i, j, k, v;                                                      \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++)                                 \
            _Pragma("GCC unroll 2") for (v = 0; v < NV; v++) a[k][v] = (tg_bl_v##S){0};  \
        for (ci = 0; ci < c; ci++) {                                                    \
            for (i = 0; i < kh; i++) {                                                  \
                const T* row = xq + (ci * hp + oh * s + i) * s * wq + ow0;              \
                const T* wp = wt + (ci * kh + i) * kw * op + oc0;                       \
                for (j = 0; j < kw; j++, wp += op) {                                    \
                    const T* src = row + (j % s) * wq + j / s;                          \
                    tg_bl_v##S xv[NV];                                                  \
                    _Pragma("GCC unroll 2") for (v = 0; v < NV; v++)                    \
                        xv[v] = *(const tg_bl_u##S*)(src + v * V);                      \
                    _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                   \
                        T wv = wp[k];                                                   \
                        _Pragma("GCC unroll 2") for (v = 0; v < NV; v++)                \
                            a[k][v] += wv * xv[v];                                      \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++)                                 \
            _Pragma("GCC unroll 2") for (v = 0; v < NV; v++)                            \
                *(tg_bl_u##S*)(out + k * 16 + v * V) = a[k][v];                         \
    }
    TG_BL_TILE(float, f)
    TG_BL_TILE(double, d)
    """
    void tg_bl_tile_f(const float* xq, const float* wt, Py_ssize_t c, Py_ssize_t kh,
                      Py_ssize_t kw, Py_ssize_t s, Py_ssize_t hp, Py_ssize_t wq, Py_ssize_t op,
                      Py_ssize_t oh, Py_ssize_t ow0, Py_ssize_t oc0, float* out) noexcept nogil
    void tg_bl_tile_d(const double* xq, const double* wt, Py_ssize_t c, Py_ssize_t kh,
                      Py_ssize_t kw, Py_ssize_t s, Py_ssize_t hp, Py_ssize_t wq, Py_ssize_t op,
                      Py_ssize_t oh, Py_ssize_t ow0, Py_ssize_t oc0, double* out) noexcept nogil


cdef inline void _tile(const real* xq, const real* wt, const real* bias, bint has_bias,
                       real* yb, real* acc, Py_ssize_t c, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t s, Py_ssize_t hp, Py_ssize_t wq, Py_ssize_t op, Py_ssize_t o,
                       Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t oh, Py_ssize_t ow0,
                       Py_ssize_t oc0) noexcept nogil:
    # y[oc0 : oc0 + _OB, oh, ow0 : ow0 + _VW] over all (ci, i, j); wt[ci, i, j, op]
    cdef Py_ssize_t k, v, n_oc, n_ow
    cdef real bv
    if real is float:
        tg_bl_tile_f(xq, wt, c, kh, kw, s, hp, wq, op, oh, ow0, oc0, acc)
    else:
        tg_bl_tile_d(xq, wt, c, kh, kw, s, hp, wq, op, oh, ow0, oc0, acc)
    n_oc = o - oc0
    if n_oc > _OB:
        n_oc = _OB
    n_ow = wo - ow0
    if n_ow > _VW:
        n_ow = _VW
    for k in range(n_oc):
        bv = bias[oc0 + k] if has_bias else 0
        for v in range(n_ow):
            yb[((oc0 + k) * ho + oh) * wo + ow0 + v] = acc[k * _VW + v] + bv


def forward_threads(const real[:, :, :, ::1] x, const real[::1] wt, const real[::1] bias,
                    bint has_bias, real[:, :, :, ::1] y, real[:, ::1] buf, real[:, ::1] accs,
                    int kh, int kw,
                    int s, int ph, int pw, int hp, int wq, int op, int nt):
    """y[b] = conv(x[b]) per image and thread, through the thread's padded phase buffer."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t b, oh, tw, to
    cdef Py_ssize_t ntw = (wo + _VW - 1) // _VW, nto = (o + _OB - 1) // _OB
    cdef int tid
    cdef real* xq
    with nogil:
        for b in prange(n, schedule="static", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            xq = &buf[tid, 0]
            _pad_planes(&x[b, 0, 0, 0], xq, c, h, w, 1, s, ph, pw, hp, wq, hp * s * wq, 0, wq,
                        s * wq)
            for oh in range(ho):
                for tw in range(ntw):
                    for to in range(nto):
                        _tile(xq, &wt[0], &bias[0], has_bias, &y[b, 0, 0, 0],
                              &accs[tid, 0], c, kh, kw, s, hp, wq, op, o, ho, wo, oh,
                              tw * _VW, to * _OB)


def applies(w_shape, stride, dilation, groups) -> bool:
    """One group, dilation 1, equal strides of 1 or 2."""
    return (groups == 1 and tuple(dilation) == (1, 1) and stride[0] == stride[1]
            and stride[0] in (1, 2))


def _team_size(macs):
    return 1 if macs < _GRAIN else threads.get_num_threads()


def _conv(x, w, b, int s, int ph, int pw):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (h + 2 * ph - kh) // s + 1, (wd + 2 * pw - kw) // s + 1
    hp = h + 2 * ph
    wo_pad = (wo + _VW - 1) // _VW * _VW
    wq = wo_pad + (kw - 1) // s + 1
    op = (o + _OB - 1) // _OB * _OB
    nt = max(1, min(_team_size(n * o * ho * wo * c * kh * kw), n))
    memory.check_fits("conv2d (blocked)", {
        "padded images": nt * c * hp * s * wq * x.itemsize,
        "output": n * o * ho * wo * x.itemsize,
    })
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    wt = np.zeros((c, kh, kw, op), dtype=x.dtype)
    wt[..., :o] = w.transpose(1, 2, 3, 0)
    buf = workspace("blocked-t", (nt, c * hp * s * wq), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    accs = np.empty((nt, _OB * _VW), dtype=x.dtype)
    forward_threads(x, wt.reshape(-1), bias, b is not None, y, buf, accs, kh, kw, s, ph, pw, hp,
                    wq, op, nt)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    kh, kw = w.shape[2:]
    ph, pw = int(padding[0]), int(padding[1])
    gx = gw = None
    # the input gradient's output channels are x's: with fewer than a tile's 8 most of the
    # accumulators would idle, and im2col-cython's GEMM does better
    direct_x = (need_x and tuple(stride) == (1, 1) and ph <= kh - 1 and pw <= kw - 1
                and x.shape[1] >= _OB and gy.dtype == x.dtype
                and _direct(gy, w, stride, padding, dilation, groups, *x.shape[2:]))
    if need_x and direct_x:
        wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        gx = _conv(np.ascontiguousarray(gy), wf, None, 1, kh - 1 - ph, kw - 1 - pw)
    if need_x and not direct_x:
        gx = _fallback.backward(gy, x, w, stride, padding, dilation, groups, True, False)[0]
    if need_w:
        # 3x3 stride-1 calls: flat-cython's register-tiled weight gradient on images with
        # enough output positions, else winograd-cython's (it keeps im2col's where Winograd
        # does not pay); others im2col-cython's GEMM
        gw = _flat.backward(gy, x, w, stride, padding, dilation, groups, False, True)[1] if (
            _flat_wgrad(gy, w, stride, padding, dilation, groups)) else None
    if need_w and gw is None:
        wgrad = _winograd if _winograd.applies(w.shape, stride, dilation, groups) else _fallback
        gw = wgrad.backward(gy, x, w, stride, padding, dilation, groups, False, True)[1]
    return gx, gw


def _flat_wgrad(gy, w, stride, padding, dilation, groups):
    s = stride[0]
    return (_winograd.applies(w.shape, stride, dilation, groups) and gy.shape[2] * (
        gy.shape[3] + (w.shape[3] - 1) // s) >= _flat._WGRAD_MIN_POSITIONS)
