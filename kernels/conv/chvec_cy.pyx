"""Direct convolution with output channels across the vector lanes, Cython + OpenMP.

For stride-1 calls with few channels and narrow outputs (lenet5's 6->16 5x5 layer on 10x10
outputs), where vectors across output columns leave lanes idle and im2col's unfold and small
GEMMs cost more than the arithmetic. A vector holds ``V`` output channels (16 float32 or 8
float64: one AVX-512 register); each thread takes whole images (handed out as threads come
free) and copies its image, zero-padded, into its own buffer.

Forward: tiles of ``V`` output channels x up to 16 consecutive output columns of one row,
one accumulator vector per column (the tile's width is a compile-time constant, 1 to 16, so
a 10-wide row is one tile without idle lanes). For 3- and 5-wide kernels the tile slides
along each input row: per (input channel, kh) the row's weight vectors stay in registers and
each input value is broadcast once for its 3 or 5 multiply-adds; other widths take one
broadcast per multiply-add. With 3-wide kernels, more than ``V`` output channels and rows of
at most 8 or more than 16 columns, a tile holds two channel vectors x up to 12 columns and
each broadcast feeds both vectors (see ``_PAIR_COLUMNS``). The finished tile is transposed
in registers and written as one vector per output channel (a masked store for a part
vector; bias added there). The input gradient of a stride-1 call is the same convolution of
the output gradient with the flipped, transposed filters when x has a vector's worth of
channels or more; with fewer (lenet5's 6) it is ``blocked-cython``'s (vectors across
columns).

Weight gradient (3x3 and 5x5 kernels): each thread copies its image's output gradient
transposed to (position, channel), ``V`` x ``V`` blocks through registers; for each block of
``V`` output channels and each input channel, one accumulator vector per tap (9 or 25) runs
over the image's output positions, one vector load of the gradient per position; 3x3 tiles
take two positions per step and broadcast each input value once for both, and with more
than ``V`` output channels two channel vectors share each broadcast. The batch is cut
into chunks of consecutive images (one per thread at one thread, ``_CHUNKS_PER_THREAD`` per
thread otherwise), each with its own partial sums, added in chunk order (repeatable for a
given batch and thread count).

Backward: the weight gradient, the bias gradient (``backward_with_bias``: each chunk sums its
transposed output gradients per channel) and, on its own tiles, the input gradient run in
one parallel region (``backward_threads``): the weight gradient's chunks are handed out
first, then the input gradient's images, so the team is woken once per backward and the
single images even out the threads' ends.

``winograd2_threads`` and ``winograd2_wgrad_threads`` (run by winograd-cython, not by this
variant's own calls): Winograd F(2x2, 3x3) with channels across the same vector lanes, for
small planes, forward and weight gradient (see there).

Every output adds its taps in (input channel, kh, kw) order. Strided, dilated and grouped
calls, and weight gradients of other kernel sizes, go to ``im2col-cython``. Bounds and
wraparound checks are set by the build (setup.py), not here.
"""

cimport openmp
from cython.parallel cimport prange

import numpy as np

from .. import memory, threads
from . import blocked_cy as _blocked
from . import im2col_cy as _fallback
from .im2col import workspace


include "../_common.pxi"


cdef enum:
    _QMAX = 16  # output columns per forward tile (accumulator vectors)


# Tiles in C: GCC vector types of 64 bytes (16 floats or 8 doubles: one AVX-512 register, two
# AVX2 ones). The forward tile's width Q and the weight-gradient tile's kernel size are
# compile-time constants so the accumulators stay in registers.
cdef extern from *:
    """
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #define TG_CV_PART_f(d, v, n) _mm512_mask_storeu_ps(d, (__mmask16)((1u << (n)) - 1), (__m512)(v))
    #define TG_CV_PART_d(d, v, n) _mm512_mask_storeu_pd(d, (__mmask8)((1u << (n)) - 1), (__m512d)(v))
    #else
    #define TG_CV_PART_f(d, v, n) __builtin_memcpy(d, &(v), (n) * sizeof(float))
    #define TG_CV_PART_d(d, v, n) __builtin_memcpy(d, &(v), (n) * sizeof(double))
    #endif
    /* lane l of the two-source shuffles of the transpose's stage s (V lanes) */
    #define TG_CV_LO(l, s, V) (((l) & (s)) ? (V) + (l) - (s) : (l))
    #define TG_CV_HI(l, s, V) (((l) & (s)) ? (V) + (l) : (l) + (s))
    #define TG_CV_LANES8(M, s) {M(0, s, 8), M(1, s, 8), M(2, s, 8), M(3, s, 8),          \
                                M(4, s, 8), M(5, s, 8), M(6, s, 8), M(7, s, 8)}
    #define TG_CV_LANES16(M, s) {M(0, s, 16), M(1, s, 16), M(2, s, 16), M(3, s, 16),     \
        M(4, s, 16), M(5, s, 16), M(6, s, 16), M(7, s, 16), M(8, s, 16), M(9, s, 16),   \
        M(10, s, 16), M(11, s, 16), M(12, s, 16), M(13, s, 16), M(14, s, 16),           \
        M(15, s, 16)}

    #define TG_CV_TYPES(T, S, I, LANES)                                                 \
    typedef T tg_cv_v##S __attribute__((vector_size(64)));                              \
    typedef T tg_cv_u##S __attribute__((vector_size(64), aligned(sizeof(T)), may_alias)); \
    typedef I tg_cv_i##S __attribute__((vector_size(64)));                              \
    static inline void tg_cv_stage_##S(tg_cv_v##S* t, Py_ssize_t s, tg_cv_i##S lo,      \
                                       tg_cv_i##S hi) {                                 \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t r;                                                                   \
        _Pragma("GCC unroll 16") for (r = 0; r < V; r++) {                              \
            if ((r & s) || r + s >= V) continue;                                        \
            tg_cv_v##S a = t[r], b = t[r + s];                                          \
            t[r] = __builtin_shuffle(a, b, lo);                                         \
            t[r + s] = __builtin_shuffle(a, b, hi);                                     \
        }                                                                               \
    }                                                                                   \
    /* t[r][l] <-> t[l][r]: for each bit s of the index, rows r and r + s (bit s clear in  \
       r) swap their lanes with bit s set and clear respectively, two-source shuffles    \
       with constant lane indices */                                                    \
    static inline void tg_cv_transpose_##S(tg_cv_v##S* t) {                              \
        if (64 / sizeof(T) > 8)                                                         \
            tg_cv_stage_##S(t, 8, (tg_cv_i##S)LANES(TG_CV_LO, 8),                       \
                            (tg_cv_i##S)LANES(TG_CV_HI, 8));                            \
        tg_cv_stage_##S(t, 4, (tg_cv_i##S)LANES(TG_CV_LO, 4), (tg_cv_i##S)LANES(TG_CV_HI, 4)); \
        tg_cv_stage_##S(t, 2, (tg_cv_i##S)LANES(TG_CV_LO, 2), (tg_cv_i##S)LANES(TG_CV_HI, 2)); \
        tg_cv_stage_##S(t, 1, (tg_cv_i##S)LANES(TG_CV_LO, 1), (tg_cv_i##S)LANES(TG_CV_HI, 1)); \
    }                                                                                   \
    /* d[0:n] = v[0:n] (0 < n < V): one masked store where AVX-512 has them */          \
    static inline void tg_cv_part_##S(T* d, tg_cv_v##S v, Py_ssize_t n) {                  \
        TG_CV_PART_##S(d, v, n);                                                        \
    }                                                                                   \
    /* gt[f * op + k] = g[k * npos + f] for k < op (zero from o on): whole blocks of V    \
       positions x V channels through registers, the last positions one by one */        \
    static void tg_cv_gt_##S(const T* g, Py_ssize_t npos, Py_ssize_t o, Py_ssize_t op,   \
                             T* gt) {                                                   \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_cv_v##S t[V];                                                                \
        Py_ssize_t f0, k0, k, f;                                                        \
        for (f0 = 0; f0 + V <= npos; f0 += V) {                                         \
            for (k0 = 0; k0 < op; k0 += V) {                                            \
                _Pragma("GCC unroll 16") for (k = 0; k < V; k++) {                      \
                    t[k] = (tg_cv_v##S){0};                                             \
                    if (k0 + k < o) t[k] = *(const tg_cv_u##S*)(g + (k0 + k) * npos + f0); \
                }                                                                       \
                tg_cv_transpose_##S(t);                                                 \
                _Pragma("GCC unroll 16") for (f = 0; f < V; f++)                        \
                    *(tg_cv_u##S*)(gt + (f0 + f) * op + k0) = t[f];                     \
            }                                                                           \
        }                                                                               \
        for (f = f0; f < npos; f++) {                                                   \
            for (k = 0; k < o; k++) gt[f * op + k] = g[k * npos + f];                   \
            for (k = o; k < op; k++) gt[f * op + k] = 0;                                \
        }                                                                               \
    }

    /* a[q] += x[ci, i, j + q] * w[ci, i, j, :] over (ci, i, j); xp at the tile's first input
       pixel (row oh, column ow0 of channel 0), wt at the block's first channel; then
       y[k * plane + q] = a[q][k] (+ bias[k]) for k < nk: the tile transposed in registers
       in blocks of V columns, each channel's columns one vector store (element stores
       for a block narrower than V). KW > 0 (3 or 5): the kernel's width is a constant and
       the tile slides along the input row: per (ci, i) the KW weight vectors stay in
       registers and each of the row's Q + KW - 1 input values is broadcast once for its
       (up to) KW multiply-adds, instead of one broadcast per multiply-add (KW = 0: any
       width, read from kw). Either way each output adds its taps in (ci, i, j) order. */
    #define TG_CV_FWD(T, S, Q, KW)                                                      \
    __attribute__((optimize("no-predictive-commoning")))                                \
    static void tg_cv_fwd_##S##_##Q##_##KW(const T* xp, const T* wt, Py_ssize_t c,      \
            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op,    \
            T* y, Py_ssize_t plane, Py_ssize_t nk, const T* bias) {                     \
        enum { V = 64 / sizeof(T), KV = KW > 0 ? KW : 1 };                              \
        tg_cv_v##S a[Q], t[V], wv[KV];                                                  \
        Py_ssize_t ci, i, j, q, qb, k;                                                  \
        if (KW > 0) kw = KW;                                                            \
        _Pragma("GCC unroll 16") for (q = 0; q < Q; q++) a[q] = (tg_cv_v##S){0};         \
        for (ci = 0; ci < c; ci++) {                                                    \
            for (i = 0; i < kh; i++) {                                                  \
                const T* row = xp + (ci * hp + i) * wp;                                 \
                const T* w = wt + (ci * kh + i) * kw * op;                              \
                if (KW == 0) {                                                          \
                    for (j = 0; j < kw; j++, w += op) {                                 \
                        wv[0] = *(const tg_cv_u##S*)w;                                  \
                        _Pragma("GCC unroll 16") for (q = 0; q < Q; q++)                \
                            a[q] += row[j + q] * wv[0];                                 \
                    }                                                                   \
                    continue;                                                           \
                }                                                                       \
                _Pragma("GCC unroll 5") for (j = 0; j < KV; j++)                        \
                    wv[j] = *(const tg_cv_u##S*)(w + j * op);                           \
                _Pragma("GCC unroll 20") for (k = 0; k < Q + KV - 1; k++) {             \
                    tg_cv_v##S xb = row[k] - (tg_cv_v##S){0};                           \
                    _Pragma("GCC unroll 5") for (j = 0; j < KV; j++)                    \
                        if (k - j >= 0 && k - j < Q) a[k - j] += xb * wv[j];            \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 2") for (qb = 0; qb < Q; qb += V) {                         \
            _Pragma("GCC unroll 16") for (q = 0; q < V; q++)                            \
                t[q] = qb + q < Q ? a[qb + q] : (tg_cv_v##S){0};                        \
            tg_cv_transpose_##S(t);                                                     \
            _Pragma("GCC unroll 16") for (k = 0; k < V; k++) {                          \
                if (k >= nk) break;                                                     \
                tg_cv_v##S v = t[k] + (bias ? bias[k] : (T)0);                          \
                T* d = y + k * plane + qb;                                              \
                if (Q - qb >= V) *(tg_cv_u##S*)d = v;                                   \
                else tg_cv_part_##S(d, v, Q - qb);                                      \
            }                                                                           \
        }                                                                               \
    }
    #define TG_CV_FWD_Q(T, S, KW)                                                       \
    TG_CV_FWD(T, S, 1, KW) TG_CV_FWD(T, S, 2, KW) TG_CV_FWD(T, S, 3, KW)               \
    TG_CV_FWD(T, S, 4, KW) TG_CV_FWD(T, S, 5, KW) TG_CV_FWD(T, S, 6, KW)               \
    TG_CV_FWD(T, S, 7, KW) TG_CV_FWD(T, S, 8, KW) TG_CV_FWD(T, S, 9, KW)               \
    TG_CV_FWD(T, S, 10, KW) TG_CV_FWD(T, S, 11, KW) TG_CV_FWD(T, S, 12, KW)            \
    TG_CV_FWD(T, S, 13, KW) TG_CV_FWD(T, S, 14, KW) TG_CV_FWD(T, S, 15, KW)            \
    TG_CV_FWD(T, S, 16, KW)
    #define TG_CV_FWD_ROW(S, KW)                                                        \
    {tg_cv_fwd_##S##_1_##KW, tg_cv_fwd_##S##_2_##KW, tg_cv_fwd_##S##_3_##KW,            \
     tg_cv_fwd_##S##_4_##KW, tg_cv_fwd_##S##_5_##KW, tg_cv_fwd_##S##_6_##KW,            \
     tg_cv_fwd_##S##_7_##KW, tg_cv_fwd_##S##_8_##KW, tg_cv_fwd_##S##_9_##KW,            \
     tg_cv_fwd_##S##_10_##KW, tg_cv_fwd_##S##_11_##KW, tg_cv_fwd_##S##_12_##KW,         \
     tg_cv_fwd_##S##_13_##KW, tg_cv_fwd_##S##_14_##KW, tg_cv_fwd_##S##_15_##KW,         \
     tg_cv_fwd_##S##_16_##KW}

    /* The same for two vectors of output channels (2 V, nk of them valid, more than V) and
       a 3-wide kernel: each broadcast input value feeds both vectors' multiply-adds, so a
       row of Q <= 12 columns keeps 2 Q accumulators (16 for 8-column rows, where one
       vector's 8 accumulators could not cover the multiply-add latency) with half the
       broadcasts per multiply-add. Each output adds its taps in (ci, i, j) order. */
    #define TG_CV_FWD2(T, S, Q)                                                         \
    __attribute__((optimize("no-predictive-commoning")))                                \
    static void tg_cv_fwd2_##S##_##Q(const T* xp, const T* wt, Py_ssize_t c,            \
            Py_ssize_t kh, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op, T* y,            \
            Py_ssize_t plane, Py_ssize_t nk, const T* bias) {                           \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_cv_v##S a[Q], b[Q], t[V], wa[3], wb[3];                                      \
        Py_ssize_t ci, i, j, q, k, h, qb;                                               \
        _Pragma("GCC unroll 16") for (q = 0; q < Q; q++) a[q] = b[q] = (tg_cv_v##S){0};  \
        for (ci = 0; ci < c; ci++) {                                                    \
            for (i = 0; i < kh; i++) {                                                  \
                const T* row = xp + (ci * hp + i) * wp;                                 \
                const T* w = wt + (ci * kh + i) * 3 * op;                               \
                _Pragma("GCC unroll 3") for (j = 0; j < 3; j++) {                       \
                    wa[j] = *(const tg_cv_u##S*)(w + j * op);                           \
                    wb[j] = *(const tg_cv_u##S*)(w + j * op + V);                       \
                }                                                                       \
                _Pragma("GCC unroll 16") for (k = 0; k < Q + 2; k++) {                  \
                    tg_cv_v##S xb = row[k] - (tg_cv_v##S){0};                           \
                    _Pragma("GCC unroll 3") for (j = 0; j < 3; j++)                     \
                        if (k - j >= 0 && k - j < Q) {                                  \
                            a[k - j] += xb * wa[j];                                     \
                            b[k - j] += xb * wb[j];                                     \
                        }                                                               \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 2") for (h = 0; h < 2; h++) {                               \
          _Pragma("GCC unroll 2") for (qb = 0; qb < Q; qb += V) {                       \
            _Pragma("GCC unroll 16") for (q = 0; q < V; q++)                            \
                t[q] = qb + q < Q ? (h ? b[qb + q] : a[qb + q]) : (tg_cv_v##S){0};      \
            tg_cv_transpose_##S(t);                                                     \
            _Pragma("GCC unroll 16") for (k = 0; k < V; k++) {                          \
                if (h * V + k >= nk) break;                                             \
                tg_cv_v##S v = t[k] + (bias ? bias[h * V + k] : (T)0);                  \
                T* d = y + (h * V + k) * plane + qb;                                    \
                if (Q - qb >= V) *(tg_cv_u##S*)d = v;                                   \
                else tg_cv_part_##S(d, v, Q - qb);                                      \
            }                                                                           \
          }                                                                             \
        }                                                                               \
    }
    #define TG_CV_FWD2_Q(T, S)                                                          \
    TG_CV_FWD2(T, S, 1) TG_CV_FWD2(T, S, 2) TG_CV_FWD2(T, S, 3) TG_CV_FWD2(T, S, 4)     \
    TG_CV_FWD2(T, S, 5) TG_CV_FWD2(T, S, 6) TG_CV_FWD2(T, S, 7) TG_CV_FWD2(T, S, 8)     \
    TG_CV_FWD2(T, S, 9) TG_CV_FWD2(T, S, 10) TG_CV_FWD2(T, S, 11) TG_CV_FWD2(T, S, 12)

    /* out[cc * os + t * op] += sum over positions of x[cc, oh + i, ow + j] * gt[(oh, ow), :]
       for the KH x KW taps t = i * KW + j of C input channels (planes cs apart from xp,
       the first channel's padded plane): the C channels share each gradient vector load.
       P = 2: two neighbouring positions per step (gradient vectors g0, g1), each input
       value of a row broadcast once into a register for its tap at the first position and
       the tap left of it at the second (KW + 1 broadcasts per row and channel instead of
       2 KW folded into the multiply-adds), so the loads no longer keep pace with the
       multiply-adds; an odd row's last position alone. Each tap adds the positions in
       (oh, ow) order either way. */
    #define TG_CV_WG(T, S, KH, KW, C, P)                                                \
    __attribute__((optimize("no-predictive-commoning")))                                \
    static void tg_cv_wg_##S##_##KH##KW##_##C(const T* xp, Py_ssize_t cs, const T* gt,   \
            Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t wp, Py_ssize_t op, T* out,          \
            Py_ssize_t os) {                                                            \
        tg_cv_v##S a[C][KH * KW], xb[KW + 1];                                           \
        Py_ssize_t oh, ow, i, j, cc;                                                    \
        _Pragma("GCC unroll 2") for (cc = 0; cc < C; cc++)                              \
            _Pragma("GCC unroll 25") for (i = 0; i < KH * KW; i++)                      \
                a[cc][i] = (tg_cv_v##S){0};                                             \
        for (oh = 0; oh < ho; oh++) {                                                   \
            ow = 0;                                                                     \
            if (P == 2) {                                                               \
                for (; ow + 2 <= wo; ow += 2) {                                         \
                    tg_cv_v##S g0 = *(const tg_cv_u##S*)(gt + (oh * wo + ow) * op);     \
                    tg_cv_v##S g1 = *(const tg_cv_u##S*)(gt + (oh * wo + ow + 1) * op); \
                    _Pragma("GCC unroll 2") for (cc = 0; cc < C; cc++) {                \
                        const T* src = xp + cc * cs + oh * wp + ow;                     \
                        _Pragma("GCC unroll 5") for (i = 0; i < KH; i++) {              \
                            _Pragma("GCC unroll 6") for (j = 0; j <= KW; j++)           \
                                xb[j] = src[i * wp + j] - (tg_cv_v##S){0};              \
                            _Pragma("GCC unroll 5") for (j = 0; j < KW; j++) {          \
                                a[cc][i * KW + j] += xb[j] * g0;                        \
                                a[cc][i * KW + j] += xb[j + 1] * g1;                    \
                            }                                                           \
                        }                                                               \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            for (; ow < wo; ow++) {                                                     \
                tg_cv_v##S g = *(const tg_cv_u##S*)(gt + (oh * wo + ow) * op);          \
                _Pragma("GCC unroll 2") for (cc = 0; cc < C; cc++) {                    \
                    const T* src = xp + cc * cs + oh * wp + ow;                         \
                    _Pragma("GCC unroll 5") for (i = 0; i < KH; i++)                    \
                        _Pragma("GCC unroll 5") for (j = 0; j < KW; j++)                \
                            a[cc][i * KW + j] += src[i * wp + j] * g;                   \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 2") for (cc = 0; cc < C; cc++)                              \
            _Pragma("GCC unroll 25") for (i = 0; i < KH * KW; i++)                      \
                *(tg_cv_u##S*)(out + cc * os + i * op) += a[cc][i];                     \
    }

    /* The 3x3 tile for two vectors of output channels (gradient vectors at gt and gt + V)
       and one input channel, two positions per step: each input value broadcast once feeds
       both vectors at both positions (16 loads for 36 multiply-adds, against 26 for two
       input channels and one vector). Each tap adds the positions in (oh, ow) order. */
    #define TG_CV_WGP(T, S)                                                             \
    __attribute__((optimize("no-predictive-commoning")))                                \
    static void tg_cv_wgp_##S(const T* xp, const T* gt, Py_ssize_t ho, Py_ssize_t wo,   \
            Py_ssize_t wp, Py_ssize_t op, T* out) {                                     \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_cv_v##S a[9], b[9], xb[4];                                                   \
        Py_ssize_t oh, ow, i, j;                                                        \
        _Pragma("GCC unroll 9") for (i = 0; i < 9; i++) a[i] = b[i] = (tg_cv_v##S){0};   \
        for (oh = 0; oh < ho; oh++) {                                                   \
            const T* g = gt + oh * wo * op;                                             \
            for (ow = 0; ow + 2 <= wo; ow += 2) {                                       \
                tg_cv_v##S g0 = *(const tg_cv_u##S*)(g + ow * op);                      \
                tg_cv_v##S h0 = *(const tg_cv_u##S*)(g + ow * op + V);                  \
                tg_cv_v##S g1 = *(const tg_cv_u##S*)(g + (ow + 1) * op);                \
                tg_cv_v##S h1 = *(const tg_cv_u##S*)(g + (ow + 1) * op + V);            \
                const T* src = xp + oh * wp + ow;                                       \
                _Pragma("GCC unroll 3") for (i = 0; i < 3; i++) {                       \
                    _Pragma("GCC unroll 4") for (j = 0; j < 4; j++)                     \
                        xb[j] = src[i * wp + j] - (tg_cv_v##S){0};                      \
                    _Pragma("GCC unroll 3") for (j = 0; j < 3; j++) {                   \
                        a[i * 3 + j] += xb[j] * g0;                                     \
                        b[i * 3 + j] += xb[j] * h0;                                     \
                        a[i * 3 + j] += xb[j + 1] * g1;                                 \
                        b[i * 3 + j] += xb[j + 1] * h1;                                 \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            for (; ow < wo; ow++) {                                                     \
                tg_cv_v##S g0 = *(const tg_cv_u##S*)(g + ow * op);                      \
                tg_cv_v##S h0 = *(const tg_cv_u##S*)(g + ow * op + V);                  \
                const T* src = xp + oh * wp + ow;                                       \
                _Pragma("GCC unroll 3") for (i = 0; i < 3; i++)                         \
                    _Pragma("GCC unroll 3") for (j = 0; j < 3; j++) {                   \
                        tg_cv_v##S x0 = src[i * wp + j] - (tg_cv_v##S){0};              \
                        a[i * 3 + j] += x0 * g0;                                        \
                        b[i * 3 + j] += x0 * h0;                                        \
                    }                                                                   \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 9") for (i = 0; i < 9; i++) {                               \
            *(tg_cv_u##S*)(out + i * op) += a[i];                                       \
            *(tg_cv_u##S*)(out + i * op + V) += b[i];                                   \
        }                                                                               \
    }

    #define TG_CV_ALL(T, S, I, LANES)                                                   \
    TG_CV_TYPES(T, S, I, LANES)                                                         \
    TG_CV_FWD_Q(T, S, 0) TG_CV_FWD_Q(T, S, 3) TG_CV_FWD_Q(T, S, 5)                    \
    TG_CV_WG(T, S, 3, 3, 2, 2) TG_CV_WG(T, S, 3, 3, 1, 2) TG_CV_WG(T, S, 5, 5, 1, 1)           \
    TG_CV_WGP(T, S)                                                                     \
    TG_CV_FWD2_Q(T, S)                                                                  \
    typedef void (*tg_cv_fwd2_fn_##S)(const T*, const T*, Py_ssize_t, Py_ssize_t,       \
            Py_ssize_t, Py_ssize_t, Py_ssize_t, T*, Py_ssize_t, Py_ssize_t, const T*);    \
    static tg_cv_fwd2_fn_##S const tg_cv_fwd2_tab_##S[12] = {                          \
        tg_cv_fwd2_##S##_1, tg_cv_fwd2_##S##_2, tg_cv_fwd2_##S##_3, tg_cv_fwd2_##S##_4,  \
        tg_cv_fwd2_##S##_5, tg_cv_fwd2_##S##_6, tg_cv_fwd2_##S##_7, tg_cv_fwd2_##S##_8,  \
        tg_cv_fwd2_##S##_9, tg_cv_fwd2_##S##_10, tg_cv_fwd2_##S##_11,                   \
        tg_cv_fwd2_##S##_12};                                                           \
    /* the two-vector tile of q (1 to 12) columns, 3-wide kernels */                    \
    static inline void tg_cv_fwd2_##S(Py_ssize_t q, const T* xp, const T* wt,           \
            Py_ssize_t c, Py_ssize_t kh, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op,    \
            T* y, Py_ssize_t plane, Py_ssize_t nk, const T* bias) {                     \
        tg_cv_fwd2_tab_##S[q - 1](xp, wt, c, kh, hp, wp, op, y, plane, nk, bias);       \
    }                                                                                   \
    typedef void (*tg_cv_fwd_fn_##S)(const T*, const T*, Py_ssize_t, Py_ssize_t,        \
            Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, T*, Py_ssize_t, Py_ssize_t,   \
            const T*);                                                                  \
    static tg_cv_fwd_fn_##S const tg_cv_fwd_tab_##S[3][16] = {                       \
        TG_CV_FWD_ROW(S, 0), TG_CV_FWD_ROW(S, 3), TG_CV_FWD_ROW(S, 5)};                 \
    /* the tile of q (1 to 16) columns, for a kernel width of 3, 5 or any */            \
    static inline void tg_cv_fwd_##S(Py_ssize_t q, const T* xp, const T* wt,            \
            Py_ssize_t c, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp,    \
            Py_ssize_t op, T* y, Py_ssize_t plane, Py_ssize_t nk, const T* bias) {       \
        tg_cv_fwd_tab_##S[kw == 3 ? 1 : kw == 5 ? 2 : 0][q - 1](                        \
            xp, wt, c, kh, kw, hp, wp, op, y, plane, nk, bias);                         \
    }                                                                                   \
    /* input channels done from xp on (2 or 1 for 3x3 kernels, 1 for 5x5; 0: no such tile):  \
       3x3 tiles take two channels at a time (18 accumulators), 5x5 ones one */          \
    static inline Py_ssize_t tg_cv_wg_##S(Py_ssize_t kh, Py_ssize_t kw, const T* xp,   \
            Py_ssize_t cs, Py_ssize_t left, const T* gt, Py_ssize_t ho, Py_ssize_t wo,   \
            Py_ssize_t wp, Py_ssize_t op, T* out, Py_ssize_t os) {                      \
        if (kh == 3 && kw == 3 && left >= 2) {                                          \
            tg_cv_wg_##S##_33_2(xp, cs, gt, ho, wo, wp, op, out, os);                   \
            return 2;                                                                   \
        }                                                                               \
        if (kh == 3 && kw == 3) tg_cv_wg_##S##_33_1(xp, cs, gt, ho, wo, wp, op, out, os); \
        else if (kh == 5 && kw == 5) tg_cv_wg_##S##_55_1(xp, cs, gt, ho, wo, wp, op, out, os); \
        else return 0;                                                                  \
        return 1;                                                                       \
    }
    TG_CV_ALL(float, f, int, TG_CV_LANES16)
    TG_CV_ALL(double, d, long long, TG_CV_LANES8)
    """
    void tg_cv_fwd_f(Py_ssize_t q, const float* xp, const float* wt, Py_ssize_t c,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op,
                     float* y, Py_ssize_t plane, Py_ssize_t nk,
                     const float* bias) noexcept nogil
    void tg_cv_fwd_d(Py_ssize_t q, const double* xp, const double* wt, Py_ssize_t c,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op,
                     double* y, Py_ssize_t plane, Py_ssize_t nk,
                     const double* bias) noexcept nogil
    void tg_cv_fwd2_f(Py_ssize_t q, const float* xp, const float* wt, Py_ssize_t c,
                      Py_ssize_t kh, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op, float* y,
                      Py_ssize_t plane, Py_ssize_t nk, const float* bias) noexcept nogil
    void tg_cv_fwd2_d(Py_ssize_t q, const double* xp, const double* wt, Py_ssize_t c,
                      Py_ssize_t kh, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op, double* y,
                      Py_ssize_t plane, Py_ssize_t nk, const double* bias) noexcept nogil
    void tg_cv_wgp_f(const float* xp, const float* gt, Py_ssize_t ho, Py_ssize_t wo,
                     Py_ssize_t wp, Py_ssize_t op, float* out) noexcept nogil
    void tg_cv_wgp_d(const double* xp, const double* gt, Py_ssize_t ho, Py_ssize_t wo,
                     Py_ssize_t wp, Py_ssize_t op, double* out) noexcept nogil
    void tg_cv_gt_f(const float* g, Py_ssize_t npos, Py_ssize_t o, Py_ssize_t op,
                    float* gt) noexcept nogil
    void tg_cv_gt_d(const double* g, Py_ssize_t npos, Py_ssize_t o, Py_ssize_t op,
                    double* gt) noexcept nogil
    Py_ssize_t tg_cv_wg_f(Py_ssize_t kh, Py_ssize_t kw, const float* xp, Py_ssize_t cs,
                          Py_ssize_t left, const float* gt, Py_ssize_t ho, Py_ssize_t wo,
                          Py_ssize_t wp, Py_ssize_t op, float* out,
                          Py_ssize_t os) noexcept nogil
    Py_ssize_t tg_cv_wg_d(Py_ssize_t kh, Py_ssize_t kw, const double* xp, Py_ssize_t cs,
                          Py_ssize_t left, const double* gt, Py_ssize_t ho, Py_ssize_t wo,
                          Py_ssize_t wp, Py_ssize_t op, double* out,
                          Py_ssize_t os) noexcept nogil


# Winograd F(2x2, 3x3) with channels across the vector lanes (``winograd2_threads``, which
# winograd-cython runs on small planes): each thread takes whole images; an image is
# transposed to (row, column, channel) with zero padding, each 4x4 input tile's transform
# B^T d B runs on vectors of V channels (so an 8x8 plane's 16 tiles fill the vectors as well
# as a 32x32 plane's 256), the 16 products per tile are register-tiled multiplies (tiles x
# vectors of output channels, the input channels the reduction) and A^T m A gives 2x2 output
# pixels per tile, transposed back to (channel, row, column) with the bias.
cdef extern from *:
    """
    #define TG_WC_ALL(T, S)                                                             \
    /* the input transform of tile row ty of xq (rows of wq pixels of cp channels,          \
       zero-padded): v[tx ts + (4 i + j) ps + ch] = (B^T d B)[i, j] for its tw tiles, d the \
       4x4 window at (2 ty, 2 tx); each column's B^T combination is shared by the two      \
       tiles that overlap on it. The forward writes tile-major (ts = 16 cp, ps = cp), the  \
       weight gradient point-major (ts = cp, ps = the strip's stride) */                \
    static inline void tg_w2_in_row_##S(const T* xq, Py_ssize_t wq, Py_ssize_t cp,      \
            Py_ssize_t ty, Py_ssize_t tw, T* v, Py_ssize_t ts, Py_ssize_t ps) {          \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t cv, tx, i, rs = wq * cp;                                             \
        for (cv = 0; cv < cp; cv += V) {                                                \
            const T* r0 = xq + 2 * ty * rs + cv;                                        \
            tg_cv_v##S a[4], b[4], c[4], d[4];                                          \
            _Pragma("GCC unroll 2") for (i = 0; i < 2; i++) {                           \
                const T* p = r0 + i * cp;                                               \
                tg_cv_v##S d0 = *(const tg_cv_u##S*)p, d1 = *(const tg_cv_u##S*)(p + rs); \
                tg_cv_v##S d2 = *(const tg_cv_u##S*)(p + 2 * rs);                       \
                tg_cv_v##S d3 = *(const tg_cv_u##S*)(p + 3 * rs);                       \
                tg_cv_v##S* e = i ? b : a;                                              \
                e[0] = d0 - d2; e[1] = d1 + d2; e[2] = d2 - d1; e[3] = d1 - d3;         \
            }                                                                           \
            for (tx = 0; tx < tw; tx++) {                                               \
                _Pragma("GCC unroll 2") for (i = 0; i < 2; i++) {                       \
                    const T* p = r0 + (2 * tx + 2 + i) * cp;                            \
                    tg_cv_v##S d0 = *(const tg_cv_u##S*)p;                              \
                    tg_cv_v##S d1 = *(const tg_cv_u##S*)(p + rs);                       \
                    tg_cv_v##S d2 = *(const tg_cv_u##S*)(p + 2 * rs);                   \
                    tg_cv_v##S d3 = *(const tg_cv_u##S*)(p + 3 * rs);                   \
                    tg_cv_v##S* e = i ? d : c;                                          \
                    e[0] = d0 - d2; e[1] = d1 + d2; e[2] = d2 - d1; e[3] = d1 - d3;     \
                }                                                                       \
                T* o = v + tx * ts + cv;                                                \
                _Pragma("GCC unroll 4") for (i = 0; i < 4; i++) {                       \
                    *(tg_cv_u##S*)(o + (4 * i + 0) * ps) = a[i] - c[i];                 \
                    *(tg_cv_u##S*)(o + (4 * i + 1) * ps) = b[i] + c[i];                 \
                    *(tg_cv_u##S*)(o + (4 * i + 2) * ps) = c[i] - b[i];                 \
                    *(tg_cv_u##S*)(o + (4 * i + 3) * ps) = b[i] - d[i];                 \
                }                                                                       \
                _Pragma("GCC unroll 4") for (i = 0; i < 4; i++) {                       \
                    a[i] = c[i]; b[i] = d[i];                                           \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    /* v[(16 t + 4 i + j) cp + ch] = (B^T d B)[i, j] for the tiles of tile rows ty0 to     \
       ty0 + g - 1 (t counted from the strip's first) */                                \
    static void tg_wc_in_##S(const T* xq, Py_ssize_t wq, Py_ssize_t cp, Py_ssize_t ty0,  \
            Py_ssize_t g, Py_ssize_t tw, T* v) {                                        \
        Py_ssize_t ty;                                                                  \
        for (ty = 0; ty < g; ty++)                                                      \
            tg_w2_in_row_##S(xq, wq, cp, ty0 + ty, tw, v + ty * tw * 16 * cp, 16 * cp, cp); \
    }                                                                                   \
    /* y (npos, nk) = t (npos rows of op channels) transposed to (channel, position) with   \
       bias[k] (NULL: none); whole blocks of V positions x V channels through registers */ \
    static void tg_wc_untr_##S(const T* t, Py_ssize_t npos, Py_ssize_t o, Py_ssize_t op, \
            const T* bias, T* y) {                                                      \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_cv_v##S r[V];                                                                \
        Py_ssize_t f0, k0, k, f;                                                        \
        for (f0 = 0; f0 + V <= npos; f0 += V) {                                         \
            for (k0 = 0; k0 < o; k0 += V) {                                             \
                _Pragma("GCC unroll 16") for (f = 0; f < V; f++)                        \
                    r[f] = *(const tg_cv_u##S*)(t + (f0 + f) * op + k0);                \
                tg_cv_transpose_##S(r);                                                 \
                _Pragma("GCC unroll 16") for (k = 0; k < V; k++) {                      \
                    if (k0 + k >= o) break;                                             \
                    *(tg_cv_u##S*)(y + (k0 + k) * npos + f0) =                          \
                        r[k] + (bias ? bias[k0 + k] : (T)0);                            \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        for (k = 0; k < o; k++)                                                         \
            for (f = f0; f < npos; f++)                                                 \
                y[k * npos + f] = t[f * op + k] + (bias ? bias[k] : (T)0);              \
    }
    /* m[r * ms + n V + l] = sum over k < c of v[r * vs + k] * u[k * op + n V + l]: R tiles x
       NV vectors of output channels in registers, one broadcast per tile and input channel */
    #define TG_WC_MUL(T, S, NV, R)                                                      \
    static void tg_wc_mul_##S##_##NV##_##R(const T* v, Py_ssize_t vs, const T* u,       \
            Py_ssize_t op, Py_ssize_t c, T* m, Py_ssize_t ms) {                         \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_cv_v##S acc[R][NV], uw[NV];                                                  \
        Py_ssize_t k, r, n;                                                             \
        _Pragma("GCC unroll 24") for (r = 0; r < R; r++)                                \
            _Pragma("GCC unroll 4") for (n = 0; n < NV; n++) acc[r][n] = (tg_cv_v##S){0}; \
        for (k = 0; k < c; k++) {                                                       \
            _Pragma("GCC unroll 4") for (n = 0; n < NV; n++)                            \
                uw[n] = *(const tg_cv_u##S*)(u + k * op + n * V);                       \
            _Pragma("GCC unroll 24") for (r = 0; r < R; r++) {                          \
                tg_cv_v##S s = v[r * vs + k] - (tg_cv_v##S){0};                         \
                _Pragma("GCC unroll 4") for (n = 0; n < NV; n++) acc[r][n] += s * uw[n]; \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 24") for (r = 0; r < R; r++)                                \
            _Pragma("GCC unroll 4") for (n = 0; n < NV; n++)                            \
                *(tg_cv_u##S*)(m + r * ms + n * V) = acc[r][n];                         \
    }
    #define TG_WC_MUL4(T, S) TG_WC_MUL(T, S, 4, 1) TG_WC_MUL(T, S, 4, 2)                \
        TG_WC_MUL(T, S, 4, 3) TG_WC_MUL(T, S, 4, 4) TG_WC_MUL(T, S, 4, 5) TG_WC_MUL(T, S, 4, 6)
    #define TG_WC_MUL2(T, S) TG_WC_MUL(T, S, 2, 1) TG_WC_MUL(T, S, 2, 2)                \
        TG_WC_MUL(T, S, 2, 3) TG_WC_MUL(T, S, 2, 4) TG_WC_MUL(T, S, 2, 5)               \
        TG_WC_MUL(T, S, 2, 6) TG_WC_MUL(T, S, 2, 7) TG_WC_MUL(T, S, 2, 8)               \
        TG_WC_MUL(T, S, 2, 9) TG_WC_MUL(T, S, 2, 10) TG_WC_MUL(T, S, 2, 11)             \
        TG_WC_MUL(T, S, 2, 12)
    #define TG_WC_MUL1(T, S) TG_WC_MUL(T, S, 1, 1) TG_WC_MUL(T, S, 1, 2)                \
        TG_WC_MUL(T, S, 1, 3) TG_WC_MUL(T, S, 1, 4) TG_WC_MUL(T, S, 1, 5)               \
        TG_WC_MUL(T, S, 1, 6) TG_WC_MUL(T, S, 1, 7) TG_WC_MUL(T, S, 1, 8)               \
        TG_WC_MUL(T, S, 1, 9) TG_WC_MUL(T, S, 1, 10) TG_WC_MUL(T, S, 1, 11)             \
        TG_WC_MUL(T, S, 1, 12) TG_WC_MUL(T, S, 1, 13) TG_WC_MUL(T, S, 1, 14)            \
        TG_WC_MUL(T, S, 1, 15) TG_WC_MUL(T, S, 1, 16)
    #define TG_WC_IMAGE(T, S)                                                           \
    TG_WC_MUL4(T, S) TG_WC_MUL2(T, S) TG_WC_MUL1(T, S)                                  \
    typedef void (*tg_wc_mul_fn_##S)(const T*, Py_ssize_t, const T*, Py_ssize_t,        \
                                     Py_ssize_t, T*, Py_ssize_t);                       \
    static tg_wc_mul_fn_##S const tg_wc_mul4_##S[6] = {tg_wc_mul_##S##_4_1,             \
        tg_wc_mul_##S##_4_2, tg_wc_mul_##S##_4_3, tg_wc_mul_##S##_4_4, tg_wc_mul_##S##_4_5, \
        tg_wc_mul_##S##_4_6};                                                           \
    static tg_wc_mul_fn_##S const tg_wc_mul2_##S[12] = {tg_wc_mul_##S##_2_1,            \
        tg_wc_mul_##S##_2_2, tg_wc_mul_##S##_2_3, tg_wc_mul_##S##_2_4, tg_wc_mul_##S##_2_5, \
        tg_wc_mul_##S##_2_6, tg_wc_mul_##S##_2_7, tg_wc_mul_##S##_2_8, tg_wc_mul_##S##_2_9, \
        tg_wc_mul_##S##_2_10, tg_wc_mul_##S##_2_11, tg_wc_mul_##S##_2_12};              \
    static tg_wc_mul_fn_##S const tg_wc_mul1_##S[16] = {tg_wc_mul_##S##_1_1,            \
        tg_wc_mul_##S##_1_2, tg_wc_mul_##S##_1_3, tg_wc_mul_##S##_1_4, tg_wc_mul_##S##_1_5, \
        tg_wc_mul_##S##_1_6, tg_wc_mul_##S##_1_7, tg_wc_mul_##S##_1_8, tg_wc_mul_##S##_1_9, \
        tg_wc_mul_##S##_1_10, tg_wc_mul_##S##_1_11, tg_wc_mul_##S##_1_12,               \
        tg_wc_mul_##S##_1_13, tg_wc_mul_##S##_1_14, tg_wc_mul_##S##_1_15,               \
        tg_wc_mul_##S##_1_16};                                                          \
    /* x (c, h, w) -> its zero-padded copy xq (hq rows of wq pixels of cp channels),      \
       through tmp (h w cp values); returns the image summed as x - x lane by lane */     \
    static tg_cv_v##S tg_wc_pad_##S(const T* xb, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, \
            Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t cp, Py_ssize_t hq, Py_ssize_t wq,    \
            T* tmp, T* xq) {                                                            \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t r, f;                                                                \
        tg_cv_v##S fl = {0};                                                            \
        tg_cv_gt_##S(xb, h * w, c, cp, tmp);                                            \
        for (r = 0; r < hq; r++) {                                                      \
            T* d = xq + r * wq * cp;                                                    \
            if (r < ph || r >= ph + h) {                                                \
                __builtin_memset(d, 0, wq * cp * sizeof(T));                            \
                continue;                                                               \
            }                                                                           \
            Py_ssize_t q1 = pw + w < wq ? pw + w : wq;                                  \
            __builtin_memset(d, 0, pw * cp * sizeof(T));                                \
            if (q1 < wq) __builtin_memset(d + q1 * cp, 0, (wq - q1) * cp * sizeof(T));  \
            const T* s = tmp + (r - ph) * w * cp;                                       \
            tg_cv_v##S rf = {0};                                                        \
            for (f = 0; f < (q1 - pw) * cp; f += V) {                                   \
                tg_cv_v##S x = *(const tg_cv_u##S*)(s + f);                             \
                rf += x - x;                                                            \
                *(tg_cv_u##S*)(d + pw * cp + f) = x;                                    \
            }                                                                           \
            fl += rf;                                                                   \
        }                                                                               \
        return fl;                                                                      \
    }                                                                                   \
    /* mb[(16 t + k) op + ch] = sum over i < c of vb[(16 t + k) cp + i] u[k, i, ch] for the \
       nt tiles of a strip */                                                           \
    static void tg_wc_strip_mul_##S(const T* vb, const T* u, Py_ssize_t c, Py_ssize_t cp, \
            Py_ssize_t op, Py_ssize_t nt, T* mb) {                                      \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t xi, n0, t0;                                                          \
        for (xi = 0; xi < 16; xi++) {                                                   \
            const T* uk = u + xi * c * op;                                              \
            const T* vk = vb + xi * cp;                                                 \
            T* mk = mb + xi * op;                                                       \
            for (n0 = 0; n0 < op;) {                                                    \
                Py_ssize_t nv = (op - n0) / V, R;                                       \
                nv = nv >= 4 ? 4 : nv >= 2 ? 2 : 1;                                     \
                R = nv == 4 ? 6 : nv == 2 ? 12 : 16;                                    \
                for (t0 = 0; t0 < nt; t0 += R) {                                        \
                    Py_ssize_t nr = nt - t0 < R ? nt - t0 : R;                          \
                    const T* vt = vk + t0 * 16 * cp;                                    \
                    T* mt = mk + t0 * 16 * op + n0;                                     \
                    tg_wc_mul_fn_##S f = nv == 4 ? tg_wc_mul4_##S[nr - 1]               \
                        : nv == 2 ? tg_wc_mul2_##S[nr - 1] : tg_wc_mul1_##S[nr - 1];     \
                    f(vt, 16 * cp, uk + n0, op, c, mt, 16 * op);                        \
                }                                                                       \
                n0 += nv * V;                                                           \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    /* A^T m A of the nt tiles in mb (tile rows from ty0) into yt (ho wo, op) */         \
    static void tg_wc_out_tiles_##S(const T* mb, Py_ssize_t nt, Py_ssize_t ty0,          \
            Py_ssize_t tw, Py_ssize_t op, Py_ssize_t ho, Py_ssize_t wo, T* yt) {         \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t t, ov, xi, q;                                                        \
        for (t = 0; t < nt; t++) {                                                      \
            Py_ssize_t oh = 2 * (ty0 + t / tw), ow = 2 * (t % tw);                      \
            for (ov = 0; ov < op; ov += V) {                                            \
                tg_cv_v##S m[16], s0[4], s1[4];                                         \
                _Pragma("GCC unroll 16") for (xi = 0; xi < 16; xi++)                    \
                    m[xi] = *(const tg_cv_u##S*)(mb + (16 * t + xi) * op + ov);         \
                _Pragma("GCC unroll 4") for (q = 0; q < 4; q++) {                       \
                    s0[q] = m[q] + m[4 + q] + m[8 + q];                                 \
                    s1[q] = m[4 + q] - m[8 + q] - m[12 + q];                            \
                }                                                                       \
                tg_cv_v##S y00 = s0[0] + s0[1] + s0[2], y01 = s0[1] - s0[2] - s0[3];     \
                tg_cv_v##S y10 = s1[0] + s1[1] + s1[2], y11 = s1[1] - s1[2] - s1[3];     \
                T* d = yt + (oh * wo + ow) * op + ov;                                   \
                *(tg_cv_u##S*)d = y00;                                                  \
                if (ow + 1 < wo) *(tg_cv_u##S*)(d + op) = y01;                          \
                if (oh + 1 < ho) {                                                      \
                    *(tg_cv_u##S*)(d + wo * op) = y10;                                  \
                    if (ow + 1 < wo) *(tg_cv_u##S*)(d + wo * op + op) = y11;            \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    /* nimg consecutive images: xb (nimg, c, h, w) -> yb (nimg, o, ho, wo), u (16, c, op)  \
       the transformed weights. With nimg 1, strips of ``rows`` tile rows of the image;    \
       with more (a small plane: rows >= nimg th, see the caller), one strip holding every \
       tile of the nimg images, so each panel of u is read once for all of them. work:     \
       max(h w, ho wo op / cp) cp + hq wq cp + 16 ldv + 16 ldm values (see the caller);    \
       returns the images' input summed as x - x (NaN if it holds a NaN or an infinity) */ \
    static T tg_wc_image_##S(const T* xb, Py_ssize_t nimg, Py_ssize_t c, Py_ssize_t h,   \
            Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw, const T* u, Py_ssize_t o,         \
            Py_ssize_t op, const T* bias, T* yb, Py_ssize_t ho, Py_ssize_t wo,            \
            Py_ssize_t rows, T* work) {                                                 \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t cp = (c + V - 1) / V * V, th = (ho + 1) / 2, tw = (wo + 1) / 2;       \
        Py_ssize_t hq = 2 * th + 2, wq = 2 * tw + 2, ldv = rows * tw * cp;              \
        Py_ssize_t big = h * w * cp, f, ty0, g, i;                                      \
        if (ho * wo * op > big) big = ho * wo * op;                                     \
        T* tmp = work;                                                                  \
        T* xq = tmp + big;                                                              \
        T* vb = xq + hq * wq * cp;                                                      \
        T* mb = vb + 16 * ldv;                                                          \
        T* yt = tmp;                                                                    \
        tg_cv_v##S fl = {0};                                                            \
        if (nimg > 1) {                                                                 \
            Py_ssize_t per = th * tw;                                                   \
            for (i = 0; i < nimg; i++) {                                                \
                fl += tg_wc_pad_##S(xb + i * c * h * w, c, h, w, ph, pw, cp, hq, wq, tmp, xq); \
                tg_wc_in_##S(xq, wq, cp, 0, th, tw, vb + i * per * 16 * cp);            \
            }                                                                           \
            tg_wc_strip_mul_##S(vb, u, c, cp, op, nimg * per, mb);                      \
            for (i = 0; i < nimg; i++) {                                                \
                tg_wc_out_tiles_##S(mb + i * per * 16 * op, per, 0, tw, op, ho, wo, yt); \
                tg_wc_untr_##S(yt, ho * wo, o, op, bias, yb + i * o * ho * wo);         \
            }                                                                           \
        } else {                                                                        \
            fl = tg_wc_pad_##S(xb, c, h, w, ph, pw, cp, hq, wq, tmp, xq);               \
            for (ty0 = 0; ty0 < th; ty0 += rows) {                                      \
                g = th - ty0 < rows ? th - ty0 : rows;                                  \
                tg_wc_in_##S(xq, wq, cp, ty0, g, tw, vb);                               \
                tg_wc_strip_mul_##S(vb, u, c, cp, op, g * tw, mb);                      \
                tg_wc_out_tiles_##S(mb, g * tw, ty0, tw, op, ho, wo, yt);               \
            }                                                                           \
            tg_wc_untr_##S(yt, ho * wo, o, op, bias, yb);                               \
        }                                                                               \
        T sum = 0;                                                                      \
        for (f = 0; f < V; f++) sum += fl[f];                                           \
        return sum;                                                                     \
    }
    TG_WC_ALL(float, f) TG_WC_ALL(double, d)
    TG_WC_IMAGE(float, f) TG_WC_IMAGE(double, d)
    """
    float tg_wc_image_f(const float* xb, Py_ssize_t nimg, Py_ssize_t c, Py_ssize_t h,
                        Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw, const float* u, Py_ssize_t o,
                        Py_ssize_t op, const float* bias, float* yb, Py_ssize_t ho,
                        Py_ssize_t wo, Py_ssize_t rows, float* work) noexcept nogil
    double tg_wc_image_d(const double* xb, Py_ssize_t nimg, Py_ssize_t c, Py_ssize_t h,
                         Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw, const double* u, Py_ssize_t o,
                         Py_ssize_t op, const double* bias, double* yb, Py_ssize_t ho,
                         Py_ssize_t wo, Py_ssize_t rows, double* work) noexcept nogil


def winograd2_work(int c, int h, int w, int o, int ph, int pw, int rows, int lanes) -> int:
    """Values of ``winograd2_threads``' work buffer per thread (``rows`` tile rows per strip,
    ``lanes`` per vector)."""
    cp, op = (c + lanes - 1) // lanes * lanes, (o + lanes - 1) // lanes * lanes
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    big = max(h * w * cp, ho * wo * op)
    return big + (2 * th + 2) * (2 * tw + 2) * cp + 16 * rows * tw * (cp + op) + lanes


def winograd2_threads(const real[:, :, :, ::1] x, const real[:, :, ::1] u,
                      const real[::1] bias, bint has_bias, real[:, :, :, ::1] y,
                      real[:, ::1] work, real[::1] flags, int ph, int pw, int rows, int nt,
                      int group=1):
    """y = the 3x3 stride-1 convolution of x by Winograd F(2x2, 3x3) with channels across
    the vector lanes, ``group`` images per thread at a time: u (16, c, op) the transformed
    weights (G g G^T at 4 i + j, zero past o), ``rows`` tile rows per strip (the strip's
    tile buffers in ``work``, see ``winograd2_work``; with ``group`` above 1, rows must hold
    the tile rows of ``group`` images: each group is one strip), flags[thread] NaN when its
    images held a NaN or an infinity (then y is not the convolution)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3], op = u.shape[2]
    cdef Py_ssize_t gi, b, m, ng
    cdef int tid
    cdef const real* bp = &bias[0] if has_bias else NULL
    if u.shape[0] != 16 or u.shape[1] != c or op % (64 // sizeof(real)) or op < o:
        raise ValueError(f"winograd2_threads: u must be (16, {c}, o rounded up to the "
                         f"lanes), got {(u.shape[0], u.shape[1], u.shape[2])}")
    if ho != h + 2 * ph - 2 or wo != w + 2 * pw - 2 or ho < 1 or wo < 1 or rows < 1:
        raise ValueError(f"winograd2_threads: y {(ho, wo)} does not fit x {(h, w)} with "
                         f"padding {(ph, pw)}, or rows {rows} < 1")
    if group < 1 or (group > 1 and rows < group * ((ho + 1) // 2)):
        raise ValueError(f"winograd2_threads: group {group} < 1, or its tile rows above "
                         f"rows {rows}")
    if work.shape[0] < nt or work.shape[1] < winograd2_work(c, h, w, o, ph, pw, rows,
                                                             64 // sizeof(real)):
        raise ValueError("winograd2_threads: work buffer too small")
    ng = (n + group - 1) // group
    with nogil:
        for gi in prange(ng, schedule="dynamic", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            b = gi * group
            m = n - b if n - b < group else group
            if real is float:
                flags[tid] += tg_wc_image_f(&x[b, 0, 0, 0], m, c, h, w, ph, pw, &u[0, 0, 0],
                                            o, op, bp, &y[b, 0, 0, 0], ho, wo, rows,
                                            &work[tid, 0])
            else:
                flags[tid] += tg_wc_image_d(&x[b, 0, 0, 0], m, c, h, w, ph, pw, &u[0, 0, 0],
                                            o, op, bp, &y[b, 0, 0, 0], ho, wo, rows,
                                            &work[tid, 0])


# Winograd F(2x2, 3x3)'s weight gradient with channels across the vector lanes
# (``winograd2_wgrad_threads``, which winograd-cython runs on small planes): per tile the
# forward is M = U * V with V = B^T d B, so dU[k] = sum over tiles of (A gy A^T)[k] x V[k]^T,
# one (input channels x tiles) x (tiles x output channels) product per transform point k,
# and gw = G^T dU G (done by the caller). Each thread takes chunks of consecutive images
# and transposes each image and its output gradient to (row, column, channel); the two
# transforms of a tile row write V and GM as (k, tile, channel), filling the strip buffers
# with the tile rows of several images on small planes so each product's reduction runs
# over up to ``cap`` tiles with the accumulators in registers (GM[k] stays in L1).
cdef extern from *:
    """
    #define TG_WW_ALL(T, S)                                                             \
    /* v[k ks + t cp + ch] = (B^T d B)[k / 4, k % 4] for the tw tiles of tile row ty of xq \
       (rows of wq pixels of cp channels, zero-padded), t the tile's column: the forward's \
       transform (tg_w2_in_row) written point-major */                                  \
    static void tg_ww_in_##S(const T* xq, Py_ssize_t wq, Py_ssize_t cp, Py_ssize_t ty,   \
            Py_ssize_t tw, T* v, Py_ssize_t ks) {                                       \
        tg_w2_in_row_##S(xq, wq, cp, ty, tw, v, cp, ks);                                \
    }                                                                                   \
    /* m[k ks + t op + ch] = (A g A^T)[k / 4, k % 4] for the tw 2x2 tiles of tile row ty of \
       gq (rows of 2 tw pixels of op channels, zero past the output): the adjoint of the  \
       forward's A^T m A */                                                             \
    static void tg_ww_gy_##S(const T* gq, Py_ssize_t tw, Py_ssize_t op, Py_ssize_t ty,   \
            T* m, Py_ssize_t ks) {                                                      \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t ov, tx, i, rs = 2 * tw * op;                                         \
        for (tx = 0; tx < tw; tx++) {                                                   \
            for (ov = 0; ov < op; ov += V) {                                            \
                const T* p = gq + 2 * ty * rs + 2 * tx * op + ov;                       \
                tg_cv_v##S g00 = *(const tg_cv_u##S*)p, g01 = *(const tg_cv_u##S*)(p + op); \
                tg_cv_v##S g10 = *(const tg_cv_u##S*)(p + rs);                          \
                tg_cv_v##S g11 = *(const tg_cv_u##S*)(p + rs + op);                     \
                tg_cv_v##S r0[4] = {g00, g00 + g10, g00 - g10, -g10};                   \
                tg_cv_v##S r1[4] = {g01, g01 + g11, g01 - g11, -g11};                   \
                T* o = m + tx * op + ov;                                                \
                _Pragma("GCC unroll 4") for (i = 0; i < 4; i++) {                       \
                    *(tg_cv_u##S*)(o + (4 * i + 0) * ks) = r0[i];                       \
                    *(tg_cv_u##S*)(o + (4 * i + 1) * ks) = r0[i] + r1[i];               \
                    *(tg_cv_u##S*)(o + (4 * i + 2) * ks) = r0[i] - r1[i];               \
                    *(tg_cv_u##S*)(o + (4 * i + 3) * ks) = -r1[i];                      \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }
    /* du[r op + n V + l] += sum over t < nt of v[t cp + r] m[t op + n V + l] (r < R, n < NV):
       R x NV accumulator vectors, one broadcast of v per row and tile; the strip's sum is
       added to du at the end (not summed onto it tile by tile: shorter float sums) */
    #define TG_WW_MUL(T, S, NV, R)                                                      \
    static void tg_ww_mul_##S##_##NV##_##R(const T* v, Py_ssize_t cp, const T* m,       \
            Py_ssize_t op, Py_ssize_t nt, T* du) {                                      \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_cv_v##S acc[R][NV], mv[NV];                                                  \
        Py_ssize_t t, r, n;                                                             \
        _Pragma("GCC unroll 8") for (r = 0; r < R; r++)                                 \
            _Pragma("GCC unroll 4") for (n = 0; n < NV; n++)                            \
                acc[r][n] = (tg_cv_v##S){0};                                            \
        for (t = 0; t < nt; t++) {                                                      \
            _Pragma("GCC unroll 4") for (n = 0; n < NV; n++)                            \
                mv[n] = *(const tg_cv_u##S*)(m + t * op + n * V);                       \
            _Pragma("GCC unroll 8") for (r = 0; r < R; r++) {                           \
                tg_cv_v##S s = v[t * cp + r] - (tg_cv_v##S){0};                         \
                _Pragma("GCC unroll 4") for (n = 0; n < NV; n++) acc[r][n] += s * mv[n]; \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 8") for (r = 0; r < R; r++)                                 \
            _Pragma("GCC unroll 4") for (n = 0; n < NV; n++)                            \
                *(tg_cv_u##S*)(du + r * op + n * V) += acc[r][n];                       \
    }
    #define TG_WW_MUL_R(T, S, NV) TG_WW_MUL(T, S, NV, 1) TG_WW_MUL(T, S, NV, 2)         \
        TG_WW_MUL(T, S, NV, 3) TG_WW_MUL(T, S, NV, 4) TG_WW_MUL(T, S, NV, 5)            \
        TG_WW_MUL(T, S, NV, 6)
    #define TG_WW_ROW(S, NV) {tg_ww_mul_##S##_##NV##_1, tg_ww_mul_##S##_##NV##_2,       \
        tg_ww_mul_##S##_##NV##_3, tg_ww_mul_##S##_##NV##_4, tg_ww_mul_##S##_##NV##_5,   \
        tg_ww_mul_##S##_##NV##_6}
    #define TG_WW_CHUNK(T, S)                                                           \
    TG_WW_MUL_R(T, S, 1) TG_WW_MUL_R(T, S, 2) TG_WW_MUL_R(T, S, 3) TG_WW_MUL_R(T, S, 4) \
    typedef void (*tg_ww_mul_fn_##S)(const T*, Py_ssize_t, const T*, Py_ssize_t,        \
                                     Py_ssize_t, T*);                                   \
    static tg_ww_mul_fn_##S const tg_ww_mul_##S[4][6] = {TG_WW_ROW(S, 1),               \
        TG_WW_ROW(S, 2), TG_WW_ROW(S, 3), TG_WW_ROW(S, 4)};                             \
    /* du (16, cp, op) += the products of the nt tiles in vb and mb */                  \
    static void tg_ww_flush_##S(const T* vb, Py_ssize_t ksv, const T* mb, Py_ssize_t ksm, \
            Py_ssize_t nt, Py_ssize_t c, Py_ssize_t cp, Py_ssize_t op, T* du) {          \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t k, r0, n0, R, NV;                                                    \
        if (nt == 0) return;                                                            \
        for (k = 0; k < 16; k++) {                                                      \
            for (r0 = 0; r0 < c; r0 += R) {                                             \
                R = c - r0 < 6 ? c - r0 : 6;                                            \
                for (n0 = 0; n0 < op; n0 += NV * V) {                                   \
                    NV = (op - n0) / V < 4 ? (op - n0) / V : 4;                         \
                    tg_ww_mul_##S[NV - 1][R - 1](vb + k * ksv + r0, cp, mb + k * ksm + n0, \
                        op, nt, du + (k * cp + r0) * op + n0);                          \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    /* du (16, cp, op) = the weight-gradient products of images b0 to b1 - 1 of x (n, c,    \
       h, w) and gy (n, o, ho, wo), and bsum (op values; NULL: none) = their output         \
       gradients summed per channel (each image's positions first, then added in); work:    \
       see winograd2_wgrad_work */                                                       \
    static void tg_ww_chunk_##S(const T* x, const T* gy, Py_ssize_t b0, Py_ssize_t b1,   \
            Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw,       \
            Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t cap, T* work, T* du,  \
            T* bsum) {                                                                  \
        enum { V = 64 / sizeof(T), PAD = 48 };                                          \
        Py_ssize_t cp = (c + V - 1) / V * V, op = (o + V - 1) / V * V;                   \
        Py_ssize_t th = (ho + 1) / 2, tw = (wo + 1) / 2, hq = 2 * th + 2, wq = 2 * tw + 2; \
        Py_ssize_t big = h * w * cp, ksv = cap * cp + PAD, ksm = cap * op + PAD;        \
        Py_ssize_t b, r, ty, fill = 0;                                                  \
        if (ho * wo * op > big) big = ho * wo * op;                                     \
        __builtin_memset(du, 0, 16 * cp * op * sizeof(T));                             \
        if (bsum) __builtin_memset(bsum, 0, op * sizeof(T));                            \
        T* tmp = work;                                                                  \
        T* xq = tmp + big;                                                              \
        T* gq = xq + hq * wq * cp;                                                      \
        T* vb = gq + 4 * th * tw * op;                                                  \
        T* mb = vb + 16 * ksv;                                                          \
        for (b = b0; b < b1; b++) {                                                     \
            tg_cv_gt_##S(x + b * c * h * w, h * w, c, cp, tmp);                         \
            for (r = 0; r < hq; r++) {                                                  \
                T* d = xq + r * wq * cp;                                                \
                if (r < ph || r >= ph + h) {                                            \
                    __builtin_memset(d, 0, wq * cp * sizeof(T));                        \
                    continue;                                                           \
                }                                                                       \
                Py_ssize_t q1 = pw + w < wq ? pw + w : wq;                              \
                __builtin_memset(d, 0, pw * cp * sizeof(T));                            \
                if (q1 < wq) __builtin_memset(d + q1 * cp, 0, (wq - q1) * cp * sizeof(T)); \
                __builtin_memcpy(d + pw * cp, tmp + (r - ph) * w * cp,                  \
                                 (q1 - pw) * cp * sizeof(T));                           \
            }                                                                           \
            const T* g = gy + b * o * ho * wo;                                          \
            if (ho == 2 * th && wo == 2 * tw) {                                         \
                tg_cv_gt_##S(g, ho * wo, o, op, gq);                                    \
            } else {                                                                    \
                tg_cv_gt_##S(g, ho * wo, o, op, tmp);                                   \
                __builtin_memset(gq, 0, 4 * th * tw * op * sizeof(T));                  \
                for (r = 0; r < ho; r++)                                                \
                    __builtin_memcpy(gq + r * 2 * tw * op, tmp + r * wo * op,           \
                                     wo * op * sizeof(T));                              \
            }                                                                           \
            if (bsum) {                                                                 \
                Py_ssize_t f, ov;                                                       \
                for (ov = 0; ov < op; ov += V) {                                        \
                    tg_cv_v##S acc = {0};                                               \
                    for (f = 0; f < 4 * th * tw; f++)                                   \
                        acc += *(const tg_cv_u##S*)(gq + f * op + ov);                  \
                    *(tg_cv_u##S*)(bsum + ov) += acc;                                   \
                }                                                                       \
            }                                                                           \
            for (ty = 0; ty < th; ty++) {                                               \
                if (fill + tw > cap) {                                                  \
                    tg_ww_flush_##S(vb, ksv, mb, ksm, fill, c, cp, op, du);             \
                    fill = 0;                                                           \
                }                                                                       \
                tg_ww_in_##S(xq, wq, cp, ty, tw, vb + fill * cp, ksv);                  \
                tg_ww_gy_##S(gq, tw, op, ty, mb + fill * op, ksm);                      \
                fill += tw;                                                             \
            }                                                                           \
        }                                                                               \
        tg_ww_flush_##S(vb, ksv, mb, ksm, fill, c, cp, op, du);                         \
    }
    TG_WW_ALL(float, f) TG_WW_ALL(double, d)
    TG_WW_CHUNK(float, f) TG_WW_CHUNK(double, d)
    """
    void tg_ww_chunk_f(const float* x, const float* gy, Py_ssize_t b0, Py_ssize_t b1,
                       Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t cap, float* work,
                       float* du, float* bsum) noexcept nogil
    void tg_ww_chunk_d(const double* x, const double* gy, Py_ssize_t b0, Py_ssize_t b1,
                       Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw,
                       Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t cap,
                       double* work, double* du, double* bsum) noexcept nogil


def winograd2_wgrad_work(int c, int h, int w, int o, int ph, int pw, int cap,
                         int lanes) -> int:
    """Values of ``winograd2_wgrad_threads``' work buffer per thread (strips of ``cap``
    tiles, ``lanes`` per vector)."""
    cp, op = (c + lanes - 1) // lanes * lanes, (o + lanes - 1) // lanes * lanes
    ho, wo = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    big = max(h * w * cp, ho * wo * op)
    return (big + (2 * th + 2) * (2 * tw + 2) * cp + 4 * th * tw * op
            + 16 * (cap * (cp + op) + 96))


def winograd2_wgrad_threads(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy,
                            real[:, :, :, ::1] du, real[:, ::1] work, int ph, int pw, int cap,
                            int nt, real[:, ::1] bsum=None):
    """du[i] = the Winograd F(2x2, 3x3) weight-gradient products (16, cp, op) of chunk i of
    the batch (images ``i n / chunks`` up to ``(i + 1) n / chunks``), channels across the
    vector lanes: du[i, 4 a + b, ch, k] sums (B^T d B)[a, b] at ch times (A gy A^T)[a, b] at
    k over the chunk's tiles (gw = G^T du G, summed over the chunks). ``cap`` tiles per
    strip (at least one row of tiles), the strips in ``work`` (see
    ``winograd2_wgrad_work``). With ``bsum`` (chunks, op): bsum[i] = chunk i's output
    gradient summed per channel (the bias gradient's part, summed over the chunks in
    order by the caller)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t nch = du.shape[0], lanes = 64 // sizeof(real), i
    cdef int tid
    cdef real* bbase = NULL
    cdef real* bp
    if gy.shape[0] != n or ho != h + 2 * ph - 2 or wo != w + 2 * pw - 2 or ho < 1 or wo < 1:
        raise ValueError(f"winograd2_wgrad_threads: gy {tuple(gy.shape)[:4]} does not fit x "
                         f"{tuple(x.shape)[:4]} with padding {(ph, pw)}")
    if (du.shape[1] != 16 or du.shape[2] != (c + lanes - 1) // lanes * lanes
            or du.shape[3] != (o + lanes - 1) // lanes * lanes or nch < 1):
        raise ValueError("winograd2_wgrad_threads: du must be (chunks, 16, c and o rounded "
                         "up to the lanes)")
    if cap < (wo + 1) // 2 or work.shape[0] < nt or work.shape[1] < winograd2_wgrad_work(
            c, h, w, o, ph, pw, cap, lanes):
        raise ValueError("winograd2_wgrad_threads: work buffer too small or cap below a row "
                         "of tiles")
    if bsum is not None and (bsum.shape[0] != nch or bsum.shape[1] != du.shape[3]):
        raise ValueError("winograd2_wgrad_threads: bsum must be (chunks, o rounded up to "
                         "the lanes)")
    if bsum is not None:
        bbase = &bsum[0, 0]
    with nogil:
        for i in prange(nch, schedule="dynamic", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            bp = bbase + i * du.shape[3] if bbase != NULL else NULL
            if real is float:
                tg_ww_chunk_f(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], i * n // nch,
                              (i + 1) * n // nch, c, h, w, ph, pw, o, ho, wo, cap,
                              &work[tid, 0], &du[i, 0, 0, 0], bp)
            else:
                tg_ww_chunk_d(&x[0, 0, 0, 0], &gy[0, 0, 0, 0], i * n // nch,
                              (i + 1) * n // nch, c, h, w, ph, pw, o, ho, wo, cap,
                              &work[tid, 0], &du[i, 0, 0, 0], bp)


cdef inline void _pad(const real* xb, real* xp, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t hp, Py_ssize_t wp) noexcept nogil:
    # xp[ci, r, q] = x[ci, r - ph, q - pw], zero outside the image
    cdef Py_ssize_t ci, r, q, ih
    cdef real* d
    cdef const real* src
    for ci in range(c):
        for r in range(hp):
            d = xp + (ci * hp + r) * wp
            ih = r - ph
            if ih < 0 or ih >= h:
                for q in range(wp):
                    d[q] = 0
                continue
            src = xb + (ci * h + ih) * w
            for q in range(pw):
                d[q] = 0
            for q in range(w):
                d[pw + q] = src[q]
            for q in range(pw + w, wp):
                d[q] = 0


cdef void _fwd_image(const real* xp, const real* wt, const real* bias, real* yb,
                     Py_ssize_t c, Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t kh,
                     Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op,
                     Py_ssize_t q2) noexcept nogil:
    # yb[k, oh, ow] (one image, o channels of ho x wo) from the image's padded copy xp and
    # the weights wt (c, kh, kw, op); bias NULL: none. See forward_threads for q2.
    cdef Py_ssize_t lanes = 64 // sizeof(real), plane = ho * wo
    cdef Py_ssize_t oh, ow0, oc0, nq, nk, left
    cdef real* yt
    cdef const real* bp
    oc0 = 0
    while oc0 < o:
        nk = o - oc0
        bp = bias + oc0 if bias != NULL else NULL
        if q2 > 0 and kw == 3 and nk > lanes:
            if nk > 2 * lanes:
                nk = 2 * lanes
            for oh in range(ho):
                ow0 = 0
                while ow0 < wo:
                    left = (wo - ow0 + q2 - 1) // q2  # tiles left in the row
                    nq = (wo - ow0 + left - 1) // left
                    yt = yb + (oc0 * ho + oh) * wo + ow0
                    if real is float:
                        tg_cv_fwd2_f(nq, xp + oh * wp + ow0, wt + oc0, c, kh, hp, wp, op, yt,
                                     plane, nk, bp)
                    else:
                        tg_cv_fwd2_d(nq, xp + oh * wp + ow0, wt + oc0, c, kh, hp, wp, op, yt,
                                     plane, nk, bp)
                    ow0 = ow0 + nq
            oc0 = oc0 + 2 * lanes
            continue
        if nk > lanes:
            nk = lanes
        for oh in range(ho):
            ow0 = 0
            while ow0 < wo:
                nq = wo - ow0
                if nq > _QMAX:
                    nq = _QMAX
                yt = yb + (oc0 * ho + oh) * wo + ow0
                if real is float:
                    tg_cv_fwd_f(nq, xp + oh * wp + ow0, wt + oc0, c, kh, kw, hp, wp, op, yt,
                                plane, nk, bp)
                else:
                    tg_cv_fwd_d(nq, xp + oh * wp + ow0, wt + oc0, c, kh, kw, hp, wp, op, yt,
                                plane, nk, bp)
                ow0 = ow0 + nq
        oc0 = oc0 + lanes


cdef void _wg_image(const real* xp, const real* gb, real* gt, real* pt, real* bsum,
                    Py_ssize_t c, Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t kh,
                    Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t op,
                    bint wpair) noexcept nogil:
    # pt[(ci, i, j) * op + k] += one image's weight gradient, from its padded copy xp and its
    # output gradient gb (o, ho, wo), through the buffer gt; bsum (NULL: none)[k] += the
    # image's output gradient summed over positions in (oh, ow) order (the bias gradient)
    cdef Py_ssize_t lanes = 64 // sizeof(real), npos = ho * wo
    cdef Py_ssize_t ci, oc0, done, f, k
    cdef const real* g
    # gt[f, k] = gb[k, f], zero in the lanes past the last channel
    if real is float:
        tg_cv_gt_f(gb, npos, o, op, gt)
    else:
        tg_cv_gt_d(gb, npos, o, op, gt)
    if bsum != NULL:
        for f in range(npos):
            g = gt + f * op
            for k in range(op):
                bsum[k] += g[k]
    oc0 = 0
    while oc0 < o:
        if wpair and kh == 3 and kw == 3 and o - oc0 > lanes:
            for ci in range(c):
                if real is float:
                    tg_cv_wgp_f(xp + ci * hp * wp, gt + oc0, ho, wo, wp, op,
                                pt + ci * kh * kw * op + oc0)
                else:
                    tg_cv_wgp_d(xp + ci * hp * wp, gt + oc0, ho, wo, wp, op,
                                pt + ci * kh * kw * op + oc0)
            oc0 = oc0 + 2 * lanes
            continue
        ci = 0
        while ci < c:
            if real is float:
                done = tg_cv_wg_f(kh, kw, xp + ci * hp * wp, hp * wp, c - ci, gt + oc0, ho, wo,
                                  wp, op, pt + ci * kh * kw * op + oc0, kh * kw * op)
            else:
                done = tg_cv_wg_d(kh, kw, xp + ci * hp * wp, hp * wp, c - ci, gt + oc0, ho, wo,
                                  wp, op, pt + ci * kh * kw * op + oc0, kh * kw * op)
            ci = ci + (done if done > 0 else c)
        oc0 = oc0 + lanes


def forward_threads(const real[:, :, :, ::1] x, const real[::1] wt, const real[::1] bias,
                    bint has_bias, real[:, :, :, ::1] y, real[:, ::1] buf, int kh, int kw,
                    int ph, int pw, int op, int nt, int q2=0):
    """y[b] = conv(x[b]) per image and thread, through the thread's padded image; with
    ``q2`` > 0 and a 3-wide kernel, pairs of channel vectors in tiles of at most ``q2``
    (up to 12) columns, a row split into tiles of equal width (within one column)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t hp = h + 2 * ph, wp = w + 2 * pw
    cdef Py_ssize_t b
    cdef real* xp
    cdef const real* bp = &bias[0] if has_bias else NULL
    if q2 > 12 or q2 < 0:
        raise ValueError(f"forward_threads: q2 must be 0 to 12, got {q2}")
    with nogil:
        # each image is one thread's from start to end whichever thread takes it, so the
        # images can be handed out as threads come free (a thread slowed by other work
        # on the machine does not hold up the rest) without changing any output
        for b in prange(n, schedule="dynamic", num_threads=nt):
            xp = &buf[openmp.omp_get_thread_num(), 0]
            _pad(&x[b, 0, 0, 0], xp, c, h, w, ph, pw, hp, wp)
            _fwd_image(xp, &wt[0], bp, &y[b, 0, 0, 0], c, o, ho, wo, kh, kw, hp, wp, op, q2)


def backward_threads(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                     const real[::1] wf, real[:, :, :, ::1] gx, real[:, ::1] bufg,
                     real[:, ::1] bufx, real[:, ::1] gts, real[:, ::1] part, real[:, ::1] bpart,
                     int kh, int kw, int ph, int pw, int opx, int opw, int nt, int q2,
                     bint need_x, bint need_w, bint need_b, bint wpair=True):
    """Both gradients of a stride-1 call in one parallel region (one wake-up of the team,
    one wait for its last thread). Tasks 0 to nch - 1 (``part.shape[0]`` if ``need_w``,
    else none) are the weight gradient's chunks of consecutive images: part[k] as in
    ``_wg_image`` sums them (the weight gradient as (ci, i, j, opw), the chunk's images
    added in order), and with ``need_b`` bpart[k] the chunk's output gradient summed per
    channel (images in order, positions in (oh, ow) order). The tasks after them are the
    input gradient's images (``need_x``): gx[b] = the forward of gy[b] padded by kh - 1 -
    ph, kw - 1 - pw with the flipped, transposed filters ``wf`` (o, kh, kw, opx), tiles as
    in ``forward_threads`` with ``q2``. Tasks go out in that order as threads come free:
    the chunks, the larger ones, first, then the single images even out the threads' ends.
    Each output is the same whichever thread computes it."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t hp = h + 2 * ph, wp = w + 2 * pw
    cdef Py_ssize_t qh = kh - 1 - ph, qw = kw - 1 - pw
    cdef Py_ssize_t hg = ho + 2 * qh, wg = wo + 2 * qw
    cdef Py_ssize_t nch = part.shape[0] if need_w else 0
    cdef Py_ssize_t ntask = nch + (n if need_x else 0)
    cdef Py_ssize_t k, b
    cdef int tid
    cdef real* xp
    cdef real* bs
    if need_w and (nch < 1 or nch > n):
        raise ValueError(f"backward_threads: part must have 1 to {n} rows (chunks), got {nch}")
    if need_b and (not need_w or bpart.shape[0] != nch or bpart.shape[1] < opw):
        raise ValueError("backward_threads: need_b needs need_w and bpart of shape "
                         f"({nch}, >= {opw}), got ({bpart.shape[0]}, {bpart.shape[1]})")
    if need_x and (qh < 0 or qw < 0 or gx.shape[0] != n or gx.shape[1] != c
                   or gx.shape[2] != h or gx.shape[3] != w):
        raise ValueError(f"backward_threads: gx must have x's shape {(n, c, h, w)} and "
                         f"padding at most kernel - 1, got "
                         f"{(gx.shape[0], gx.shape[1], gx.shape[2], gx.shape[3])}, {(ph, pw)}")
    if q2 > 12 or q2 < 0:
        raise ValueError(f"backward_threads: q2 must be 0 to 12, got {q2}")
    with nogil:
        for k in prange(ntask, schedule="dynamic", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            if k < nch:
                xp = &bufx[tid, 0]
                bs = &bpart[k, 0] if need_b else NULL
                for b in range(k * n // nch, (k + 1) * n // nch):
                    _pad(&x[b, 0, 0, 0], xp, c, h, w, ph, pw, hp, wp)
                    _wg_image(xp, &gy[b, 0, 0, 0], &gts[tid, 0], &part[k, 0], bs, c, o, ho,
                              wo, kh, kw, hp, wp, opw, wpair)
            else:
                b = k - nch
                xp = &bufg[tid, 0]
                _pad(&gy[b, 0, 0, 0], xp, o, ho, wo, qh, qw, hg, wg)
                _fwd_image(xp, &wf[0], NULL, &gx[b, 0, 0, 0], o, c, h, w, kh, kw, hg, wg, opx,
                           q2)


def applies(w_shape, stride, dilation, groups) -> bool:
    """One group, dilation 1, stride 1."""
    return groups == 1 and tuple(dilation) == (1, 1) and tuple(stride) == (1, 1)


# Forward tiles of two channel vectors (3-wide kernels, more than one vector of outputs) on
# rows of at most 8 columns (one vector's tile would keep only 8 accumulators) or more than
# 16 (32 columns: three tiles of 11, 11 and 10 instead of two of 16): at most this many
# columns, 2 x 12 accumulators and 6 weight vectors in 32 registers. Rows of 9 to 16 keep
# one vector's single tile, which the pairs (two tiles of 8 on 16 columns) did not beat
# (benchmarks/results/chvec-tiles.md).
_PAIR_COLUMNS = 12
_CHUNKS_PER_THREAD = 4  # weight gradient: chunks of the batch per thread (see _chunks)


def _team_size(macs):
    return 1 if macs < _GRAIN else threads.get_num_threads()


def _lanes(dtype):
    return 64 // np.dtype(dtype).itemsize


def _weights(w, op):
    """(c, kh, kw, op) copy of w (o, c, kh, kw), zero in the lanes past o."""
    o, c, kh, kw = w.shape
    wt = np.zeros((c, kh, kw, op), dtype=w.dtype)
    wt[..., :o] = w.transpose(1, 2, 3, 0)
    return wt


def _pair_columns(kw, o, wo, lanes):
    """forward_threads' q2 for o outputs on rows of wo columns (see _PAIR_COLUMNS)."""
    return _PAIR_COLUMNS if kw == 3 and o > lanes and (wo <= 8 or wo > 16) else 0


def _conv(x, w, b, int ph, int pw):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = h + 2 * ph - kh + 1, wd + 2 * pw - kw + 1
    hp, wp = h + 2 * ph, wd + 2 * pw
    lanes = _lanes(x.dtype)
    op = (o + lanes - 1) // lanes * lanes
    nt = max(1, min(_team_size(n * o * ho * wo * c * kh * kw), n))
    memory.check_fits("conv2d (chvec)", {
        "padded images": nt * c * hp * wp * x.itemsize,
        "output": n * o * ho * wo * x.itemsize,
    })
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    wt = _weights(w, op)
    buf = workspace("chvec-x", (nt, c * hp * wp), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    q2 = _pair_columns(kw, o, wo, lanes)
    forward_threads(x, wt.reshape(-1), bias, b is not None, y, buf, kh, kw, ph, pw, op, nt, q2)
    return y


def _chunks(n, nt):
    # one chunk of images per thread would leave the others waiting on a thread that other
    # work on the machine slows; _CHUNKS_PER_THREAD per thread, added in chunk order (the
    # same sum for a given batch and thread count)
    return 1 if nt == 1 else min(n, _CHUNKS_PER_THREAD * nt)


def _sum_chunks(part):
    """part[0] + part[1] + ... in chunk order (a new array)."""
    total = part[0].copy()
    for t in range(1, part.shape[0]):
        total += part[t]
    return total


def _gradients(gy, x, w, int ph, int pw, bint need_x, bint need_b):
    """(gx or None, gw, gb or None) through backward_threads: one parallel region for the
    weight gradient, the bias gradient (``need_b``) and the input gradient (``need_x``)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    hp, wp = h + 2 * ph, wd + 2 * pw
    hg, wg = ho + 2 * (kh - 1 - ph), wo + 2 * (kw - 1 - pw)
    lanes = _lanes(x.dtype)
    opw = (o + lanes - 1) // lanes * lanes
    opx = (c + lanes - 1) // lanes * lanes
    nt = max(1, min(_team_size(n * o * ho * wo * c * kh * kw), n))
    nch = _chunks(n, nt)
    sizes = {
        "padded images": nt * c * hp * wp * x.itemsize,
        "transposed gradients": nt * ho * wo * opw * x.itemsize,
        "partial sums": nch * (c * kh * kw + 1) * opw * x.itemsize,
    }
    if need_x:
        sizes["padded gradients"] = nt * o * hg * wg * x.itemsize
        sizes["input gradient"] = x.size * x.itemsize
    memory.check_fits("conv2d (chvec gradients)", sizes)
    dt = x.dtype
    if need_x:
        gx = np.empty(x.shape, dtype=dt)
        wf = _weights(np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)), opx)
        bufg = workspace("chvec-gy", (nt, o * hg * wg), dt)
        q2 = _pair_columns(kw, c, wd, lanes)
    else:
        gx, wf, bufg, q2 = np.empty((1, 1, 1, 1), dt), np.zeros(1, dt), np.empty((1, 1), dt), 0
    bufx = workspace("chvec-x", (nt, c * hp * wp), dt)
    gts = workspace("chvec-g", (nt, ho * wo * opw), dt)
    part = np.zeros((nch, c * kh * kw * opw), dtype=dt)
    bpart = np.zeros((nch, opw) if need_b else (1, 1), dtype=dt)
    backward_threads(gy, x, wf.reshape(-1), gx, bufg, bufx, gts, part, bpart, kh, kw, ph, pw,
                     opx, opw, nt, q2, need_x, True, need_b)
    total = _sum_chunks(part)
    gw = np.ascontiguousarray(total.reshape(c, kh, kw, opw)[..., :o].transpose(3, 0, 1, 2))
    gb = _sum_chunks(bpart)[:o].copy() if need_b else None
    return (gx if need_x else None), gw, gb


def _direct(x, w, stride, padding, dilation, groups, ho, wo):
    return (applies(w.shape, stride, dilation, groups) and x.dtype in (np.float32, np.float64)
            and w.dtype == x.dtype and x.size > 0 and w.size > 0 and ho > 0 and wo > 0)


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if not _direct(x, w, stride, padding, dilation, groups, ho, wo):
        return _fallback.forward(x, w, b, stride, padding, dilation, groups)
    return _conv(x, w, b, int(padding[0]), int(padding[1]))


def _paths(gy, x, w, stride, padding, dilation, groups):
    """(input gradient through chvec's own tiles, weight gradient through its own tiles)."""
    kh, kw = w.shape[2:]
    ph, pw = int(padding[0]), int(padding[1])
    direct = gy.dtype == x.dtype and _direct(gy, w, stride, padding, dilation, groups,
                                              *gy.shape[2:])
    # the input gradient's output channels are x's: with fewer than a vector's lanes most of
    # them would idle, and blocked-cython's tiles (vectors across columns) do better
    own_x = direct and ph <= kh - 1 and pw <= kw - 1 and x.shape[1] >= _lanes(x.dtype)
    return own_x, direct and (kh, kw) in ((3, 3), (5, 5))


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    """(gx, gw) of a conv2d call (None for a gradient not asked for)."""
    return backward_with_bias(gy, x, w, stride, padding, dilation, groups, need_x, need_w,
                              False)[:2]


def backward_with_bias(gy, x, w, stride, padding, dilation, groups, need_x, need_w,
                       need_b=True):
    """``backward`` plus the bias gradient: ``(gx, gw, gb)``. When the weight gradient runs
    on chvec's own tiles, both gradients (the input gradient too when it runs on them) and
    the bias gradient come from one parallel region (``backward_threads``), the bias
    gradient summed from the transposed output gradient the weight gradient's tiles read;
    otherwise ``gb`` is None and the op sums it itself."""
    ph, pw = int(padding[0]), int(padding[1])
    own_x, own_w = _paths(gy, x, w, stride, padding, dilation, groups)
    gx = gw = gb = None
    if need_w and own_w:
        gx, gw, gb = _gradients(np.ascontiguousarray(gy), x, w, ph, pw, need_x and own_x,
                                need_b)
        need_x = need_x and not own_x
    elif need_w:
        gw = _fallback.backward(gy, x, w, stride, padding, dilation, groups, False, True)[1]
    if need_x and own_x:
        kh, kw = w.shape[2:]
        wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        gx = _conv(np.ascontiguousarray(gy), wf, None, kh - 1 - ph, kw - 1 - pw)
    elif need_x:
        gx = _blocked.backward(gy, x, w, stride, padding, dilation, groups, True, False)[0]
    return gx, gw, gb
