"""Direct convolution over phase planes with flat output tiles, compiled with Cython + OpenMP.

For strided calls and small images, where im2col's column buffer, small GEMMs and the
input gradient's scatter cost more than the arithmetic. Each thread takes whole images and
splits its image, zero-padded, into ``s * s`` phase planes per channel
(``xq[c, py, px, r, q] = xpad[c, r * s + py, q * s + px]`` for stride ``s``): every filter tap
then reads one plane at a fixed offset, as in a stride-1 convolution. The output is computed
over the flat index ``f = oh * wq + ow`` of rows ``wq`` wide (``wq`` the plane width), in
tiles of ``_OB`` output channels by ``_VW`` (48, three float32 vectors) consecutive flat
positions: ``_OB * _VW`` accumulators in vector registers, three vector loads of the planes
and ``_OB`` broadcast weights per tap, read through a table of tap offsets. A tile spans
rows, so narrow outputs (8 or 10 columns) fill whole vectors; the ``wq - wo`` columns past
each row's end are computed and dropped. From 33 output channels on (the input gradient:
32 input channels), the tiles put channels across the lanes instead: up to four vectors of
channels by 6 to 16 positions, one aligned weight vector load per channel vector and one
broadcast per position per tap (no unaligned loads splitting cache lines), the taps in
chunks whose weights stay in L1, the results transposed in registers into the same
per-thread rows. The weight gradient from 32 output channels on likewise: the output
gradient transposed (position-major), tiles of up to four channel vectors x 6 to 12 taps
summed over each block's images and positions, one vector load per channel vector and one
broadcast per tap per position, no lane sums to fold.

The input gradient of a stride-``s`` call is, for each of the ``s * s`` phases of the input,
a stride-1 convolution of the zero-padded output gradient with the taps that land on that
phase (no zero-dilated gradient, no scatter): the same tiles with another tap table, each
input pixel written once, in tiles ``_VX`` (32) positions wide: its reductions are short
(the taps of one phase), where the wider tile's extra stores and row copies cost more than
its fewer loads per multiply-add save. The weight gradient runs over the same planes and
the output gradient in rows of ``wq``: tiles of 4 output channels x 6 taps, each a vector
of partial sums over a block of images kept in registers, folded to a quarter vector (halves,
then quarters added) and added to the thread's quarter-vectors after each block. The batch is
cut into chunks of consecutive images fixed by the shapes; threads take images (forward,
input gradient) and chunks (weight gradient) as they come free, and each chunk's lanes
are summed into its own part, the parts added in chunk order (the same bits at any thread
count). Images with few output positions take ``im2col-cython``'s weight gradient, as do
dilated and grouped calls.

While a thread's tiles run, they ask for the cache lines of the image (weight gradient: the
block of images) the thread most likely takes next, one line per tap: the plane copies and
the output gradient's gather then find their rows in L2 instead of waiting on memory.

Every output adds its taps in (input channel, kh, kw) order, the input gradient in (output
channel, kh, kw) order. Bounds and wraparound checks are set by the build (setup.py).
"""

cimport openmp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc

import math
from functools import lru_cache

import numpy as np

from .. import memory, threads
from . import im2col_cy as _fallback
from .im2col import workspace


include "../_common.pxi"
include "_direct.pxi"


cdef enum:
    _VW = 48  # flat output positions per forward tile (three AVX-512 float32 vectors)
    _VX = 32  # per input-gradient tile (two vectors: its reductions are short)
    _WV = 32  # the weight gradient's rows of output positions: a multiple of this
    _OB = 8   # output channels per tile


# The tile in C: GCC vector types of 64 bytes (16 floats or 8 doubles), ``_OB`` x ``_VW``
# accumulators as local vectors; per tap one unaligned load at the tap's offset and
# ``_OB`` scalar-times-vector multiply-adds with the tap's weights (wt[t * op + k]).
cdef extern from *:
    """
    #define TG_FL_TYPES(T, S)                                                           \
    typedef T tg_fl_v##S __attribute__((vector_size(64)));                              \
    typedef T tg_fl_u##S __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));
    TG_FL_TYPES(float, f)
    TG_FL_TYPES(double, d)
    #define TG_FL_TILE(T, S, W)                                                         \
    static inline void tg_fl_tile_##S##W(const T* xq, const Py_ssize_t* offs,           \
            Py_ssize_t nt, const T* wt, Py_ssize_t op, T* out, Py_ssize_t ldo,          \
            const char* pfp, Py_ssize_t pfn) {                                          \
        enum { V = 64 / sizeof(T), NV = W / V };                                        \
        tg_fl_v##S a[8][NV];                                                            \
        Py_ssize_t t, k, v;                                                             \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++)                                 \
            _Pragma("GCC unroll 6") for (v = 0; v < NV; v++) a[k][v] = (tg_fl_v##S){0};  \
        for (t = 0; t < nt; t++, wt += op) {                                            \
            const T* src = xq + offs[t];                                                \
            tg_fl_v##S xv[NV];                                                          \
            if (t < pfn) __builtin_prefetch(pfp + 64 * t, 0, 2);                        \
            _Pragma("GCC unroll 6") for (v = 0; v < NV; v++)                            \
                xv[v] = *(const tg_fl_u##S*)(src + v * V);                              \
            _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                           \
                T wv = wt[k];                                                           \
                _Pragma("GCC unroll 6") for (v = 0; v < NV; v++)                        \
                    a[k][v] += wv * xv[v];                                              \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++)                                 \
            _Pragma("GCC unroll 6") for (v = 0; v < NV; v++)                            \
                *(tg_fl_u##S*)(out + k * ldo + v * V) = a[k][v];                        \
    }
    TG_FL_TILE(float, f, 32)
    TG_FL_TILE(float, f, 48)
    TG_FL_TILE(double, d, 32)
    TG_FL_TILE(double, d, 48)

    /* weight-gradient tile: 4 output channels x 6 taps, each a vector of lane sums over
       the block's images and positions, folded to a quarter vector and added to the
       tile's 24 quarter-vectors in acc (lane sums kept across blocks, summed across lanes
       once per thread by tg_fw_lanes) */
    #define TG_FW_TILE(T, S)                                                            \
    typedef T tg_fl_h##S __attribute__((vector_size(32), may_alias));                   \
    typedef T tg_fl_q##S __attribute__((vector_size(16), may_alias));                   \
    typedef T tg_fl_qu##S __attribute__((vector_size(16), aligned(sizeof(T)), may_alias)); \
    static inline void tg_fw_tile_##S(const T* xq, Py_ssize_t xs, const T* gy,          \
            Py_ssize_t gs, Py_ssize_t gr, Py_ssize_t nimg, Py_ssize_t nf,              \
            const Py_ssize_t* offs, T* acc) {                                           \
        enum { L = 64 / sizeof(T), Q = 16 / sizeof(T) };                                \
        tg_fl_v##S a[4][6];                                                             \
        Py_ssize_t m, f, p, q;                                                          \
        _Pragma("GCC unroll 4") for (p = 0; p < 4; p++)                                 \
            _Pragma("GCC unroll 6") for (q = 0; q < 6; q++) a[p][q] = (tg_fl_v##S){0};  \
        for (m = 0; m < nimg; m++) {                                                    \
            const T* xb = xq + m * xs;                                                  \
            const T* gb = gy + m * gs;                                                  \
            const T* x0 = xb + offs[0]; const T* x1 = xb + offs[1];                     \
            const T* x2 = xb + offs[2]; const T* x3 = xb + offs[3];                     \
            const T* x4 = xb + offs[4]; const T* x5 = xb + offs[5];                     \
            for (f = 0; f < nf; f += L) {                                               \
                tg_fl_v##S xv[6], gv[4];                                                \
                xv[0] = *(const tg_fl_u##S*)(x0 + f);                                   \
                xv[1] = *(const tg_fl_u##S*)(x1 + f);                                   \
                xv[2] = *(const tg_fl_u##S*)(x2 + f);                                   \
                xv[3] = *(const tg_fl_u##S*)(x3 + f);                                   \
                xv[4] = *(const tg_fl_u##S*)(x4 + f);                                   \
                xv[5] = *(const tg_fl_u##S*)(x5 + f);                                   \
                /* the unaligned input vectors in registers, the aligned gradient rows  \
                   read by the multiply-adds */                                         \
                _Pragma("GCC unroll 6") for (q = 0; q < 6; q++)                         \
                    __asm__("" : "+v"(xv[q]));                                          \
                _Pragma("GCC unroll 4") for (p = 0; p < 4; p++) {                       \
                    gv[0] = *(const tg_fl_v##S*)(gb + p * gr + f);                      \
                    _Pragma("GCC unroll 6") for (q = 0; q < 6; q++)                     \
                        a[p][q] += gv[0] * xv[q];                                       \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        /* each vector folded to its 16-byte quarter (halves added, then quarters) and   \
           added to the tile's quarter-vectors in acc */                                \
        _Pragma("GCC unroll 4") for (p = 0; p < 4; p++)                                 \
            _Pragma("GCC unroll 6") for (q = 0; q < 6; q++) {                           \
                tg_fl_v##S v = a[p][q];                                                 \
                tg_fl_h##S hv = ((const tg_fl_h##S*)&v)[0] + ((const tg_fl_h##S*)&v)[1]; \
                tg_fl_q##S qv = ((const tg_fl_q##S*)&hv)[0] + ((const tg_fl_q##S*)&hv)[1]; \
                *(tg_fl_qu##S*)(acc + (p * 6 + q) * Q) += qv;                           \
            }                                                                           \
    }                                                                                   \
    /* gw[p * tp + q] = the lanes of acc's quarter-vector (p, q) summed pairwise (fixed   \
       order) */                                                                        \
    static inline void tg_fw_lanes_##S(const T* acc, T* gw, Py_ssize_t tp) {            \
        enum { Q = 16 / sizeof(T) };                                                    \
        T tmp[Q];                                                                       \
        Py_ssize_t p, q, l, h;                                                          \
        for (p = 0; p < 4; p++)                                                         \
            for (q = 0; q < 6; q++) {                                                   \
                for (l = 0; l < Q; l++) tmp[l] = acc[(p * 6 + q) * Q + l];              \
                for (h = Q / 2; h > 0; h /= 2)                                          \
                    for (l = 0; l < h; l++) tmp[l] += tmp[l + h];                       \
                gw[p * tp + q] = tmp[0];                                                \
            }                                                                           \
    }
    TG_FW_TILE(float, f)
    TG_FW_TILE(double, d)
    """
    void tg_fl_tile_f32(const float* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                        const float* wt, Py_ssize_t op, float* out, Py_ssize_t ldo,
                        const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_fl_tile_f48(const float* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                        const float* wt, Py_ssize_t op, float* out, Py_ssize_t ldo,
                        const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_fl_tile_d32(const double* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                        const double* wt, Py_ssize_t op, double* out, Py_ssize_t ldo,
                        const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_fl_tile_d48(const double* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                        const double* wt, Py_ssize_t op, double* out, Py_ssize_t ldo,
                        const char* pfp, Py_ssize_t pfn) noexcept nogil


    void tg_fw_tile_f(const float* xq, Py_ssize_t xs, const float* gy, Py_ssize_t gs,
                      Py_ssize_t gr, Py_ssize_t nimg, Py_ssize_t nf, const Py_ssize_t* offs,
                      float* acc) noexcept nogil
    void tg_fw_tile_d(const double* xq, Py_ssize_t xs, const double* gy, Py_ssize_t gs,
                      Py_ssize_t gr, Py_ssize_t nimg, Py_ssize_t nf, const Py_ssize_t* offs,
                      double* acc) noexcept nogil
    void tg_fw_lanes_f(const float* acc, float* gw, Py_ssize_t tp) noexcept nogil
    void tg_fw_lanes_d(const double* acc, double* gw, Py_ssize_t tp) noexcept nogil


# The channel-lane tile in C: output channels across the vector lanes (``NC`` vectors of
# 16 float32 or 8 float64 channels) by ``NP`` consecutive flat positions, one accumulator
# vector per (channel vector, position); per tap ``NC`` vector loads of the tap's weights
# (aligned: rows of ``op`` channels, a multiple of the lanes, on 64-byte boundaries) and
# ``NP`` broadcasts of the input at the tap's offset. Neither load splits a cache line,
# where the position-lane tile's three unaligned input vectors per tap mostly do. Results
# land transposed (tb[f * op + k]); tg_cl_back turns them into the position-lane layout
# the row copies read.
cdef extern from *:
    """
    #define TG_CL_TILE(T, S, NC, NP)                                                    \
    static inline void tg_cl_tile_##S##NC(const T* xq, const Py_ssize_t* offs,          \
            Py_ssize_t nt, const T* wt, Py_ssize_t op, T* tb, int add, const char* pfp, \
            Py_ssize_t pfn) {                                                           \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_fl_v##S a[NP][NC];                                                           \
        Py_ssize_t t, k, v;                                                             \
        _Pragma("GCC unroll 16") for (k = 0; k < NP; k++)                               \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                            \
                a[k][v] = add ? *(const tg_fl_v##S*)(tb + k * op + v * V)               \
                              : (tg_fl_v##S){0};                                        \
        for (t = 0; t < nt; t++, wt += op) {                                            \
            const T* src = xq + offs[t];                                                \
            tg_fl_v##S wv[NC];                                                          \
            if (t < pfn) __builtin_prefetch(pfp + 64 * t, 0, 2);                        \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                            \
                wv[v] = *(const tg_fl_v##S*)(wt + v * V);                               \
            _Pragma("GCC unroll 16") for (k = 0; k < NP; k++) {                         \
                T xv = src[k];                                                          \
                _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                        \
                    a[k][v] += xv * wv[v];                                              \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 16") for (k = 0; k < NP; k++)                               \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                            \
                *(tg_fl_v##S*)(tb + k * op + v * V) = a[k][v];                          \
    }
    /* the same tile over NP positions anywhere in the planes (pos[k], flat offsets): the
       kept columns of each row only, none of the columns past a row's end */
    #define TG_CP_TILE(T, S, NC, NP)                                                    \
    static inline void tg_cp_tile_##S##NC(const T* xq, const Py_ssize_t* pos,           \
            const Py_ssize_t* offs, Py_ssize_t nt, const T* wt, Py_ssize_t op, T* tb,   \
            int add, const char* pfp, Py_ssize_t pfn) {                                 \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_fl_v##S a[NP][NC];                                                           \
        Py_ssize_t p[NP];                                                               \
        Py_ssize_t t, k, v;                                                             \
        _Pragma("GCC unroll 16") for (k = 0; k < NP; k++) p[k] = pos[k];                \
        _Pragma("GCC unroll 16") for (k = 0; k < NP; k++)                               \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                            \
                a[k][v] = add ? *(const tg_fl_v##S*)(tb + k * op + v * V)               \
                              : (tg_fl_v##S){0};                                        \
        for (t = 0; t < nt; t++, wt += op) {                                            \
            const T* src = xq + offs[t];                                                \
            tg_fl_v##S wv[NC];                                                          \
            if (t < pfn) __builtin_prefetch(pfp + 64 * t, 0, 2);                        \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                            \
                wv[v] = *(const tg_fl_v##S*)(wt + v * V);                               \
            _Pragma("GCC unroll 16") for (k = 0; k < NP; k++) {                         \
                T xv = src[p[k]];                                                       \
                _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                        \
                    a[k][v] += xv * wv[v];                                              \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 16") for (k = 0; k < NP; k++)                               \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                            \
                *(tg_fl_v##S*)(tb + k * op + v * V) = a[k][v];                          \
    }
    /* NC x NP: 24 accumulators from two channel vectors on (16 with one) */
    TG_CP_TILE(float, f, 1, 16)
    TG_CP_TILE(float, f, 2, 12)
    TG_CP_TILE(float, f, 3, 8)
    TG_CP_TILE(float, f, 4, 6)
    TG_CP_TILE(double, d, 1, 16)
    TG_CP_TILE(double, d, 2, 12)
    TG_CP_TILE(double, d, 3, 8)
    TG_CP_TILE(double, d, 4, 6)
    TG_CL_TILE(float, f, 1, 16)
    TG_CL_TILE(float, f, 2, 12)
    TG_CL_TILE(float, f, 3, 8)
    TG_CL_TILE(float, f, 4, 6)
    TG_CL_TILE(double, d, 1, 16)
    TG_CL_TILE(double, d, 2, 12)
    TG_CL_TILE(double, d, 3, 8)
    TG_CL_TILE(double, d, 4, 6)

    /* lane l of the two-source shuffles of the transpose's stage s (V lanes) */
    #define TG_CL_LO(l, s, V) (((l) & (s)) ? (V) + (l) - (s) : (l))
    #define TG_CL_HI(l, s, V) (((l) & (s)) ? (V) + (l) : (l) + (s))
    #define TG_CL_LANES8(M, s) {M(0, s, 8), M(1, s, 8), M(2, s, 8), M(3, s, 8),          \
                                M(4, s, 8), M(5, s, 8), M(6, s, 8), M(7, s, 8)}
    #define TG_CL_LANES16(M, s) {M(0, s, 16), M(1, s, 16), M(2, s, 16), M(3, s, 16),     \
        M(4, s, 16), M(5, s, 16), M(6, s, 16), M(7, s, 16), M(8, s, 16), M(9, s, 16),   \
        M(10, s, 16), M(11, s, 16), M(12, s, 16), M(13, s, 16), M(14, s, 16),           \
        M(15, s, 16)}
    #define TG_CL_BACK(T, S, I, LANES)                                                  \
    typedef I tg_cl_i##S __attribute__((vector_size(64)));                              \
    static inline void tg_cl_stage_##S(tg_fl_v##S* t, Py_ssize_t s, tg_cl_i##S lo,      \
                                       tg_cl_i##S hi) {                                 \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t r;                                                                   \
        _Pragma("GCC unroll 16") for (r = 0; r < V; r++) {                              \
            if ((r & s) || r + s >= V) continue;                                        \
            tg_fl_v##S a = t[r], b = t[r + s];                                          \
            t[r] = __builtin_shuffle(a, b, lo);                                         \
            t[r + s] = __builtin_shuffle(a, b, hi);                                     \
        }                                                                               \
    }                                                                                   \
    /* acc[k * ldo + f] = tb[f * op + k] for k < o, f < ldo (ldo a multiple of V): blocks  \
       of V positions x V channels transposed in registers (t[r][l] <-> t[l][r], one     \
       stage of two-source shuffles per bit of the index) */                            \
    static inline void tg_cl_back_##S(const T* tb, Py_ssize_t op, Py_ssize_t o,         \
                                      Py_ssize_t ldo, T* acc) {                         \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_fl_v##S t[V];                                                                \
        Py_ssize_t f0, k0, r;                                                           \
        for (k0 = 0; k0 < o; k0 += V) {                                                 \
            Py_ssize_t nk = o - k0 < V ? o - k0 : V;                                    \
            for (f0 = 0; f0 < ldo; f0 += V) {                                           \
                _Pragma("GCC unroll 16") for (r = 0; r < V; r++)                        \
                    t[r] = *(const tg_fl_v##S*)(tb + (f0 + r) * op + k0);               \
                if (V > 8)                                                              \
                    tg_cl_stage_##S(t, 8, (tg_cl_i##S)LANES(TG_CL_LO, 8),               \
                                    (tg_cl_i##S)LANES(TG_CL_HI, 8));                    \
                tg_cl_stage_##S(t, 4, (tg_cl_i##S)LANES(TG_CL_LO, 4),                   \
                                (tg_cl_i##S)LANES(TG_CL_HI, 4));                        \
                tg_cl_stage_##S(t, 2, (tg_cl_i##S)LANES(TG_CL_LO, 2),                   \
                                (tg_cl_i##S)LANES(TG_CL_HI, 2));                        \
                tg_cl_stage_##S(t, 1, (tg_cl_i##S)LANES(TG_CL_LO, 1),                   \
                                (tg_cl_i##S)LANES(TG_CL_HI, 1));                        \
                for (r = 0; r < nk; r++)                                                \
                    *(tg_fl_u##S*)(acc + (k0 + r) * ldo + f0) = t[r];                   \
            }                                                                           \
        }                                                                               \
    }
    TG_CL_BACK(float, f, int, TG_CL_LANES16)
    TG_CL_BACK(double, d, long long, TG_CL_LANES8)

    /* the weight gradient's transposed output gradient straight from gy's rows:
       gt[(a * wq + b) * op + k] = g[(k * ho + a) * wo + b] for a < ho, b < wo, k < op (zero
       for k >= o); positions past a row's end are not written (the tile skips them). With
       AVX-512, blocks of V channels x V columns of one row: masked row loads, the
       transpose's shuffle stages, aligned stores (op a multiple of V, gt 64-byte aligned). */
    #if defined(__AVX512F__)
    #define TG_CL_GATHER(T, S, MASK, LOAD)                                              \
    static inline void tg_cl_gather_##S(const T* g, Py_ssize_t o, Py_ssize_t ho,        \
            Py_ssize_t wo, Py_ssize_t wq, Py_ssize_t op, T* gt) {                       \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_fl_v##S t[V];                                                                \
        Py_ssize_t k0, a, b0, r, nk, nb;                                                \
        for (k0 = 0; k0 < op; k0 += V) {                                                \
            nk = o - k0 < 0 ? 0 : o - k0 < V ? o - k0 : V;                              \
            for (a = 0; a < ho; a++)                                                    \
                for (b0 = 0; b0 < wo; b0 += V) {                                        \
                    nb = wo - b0 < V ? wo - b0 : V;                                     \
                    _Pragma("GCC unroll 16") for (r = 0; r < V; r++)                    \
                        t[r] = r < nk ? (tg_fl_v##S)LOAD(MASK(nb),                      \
                                            g + ((k0 + r) * ho + a) * wo + b0)          \
                                      : (tg_fl_v##S){0};                                \
                    if (V > 8)                                                          \
                        tg_cl_stage_##S(t, 8, (tg_cl_i##S)TG_CL_LANES(S, TG_CL_LO, 8),  \
                                        (tg_cl_i##S)TG_CL_LANES(S, TG_CL_HI, 8));       \
                    tg_cl_stage_##S(t, 4, (tg_cl_i##S)TG_CL_LANES(S, TG_CL_LO, 4),      \
                                    (tg_cl_i##S)TG_CL_LANES(S, TG_CL_HI, 4));           \
                    tg_cl_stage_##S(t, 2, (tg_cl_i##S)TG_CL_LANES(S, TG_CL_LO, 2),      \
                                    (tg_cl_i##S)TG_CL_LANES(S, TG_CL_HI, 2));           \
                    tg_cl_stage_##S(t, 1, (tg_cl_i##S)TG_CL_LANES(S, TG_CL_LO, 1),      \
                                    (tg_cl_i##S)TG_CL_LANES(S, TG_CL_HI, 1));           \
                    for (r = 0; r < nb; r++)                                            \
                        *(tg_fl_v##S*)(gt + (a * wq + b0 + r) * op + k0) = t[r];        \
                }                                                                       \
        }                                                                               \
    }
    #define TG_CL_LANES(S, M, s) TG_CL_LANES_##S(M, s)
    #define TG_CL_LANES_f(M, s) TG_CL_LANES16(M, s)
    #define TG_CL_LANES_d(M, s) TG_CL_LANES8(M, s)
    TG_CL_GATHER(float, f, tg_m16, _mm512_maskz_loadu_ps)
    TG_CL_GATHER(double, d, tg_m8, _mm512_maskz_loadu_pd)
    #else
    #define TG_CL_GATHER(T, S)                                                          \
    static inline void tg_cl_gather_##S(const T* g, Py_ssize_t o, Py_ssize_t ho,        \
            Py_ssize_t wo, Py_ssize_t wq, Py_ssize_t op, T* gt) {                       \
        Py_ssize_t k, a, b;                                                             \
        for (a = 0; a < ho; a++)                                                        \
            for (b = 0; b < wo; b++)                                                    \
                for (k = 0; k < op; k++)                                                \
                    gt[(a * wq + b) * op + k] = k < o ? g[(k * ho + a) * wo + b] : 0;   \
    }
    TG_CL_GATHER(float, f)
    TG_CL_GATHER(double, d)
    #endif
    """
    void tg_cl_tile_f1(const float* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const float* wt, Py_ssize_t op, float* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_tile_f2(const float* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const float* wt, Py_ssize_t op, float* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_tile_f3(const float* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const float* wt, Py_ssize_t op, float* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_tile_f4(const float* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const float* wt, Py_ssize_t op, float* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_tile_d1(const double* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const double* wt, Py_ssize_t op, double* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_tile_d2(const double* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const double* wt, Py_ssize_t op, double* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_tile_d3(const double* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const double* wt, Py_ssize_t op, double* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_tile_d4(const double* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                       const double* wt, Py_ssize_t op, double* tb, int add,
                       const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_f1(const float* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const float* wt, Py_ssize_t op, float* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_f2(const float* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const float* wt, Py_ssize_t op, float* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_f3(const float* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const float* wt, Py_ssize_t op, float* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_f4(const float* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const float* wt, Py_ssize_t op, float* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_d1(const double* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const double* wt, Py_ssize_t op, double* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_d2(const double* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const double* wt, Py_ssize_t op, double* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_d3(const double* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const double* wt, Py_ssize_t op, double* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cp_tile_d4(const double* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                       Py_ssize_t nt, const double* wt, Py_ssize_t op, double* tb,
                       int add, const char* pfp, Py_ssize_t pfn) noexcept nogil
    void tg_cl_back_f(const float* tb, Py_ssize_t op, Py_ssize_t o, Py_ssize_t ldo,
                      float* acc) noexcept nogil
    void tg_cl_back_d(const double* tb, Py_ssize_t op, Py_ssize_t o, Py_ssize_t ldo,
                      double* acc) noexcept nogil
    void tg_cl_gather_f(const float* g, Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo,
                        Py_ssize_t wq, Py_ssize_t op, float* gt) noexcept nogil
    void tg_cl_gather_d(const double* g, Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo,
                        Py_ssize_t wq, Py_ssize_t op, double* gt) noexcept nogil


# The weight gradient's channel-lane tile: NC vectors of output channels x NT taps, one
# accumulator vector each, summed over a block of images and their output positions (the
# first wo of each of nr rows of wq: the columns past a row's end hold zeros and are
# skipped): per position NC aligned vector loads of the transposed output gradient
# (gt[f * op + k]) and one broadcast input element per tap; the block's sums added to
# acc[q * op + k].
cdef extern from *:
    """
    #define TG_CW_TILE(T, S, NC, NT)                                                    \
    static inline void tg_cw_tile_##S##NC(const T* xq, Py_ssize_t xs, const T* gt,      \
            Py_ssize_t gs, Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq, \
            Py_ssize_t wo, const Py_ssize_t* offs, T* acc, const char* pfp,             \
            Py_ssize_t pfn) {                                                           \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_fl_v##S a[NT][NC];                                                           \
        Py_ssize_t m, r, f, q, v, i;                                                    \
        /* pfn lines asked for, a few per row */                                        \
        Py_ssize_t per = (pfn + nimg * nr - 1) / (nimg * nr > 0 ? nimg * nr : 1);       \
        _Pragma("GCC unroll 16") for (q = 0; q < NT; q++)                               \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++) a[q][v] = (tg_fl_v##S){0};  \
        for (m = 0; m < nimg; m++)                                                      \
          for (r = 0; r < nr; r++) {                                                    \
            const T* xb = xq + m * xs + r * wq;                                         \
            for (i = 0; i < per && pfn > 0; i++, pfn--, pfp += 64)                      \
                __builtin_prefetch(pfp, 0, 2);                                          \
            const T* gb = gt + m * gs + r * wq * op;                                    \
            for (f = 0; f < wo; f++) {                                                  \
                tg_fl_v##S gv[NC];                                                      \
                _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                        \
                    gv[v] = *(const tg_fl_v##S*)(gb + f * op + v * V);                  \
                _Pragma("GCC unroll 16") for (q = 0; q < NT; q++) {                     \
                    T xv = xb[offs[q] + f];                                             \
                    _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                    \
                        a[q][v] += xv * gv[v];                                          \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 16") for (q = 0; q < NT; q++)                               \
            _Pragma("GCC unroll 4") for (v = 0; v < NC; v++)                            \
                *(tg_fl_v##S*)(acc + q * op + v * V) += a[q][v];                        \
    }
    TG_CW_TILE(float, f, 1, 8)
    TG_CW_TILE(float, f, 2, 12)
    TG_CW_TILE(float, f, 3, 8)
    TG_CW_TILE(float, f, 4, 6)
    TG_CW_TILE(double, d, 1, 8)
    TG_CW_TILE(double, d, 2, 12)
    TG_CW_TILE(double, d, 3, 8)
    TG_CW_TILE(double, d, 4, 6)
    """
    void tg_cw_tile_f1(const float* xq, Py_ssize_t xs, const float* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, float* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil
    void tg_cw_tile_f2(const float* xq, Py_ssize_t xs, const float* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, float* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil
    void tg_cw_tile_f3(const float* xq, Py_ssize_t xs, const float* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, float* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil
    void tg_cw_tile_f4(const float* xq, Py_ssize_t xs, const float* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, float* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil
    void tg_cw_tile_d1(const double* xq, Py_ssize_t xs, const double* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, double* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil
    void tg_cw_tile_d2(const double* xq, Py_ssize_t xs, const double* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, double* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil
    void tg_cw_tile_d3(const double* xq, Py_ssize_t xs, const double* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, double* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil
    void tg_cw_tile_d4(const double* xq, Py_ssize_t xs, const double* gt, Py_ssize_t gs,
                       Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                       Py_ssize_t wo, const Py_ssize_t* offs, double* acc, const char* pfp,
                       Py_ssize_t pfn) noexcept nogil


# dst[v] = src[v] + bv for v < n (and dst[2 * v], the input gradient's stride-2 rows): with
# AVX-512, whole vectors and one masked vector at the end
cdef extern from *:
    """
    #if defined(__AVX512F__)
    static inline void tg_addb_f(const float* src, float* dst, Py_ssize_t n, float bv) {
        const __m512 b = _mm512_set1_ps(bv);
        for (Py_ssize_t v = 0; v < n; v += 16) {
            __mmask16 m = tg_m16(n - v);
            _mm512_mask_storeu_ps(dst + v, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + v), b));
        }
    }
    static inline void tg_addb_d(const double* src, double* dst, Py_ssize_t n, double bv) {
        const __m512d b = _mm512_set1_pd(bv);
        for (Py_ssize_t v = 0; v < n; v += 8) {
            __mmask8 m = tg_m8(n - v);
            _mm512_mask_storeu_pd(dst + v, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, src + v), b));
        }
    }
    /* dst[2 * v] = src[v] + bv for v < n (the odd elements untouched): per vector of src,
       two permutes spreading its halves over even lanes and two masked stores */
    static inline void tg_addb2_f(const float* src, float* dst, Py_ssize_t n, float bv) {
        const __m512 b = _mm512_set1_ps(bv);
        const __m512i lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
        const __m512i hi = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10,
                                            9, 9, 8, 8);
        for (Py_ssize_t v = 0; v < n; v += 16) {
            Py_ssize_t k = n - v < 16 ? n - v : 16;
            __m512 a = _mm512_add_ps(_mm512_maskz_loadu_ps(tg_m16(k), src + v), b);
            __mmask16 ml = (__mmask16)(((1u << (2 * (k < 8 ? k : 8))) - 1) & 0x5555u);
            __mmask16 mh = (__mmask16)(((1u << (2 * (k > 8 ? k - 8 : 0))) - 1) & 0x5555u);
            _mm512_mask_storeu_ps(dst + 2 * v, ml, _mm512_permutexvar_ps(lo, a));
            _mm512_mask_storeu_ps(dst + 2 * v + 16, mh, _mm512_permutexvar_ps(hi, a));
        }
    }
    static inline void tg_addb2_d(const double* src, double* dst, Py_ssize_t n, double bv) {
        const __m512d b = _mm512_set1_pd(bv);
        const __m512i lo = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);
        const __m512i hi = _mm512_set_epi64(7, 7, 6, 6, 5, 5, 4, 4);
        for (Py_ssize_t v = 0; v < n; v += 8) {
            Py_ssize_t k = n - v < 8 ? n - v : 8;
            __m512d a = _mm512_add_pd(_mm512_maskz_loadu_pd(tg_m8(k), src + v), b);
            __mmask8 ml = (__mmask8)(((1u << (2 * (k < 4 ? k : 4))) - 1) & 0x55u);
            __mmask8 mh = (__mmask8)(((1u << (2 * (k > 4 ? k - 4 : 0))) - 1) & 0x55u);
            _mm512_mask_storeu_pd(dst + 2 * v, ml, _mm512_permutexvar_pd(lo, a));
            _mm512_mask_storeu_pd(dst + 2 * v + 8, mh, _mm512_permutexvar_pd(hi, a));
        }
    }
    /* dst[2 * v] = a[v] for v < n0 and dst[2 * v + 1] = b[v] for v < n1 (n0 = n1 or
       n1 + 1): the rows of the input gradient's two column phases interleaved in
       registers (two permutes per pair of vectors), whole vectors stored */
    static inline void tg_inter_f(const float* a, const float* b, float* dst, Py_ssize_t n0,
                                  Py_ssize_t n1) {
        const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                            16, 0);
        const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10,
                                            25, 9, 24, 8);
        Py_ssize_t w = n0 + n1;
        for (Py_ssize_t v = 0; 2 * v < w; v += 16) {
            __m512 va = _mm512_maskz_loadu_ps(tg_m16(n0 - v), a + v);
            __m512 vb = _mm512_maskz_loadu_ps(tg_m16(n1 - v), b + v);
            _mm512_mask_storeu_ps(dst + 2 * v, tg_m16(w - 2 * v),
                                  _mm512_permutex2var_ps(va, lo, vb));
            _mm512_mask_storeu_ps(dst + 2 * v + 16, tg_m16(w - 2 * v - 16),
                                  _mm512_permutex2var_ps(va, hi, vb));
        }
    }
    static inline void tg_inter_d(const double* a, const double* b, double* dst,
                                  Py_ssize_t n0, Py_ssize_t n1) {
        const __m512i lo = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
        const __m512i hi = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
        Py_ssize_t w = n0 + n1;
        for (Py_ssize_t v = 0; 2 * v < w; v += 8) {
            __m512d va = _mm512_maskz_loadu_pd(tg_m8(n0 - v), a + v);
            __m512d vb = _mm512_maskz_loadu_pd(tg_m8(n1 - v), b + v);
            _mm512_mask_storeu_pd(dst + 2 * v, tg_m8(w - 2 * v),
                                  _mm512_permutex2var_pd(va, lo, vb));
            _mm512_mask_storeu_pd(dst + 2 * v + 8, tg_m8(w - 2 * v - 8),
                                  _mm512_permutex2var_pd(va, hi, vb));
        }
    }
    #if defined(__AVX512BW__) && defined(__AVX512VL__)
    /* the bias_relu epilogue on one row: u = src (+ bv when hb), dst = 0 where u < 0
       (NaN and -0.0 pass), m = 1 where not u <= 0 (NaN included) */
    static inline void tg_relu_f(const float* src, float* dst, unsigned char* m,
                                 Py_ssize_t n, float bv, int hb) {
        const __m512 b = _mm512_set1_ps(bv), z = _mm512_setzero_ps();
        const __m128i one = _mm_set1_epi8(1);
        for (Py_ssize_t v = 0; v < n; v += 16) {
            __mmask16 t = tg_m16(n - v);
            __m512 u = _mm512_maskz_loadu_ps(t, src + v);
            if (hb) u = _mm512_add_ps(u, b);
            __mmask16 neg = _mm512_cmp_ps_mask(u, z, _CMP_LT_OQ);
            __mmask16 pos = _mm512_cmp_ps_mask(u, z, _CMP_NLE_UQ);
            _mm512_mask_storeu_ps(dst + v, t, _mm512_mask_mov_ps(u, neg, z));
            _mm_mask_storeu_epi8(m + v, t, _mm_maskz_mov_epi8(pos, one));
        }
    }
    static inline void tg_relu_d(const double* src, double* dst, unsigned char* m,
                                 Py_ssize_t n, double bv, int hb) {
        const __m512d b = _mm512_set1_pd(bv), z = _mm512_setzero_pd();
        const __m128i one = _mm_set1_epi8(1);
        for (Py_ssize_t v = 0; v < n; v += 8) {
            __mmask8 t = tg_m8(n - v);
            __m512d u = _mm512_maskz_loadu_pd(t, src + v);
            if (hb) u = _mm512_add_pd(u, b);
            __mmask8 neg = _mm512_cmp_pd_mask(u, z, _CMP_LT_OQ);
            __mmask8 pos = _mm512_cmp_pd_mask(u, z, _CMP_NLE_UQ);
            _mm512_mask_storeu_pd(dst + v, t, _mm512_mask_mov_pd(u, neg, z));
            _mm_mask_storeu_epi8(m + v, (__mmask16)t, _mm_maskz_mov_epi8((__mmask16)pos, one));
        }
    }
    #else
    #define TG_RELU(T, S)                                                               \
    static inline void tg_relu_##S(const T* src, T* dst, unsigned char* m, Py_ssize_t n, \
                                   T bv, int hb) {                                      \
        for (Py_ssize_t v = 0; v < n; v++) {                                            \
            T u = hb ? src[v] + bv : src[v];                                            \
            m[v] = !(u <= 0);                                                           \
            dst[v] = u < 0 ? 0 : u;                                                     \
        }                                                                               \
    }
    TG_RELU(float, f)
    TG_RELU(double, d)
    #endif
    #else
    #define TG_ADDB(T, S)                                                               \
    static inline void tg_addb_##S(const T* src, T* dst, Py_ssize_t n, T bv) {          \
        for (Py_ssize_t v = 0; v < n; v++) dst[v] = src[v] + bv;                        \
    }
    TG_ADDB(float, f)
    TG_ADDB(double, d)
    #define TG_ADDB2(T, S)                                                              \
    static inline void tg_addb2_##S(const T* src, T* dst, Py_ssize_t n, T bv) {         \
        for (Py_ssize_t v = 0; v < n; v++) dst[2 * v] = src[v] + bv;                    \
    }
    TG_ADDB2(float, f)
    TG_ADDB2(double, d)
    #define TG_INTER(T, S)                                                              \
    static inline void tg_inter_##S(const T* a, const T* b, T* dst, Py_ssize_t n0,      \
                                    Py_ssize_t n1) {                                    \
        for (Py_ssize_t v = 0; v < n0; v++) dst[2 * v] = a[v];                          \
        for (Py_ssize_t v = 0; v < n1; v++) dst[2 * v + 1] = b[v];                      \
    }
    TG_INTER(float, f)
    TG_INTER(double, d)
    #define TG_RELU(T, S)                                                               \
    static inline void tg_relu_##S(const T* src, T* dst, unsigned char* m, Py_ssize_t n, \
                                   T bv, int hb) {                                      \
        for (Py_ssize_t v = 0; v < n; v++) {                                            \
            T u = hb ? src[v] + bv : src[v];                                            \
            m[v] = !(u <= 0);                                                           \
            dst[v] = u < 0 ? 0 : u;                                                     \
        }                                                                               \
    }
    TG_RELU(float, f)
    TG_RELU(double, d)
    #endif
    """
    void tg_addb_f(const float* src, float* dst, Py_ssize_t n, float bv) noexcept nogil
    void tg_addb_d(const double* src, double* dst, Py_ssize_t n, double bv) noexcept nogil
    void tg_addb2_f(const float* src, float* dst, Py_ssize_t n, float bv) noexcept nogil
    void tg_addb2_d(const double* src, double* dst, Py_ssize_t n, double bv) noexcept nogil
    void tg_inter_f(const float* a, const float* b, float* dst, Py_ssize_t n0,
                    Py_ssize_t n1) noexcept nogil
    void tg_relu_f(const float* src, float* dst, unsigned char* m, Py_ssize_t n, float bv,
                   int hb) noexcept nogil
    void tg_relu_d(const double* src, double* dst, unsigned char* m, Py_ssize_t n, double bv,
                   int hb) noexcept nogil
    void tg_inter_d(const double* a, const double* b, double* dst, Py_ssize_t n0,
                    Py_ssize_t n1) noexcept nogil


cdef enum:
    _WO = 4    # weight-gradient tile: output channels
    _WT = 6    # weight-gradient tile: taps


# The next image's data asked for a few cache lines at a time between the current image's
# tiles: the planes (and the weight gradient's gathered output gradient) are built from
# arrays of several MB, read once per pass, whose lines otherwise arrive while the plane
# copies wait on them; the output rows, written once, likewise (their lines are read before
# the stores). A cursor over up to two regions of whole lines.
cdef extern from *:
    """
    typedef struct { const char* p[2]; Py_ssize_t n[2]; Py_ssize_t step; } tg_pfc;
    static inline void tg_pf_init(tg_pfc* c, const void* a, Py_ssize_t na, const void* b,
                                  Py_ssize_t nb) {
        /* na, nb: bytes; whole lines from the line holding each start */
        c->p[0] = (const char*)((Py_ssize_t)a & ~(Py_ssize_t)63);
        c->n[0] = a ? ((const char*)a + na - c->p[0] + 63) / 64 : 0;
        c->p[1] = (const char*)((Py_ssize_t)b & ~(Py_ssize_t)63);
        c->n[1] = b ? ((const char*)b + nb - c->p[1] + 63) / 64 : 0;
        c->step = 0;
    }
    /* spread this many of the lines left over this many steps */
    static inline void tg_pf_plan(tg_pfc* c, Py_ssize_t lines, Py_ssize_t steps) {
        if (c == NULL) return;
        c->step = steps > 0 ? (lines + steps - 1) / steps : lines;
    }
    /* the next image of a shared counter (each thread's claims in increasing order) */
    static inline Py_ssize_t tg_claim(Py_ssize_t* next) {
        return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
    }
    static inline Py_ssize_t tg_pf_left(const tg_pfc* c) {
        return c == NULL ? 0 : c->n[0] + c->n[1];
    }
    /* up to min(step, most) lines of the current region: their start in *p, their count
       returned, the cursor moved past them (a tile asks for one line per tap) */
    static inline Py_ssize_t tg_pf_take(tg_pfc* c, Py_ssize_t most, const char** p) {
        Py_ssize_t k;
        int r;
        *p = NULL;
        if (c == NULL) return 0;
        r = c->n[0] > 0 ? 0 : 1;
        k = c->step < most ? c->step : most;
        if (k > c->n[r]) k = c->n[r];
        if (k <= 0) return 0;
        *p = c->p[r];
        c->p[r] += 64 * k;
        c->n[r] -= k;
        return k;
    }
    """
    ctypedef struct tg_pfc:
        pass
    void tg_pf_init(tg_pfc* c, const void* a, Py_ssize_t na, const void* b,
                    Py_ssize_t nb) noexcept nogil
    void tg_pf_plan(tg_pfc* c, Py_ssize_t lines, Py_ssize_t steps) noexcept nogil
    Py_ssize_t tg_pf_left(const tg_pfc* c) noexcept nogil
    Py_ssize_t tg_claim(Py_ssize_t* next) noexcept nogil
    Py_ssize_t tg_pf_take(tg_pfc* c, Py_ssize_t most, const char** p) noexcept nogil


cdef inline void _planes(const real* xb, real* xq, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                         Py_ssize_t s, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t hq,
                         Py_ssize_t wq, Py_ssize_t slack) noexcept nogil:
    # xq[ci, py, px, r, q] = x[ci, r * s + py - ph, q * s + px - pw], zero outside the
    # image; then ``slack`` zeros (read only by dropped positions of the last tiles)
    cdef Py_ssize_t q
    cdef real* d
    _pad_planes(xb, xq, c, h, w, s, s, ph, pw, hq, wq, s * s * hq * wq, s * hq * wq, hq * wq,
                wq)
    d = xq + c * s * s * hq * wq
    for q in range(slack):
        d[q] = 0


cdef inline Py_ssize_t _tiles(const real* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                             const real* wt, Py_ssize_t op, Py_ssize_t o, real* acc,
                             Py_ssize_t wq, Py_ssize_t na, Py_ssize_t vw, tg_pfc* pf,
                             Py_ssize_t pfl) noexcept nogil:
    # acc[oc * ldo + f] = sum_t wt[t, oc] * xq[f + offs[t]] for the flat positions
    # f = a * wq + b, a < na, in tiles of _OB channels by vw (_VW or _VX) positions; returns
    # ldo (the positions rounded up to whole tiles). Every tile of a job lands in acc before
    # any row is copied out: a copy right after its tile would reload the tile's vectors at
    # other offsets while their stores are still in flight (no store forwarding).
    cdef Py_ssize_t f0, oc0, k, v
    cdef Py_ssize_t tf, to, ntf = (na * wq + vw - 1) // vw, nto = (o + _OB - 1) // _OB
    cdef Py_ssize_t ldo = ntf * vw, pfn
    cdef const char* pfp
    cdef real* at
    tg_pf_plan(pf, pfl, ntf * nto)
    for tf in range(ntf):
        f0 = tf * vw
        for to in range(nto):
            oc0 = to * _OB
            at = acc + oc0 * ldo + f0
            pfn = tg_pf_take(pf, nt, &pfp)
            if nt == 0:
                for k in range(_OB):
                    for v in range(vw):
                        at[k * ldo + v] = 0
            elif real is float:
                if vw == _VW:
                    tg_fl_tile_f48(xq + f0, offs, nt, wt + oc0, op, at, ldo, pfp, pfn)
                else:
                    tg_fl_tile_f32(xq + f0, offs, nt, wt + oc0, op, at, ldo, pfp, pfn)
            elif vw == _VW:
                tg_fl_tile_d48(xq + f0, offs, nt, wt + oc0, op, at, ldo, pfp, pfn)
            else:
                tg_fl_tile_d32(xq + f0, offs, nt, wt + oc0, op, at, ldo, pfp, pfn)
    return ldo


cdef enum:
    # the channel-lane tiles' chunks of taps: up to this many bytes of weights (two thirds
    # of a 48 KB L1d, the rest for the chunk's input rows), in chunks of equal sizes: fewer
    # passes over each position tile's accumulators than a third (benchmarks/results/
    # strided-zen5.md)
    _CL_CHUNK_BYTES = 32768
    # compact positions where more than 1 / _CP_SHARE of each row's columns are dropped:
    # with tiles of 12 or 16 positions (one or two channel vectors) their positions no
    # longer all fit in general registers, and each tap reloads some, so those take them
    # only past 1 / _CP_SHARE_WIDE; tiles of 6 or 8 positions take them wherever a column
    # is dropped
    _CP_SHARE = 64
    _CP_SHARE_WIDE = 8


cdef inline Py_ssize_t _cl_vectors(Py_ssize_t left, Py_ssize_t lanes) noexcept nogil:
    # channel vectors of the next tile: up to 4 of the output channels left
    return left // lanes if left // lanes < 4 else 4


cdef inline Py_ssize_t _cl_positions(Py_ssize_t nc) noexcept nogil:
    # positions per tile of nc channel vectors (the accumulators fill the vector registers)
    return 16 if nc == 1 else 12 if nc == 2 else 8 if nc == 3 else 6


cdef inline Py_ssize_t _cw_positions(Py_ssize_t nc) noexcept nogil:
    # output positions per weight-gradient tile of nc channel vectors
    return 8 if nc == 1 else 12 if nc == 2 else 8 if nc == 3 else 6


cdef inline Py_ssize_t _cl_chunk(Py_ssize_t nt, Py_ssize_t nc) noexcept nogil:
    # taps per chunk: as few chunks as fit their weights (nc vectors per tap) in
    # _CL_CHUNK_BYTES, of equal sizes (within one)
    cdef Py_ssize_t kt = _CL_CHUNK_BYTES // (nc * 64), m
    if kt < 1:
        kt = 1
    m = (nt + kt - 1) // kt
    if m < 1:
        return 1
    return (nt + m - 1) // m


cdef inline void _cl_tile(const real* xq, const Py_ssize_t* offs, Py_ssize_t nk,
                          const real* wt, Py_ssize_t op, real* tb, Py_ssize_t nc,
                          int add, const char* pfp, Py_ssize_t pfn) noexcept nogil:
    if real is float:
        if nc == 1:
            tg_cl_tile_f1(xq, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 2:
            tg_cl_tile_f2(xq, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 3:
            tg_cl_tile_f3(xq, offs, nk, wt, op, tb, add, pfp, pfn)
        else:
            tg_cl_tile_f4(xq, offs, nk, wt, op, tb, add, pfp, pfn)
    else:
        if nc == 1:
            tg_cl_tile_d1(xq, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 2:
            tg_cl_tile_d2(xq, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 3:
            tg_cl_tile_d3(xq, offs, nk, wt, op, tb, add, pfp, pfn)
        else:
            tg_cl_tile_d4(xq, offs, nk, wt, op, tb, add, pfp, pfn)


cdef inline void _cp_tile(const real* xq, const Py_ssize_t* pos, const Py_ssize_t* offs,
                          Py_ssize_t nk, const real* wt, Py_ssize_t op, real* tb,
                          Py_ssize_t nc, int add, const char* pfp,
                          Py_ssize_t pfn) noexcept nogil:
    if real is float:
        if nc == 1:
            tg_cp_tile_f1(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 2:
            tg_cp_tile_f2(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 3:
            tg_cp_tile_f3(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)
        else:
            tg_cp_tile_f4(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)
    else:
        if nc == 1:
            tg_cp_tile_d1(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 2:
            tg_cp_tile_d2(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)
        elif nc == 3:
            tg_cp_tile_d3(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)
        else:
            tg_cp_tile_d4(xq, pos, offs, nk, wt, op, tb, add, pfp, pfn)


cdef inline bint _compact(Py_ssize_t wq, Py_ssize_t nb, Py_ssize_t op,
                          Py_ssize_t lanes) noexcept nogil:
    # whether the channel-lane tiles take the kept columns of each row only (compact
    # positions): where the columns past the rows' ends are this large a share of the row
    # (the first block of channel vectors' tile width decides; op channels, lanes per vector)
    if op >= 3 * lanes:
        return (wq - nb) * _CP_SHARE > wq
    return (wq - nb) * _CP_SHARE_WIDE > wq


cdef inline Py_ssize_t _tiles_cl(const real* xq, const Py_ssize_t* offs, Py_ssize_t nt,
                                const real* wt, Py_ssize_t op, Py_ssize_t o, real* acc,
                                real* tb, Py_ssize_t wq, Py_ssize_t na,
                                Py_ssize_t nb, tg_pfc* pf, Py_ssize_t pfl) noexcept nogil:
    # _tiles' result (acc[oc * ldo + f], ldo the positions rounded up to whole vectors)
    # from channel-lane tiles: blocks of up to four channel vectors (op a multiple of the
    # lanes) by 16, 12, 8 or 6 positions (one to four vectors) into tb[f * op + oc], then
    # transposed into acc (rows of tb past the last tile are read and dropped): positions
    # rounded up to whole tiles only, not to _VW. The taps run in chunks whose weights fit
    # in L1 beside the input rows they read, each chunk over all of the job's positions,
    # the tiles' sums kept in tb between chunks: every position tile reads the chunk's
    # weights from L1, not the whole table from L2. The sums still add the taps in order.
    #
    # With compact positions (_compact), the tiles take the na * nb kept positions
    # f = a * nb + b (b < nb) only, each reading the planes at a * wq + b: acc's rows are
    # then nb wide, not wq.
    cdef Py_ssize_t lanes = 64 // sizeof(real)
    cdef bint cp = _compact(wq, nb, op, lanes)
    cdef Py_ssize_t nf = na * nb if cp else na * wq
    cdef Py_ssize_t ldo = (nf + lanes - 1) // lanes * lanes
    cdef Py_ssize_t oc0 = 0, nc, npos, f0, k, v, t0, nk, kt, ra, rb, pfn
    cdef const char* pfp
    cdef Py_ssize_t pos[16]
    if nt == 0:
        for k in range(o):
            for v in range(ldo):
                acc[k * ldo + v] = 0
        return ldo
    # the tile calls ahead, for the prefetch cursor's share per call
    v = 0
    while oc0 < op:
        nc = _cl_vectors(op - oc0, lanes)
        npos = _cl_positions(nc)
        kt = _cl_chunk(nt, nc)
        v = v + (nt + kt - 1) // kt * ((nf + npos - 1) // npos)
        oc0 = oc0 + nc * lanes
    tg_pf_plan(pf, pfl, v)
    oc0 = 0
    while oc0 < op:
        nc = _cl_vectors(op - oc0, lanes)
        npos = _cl_positions(nc)
        kt = _cl_chunk(nt, nc)
        t0 = 0
        while t0 < nt:
            nk = nt - t0 if nt - t0 < kt else kt
            f0 = 0
            # (ra, rb): row and column of position f0 (no divisions per tile)
            ra = 0
            rb = 0
            while f0 < nf:
                pfn = tg_pf_take(pf, nk, &pfp)
                if cp:
                    # the tile's positions past the last repeat the last one (dropped)
                    for k in range(npos):
                        if f0 + k < nf:
                            pos[k] = ra * wq + rb
                            rb = rb + 1
                            if rb == nb:
                                rb = 0
                                ra = ra + 1
                        else:
                            pos[k] = pos[k - 1]
                    _cp_tile(xq, pos, offs + t0, nk, wt + t0 * op + oc0, op,
                             tb + f0 * op + oc0, nc, t0 > 0, pfp, pfn)
                else:
                    _cl_tile(xq + f0, offs + t0, nk, wt + t0 * op + oc0, op,
                             tb + f0 * op + oc0, nc, t0 > 0, pfp, pfn)
                f0 = f0 + npos
            t0 = t0 + nk
        oc0 = oc0 + nc * lanes
    if real is float:
        tg_cl_back_f(tb, op, o, ldo, acc)
    else:
        tg_cl_back_d(tb, op, o, ldo, acc)
    return ldo


cdef inline void _copy(const real* acc, Py_ssize_t ldo, Py_ssize_t o, const real* bias,
                       bint has_bias, real* yb, Py_ssize_t wq, Py_ssize_t na, Py_ssize_t nb,
                       Py_ssize_t dcs, Py_ssize_t drs, Py_ssize_t dbs, bint relu,
                       unsigned char* mb) noexcept nogil:
    # yb[oc * dcs + a * drs + b * dbs] = acc[oc * ldo + a * wq + b] (+ bias) for b < nb:
    # one unit-stride, stride-2 or strided loop per channel and row. With ``relu`` (unit
    # stride), the ``bias_relu`` epilogue's values and mask (mb, laid out as yb) instead:
    # u = the sum (+ bias; without a bias -0.0 passes), 0 where u < 0, mask 1 where not u <= 0
    cdef Py_ssize_t k, a, v
    cdef real bv
    cdef const real* src
    cdef real* dst
    cdef unsigned char* mp
    for k in range(o):
        bv = bias[k] if has_bias else 0
        for a in range(na):
            src = acc + k * ldo + a * wq
            dst = yb + k * dcs + a * drs
            if relu:
                mp = mb + k * dcs + a * drs
                if real is float:
                    tg_relu_f(src, dst, mp, nb, bv, has_bias)
                else:
                    tg_relu_d(src, dst, mp, nb, bv, has_bias)
            elif dbs == 1:
                if real is float:
                    tg_addb_f(src, dst, nb, bv)
                else:
                    tg_addb_d(src, dst, nb, bv)
            elif dbs == 2:
                if real is float:
                    tg_addb2_f(src, dst, nb, bv)
                else:
                    tg_addb2_d(src, dst, nb, bv)
            else:
                for v in range(nb):
                    dst[v * dbs] = src[v] + bv


cdef inline void _copy_pair(const real* acc0, const real* acc1, Py_ssize_t ldo0,
                            Py_ssize_t ldo1, Py_ssize_t o, real* yb, Py_ssize_t wq0,
                            Py_ssize_t wq1, Py_ssize_t na, Py_ssize_t nb0, Py_ssize_t nb1,
                            Py_ssize_t dcs, Py_ssize_t drs) noexcept nogil:
    # two stride-2 jobs of adjacent columns (column phases 0 and 1 of one row phase): each
    # row's two runs interleaved and stored as whole rows (acc0's rows wq0 apart, acc1's wq1)
    cdef Py_ssize_t k, a
    for k in range(o):
        for a in range(na):
            if real is float:
                tg_inter_f(acc0 + k * ldo0 + a * wq0, acc1 + k * ldo1 + a * wq1,
                           yb + k * dcs + a * drs, nb0, nb1)
            else:
                tg_inter_d(acc0 + k * ldo0 + a * wq0, acc1 + k * ldo1 + a * wq1,
                           yb + k * dcs + a * drs, nb0, nb1)


def run_threads(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, const real[::1] bias,
                bint has_bias, const Py_ssize_t[::1] offs, const real[::1] wts,
                const Py_ssize_t[:, ::1] jobs, real[:, ::1] buf, real[:, ::1] accs, int s,
                int ph, int pw, int hq, int wq, int op, int slack, int nt, int vw,
                bint relu=False, unsigned char[:, :, :, ::1] mask=None,
                real[:, ::1] tbuf=None):
    """Per image and thread: x[b] into the thread's phase planes, then every job (a row of
    ``jobs``: first tap, taps, destination offset, row and column strides, rows, columns)
    writes its part of y[b], in tiles ``vw`` positions wide. With ``relu`` (unit-stride
    jobs), y gets the ``bias_relu`` epilogue's values and ``mask`` (uint8, y's shape) its
    mask, written by the thread that wrote the rows. With ``tbuf`` (a row per thread, 64-byte
    aligned; op a multiple of the vector lanes, wts' rows 64-byte aligned), the tiles are
    channel-lane ones (see _tiles_cl)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], dcs = y.shape[2] * y.shape[3], nj = jobs.shape[0]
    cdef Py_ssize_t bi, j, t0, t1, ldo, ldo1, rs, rs1, half = accs.shape[1] // 2
    cdef bint pair
    cdef int tid
    cdef real* xq
    cdef real* yb
    cdef real* acc
    cdef unsigned char* mb = NULL
    cdef real* tb = NULL
    cdef bint cl = tbuf is not None
    cdef Py_ssize_t ahead, claimed = 0
    # a prefetch cursor per thread, a few cache lines apart
    cdef tg_pfc* pfs
    cdef tg_pfc* pf
    if relu:
        if mask is None or (mask.shape[0] != y.shape[0] or mask.shape[1] != y.shape[1]
                            or mask.shape[2] != y.shape[2] or mask.shape[3] != y.shape[3]):
            raise ValueError("run_threads: relu needs a mask of y's shape")
        for j in range(nj):
            if jobs[j, 4] != 1:
                raise ValueError("run_threads: relu needs unit-stride jobs")
    pfs = <tg_pfc*>malloc(4 * nt * sizeof(tg_pfc))
    if pfs == NULL:
        raise MemoryError()
    with nogil, parallel(num_threads=nt):
        # images as the threads come free (each claims its next image one ahead, for the
        # prefetches)
        tid = openmp.omp_get_thread_num()
        pf = &pfs[4 * tid]
        bi = tg_claim(&claimed)
        while bi < n:
            xq = &buf[tid, 0]
            acc = &accs[tid, 0]
            if cl:
                tb = &tbuf[tid, 0]
            _planes(&x[bi, 0, 0, 0], xq, c, h, w, s, ph, pw, hq, wq, slack)
            # the image this thread takes next, claimed now: its input and output
            # lines asked for between this image's tiles
            ahead = tg_claim(&claimed)
            if ahead < n:
                tg_pf_init(pf, &x[ahead, 0, 0, 0], c * h * w * sizeof(real),
                           &y[ahead, 0, 0, 0], o * dcs * sizeof(real))
            else:
                tg_pf_init(pf, NULL, 0, NULL, 0)
            yb = &y[bi, 0, 0, 0]
            j = 0
            while j < nj:
                t0 = jobs[j, 0]
                rs = wq
                if cl:
                    ldo = _tiles_cl(xq, &offs[t0], jobs[j, 1], &wts[t0 * op], op, o, acc,
                                    tb, wq, jobs[j, 5], jobs[j, 6], pf,
                                    (tg_pf_left(pf) + nj - j - 1) // (nj - j))
                    if _compact(wq, jobs[j, 6], op, 64 // sizeof(real)):
                        rs = jobs[j, 6]
                else:
                    ldo = _tiles(xq, &offs[t0], jobs[j, 1], &wts[t0 * op], op, o, acc, wq,
                                 jobs[j, 5], vw, pf, (tg_pf_left(pf) + nj - j - 1) // (nj - j))
                # the input gradient's column phases 0 and 1 of a stride-2 call: the
                # next job writes the odd columns of the same rows
                pair = (not has_bias and not relu and jobs[j, 4] == 2 and j + 1 < nj
                        and jobs[j + 1, 4] == 2 and jobs[j + 1, 2] == jobs[j, 2] + 1
                        and jobs[j + 1, 3] == jobs[j, 3]
                        and jobs[j + 1, 5] == jobs[j, 5] and jobs[j, 6] - 1 <= jobs[j + 1, 6]
                        and jobs[j + 1, 6] <= jobs[j, 6])
                if pair:
                    t1 = jobs[j + 1, 0]
                    rs1 = wq
                    if cl:
                        ldo1 = _tiles_cl(xq, &offs[t1], jobs[j + 1, 1], &wts[t1 * op], op,
                                         o, acc + half, tb, wq, jobs[j + 1, 5],
                                         jobs[j + 1, 6], pf,
                                         (tg_pf_left(pf) + nj - j - 2) // (nj - j - 1))
                        if _compact(wq, jobs[j + 1, 6], op, 64 // sizeof(real)):
                            rs1 = jobs[j + 1, 6]
                    else:
                        ldo1 = _tiles(xq, &offs[t1], jobs[j + 1, 1], &wts[t1 * op], op, o,
                                      acc + half, wq, jobs[j + 1, 5], vw, pf,
                                      (tg_pf_left(pf) + nj - j - 2) // (nj - j - 1))
                    _copy_pair(acc, acc + half, ldo, ldo1, o, yb + jobs[j, 2], rs, rs1,
                               jobs[j, 5], jobs[j, 6], jobs[j + 1, 6], dcs, jobs[j, 3])
                    j = j + 2
                else:
                    if relu:
                        mb = &mask[bi, 0, 0, 0] + jobs[j, 2]
                    _copy(acc, ldo, o, &bias[0], has_bias, yb + jobs[j, 2], rs, jobs[j, 5],
                          jobs[j, 6], dcs, jobs[j, 3], jobs[j, 4], relu, mb)
                    j = j + 1
            bi = ahead
    free(pfs)


def wgrad_threads(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy,
                  const Py_ssize_t[::1] offs, real[:, ::1] xbuf, real[:, ::1] gbuf,
                  real[:, ::1] lanes, real[:, ::1] gws, int s, int ph, int pw, int hq, int wq,
                  int op, int tp, int nfp, int slack, int wb, int nt):
    """Chunk j of ``gws.shape[0]`` (images [n*j/nc, n*(j+1)/nc)), taken by the next thread
    to come free, in blocks of wb: their phase planes and their output gradients in rows of
    wq (zeros past each row and the last position) in the thread's buffers, then every
    (4 channels x 6 taps) tile adds the block's products, folded to quarter vectors, to its
    quarter-vectors in lanes[thread], zeroed at the chunk's start; at the chunk's end their
    lanes summed into gws[j]. The caller adds the chunks' sums in chunk order, so the result
    does not depend on the thread count or on which thread took which chunk."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t xs = c * s * s * hq * wq + slack, gs = op * nfp, nc = gws.shape[0]
    cdef Py_ssize_t j, b0, b1, bb, step, m, nb, oc, r, q, o0, t0, tv
    cdef Py_ssize_t lv = 16 // sizeof(real), ntq = tp // _WT
    cdef int tid
    cdef real* xq
    cdef real* gq
    cdef real* g
    cdef real* lk
    with nogil:
        for j in prange(nc, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            xq = &xbuf[tid, 0]
            gq = &gbuf[tid, 0]
            lk = &lanes[tid, 0]
            for m in range(op * tp * lv):
                lk[m] = 0
            b0 = n * j // nc
            b1 = n * (j + 1) // nc
            # the chunk in blocks of at most wb images, of equal sizes (within one)
            step = (b1 - b0 + wb - 1) // wb
            step = (b1 - b0 + step - 1) // step
            bb = b0
            while bb < b1:
                nb = b1 - bb
                if nb > step:
                    nb = step
                for m in range(nb):
                    _planes(&x[bb + m, 0, 0, 0], xq + m * xs, c, h, w, s, ph, pw, hq, wq,
                            slack)
                    for oc in range(op):
                        g = gq + m * gs + oc * nfp
                        if oc >= o:  # padding channels: zero rows
                            for q in range(nfp):
                                g[q] = 0
                            continue
                        for r in range(ho):
                            if real is float:
                                tg_row_f(&gy[bb + m, oc, r, 0], 1, g + r * wq, 0, wo, wq, NULL)
                            else:
                                tg_row_d(&gy[bb + m, oc, r, 0], 1, g + r * wq, 0, wo, wq, NULL)
                        for q in range(ho * wq, nfp):
                            g[q] = 0
                for o0 in range(op // _WO):
                    for t0 in range(ntq):
                        tv = (o0 * ntq + t0) * _WO * _WT * lv
                        if real is float:
                            tg_fw_tile_f(xq, xs, gq + o0 * _WO * nfp, gs, nfp, nb, nfp,
                                         &offs[t0 * _WT], lk + tv)
                        else:
                            tg_fw_tile_d(xq, xs, gq + o0 * _WO * nfp, gs, nfp, nb, nfp,
                                         &offs[t0 * _WT], lk + tv)
                bb = bb + nb
            for o0 in range(op // _WO):
                for t0 in range(ntq):
                    tv = (o0 * ntq + t0) * _WO * _WT * lv
                    if real is float:
                        tg_fw_lanes_f(lk + tv, &gws[j, o0 * _WO * tp + t0 * _WT], tp)
                    else:
                        tg_fw_lanes_d(lk + tv, &gws[j, o0 * _WO * tp + t0 * _WT], tp)


cdef inline void _cw_tile(const real* xq, Py_ssize_t xs, const real* gt, Py_ssize_t gs,
                          Py_ssize_t op, Py_ssize_t nimg, Py_ssize_t nr, Py_ssize_t wq,
                          Py_ssize_t wo, const Py_ssize_t* offs, real* acc,
                          Py_ssize_t nc, const char* pfp, Py_ssize_t pfn) noexcept nogil:
    if real is float:
        if nc == 1:
            tg_cw_tile_f1(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)
        elif nc == 2:
            tg_cw_tile_f2(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)
        elif nc == 3:
            tg_cw_tile_f3(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)
        else:
            tg_cw_tile_f4(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)
    else:
        if nc == 1:
            tg_cw_tile_d1(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)
        elif nc == 2:
            tg_cw_tile_d2(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)
        elif nc == 3:
            tg_cw_tile_d3(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)
        else:
            tg_cw_tile_d4(xq, xs, gt, gs, op, nimg, nr, wq, wo, offs, acc, pfp, pfn)


def wgrad_cl_threads(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy,
                     const Py_ssize_t[::1] offs, real[:, ::1] xbuf,
                     real[:, ::1] tbuf, real[:, ::1] gws, int s, int ph,
                     int pw, int hq, int wq, int op, int tp, int nfp, int slack, int wb,
                     int nt):
    """wgrad_threads' chunks and blocks with channel-lane tiles: each image's output
    gradient transposed from its rows into tbuf[thread] (position-major in rows of wq
    positions, op channels per position; the positions past each row's end unwritten and
    unread), then per block of output
    channel vectors (up to four) and taps (24 / nc at a time) one tile over the block's
    images and positions, its sums added to the chunk's sums gws[j][tap * op + channel]
    (tap-major; rows 64-byte aligned). Same chunks, same order at any thread count."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t xs = c * s * s * hq * wq + slack, gs = op * nfp, nch = gws.shape[0]
    cdef Py_ssize_t lanes = 64 // sizeof(real)
    cdef Py_ssize_t j, b0, b1, bb, step, m, nb, oc0, nc, ntq, t0, a0, a1, calls, pfn
    cdef int tid
    cdef real* xq
    cdef real* gt
    cdef real* sk
    cdef const char* pfp
    # a prefetch cursor per thread, a few cache lines apart (see run_threads)
    cdef tg_pfc* pfs = <tg_pfc*>malloc(4 * nt * sizeof(tg_pfc))
    cdef tg_pfc* pf
    if pfs == NULL:
        raise MemoryError()
    with nogil:
        for j in prange(nch, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            xq = &xbuf[tid, 0]
            gt = &tbuf[tid, 0]
            sk = &gws[j, 0]
            for m in range(op * tp):
                sk[m] = 0
            b0 = n * j // nch
            b1 = n * (j + 1) // nch
            step = (b1 - b0 + wb - 1) // wb
            step = (b1 - b0 + step - 1) // step
            bb = b0
            while bb < b1:
                nb = b1 - bb
                if nb > step:
                    nb = step
                for m in range(nb):
                    _planes(&x[bb + m, 0, 0, 0], xq + m * xs, c, h, w, s, ph, pw, hq, wq,
                            slack)
                    # gt[(a * wq + b) * op + oc] = gy[bb + m, oc, a, b] for b < wo
                    if real is float:
                        tg_cl_gather_f(&gy[bb + m, 0, 0, 0], o, ho, wo, wq, op, gt + m * gs)
                    else:
                        tg_cl_gather_d(&gy[bb + m, 0, 0, 0], o, ho, wo, wq, op, gt + m * gs)
                # the next block's images (the chunk's, else the first block of the
                # chunk this thread most likely takes next): their input and output
                # gradient lines asked for while this block's tiles run
                a0 = bb + nb
                a1 = a0 + step
                if a0 >= b1:
                    a0 = n * (j + nt) // nch
                    a1 = a0 + step if j + nt < nch else a0
                if a1 > n:
                    a1 = n
                pf = &pfs[4 * tid]
                if a1 > a0:
                    tg_pf_init(pf, &x[a0, 0, 0, 0], (a1 - a0) * c * h * w * sizeof(real),
                               &gy[a0, 0, 0, 0], (a1 - a0) * o * ho * wo * sizeof(real))
                else:
                    tg_pf_init(pf, NULL, 0, NULL, 0)
                calls = 0
                oc0 = 0
                while oc0 < op:
                    nc = _cl_vectors(op - oc0, lanes)
                    ntq = _cw_positions(nc)
                    calls = calls + (tp + ntq - 1) // ntq
                    oc0 = oc0 + nc * lanes
                tg_pf_plan(pf, tg_pf_left(pf), calls)
                oc0 = 0
                while oc0 < op:
                    nc = _cl_vectors(op - oc0, lanes)
                    ntq = _cw_positions(nc)
                    t0 = 0
                    while t0 < tp:
                        pfn = tg_pf_take(pf, nb * ho * wo, &pfp)
                        _cw_tile(xq, xs, gt + oc0, gs, op, nb, ho, wq, wo, &offs[t0],
                                 sk + t0 * op + oc0, nc, pfp, pfn)
                        t0 = t0 + ntq
                    oc0 = oc0 + nc * lanes
                bb = bb + nb
    free(pfs)


# The weight gradient's position-lane tiles run over the flattened output positions of each
# image; with fewer of them per image (8x8 outputs) the fixed cost per tile and image
# dominates and im2col-cython's GEMMs lead (the channel-lane tiles: _CL_WGRAD_MIN_POSITIONS).
_WGRAD_MIN_POSITIONS = 128


# The weight gradient's batch is cut into chunks of consecutive images fixed by the batch
# size and block size alone (so its summation order does not depend on the thread count),
# at least _WGRAD_MIN_CHUNKS of them, so that threads taking chunks as they come free stay
# balanced when one of them is held back (other processes on the machine), and at most
# _WGRAD_MAX_CHUNKS, each costing one pass over its lane sums.
_WGRAD_MIN_CHUNKS = 4
_WGRAD_MAX_CHUNKS = 16


def _wgrad_chunks(n, wb):
    """Chunks of a batch of ``n`` images for blocks of at most ``wb`` images."""
    return max(1, min(n, max(_WGRAD_MIN_CHUNKS, min(_WGRAD_MAX_CHUNKS, n // wb))))


# The weight gradient with channel-lane tiles from this many output channels on (see
# wgrad_cl_threads): ahead of the position-lane tiles on the 32- and 48-channel layers, and
# of im2col-cython's weight gradient from 56 positions (resnet8's 8x8 32->64 layer,
# conv_autoencoder's 7x7 16->32 layer), at 1 and 2 threads
# (benchmarks/results/strided-conv.md).
_CL_WGRAD_MIN_OUT = 32
_CL_WGRAD_MIN_POSITIONS = 56


def _weight_grad(gy, x, w_shape, int s, int ph, int pw):
    n, c, h, wd = x.shape
    o, _, kh, kw = w_shape
    ho, wo = gy.shape[2:]
    hq, wq = ho + (kh - 1) // s, wo + (kw - 1) // s
    nfp = -(-(ho * wq) // _WV) * _WV
    t = c * kh * kw
    cl = o >= _CL_WGRAD_MIN_OUT
    # the channel-lane tiles take 6, 8 or 12 taps at a time
    tp = -(-t // 24) * 24 if cl else -(-t // _WT) * _WT
    op = _lanes_op(o, x.dtype, True) if cl else -(-o // _WO) * _WO
    offs = _tap_offsets(c, kh, kw, s, hq, wq, tp)
    slack = nfp + wq + 2 * _WV
    nt = max(1, min(_team_size(n * o * ho * wo * t), n))
    xs = c * s * s * hq * wq + slack
    # blocks of images: enough positions per tile to pay for its lane sums, within about
    # 1 MB of planes and gradient rows per thread
    per = (xs + op * nfp) * x.itemsize
    wb = int(max(1, min(16, -(-48 * _WV // nfp), (1 << 20) // per)))
    nc = _wgrad_chunks(n, wb)
    memory.check_fits("conv2d (flat weight gradient)", {
        "phase planes": nt * wb * xs * x.itemsize,
        "output gradient rows": nt * wb * op * nfp * x.itemsize,
        "lane sums": 0 if cl else nt * op * tp * 16,
        "chunk sums": nc * op * tp * x.itemsize,
    })
    xbuf = workspace("flat-wg-planes", (nt, wb * xs), x.dtype)
    # the chunks' sums in a reused buffer: a fresh one of this size costs its page faults
    # on every call
    gws = workspace("flat-wg-sums", (nc * op * tp + 16,), x.dtype)
    # (rows 64-byte aligned: the channel-lane tiles add to them in whole vectors)
    skip = (-gws.ctypes.data % 64) // x.itemsize
    gws = gws[skip:skip + nc * op * tp].reshape(nc, op * tp)
    if cl:
        tbuf = workspace("flat-wg-cl", (nt * wb * op * nfp + 16,), x.dtype)
        skip = (-tbuf.ctypes.data % 64) // x.itemsize
        tbuf = tbuf[skip:skip + nt * wb * op * nfp].reshape(nt, -1)
        wgrad_cl_threads(x, gy, offs, xbuf, tbuf, gws, s, ph, pw, hq, wq, op, tp, nfp,
                         slack, wb, nt)
    else:
        # rows start on 64-byte boundaries (nfp is a multiple of 16 elements)
        gbuf = workspace("flat-wg-rows", (nt * wb * op * nfp + _WV,), x.dtype)
        skip = (-gbuf.ctypes.data % 64) // x.itemsize
        gbuf = gbuf[skip:skip + nt * wb * op * nfp].reshape(nt, wb * op * nfp)
        lanes = workspace("flat-wg-lanes", (nt, op * tp * 16 // x.itemsize), x.dtype)
        wgrad_threads(x, gy, offs, xbuf, gbuf, lanes, gws, s, ph, pw, hq, wq, op, tp, nfp,
                      slack, wb, nt)
    # fixed order: the chunks' sums one after another (into the workspace's first row);
    # the channel-lane tiles' sums are tap-major
    gw = gws[0]
    for k in range(1, nc):
        gw += gws[k]
    gw = gw.reshape(tp, op)[:t, :o].T if cl else gw.reshape(op, tp)[:o, :t]
    return np.ascontiguousarray(gw).reshape(o, c, kh, kw)


# The tables below depend on the shapes alone: built once per shape (a few numpy calls
# each, which on small layers cost as much as the convolution of several images), and
# handed out read-only.
@lru_cache(maxsize=128)
def _tap_offsets(int c, int kh, int kw, int s, int hq, int wq, int tp):
    """offs[t] for the taps t = (ci, i, j) in order: the offset of tap t's phase plane
    element for output position 0 (``tp`` entries, zeros past the taps)."""
    ci, i, j = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
    offs = np.zeros(max(tp, c * kh * kw), dtype=np.intp)
    offs[:c * kh * kw] = ((((ci * s + i % s) * s + j % s) * hq + i // s) * wq
                          + j // s).reshape(-1)
    offs.flags.writeable = False
    return offs


@lru_cache(maxsize=128)
def _input_grad_tables(o, h, wd, kh, kw, s, ph, pw, ho, wo):
    """The input gradient's per-phase taps: (hq, wq, pt, pl, offs, jobs, ntap), the taps of
    each phase (py, px) in (output channel, kh, kw) order, phases in (py, px) order.
    The arguments stay Python ints: the build's cdivision would make ``//`` of the
    negative numerators below truncate toward zero instead of rounding down."""
    # input phase (py, px): rows ih = a * s + py take the taps i = (py + ph) mod s, each
    # from output row a + (py + ph - i) // s (exact); the same for columns
    dlo_i, dhi_i = (ph - kh + 1) // s, (s - 1 + ph) // s
    dlo_j, dhi_j = (pw - kw + 1) // s, (s - 1 + pw) // s
    pt, pl = max(0, -dlo_i), max(0, -dlo_j)
    na0, nb0 = -(-h // s), -(-wd // s)
    hq = pt + max(ho, na0 + dhi_i)
    wq = pl + max(wo, nb0 + dhi_j)
    offs, jobs = [], []
    ntap = 0
    oc = np.arange(o)[:, None, None]
    for py in range(s):
        na = -(-(h - py) // s)
        ti = np.array([i for i in range(kh) if (py + ph - i) % s == 0], dtype=np.intp)
        for px in range(s):
            nb = -(-(wd - px) // s)
            tj = np.array([j for j in range(kw) if (px + pw - j) % s == 0], dtype=np.intp)
            k = o * ti.size * tj.size
            if k:
                off = ((oc * hq + (py + ph - ti[None, :, None]) // s + pt) * wq
                       + (px + pw - tj[None, None, :]) // s + pl)
                offs.append(off.reshape(-1))
            if na > 0 and nb > 0:
                jobs.append([ntap, k, py * wd + px, s * wd, s, na, nb])
            ntap += k
    # one spare row, so that a job without taps still points inside the tables
    offs.append(np.zeros(1, dtype=np.intp))
    offs = np.concatenate(offs).astype(np.intp)
    jobs = np.array(jobs, dtype=np.intp)
    for a in (offs, jobs):
        a.flags.writeable = False
    return hq, wq, pt, pl, offs, jobs, ntap


def applies(w_shape, stride, dilation, groups) -> bool:
    """One group, dilation 1, equal strides of 1 to 3."""
    return (groups == 1 and tuple(dilation) == (1, 1) and stride[0] == stride[1]
            and 1 <= stride[0] <= 3)


def _team_size(macs):
    return 1 if macs < _GRAIN else threads.get_num_threads()


def _aligned_zeros(shape, dtype):
    """Zeros of this shape, starting on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)  # (np.prod converts the tuple to an array on every call)
    raw = np.zeros(size + 64 // dtype.itemsize, dtype=dtype)
    skip = (-raw.ctypes.data % 64) // dtype.itemsize
    return raw[skip:skip + size].reshape(shape)


def _lanes_op(n, dtype, bint cl):
    """``n`` channels rounded up to whole tiles: vectors of lanes for channel-lane tiles,
    _OB otherwise."""
    m = 64 // np.dtype(dtype).itemsize if cl else _OB
    return (n + m - 1) // m * m


def _run(x, y, b, offs, wts, jobs, int s, int ph, int pw, int hq, int wq, int op, macs,
         int vw, mask=None, bint cl=False):
    n, c = x.shape[:2]
    if cl:
        vw = _VW  # the channel-lane tiles' positions per job: a multiple of _VW
    rmax = int(jobs[:, 5].max())
    slack = -(-(rmax * wq) // vw) * vw + vw
    nt = max(1, min(_team_size(macs), n))
    memory.check_fits("conv2d (flat)", {
        "phase planes": nt * (c * s * s * hq * wq + slack) * x.itemsize,
        "output": y.size * y.itemsize,
    })
    buf = workspace("flat-planes", (nt, c * s * s * hq * wq + slack), x.dtype)
    # each thread's tile outputs for one job (op rows of the job's flat positions rounded
    # up to whole tiles), 64-byte aligned and one cache line apart between threads
    ntf = -(-(rmax * wq) // vw)
    per = 2 * (op * ntf * vw + 16)  # two jobs' outputs (a pair of column phases)
    memory.check_fits("conv2d (flat)", {"tile outputs": nt * per * x.itemsize})
    accs = workspace("flat-accs", (nt * per + 16,), x.dtype)
    skip = (-accs.ctypes.data % 64) // x.itemsize
    accs = accs[skip:skip + nt * per].reshape(nt, per)
    tbuf = None
    if cl:
        # the channel-lane tiles' transposed outputs for one job: rows 64-byte aligned
        # (compact positions: up to a tile of rows past them)
        pt = -(-(op * (ntf * vw + 16)) // 16) * 16
        memory.check_fits("conv2d (flat)", {"channel-lane tile outputs": nt * pt * x.itemsize})
        tbuf = workspace("flat-cl", (nt * pt + 16,), x.dtype)
        skip = (-tbuf.ctypes.data % 64) // x.itemsize
        tbuf = tbuf[skip:skip + nt * pt].reshape(nt, pt)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    run_threads(x, y, bias, b is not None, offs, wts.reshape(-1), jobs, buf, accs, s, ph, pw,
                hq, wq, op, slack, nt, vw, mask is not None, mask, tbuf)
    return y


# Channel-lane tiles (see _tiles_cl) for the forward from this many output channels on and
# for the input gradient from this many input channels on: they led the position-lane
# tiles there (5x5 stride-2 32->48, resnet8's 32->64, and with 32 output channels most on
# small outputs: conv_autoencoder's 7x7 16->32 layer; benchmarks/results/strided-conv.md);
# with 16 input channels (one vector) the input gradient's short per-phase reductions ran
# slower.
_CL_MIN_OUT = 32
_CL_MIN_IN = 32


def _conv(x, w, b, int s, int ph, int pw, bint relu=False):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (h + 2 * ph - kh) // s + 1, (wd + 2 * pw - kw) // s + 1
    hq, wq = ho + (kh - 1) // s, wo + (kw - 1) // s
    cl = o >= _CL_MIN_OUT
    op = _lanes_op(o, x.dtype, cl)
    wts = _aligned_zeros((c, kh, kw, op), x.dtype)
    wts[..., :o] = w.transpose(1, 2, 3, 0)
    offs = _tap_offsets(c, kh, kw, s, hq, wq, 0)
    jobs = np.array([[0, c * kh * kw, 0, wo, 1, ho, wo]], dtype=np.intp)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    if relu:
        memory.check_fits("conv2d (flat)", {"ReLU mask": y.size})
    mask = np.empty(y.shape, np.uint8) if relu else None
    _run(x, y, b, offs, wts, jobs, s, ph, pw, hq, wq, op,
         n * o * ho * wo * c * kh * kw, _VW, mask, cl)
    return (y, mask) if relu else y


def _input_grad(gy, w, x_shape, int s, int ph, int pw):
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    hq, wq, pt, pl, offs, jobs, ntap = _input_grad_tables(o, h, wd, kh, kw, s, ph, pw, ho,
                                                          wo)
    cl = c >= _CL_MIN_IN
    cp = _lanes_op(c, gy.dtype, cl)
    wtab = _aligned_zeros((ntap + 1, cp), gy.dtype)
    # wtab[k, :c]: the weights of tap k of the tables' order, per phase (py, px) the taps
    # i = (py + ph) mod s + s * u, j = (px + pw) mod s + s * v of every output channel:
    # strided slices of w, copied without a gather (the slower copy)
    w4 = w.transpose(0, 2, 3, 1)
    k0 = 0
    for py in range(s):
        i0 = (py + ph) % s
        nti = len(range(i0, kh, s))
        for px in range(s):
            j0 = (px + pw) % s
            ntj = len(range(j0, kw, s))
            k = o * nti * ntj
            if k:
                wtab[k0:k0 + k].reshape(o, nti, ntj, cp)[..., :c] = w4[:, i0::s, j0::s, :]
                k0 += k
    gx = np.empty(x_shape, dtype=gy.dtype)
    return _run(gy, gx, None, offs, wtab, jobs, 1, pt, pl, hq, wq,
                cp, n * c * ho * wo * o * kh * kw, _VX, None, cl)


def forward_relu(x, w, b, stride, padding, dilation, groups):
    """``(relu(y), mask)`` for ``y = forward(x, w, b, ...)``: the bias and the ReLU applied
    as each thread copies its image's rows out of the tiles (the ``bias_relu`` epilogue's
    values and uint8 mask, ``kernels/fused``), or None where this call does not run the
    direct kernel (the caller then runs the forward and the epilogue apart)."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if not _direct(x, w, stride, padding, dilation, groups, ho, wo):
        return None
    return _conv(x, w, b, int(stride[0]), int(padding[0]), int(padding[1]), True)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    gx = gw = None
    direct = (gy.dtype == x.dtype
              and _direct(x, w, stride, padding, dilation, groups, *gy.shape[2:]))
    if need_x and direct:
        gx = _input_grad(np.ascontiguousarray(gy), w, x.shape, int(stride[0]),
                         int(padding[0]), int(padding[1]))
    elif need_x:
        gx = _fallback.backward(gy, x, w, stride, padding, dilation, groups, True, False)[0]
    positions = gy.shape[2] * (gy.shape[3] + (w.shape[3] - 1) // stride[1])
    if need_w and direct and (positions >= _WGRAD_MIN_POSITIONS or (
            w.shape[0] >= _CL_WGRAD_MIN_OUT and positions >= _CL_WGRAD_MIN_POSITIONS)):
        gw = _weight_grad(np.ascontiguousarray(gy), x, w.shape, int(stride[0]),
                          int(padding[0]), int(padding[1]))
        # the tiles also multiply the zeros past each output row by input pixels no
        # window uses: finite products vanish, a non-finite one would not, so a
        # non-finite result is recomputed by im2col-cython (a true inf or NaN stays)
        if not np.isfinite(gw).all():
            gw = None
    if need_w and gw is None:
        gw = _fallback.backward(gy, x, w, stride, padding, dilation, groups, False, True)[1]
    return gx, gw
