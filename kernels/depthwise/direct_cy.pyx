"""Direct depthwise convolution with Cython + OpenMP: the same loops as ``direct_numba``.

Per tap, the output columns that read inside the image form one range ``[lo, hi)``;
the inner loop runs over it through raw row pointers with no checks, so the C compiler
vectorises it (stride 1). Rows and columns outside read padding only and are skipped.
"""

import numpy as np

from ..memory import check_fits

cimport openmp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset


include "../_common.pxi"


# The phase planes' inner loops in C (below): GCC vector types of 64 bytes (16 floats or
# 8 doubles; one AVX-512 register, two AVX2 or four SSE ones) and, on x86-64 Linux with GCC,
# function clones for x86-64-v4 (AVX-512), x86-64-v3 (AVX2, FMA) and baseline x86-64 picked
# by CPU features at load time (a portable build that still runs at the machine's vector
# width). Every sum has a fixed order: an
# output pixel adds its taps in tap order; a weight-gradient tap keeps one partial sum per
# lane (the flat index modulo the lane count), summed in lane order at the end; so a call
# repeats bit for bit on one machine. The clones differ only in FMA contraction.
cdef extern from *:
    """
    #include <string.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define TG_DW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define TG_DW_CLONES
    #endif
    /* out[t] = bias + sum_i w[i] * src[offs[i] + t] for t in [0, L): taps in order. */
    #define TG_DW_LINCOMB(T, S, V)                                                      \
    typedef T tg_dw_v##S __attribute__((vector_size(64)));                              \
    typedef T tg_dw_u##S __attribute__((vector_size(64), aligned(sizeof(T)), may_alias)); \
    TG_DW_CLONES static void tg_dw_lincomb_##S(const T* src, const Py_ssize_t* offs,     \
            const T* w, Py_ssize_t nt, Py_ssize_t L, T bias, T* out) {                   \
        Py_ssize_t t = 0, i;                                                            \
        for (; t + V <= L; t += V) {                                                     \
            tg_dw_v##S a = {0};                                                         \
            a += bias;                                                                  \
            for (i = 0; i < nt; i++)                                                    \
                a += w[i] * *(const tg_dw_u##S*)(src + offs[i] + t);                    \
            *(tg_dw_u##S*)(out + t) = a;                                                \
        }                                                                               \
        for (; t < L; t++) {                                                            \
            T a = bias;                                                                 \
            for (i = 0; i < nt; i++) a += w[i] * src[offs[i] + t];                      \
            out[t] = a;                                                                 \
        }                                                                               \
    }                                                                                   \
    /* acc[i*V + l] += sum of g[t] * P[offs[i] + t] over t = l (mod V), t in [0, L):     \
       three taps per pass over g (their partial sums stay in registers). */            \
    TG_DW_CLONES static void tg_dw_dots_##S(const T* g, const T* P,                      \
            const Py_ssize_t* offs, Py_ssize_t kk, Py_ssize_t L, T* acc) {               \
        Py_ssize_t i = 0, t, nb = L / V * V;                                            \
        for (; i + 3 <= kk; i += 3) {                                                   \
            const T* p0 = P + offs[i];                                                  \
            const T* p1 = P + offs[i + 1];                                              \
            const T* p2 = P + offs[i + 2];                                              \
            tg_dw_v##S a0 = *(tg_dw_u##S*)(acc + i * V);                                \
            tg_dw_v##S a1 = *(tg_dw_u##S*)(acc + (i + 1) * V);                          \
            tg_dw_v##S a2 = *(tg_dw_u##S*)(acc + (i + 2) * V);                          \
            for (t = 0; t < nb; t += V) {                                               \
                tg_dw_v##S gv = *(const tg_dw_u##S*)(g + t);                            \
                a0 += gv * *(const tg_dw_u##S*)(p0 + t);                                \
                a1 += gv * *(const tg_dw_u##S*)(p1 + t);                                \
                a2 += gv * *(const tg_dw_u##S*)(p2 + t);                                \
            }                                                                           \
            *(tg_dw_u##S*)(acc + i * V) = a0;                                           \
            *(tg_dw_u##S*)(acc + (i + 1) * V) = a1;                                     \
            *(tg_dw_u##S*)(acc + (i + 2) * V) = a2;                                     \
            for (t = nb; t < L; t++) {                                                  \
                acc[i * V + t - nb] += g[t] * p0[t];                                    \
                acc[(i + 1) * V + t - nb] += g[t] * p1[t];                              \
                acc[(i + 2) * V + t - nb] += g[t] * p2[t];                              \
            }                                                                           \
        }                                                                               \
        for (; i < kk; i++) {                                                           \
            const T* p0 = P + offs[i];                                                  \
            tg_dw_v##S a0 = *(tg_dw_u##S*)(acc + i * V);                                \
            for (t = 0; t < nb; t += V)                                                 \
                a0 += *(const tg_dw_u##S*)(g + t) * *(const tg_dw_u##S*)(p0 + t);       \
            *(tg_dw_u##S*)(acc + i * V) = a0;                                           \
            for (t = nb; t < L; t++) acc[i * V + t - nb] += g[t] * p0[t];               \
        }                                                                               \
    }
    /* dst[v] = src[v] for v < n: inline vector copies (rows are short: a memcpy call
       per row costs more than the copy) */
    #define TG_DW_COPY(T, S, V)                                                         \
    static inline void tg_dw_copy_##S(T* dst, const T* src, Py_ssize_t n) {             \
        Py_ssize_t v = 0;                                                               \
        for (; v + V <= n; v += V)                                                       \
            *(tg_dw_u##S*)(dst + v) = *(const tg_dw_u##S*)(src + v);                    \
        for (; v < n; v++) dst[v] = src[v];                                             \
    }
    /* acc[l] += the sum of g[t] over t = l (mod V), t in [0, L): one partial sum per lane,
       each adding its elements in order (a fixed order, as the weight gradient's lanes) */
    #define TG_DW_LANESUM(T, S, V)                                                      \
    TG_DW_CLONES static void tg_dw_lanesum_##S(const T* g, Py_ssize_t L, T* acc) {       \
        Py_ssize_t t = 0;                                                               \
        tg_dw_v##S a = *(tg_dw_u##S*)acc;                                               \
        for (; t + V <= L; t += V) a += *(const tg_dw_u##S*)(g + t);                     \
        *(tg_dw_u##S*)acc = a;                                                          \
        for (; t < L; t++) acc[t - L / V * V] += g[t];                                  \
    }
    /* The image part of every phase plane of one padded plane (the padding stays zero):
       P[a, b][u, v] = x[u*sh + a - ph, v*sw + b - pw], each plane (Hq, Wq). */
    #define TG_DW_SPLIT(T, S)                                                           \
    TG_DW_CLONES static void tg_dw_split_##S(const T* xp, T* P, Py_ssize_t h,           \
            Py_ssize_t wd, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,   \
            Py_ssize_t Hq, Py_ssize_t Wq) {                                             \
        Py_ssize_t a, b, u, v, u0, u1, v0, v1, n;                                       \
        for (a = 0; a < sh; a++) {                                                      \
            u0 = ph > a ? (ph - a + sh - 1) / sh : 0;                                   \
            u1 = (h + ph - a + sh - 1) / sh;                                            \
            for (b = 0; b < sw; b++) {                                                  \
                v0 = pw > b ? (pw - b + sw - 1) / sw : 0;                               \
                v1 = (wd + pw - b + sw - 1) / sw;                                       \
                n = v1 - v0;                                                            \
                if (n <= 0) continue;                                                   \
                T* q = P + (a * sw + b) * Hq * Wq + v0;                                 \
                const T* xr = xp + (a - ph) * wd + v0 * sw + b - pw;                    \
                for (u = u0; u < u1; u++) {                                             \
                    const T* src = xr + u * sh * wd;                                    \
                    T* dst = q + u * Wq;                                                \
                    if (sw == 1) tg_dw_copy_##S(dst, src, n);                           \
                    else if (sw == 2) for (v = 0; v < n; v++) dst[v] = src[2 * v];      \
                    else for (v = 0; v < n; v++) dst[v] = src[v * sw];                  \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }
    /* The forward of one plane for kernel K x K, stride ST x ST: y = bias +
       sum_ij w[i*K + j] * P[tap(i, j) + t], tap (i, j) at phase plane (i % ST, j % ST),
       offset (i / ST) * Wq + j / ST; taps in the order of tg_dw_lincomb (i, then j), so
       the same sums, unrolled (weights in registers, constant load offsets).
       tg_dw_band writes the output plane (ho, wo) directly, R rows at a time: a phase row
       loaded once serves every output row whose taps read it; the last band and the last
       vector of a row are shifted back to end at the plane's edge (the outputs they
       repeat get the same values). It needs ho >= R and wo >= V and returns 0 otherwise;
       tg_dw_conv then computes the flat index t over rows of pitch Wq (the columns past
       wo are discarded by the caller). */
    /* One band of R output rows from row r0, NC vectors along the row at a time (NC*R
       independent sums in flight: each output adds its K*K taps in order, one dependent
       multiply-add after another, so R sums alone leave the multiply-add units idle). */
    #define TG_DW_BANDBODY(S, V, K, ST, R, NC)                                          \
        for (c = 0; c < wo; c += NC * V) {                                              \
            cc = c + NC * V <= wo ? c : wo - NC * V;                                    \
            const Py_ssize_t ti0 = r0 * Wq + cc;                                        \
            tg_dw_v##S acc[R][NC];                                                      \
            _Pragma("GCC unroll 8")                                                     \
            for (o = 0; o < R; o++)                                                     \
                _Pragma("GCC unroll 2")                                                 \
                for (n = 0; n < NC; n++) {                                              \
                    acc[o][n] = (tg_dw_v##S){0};                                        \
                    acc[o][n] += bias;                                                  \
                }                                                                       \
            _Pragma("GCC unroll 16")                                                    \
            for (q = 0; q < R + (K - 1) / ST; q++) {                                    \
                _Pragma("GCC unroll 4")                                                 \
                for (a = 0; a < ST; a++) {                                              \
                    _Pragma("GCC unroll 8")                                             \
                    for (j = 0; j < K; j++) {                                           \
                        _Pragma("GCC unroll 2")                                         \
                        for (n = 0; n < NC; n++) {                                      \
                            tg_dw_v##S v = *(const tg_dw_u##S*)(                        \
                                r[a][j % ST] + q * Wq + j / ST + ti0 + n * V);          \
                            _Pragma("GCC unroll 8")                                     \
                            for (o = 0; o < R; o++) {                                   \
                                Py_ssize_t ti = (q - o) * ST + a;                       \
                                if (q >= o && ti < K) acc[o][n] += wk[ti * K + j] * v;  \
                            }                                                           \
                        }                                                               \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            _Pragma("GCC unroll 8")                                                     \
            for (o = 0; o < R; o++)                                                     \
                _Pragma("GCC unroll 2")                                                 \
                for (n = 0; n < NC; n++)                                                \
                    *(tg_dw_u##S*)(y + (r0 + o) * wo + cc + n * V) = acc[o][n];         \
        }
    #define TG_DW_CONV(T, S, V, K, ST, R)                                               \
    TG_DW_CLONES static int tg_dw_band##K##ST##_##S(const T* P, Py_ssize_t plane,        \
            Py_ssize_t Wq, const T* w, Py_ssize_t ho, Py_ssize_t wo, T bias, T* y) {     \
        const T* r[ST][ST];                                                             \
        T wk[K * K];                                                                    \
        Py_ssize_t rb, r0, c, cc, i, j, a, q, o, n;                                     \
        if (ho < R || wo < V) return 0;                                                 \
        for (i = 0; i < ST; i++)                                                        \
            for (j = 0; j < ST; j++) r[i][j] = P + (i * ST + j) * plane;                \
        for (i = 0; i < K * K; i++) wk[i] = w[i];                                       \
        for (rb = 0; rb < ho; rb += R) {                                                \
            r0 = rb + R <= ho ? rb : ho - R;                                            \
            if (wo >= 2 * V) {                                                          \
                TG_DW_BANDBODY(S, V, K, ST, R, 2)                                       \
            } else {                                                                    \
                TG_DW_BANDBODY(S, V, K, ST, R, 1)                                       \
            }                                                                           \
        }                                                                               \
        return 1;                                                                       \
    }                                                                                   \
    TG_DW_CLONES static void tg_dw_conv##K##ST##_##S(const T* P, Py_ssize_t plane,       \
            Py_ssize_t Wq, const T* w, Py_ssize_t L, T bias, T* out) {                   \
        const T* r[ST][ST];                                                             \
        T wk[K * K];                                                                    \
        Py_ssize_t t, i, j;                                                             \
        for (i = 0; i < ST; i++)                                                        \
            for (j = 0; j < ST; j++) r[i][j] = P + (i * ST + j) * plane;                \
        for (i = 0; i < K * K; i++) wk[i] = w[i];                                       \
        for (t = 0; t + V <= L; t += V) {                                                \
            tg_dw_v##S a1 = {0};                                                        \
            a1 += bias;                                                                 \
            _Pragma("GCC unroll 8")                                                     \
            for (i = 0; i < K; i++) {                                                   \
                _Pragma("GCC unroll 8")                                                 \
                for (j = 0; j < K; j++)                                                 \
                    a1 += wk[i * K + j] * *(const tg_dw_u##S*)(                         \
                        r[i % ST][j % ST] + (i / ST) * Wq + j / ST + t);                \
            }                                                                           \
            *(tg_dw_u##S*)(out + t) = a1;                                               \
        }                                                                               \
        for (; t < L; t++) {                                                            \
            T a1 = bias;                                                                \
            for (i = 0; i < K; i++)                                                     \
                for (j = 0; j < K; j++)                                                 \
                    a1 += wk[i * K + j] * r[i % ST][j % ST][(i / ST) * Wq + j / ST + t]; \
            out[t] = a1;                                                                \
        }                                                                               \
    }
    /* The weight gradient of one plane for kernel K x K, stride ST x ST, straight from
       the output gradient plane gy (ho, wo), wo >= V (returns 0 otherwise): each tap keeps
       one partial sum per vector lane (accm, 64 bytes per tap), lane l adding gy * P at the
       l-th column of each column block, in a fixed order (the last block of a row is
       shifted back to end at the edge and its repeated lanes multiplied by zero). The K*K
       partial-sum vectors stay in registers over the plane; RR output rows at a time
       share each phase-row load. */
    #define TG_DW_WBODY(T, S, V, K, ST, RR)                                             \
        for (c = 0; c < wo; c += V) {                                                   \
            cc = c + V <= wo ? c : wo - V;                                              \
            tg_dw_v##S mask = {0};                                                      \
            mask += (T)1;                                                               \
            if (cc != c)                                                                \
                for (l = 0; l < c - cc; l++) mask[l] = 0;                               \
            tg_dw_v##S g[RR];                                                           \
            _Pragma("GCC unroll 8")                                                     \
            for (o = 0; o < RR; o++)                                                    \
                g[o] = mask * *(const tg_dw_u##S*)(gy + (rb + o) * wo + cc);            \
            _Pragma("GCC unroll 16")                                                    \
            for (q = 0; q < RR + (K - 1) / ST; q++) {                                   \
                _Pragma("GCC unroll 4")                                                 \
                for (a = 0; a < ST; a++) {                                              \
                    _Pragma("GCC unroll 8")                                             \
                    for (j = 0; j < K; j++) {                                           \
                        tg_dw_v##S v = *(const tg_dw_u##S*)(                            \
                            r[a][j % ST] + (rb + q) * Wq + j / ST + cc);                \
                        _Pragma("GCC unroll 8")                                         \
                        for (o = 0; o < RR; o++) {                                      \
                            Py_ssize_t ti = (q - o) * ST + a;                           \
                            if (q >= o && ti < K) acc[ti * K + j] += g[o] * v;          \
                        }                                                               \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
        }
    #define TG_DW_WGRAD(T, S, V, K, ST, R)                                              \
    TG_DW_CLONES static int tg_dw_wband##K##ST##_##S(const T* gy, const T* P,           \
            Py_ssize_t plane, Py_ssize_t Wq, Py_ssize_t ho, Py_ssize_t wo, T* accm) {   \
        const T* r[ST][ST];                                                             \
        tg_dw_v##S acc[K * K];                                                          \
        Py_ssize_t rb, c, cc, i, j, a, q, o, l;                                         \
        if (wo < V) return 0;                                                           \
        for (i = 0; i < ST; i++)                                                        \
            for (j = 0; j < ST; j++) r[i][j] = P + (i * ST + j) * plane;                \
        _Pragma("GCC unroll 32")                                                        \
        for (i = 0; i < K * K; i++) acc[i] = *(const tg_dw_u##S*)(accm + i * 64 / sizeof(T)); \
        for (rb = 0; rb + R <= ho; rb += R) {                                           \
            TG_DW_WBODY(T, S, V, K, ST, R)                                              \
        }                                                                               \
        for (; rb < ho; rb++) {                                                         \
            TG_DW_WBODY(T, S, V, K, ST, 1)                                              \
        }                                                                               \
        _Pragma("GCC unroll 32")                                                        \
        for (i = 0; i < K * K; i++) *(tg_dw_u##S*)(accm + i * 64 / sizeof(T)) = acc[i]; \
        return 1;                                                                       \
    }
    TG_DW_LINCOMB(float, f, 16)
    TG_DW_LINCOMB(double, d, 8)
    TG_DW_COPY(float, f, 16)
    TG_DW_COPY(double, d, 8)
    TG_DW_LANESUM(float, f, 16)
    TG_DW_LANESUM(double, d, 8)
    TG_DW_SPLIT(float, f)
    TG_DW_SPLIT(double, d)
    /* The unrolled kernels of one vector type: 3x3 and 5x5 at stride 1 and 2 (the last
       argument: output rows per band) */
    #define TG_DW_KERNELS(T, S, V)                                                      \
        TG_DW_CONV(T, S, V, 3, 1, 4) TG_DW_CONV(T, S, V, 3, 2, 4)                       \
        TG_DW_CONV(T, S, V, 5, 1, 4) TG_DW_CONV(T, S, V, 5, 2, 3)                       \
        TG_DW_WGRAD(T, S, V, 3, 1, 2) TG_DW_WGRAD(T, S, V, 3, 2, 2)                     \
        TG_DW_WGRAD(T, S, V, 5, 1, 1) TG_DW_WGRAD(T, S, V, 5, 2, 1)
    TG_DW_KERNELS(float, f, 16)
    TG_DW_KERNELS(double, d, 8)
    /* half-width (32-byte) vectors for float planes 8 to 15 outputs wide */
    typedef float tg_dw_vh __attribute__((vector_size(32)));
    typedef float tg_dw_uh __attribute__((vector_size(32), aligned(4), may_alias));
    TG_DW_KERNELS(float, h, 8)
    /* One entry per pass and type, by key K*10 + stride (K x K kernels, the same stride
       along both axes; another key: 0 from the band kernels, the tap list for _conv);
       float planes too narrow for a full vector try the half-width kernels. */
    #define TG_DW_OR_HALF_f(N, ...) || tg_dw_##N##_h(__VA_ARGS__)
    #define TG_DW_OR_HALF_d(N, ...)
    #define TG_DW_BAND_CASE(K, ST, S)                                                   \
        case K##ST: return tg_dw_band##K##ST##_##S(P, plane, Wq, w, ho, wo, bias, y)    \
            TG_DW_OR_HALF_##S(band##K##ST, P, plane, Wq, w, ho, wo, bias, y);
    #define TG_DW_CONV_CASE(K, ST, S)                                                   \
        case K##ST: tg_dw_conv##K##ST##_##S(P, plane, Wq, w, L, bias, out); return;
    #define TG_DW_WBAND_CASE(K, ST, S)                                                  \
        case K##ST: return tg_dw_wband##K##ST##_##S(gy, P, plane, Wq, ho, wo, acc)      \
            TG_DW_OR_HALF_##S(wband##K##ST, gy, P, plane, Wq, ho, wo, acc);
    #define TG_DW_KEYS(X, S) X(3, 1, S) X(3, 2, S) X(5, 1, S) X(5, 2, S)
    #define TG_DW_DISPATCH(T, S)                                                        \
    static int tg_dw_band_##S(int key, const T* P, Py_ssize_t plane, Py_ssize_t Wq,      \
            const T* w, Py_ssize_t ho, Py_ssize_t wo, T bias, T* y) {                    \
        switch (key) { TG_DW_KEYS(TG_DW_BAND_CASE, S) }                                 \
        return 0;                                                                       \
    }                                                                                   \
    static void tg_dw_conv_##S(int key, const T* P, Py_ssize_t plane, Py_ssize_t Wq,     \
            const Py_ssize_t* offs, Py_ssize_t kk, const T* w, Py_ssize_t L, T bias,     \
            T* out) {                                                                   \
        switch (key) { TG_DW_KEYS(TG_DW_CONV_CASE, S) }                                 \
        tg_dw_lincomb_##S(P, offs, w, kk, L, bias, out);                                \
    }                                                                                   \
    static int tg_dw_wband_##S(int key, const T* gy, const T* P, Py_ssize_t plane,       \
            Py_ssize_t Wq, Py_ssize_t ho, Py_ssize_t wo, T* acc) {                       \
        switch (key) { TG_DW_KEYS(TG_DW_WBAND_CASE, S) }                                \
        return 0;                                                                       \
    }
    TG_DW_DISPATCH(float, f)
    TG_DW_DISPATCH(double, d)
    /* Channel-blocked planes for small output planes (a 64-byte vector along a row of
       outputs narrower than it is partly idle): V channels of one image interleaved pixel
       by pixel in cache, B[(r * Wb + c) * V + l] = plane l at (r, c), so a tap is one
       broadcast-free vector multiply-add over V channels and every load is a whole
       vector.
       tg_dw_cbin writes planes src[l] (h, wd) at row top, column left of B (pitch Wb;
       NULL: a lane past the channel count, zeros); tg_dw_cbout is its inverse for the
       lanes with a destination. */
    /* The V planes of a block are V streams 1 to 4 KB apart, one 64-byte line of each per
       step: too many short streams for the hardware prefetchers, so each step asks for
       the line TG_DW_PF steps ahead in every plane (a hint: past a plane's end it reaches
       the next plane or the next block) */
    #define TG_DW_PF 4
    /* A hint for every 64-byte line of the first min(bytes, TG_DW_PFMAX) bytes at p (rw:
       to be written). A channel block of one image is one contiguous run of memory (one
       plane per channel), too short for the hardware prefetchers to start on before it
       ends, and the weight gradient's tasks take image after image of one block (runs a
       whole image apart): each task asks for the next image's (the forward and input
       gradient: the next task's) runs while it works on this one. */
    #define TG_DW_PFMAX 16384
    static inline void tg_dw_pfblock(const void* p, Py_ssize_t bytes, int rw) {
        const char* q = (const char*)p;
        Py_ssize_t i;
        if (bytes > TG_DW_PFMAX) bytes = TG_DW_PFMAX;
        if (rw) for (i = 0; i < bytes; i += 64) __builtin_prefetch(q + i, 1, 3);
        else for (i = 0; i < bytes; i += 64) __builtin_prefetch(q + i, 0, 3);
    }
    #define TG_DW_CBIO(T, S, V, IT)                                                     \
    typedef IT tg_dw_i##S __attribute__((vector_size(64)));                             \
    /* r[i][k] <- r[k][i]: V x V in registers, swapping off-diagonal blocks of b x b for  \
       b = V/2 ... 1 (two-vector shuffles) */                                           \
    static inline __attribute__((always_inline)) void tg_dw_tr_##S(tg_dw_v##S* r) {     \
        tg_dw_i##S I;                                                                   \
        Py_ssize_t i, b;                                                                \
        for (i = 0; i < V; i++) I[i] = i;                                               \
        _Pragma("GCC unroll 4")                                                         \
        for (b = V / 2; b >= 1; b /= 2) {                                               \
            const tg_dw_i##S sel = ((I & (IT)b) != 0) & (IT)(V - b);                    \
            const tg_dw_i##S lo = I + sel, hi = I + (IT)b + sel;                        \
            _Pragma("GCC unroll 16")                                                    \
            for (i = 0; i < V; i++)                                                     \
                if (!(i & b)) {                                                         \
                    tg_dw_v##S a = r[i], c = r[i + b];                                  \
                    r[i] = __builtin_shuffle(a, c, lo);                                 \
                    r[i + b] = __builtin_shuffle(a, c, hi);                             \
                }                                                                       \
        }                                                                               \
    }                                                                                   \
    TG_DW_CLONES static void tg_dw_cbin_##S(const T** src, Py_ssize_t h, Py_ssize_t wd,  \
            Py_ssize_t top, Py_ssize_t left, Py_ssize_t Wb, T* B) {                      \
        Py_ssize_t hw = h * wd, l, r, c, t, t0, k;                                      \
        if (hw < V) {                                                                   \
            for (l = 0; l < V; l++) {                                                   \
                const T* s = src[l];                                                    \
                T* d = B + (top * Wb + left) * V + l;                                   \
                for (r = 0; r < h; r++)                                                 \
                    for (c = 0; c < wd; c++)                                            \
                        d[(r * Wb + c) * V] = s ? s[r * wd + c] : (T)0;                 \
            }                                                                           \
            return;                                                                     \
        }                                                                               \
        for (t = 0; t < hw; t += V) {  /* V pixels of the V planes, transposed */       \
            tg_dw_v##S m[V];                                                            \
            t0 = t + V <= hw ? t : hw - V;                                              \
            _Pragma("GCC unroll 16")                                                    \
            for (l = 0; l < V; l++)                                                     \
                if (src[l]) __builtin_prefetch(src[l] + t0 + TG_DW_PF * V, 0, 3);       \
            _Pragma("GCC unroll 16")                                                    \
            for (l = 0; l < V; l++)                                                     \
                m[l] = src[l] ? (tg_dw_v##S) * (const tg_dw_u##S*)(src[l] + t0)         \
                              : (tg_dw_v##S){0};                                        \
            tg_dw_tr_##S(m);                                                            \
            r = t0 / wd;                                                                \
            c = t0 - r * wd;                                                            \
            _Pragma("GCC unroll 16")                                                    \
            for (k = 0; k < V; k++) {                                                   \
                *(tg_dw_u##S*)(B + ((r + top) * Wb + c + left) * V) = m[k];             \
                if (++c == wd) { c = 0; r++; }                                          \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    TG_DW_CLONES static void tg_dw_cbout_##S(const T* B, Py_ssize_t h, Py_ssize_t wd,    \
            Py_ssize_t top, Py_ssize_t left, Py_ssize_t Wb, T** dst) {                   \
        Py_ssize_t hw = h * wd, l, r, c, t, t0, k;                                      \
        if (hw < V) {                                                                   \
            for (l = 0; l < V; l++) {                                                   \
                T* d = dst[l];                                                          \
                const T* s = B + (top * Wb + left) * V + l;                             \
                if (!d) continue;                                                       \
                for (r = 0; r < h; r++)                                                 \
                    for (c = 0; c < wd; c++) d[r * wd + c] = s[(r * Wb + c) * V];       \
            }                                                                           \
            return;                                                                     \
        }                                                                               \
        for (t = 0; t < hw; t += V) {                                                   \
            tg_dw_v##S m[V];                                                            \
            t0 = t + V <= hw ? t : hw - V;                                              \
            r = t0 / wd;                                                                \
            c = t0 - r * wd;                                                            \
            _Pragma("GCC unroll 16")                                                    \
            for (k = 0; k < V; k++) {                                                   \
                m[k] = *(const tg_dw_u##S*)(B + ((r + top) * Wb + c + left) * V);       \
                if (++c == wd) { c = 0; r++; }                                          \
            }                                                                           \
            tg_dw_tr_##S(m);                                                            \
            _Pragma("GCC unroll 16")                                                    \
            for (l = 0; l < V; l++)                                                     \
                if (dst[l]) {                                                           \
                    __builtin_prefetch(dst[l] + t0 + TG_DW_PF * V, 1, 3);               \
                    *(tg_dw_u##S*)(dst[l] + t0) = m[l];                                 \
                }                                                                       \
        }                                                                               \
    }
    /* The forward and weight gradient on channel-blocked planes for a K x K kernel (K = 0:
       kh x kw taken at run time, weights read from memory), stride sh x sw; B padded
       (pitch Wb), the output (gradient) plane G with row pitch GW (ho, wo); w and bias
       hold V lanes per tap. Forward: Y[oh, ow] = bias + sum over taps (i, then j) of
       w[i, j] * B[oh*sh + i, ow*sw + j]. Weight gradient: acc[i, j] += G[oh, ow] *
       B[oh*sh + i, ow*sw + j] over (oh, ow) in order, one lane per channel (no cross-lane
       sum). The input gradient is gathered (tg_dw_cbgx, below). */
    #define TG_DW_CBHEAD(S, V, K, R, SRC)  /* R: the K*K tap vectors in registers */     \
        const Py_ssize_t KH = K > 0 ? K : kh, KW = K > 0 ? K : kw;                      \
        tg_dw_v##S R[K > 0 ? K * K : 1];                                                \
        Py_ssize_t oh, ow, i, j;                                                        \
        if (K > 0)                                                                      \
            for (i = 0; i < KH * KW; i++) R[i] = *(const tg_dw_u##S*)(SRC + i * V);
    /* tap t's vector: in registers (R) for K > 0, else at SRC + t*V */
    #define TG_DW_CBTAP(S, V, K, R, SRC, t) \
        (K > 0 ? R[t] : (tg_dw_v##S) * (const tg_dw_u##S*)(SRC + (t) * V))
    /* the loops of every pass: output pixel (oh, ow) at px, tap t at q in the block */
    #define TG_DW_CBLOOP(V, PRE, TAP, POST)                                             \
        for (oh = 0; oh < ho; oh++)                                                     \
            for (ow = 0; ow < wo; ow++) {                                               \
                const Py_ssize_t at = (oh * sh * Wb + ow * sw) * V, px = (oh * GW + ow) * V; \
                PRE                                                                     \
                _Pragma("GCC unroll 8")                                                 \
                for (i = 0; i < KH; i++) {                                              \
                    _Pragma("GCC unroll 8")                                             \
                    for (j = 0; j < KW; j++) {                                          \
                        const Py_ssize_t t = i * KW + j, q = at + (i * Wb + j) * V;     \
                        TAP                                                             \
                    }                                                                   \
                }                                                                       \
                POST                                                                    \
            }
    #define TG_DW_CBARGS Py_ssize_t Wb, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,     \
        Py_ssize_t sw, Py_ssize_t ho, Py_ssize_t wo
    #define TG_DW_CB(T, S, V, K)                                                        \
    TG_DW_CLONES static void tg_dw_cbfwd##K##_##S(const T* B, const T* w, const T* bias,  \
            TG_DW_CBARGS, T* Y) {                                                       \
        TG_DW_CBHEAD(S, V, K, wr, w)                                                    \
        const Py_ssize_t GW = wo;                                                       \
        const tg_dw_v##S bv = *(const tg_dw_u##S*)bias;                                 \
        TG_DW_CBLOOP(V, tg_dw_v##S a = bv;,                                             \
            a += TG_DW_CBTAP(S, V, K, wr, w, t) * *(const tg_dw_u##S*)(B + q);,          \
            *(tg_dw_u##S*)(Y + px) = a;)                                                \
    }                                                                                   \
    TG_DW_CLONES static void tg_dw_cbwg##K##_##S(const T* G, Py_ssize_t GW, const T* B,  \
            TG_DW_CBARGS, T* acc) {                                                     \
        TG_DW_CBHEAD(S, V, K, ar, acc)                                                  \
        TG_DW_CBLOOP(V, const tg_dw_v##S g = *(const tg_dw_u##S*)(G + px);,              \
            const tg_dw_v##S v = g * *(const tg_dw_u##S*)(B + q);                       \
            if (K > 0) ar[t] += v;                                                      \
            else *(tg_dw_u##S*)(acc + t * V) += v;, )                                   \
        if (K > 0)                                                                      \
            for (i = 0; i < KH * KW; i++) *(tg_dw_u##S*)(acc + i * V) = ar[i];          \
    }
    /* One entry per pass and type: the unrolled 3x3 and 5x5 bodies, else the general one */
    #define TG_DW_CBPICK(N, S, ...)                                                     \
        if (kh == 3 && kw == 3) N##3_##S(__VA_ARGS__);                                  \
        else if (kh == 5 && kw == 5) N##5_##S(__VA_ARGS__);                             \
        else N##0_##S(__VA_ARGS__);
    #define TG_DW_CBDISPATCH(T, S)                                                      \
    static void tg_dw_cbfwd_##S(const T* B, const T* w, const T* bias, TG_DW_CBARGS,      \
            T* Y) {                                                                     \
        TG_DW_CBPICK(tg_dw_cbfwd, S, B, w, bias, Wb, kh, kw, sh, sw, ho, wo, Y)         \
    }                                                                                   \
    static void tg_dw_cbgx_##S(TG_DW_CBGXARGS(T)) {                                      \
        if (kh == kw && sh == sw && (kh == 3 || kh == 5) && (sh == 1 || sh == 2)) {     \
            switch (kh * 10 + sh) { TG_DW_KEYS(TG_DW_CBGX_CASE, S) }                    \
            return;                                                                     \
        }                                                                               \
        tg_dw_cbgx00_##S(Gp, Wg, PT, PL, w, kh, kw, sh, sw, ph, pw, h, wd, add, GX);    \
    }                                                                                   \
    static void tg_dw_cbwg_##S(const T* G, Py_ssize_t gp, const T* B, TG_DW_CBARGS,      \
            T* acc) {                                                                   \
        if (sh == 1 && sw == 1 && kh == kw && (kh == 3 || kh == 5)) {                   \
            if (kh == 3) tg_dw_cbwg1_3_##S(G, gp, B, Wb, ho, wo, acc);                  \
            else tg_dw_cbwg1_5_##S(G, gp, B, Wb, ho, wo, acc);                          \
            return;                                                                     \
        }                                                                               \
        TG_DW_CBPICK(tg_dw_cbwg, S, G, gp, B, Wb, kh, kw, sh, sw, ho, wo, acc)          \
    }
    /* The weight gradient at stride 1 for a K x K kernel, four output pixels of a row at a
       time: the K + 3 input vectors of each kernel row are loaded once and serve the four
       pixels (K x 4 products each) instead of K loads per pixel. Each tap's accumulator
       still adds its products in pixel order (the pixels of a row in order, the rows in
       order), so the sums are those of tg_dw_cbwg##K. */
    #define TG_DW_CBWG1(T, S, V, K)                                                     \
    TG_DW_CLONES static void tg_dw_cbwg1_##K##_##S(const T* G, Py_ssize_t gp, const T* B,  \
            Py_ssize_t Wb, Py_ssize_t ho, Py_ssize_t wo, T* acc) {                      \
        tg_dw_v##S ar[K * K];                                                           \
        Py_ssize_t oh, ow, i, j;                                                        \
        for (i = 0; i < K * K; i++) ar[i] = *(const tg_dw_u##S*)(acc + i * V);          \
        for (oh = 0; oh < ho; oh++) {                                                   \
            const T* gr = G + oh * gp * V;                                              \
            for (ow = 0; ow + 4 <= wo; ow += 4) {                                       \
                const tg_dw_v##S g0 = *(const tg_dw_u##S*)(gr + ow * V);                \
                const tg_dw_v##S g1 = *(const tg_dw_u##S*)(gr + (ow + 1) * V);          \
                const tg_dw_v##S g2 = *(const tg_dw_u##S*)(gr + (ow + 2) * V);          \
                const tg_dw_v##S g3 = *(const tg_dw_u##S*)(gr + (ow + 3) * V);          \
                _Pragma("GCC unroll 8")                                                 \
                for (i = 0; i < K; i++) {                                               \
                    const T* br = B + ((oh + i) * Wb + ow) * V;                         \
                    _Pragma("GCC unroll 8")                                             \
                    for (j = 0; j < K + 3; j++) {                                       \
                        const tg_dw_v##S b = *(const tg_dw_u##S*)(br + j * V);          \
                        if (j < K) ar[i * K + j] += g0 * b;                             \
                        if (j >= 1 && j - 1 < K) ar[i * K + j - 1] += g1 * b;           \
                        if (j >= 2 && j - 2 < K) ar[i * K + j - 2] += g2 * b;           \
                        if (j >= 3 && j - 3 < K) ar[i * K + j - 3] += g3 * b;           \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            for (; ow < wo; ow++) {                                                     \
                const tg_dw_v##S g = *(const tg_dw_u##S*)(gr + ow * V);                 \
                _Pragma("GCC unroll 8")                                                 \
                for (i = 0; i < K; i++) {                                               \
                    _Pragma("GCC unroll 8")                                             \
                    for (j = 0; j < K; j++)                                             \
                        ar[i * K + j] += g * *(const tg_dw_u##S*)(B + ((oh + i) * Wb + ow + j) * V); \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        for (i = 0; i < K * K; i++) *(tg_dw_u##S*)(acc + i * V) = ar[i];                \
    }
    /* The input gradient on channel blocks as a gather, phase by phase (no read-modify-
       write): pixel (y, x) of the dense block GX (h, wd) sits at (r, c) = (y + ph, x + pw)
       = (u*sh + a, v*sw + b) of the padded input and takes w[i, j] * G[u - i', v - j'] over
       the taps i = a + sh*i', j = b + sw*j' that land on its phase, i' and j' descending:
       the order in which the output pixels (oh, ow) reach it, so the sums are those of the
       scatter over the output pixels. Gp is the output-gradient block with PT rows and PL
       columns of zeros before it (and zeros after it, pitch Wg), so every tap reads inside;
       add: start from GX (the next output channel of a multiplier > 1), else from zero.
       Two pixels of a phase row at a time (two independent sums, each tap's weight loaded
       once for both). K, ST > 0: kernel and stride fixed (weights in registers); 0: taken
       at run time. */
    #define TG_DW_CBGXARGS(T) const T* Gp, Py_ssize_t Wg, Py_ssize_t PT, Py_ssize_t PL,  \
        const T* w, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,          \
        Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t h, Py_ssize_t wd, int add, T* GX
    #define TG_DW_CBGXG(T, S, V, K, ST)                                                 \
    TG_DW_CLONES static void tg_dw_cbgx##K##ST##_##S(TG_DW_CBGXARGS(T)) {                \
        const Py_ssize_t KH = K > 0 ? K : kh, KW = K > 0 ? K : kw;                      \
        const Py_ssize_t SH = ST > 0 ? ST : sh, SW = ST > 0 ? ST : sw;                  \
        tg_dw_v##S wr[K > 0 ? K * K : 1];                                               \
        Py_ssize_t a, b, ii, jj, y, x, i;                                               \
        if (K > 0)                                                                      \
            for (i = 0; i < KH * KW; i++) wr[i] = *(const tg_dw_u##S*)(w + i * V);      \
        _Pragma("GCC unroll 2")                                                         \
        for (a = 0; a < SH; a++) {                                                      \
            const Py_ssize_t y0 = ((a - ph) % SH + SH) % SH, NI = (KH - a + SH - 1) / SH; \
            _Pragma("GCC unroll 2")                                                     \
            for (b = 0; b < SW; b++) {                                                  \
                const Py_ssize_t x0 = ((b - pw) % SW + SW) % SW, NJ = (KW - b + SW - 1) / SW; \
                for (y = y0; y < h; y += SH) {                                          \
                    const T* gr = Gp + ((y + ph) / SH + PT) * Wg * V;                   \
                    T* gx = GX + y * wd * V;                                            \
                    for (x = x0; x + SW < wd; x += 2 * SW) {                            \
                        const T* g = gr + ((x + pw) / SW + PL) * V;                     \
                        tg_dw_v##S acc = {0}, acc2 = {0};                               \
                        if (add) {                                                      \
                            acc = *(tg_dw_u##S*)(gx + x * V);                           \
                            acc2 = *(tg_dw_u##S*)(gx + (x + SW) * V);                   \
                        }                                                               \
                        _Pragma("GCC unroll 8")                                         \
                        for (ii = NI - 1; ii >= 0; ii--) {                              \
                            _Pragma("GCC unroll 8")                                     \
                            for (jj = NJ - 1; jj >= 0; jj--) {                          \
                                const Py_ssize_t t = (a + SH * ii) * KW + b + SW * jj;  \
                                const tg_dw_v##S wt = TG_DW_CBTAP(S, V, K, wr, w, t);   \
                                acc += wt * *(const tg_dw_u##S*)(g - (ii * Wg + jj) * V); \
                                acc2 += wt * *(const tg_dw_u##S*)(g - (ii * Wg + jj - 1) * V); \
                            }                                                           \
                        }                                                               \
                        *(tg_dw_u##S*)(gx + x * V) = acc;                               \
                        *(tg_dw_u##S*)(gx + (x + SW) * V) = acc2;                       \
                    }                                                                   \
                    for (; x < wd; x += SW) {                                           \
                        const T* g = gr + ((x + pw) / SW + PL) * V;                     \
                        tg_dw_v##S acc = {0};                                           \
                        if (add) acc = *(tg_dw_u##S*)(gx + x * V);                      \
                        _Pragma("GCC unroll 8")                                         \
                        for (ii = NI - 1; ii >= 0; ii--) {                              \
                            _Pragma("GCC unroll 8")                                     \
                            for (jj = NJ - 1; jj >= 0; jj--) {                          \
                                const Py_ssize_t t = (a + SH * ii) * KW + b + SW * jj;  \
                                acc += TG_DW_CBTAP(S, V, K, wr, w, t)                   \
                                    * *(const tg_dw_u##S*)(g - (ii * Wg + jj) * V);     \
                            }                                                           \
                        }                                                               \
                        *(tg_dw_u##S*)(gx + x * V) = acc;                               \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }
    #define TG_DW_CBGX_CASE(K, ST, S)                                                   \
        case K##ST: tg_dw_cbgx##K##ST##_##S(Gp, Wg, PT, PL, w, kh, kw, sh, sw, ph, pw, h, \
                                            wd, add, GX); return;
    /* acc[l] += G[oh, ow] lane l over the (ho, wo) pixels at pitch Wg, in pixel order:
       the bias gradient of a channel block, its sum in a register */
    #define TG_DW_CBSUM(T, S, V)                                                        \
    TG_DW_CLONES static void tg_dw_cbsum_##S(const T* G, Py_ssize_t Wg, Py_ssize_t ho,   \
            Py_ssize_t wo, T* acc) {                                                    \
        tg_dw_v##S a = *(tg_dw_u##S*)acc;                                               \
        Py_ssize_t oh, ow;                                                              \
        for (oh = 0; oh < ho; oh++)                                                     \
            for (ow = 0; ow < wo; ow++) a += *(const tg_dw_u##S*)(G + (oh * Wg + ow) * V); \
        *(tg_dw_u##S*)acc = a;                                                          \
    }
    #define TG_DW_CBSET(T, S, V)                                                        \
        TG_DW_CBSUM(T, S, V)                                                            \
        TG_DW_CB(T, S, V, 0) TG_DW_CB(T, S, V, 3) TG_DW_CB(T, S, V, 5)                 \
        TG_DW_CBGXG(T, S, V, 0, 0) TG_DW_CBGXG(T, S, V, 3, 1) TG_DW_CBGXG(T, S, V, 3, 2) \
        TG_DW_CBGXG(T, S, V, 5, 1) TG_DW_CBGXG(T, S, V, 5, 2)                           \
        TG_DW_CBWG1(T, S, V, 3) TG_DW_CBWG1(T, S, V, 5) TG_DW_CBDISPATCH(T, S)
    TG_DW_CBIO(float, f, 16, int)
    TG_DW_CBIO(double, d, 8, long long)
    TG_DW_CBSET(float, f, 16)
    TG_DW_CBSET(double, d, 8)
    """
    void tg_dw_cbin_f(const float** src, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t top,
                      Py_ssize_t left, Py_ssize_t Wb, float* B) noexcept nogil
    void tg_dw_cbin_d(const double** src, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t top,
                      Py_ssize_t left, Py_ssize_t Wb, double* B) noexcept nogil
    void tg_dw_cbout_f(const float* B, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t top,
                       Py_ssize_t left, Py_ssize_t Wb, float** dst) noexcept nogil
    void tg_dw_cbout_d(const double* B, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t top,
                       Py_ssize_t left, Py_ssize_t Wb, double** dst) noexcept nogil
    void tg_dw_cbfwd_f(const float* B, const float* w, const float* bias, Py_ssize_t Wb,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t ho, Py_ssize_t wo, float* Y) noexcept nogil
    void tg_dw_cbfwd_d(const double* B, const double* w, const double* bias, Py_ssize_t Wb,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t ho, Py_ssize_t wo, double* Y) noexcept nogil
    void tg_dw_cbgx_f(const float* Gp, Py_ssize_t Wg, Py_ssize_t PT, Py_ssize_t PL,
                      const float* w, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t h, Py_ssize_t wd, int add,
                      float* GX) noexcept nogil
    void tg_dw_cbgx_d(const double* Gp, Py_ssize_t Wg, Py_ssize_t PT, Py_ssize_t PL,
                      const double* w, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t h, Py_ssize_t wd, int add,
                      double* GX) noexcept nogil
    void tg_dw_cbwg_f(const float* G, Py_ssize_t gp, const float* B, Py_ssize_t Wb, Py_ssize_t kh,
                      Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ho,
                      Py_ssize_t wo, float* acc) noexcept nogil
    void tg_dw_cbwg_d(const double* G, Py_ssize_t gp, const double* B, Py_ssize_t Wb, Py_ssize_t kh,
                      Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ho,
                      Py_ssize_t wo, double* acc) noexcept nogil
    void tg_dw_pfblock(const void* p, Py_ssize_t nbytes, int rw) noexcept nogil
    void tg_dw_cbsum_f(const float* G, Py_ssize_t Wg, Py_ssize_t ho, Py_ssize_t wo,
                       float* acc) noexcept nogil
    void tg_dw_cbsum_d(const double* G, Py_ssize_t Wg, Py_ssize_t ho, Py_ssize_t wo,
                       double* acc) noexcept nogil
    void tg_dw_lincomb_f(const float* src, const Py_ssize_t* offs, const float* w,
                         Py_ssize_t nt, Py_ssize_t L, float bias, float* out) noexcept nogil
    void tg_dw_lincomb_d(const double* src, const Py_ssize_t* offs, const double* w,
                         Py_ssize_t nt, Py_ssize_t L, double bias, double* out) noexcept nogil
    void tg_dw_dots_f(const float* g, const float* P, const Py_ssize_t* offs, Py_ssize_t kk,
                      Py_ssize_t L, float* acc) noexcept nogil
    void tg_dw_dots_d(const double* g, const double* P, const Py_ssize_t* offs, Py_ssize_t kk,
                      Py_ssize_t L, double* acc) noexcept nogil
    void tg_dw_copy_f(float* dst, const float* src, Py_ssize_t n) noexcept nogil
    void tg_dw_copy_d(double* dst, const double* src, Py_ssize_t n) noexcept nogil
    void tg_dw_lanesum_f(const float* g, Py_ssize_t L, float* acc) noexcept nogil
    void tg_dw_lanesum_d(const double* g, Py_ssize_t L, double* acc) noexcept nogil
    void tg_dw_split_f(const float* xp, float* P, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ph,
                       Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t Hq,
                       Py_ssize_t Wq) noexcept nogil
    void tg_dw_split_d(const double* xp, double* P, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ph,
                       Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t Hq,
                       Py_ssize_t Wq) noexcept nogil
    int tg_dw_band_f(int key, const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                     Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    int tg_dw_band_d(int key, const double* P, Py_ssize_t plane, Py_ssize_t Wq, const double* w,
                     Py_ssize_t ho, Py_ssize_t wo, double bias, double* y) noexcept nogil
    void tg_dw_conv_f(int key, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                      const Py_ssize_t* offs, Py_ssize_t kk, const float* w, Py_ssize_t L,
                      float bias, float* out) noexcept nogil
    void tg_dw_conv_d(int key, const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                      const Py_ssize_t* offs, Py_ssize_t kk, const double* w, Py_ssize_t L,
                      double bias, double* out) noexcept nogil
    int tg_dw_wband_f(int key, const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                      Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_wband_d(int key, const double* gy, const double* P, Py_ssize_t plane,
                      Py_ssize_t Wq, Py_ssize_t ho, Py_ssize_t wo, double* acc) noexcept nogil


cdef inline void _copy(real* dst, const real* src, Py_ssize_t n) noexcept nogil:
    if real is float:
        tg_dw_copy_f(dst, src, n)
    else:
        tg_dw_copy_d(dst, src, n)


cdef inline void _lanesum(const real* g, Py_ssize_t L, real* acc) noexcept nogil:
    if real is float:
        tg_dw_lanesum_f(g, L, acc)
    else:
        tg_dw_lanesum_d(g, L, acc)


cdef inline void _lincomb(const real* src, const Py_ssize_t* offs, const real* w, Py_ssize_t nt,
                          Py_ssize_t L, real bias, real* out) noexcept nogil:
    if real is float:
        tg_dw_lincomb_f(src, offs, w, nt, L, bias, out)
    else:
        tg_dw_lincomb_d(src, offs, w, nt, L, bias, out)


cdef inline int _key(Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t kh, Py_ssize_t kw) noexcept nogil:
    """The unrolled kernels' key K*10 + stride (K x K kernel, stride the same along both axes;
    0: none)."""
    return <int>(kh * 10 + sw) if kh == kw and sh == sw else 0


cdef inline bint _band(const real* P, Py_ssize_t plane, Py_ssize_t Wq, Py_ssize_t sh,
                       Py_ssize_t sw, Py_ssize_t kh, Py_ssize_t kw, const real* w, Py_ssize_t ho,
                       Py_ssize_t wo, real bias, real* y) noexcept nogil:
    """The forward of one plane straight into the output plane y (3x3 and 5x5 at stride 1
    or 2, output rows at least one vector wide: 16 floats, or 8 with half-width vectors, or
    8 doubles); False when it does not apply."""
    if real is float:
        return tg_dw_band_f(_key(sh, sw, kh, kw), P, plane, Wq, w, ho, wo, bias, y)
    else:
        return tg_dw_band_d(_key(sh, sw, kh, kw), P, plane, Wq, w, ho, wo, bias, y)



cdef inline void _conv(const real* P, Py_ssize_t plane, Py_ssize_t Wq, Py_ssize_t sh,
                       Py_ssize_t sw, Py_ssize_t kh, Py_ssize_t kw, const Py_ssize_t* offs,
                       const real* w, Py_ssize_t L, real bias, real* out) noexcept nogil:
    """The forward of one plane from its phase planes P: the unrolled kernels for 3x3 and
    5x5 at stride 1 or 2 (the same along both axes), the tap list (offs) for the others."""
    if real is float:
        tg_dw_conv_f(_key(sh, sw, kh, kw), P, plane, Wq, offs, kh * kw, w, L, bias, out)
    else:
        tg_dw_conv_d(_key(sh, sw, kh, kw), P, plane, Wq, offs, kh * kw, w, L, bias, out)


cdef inline bint _wband(const real* gy, const real* P, Py_ssize_t plane, Py_ssize_t Wq,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t kh, Py_ssize_t kw,
                        Py_ssize_t ho, Py_ssize_t wo, real* acc) noexcept nogil:
    """The weight gradient of one plane straight from the output gradient (3x3 and 5x5 at
    stride 1 or 2, output planes at least one vector wide); False when it does not apply."""
    if real is float:
        return tg_dw_wband_f(_key(sh, sw, kh, kw), gy, P, plane, Wq, ho, wo, acc)
    else:
        return tg_dw_wband_d(_key(sh, sw, kh, kw), gy, P, plane, Wq, ho, wo, acc)


cdef inline void _dots(const real* g, const real* P, const Py_ssize_t* offs, Py_ssize_t kk,
                       Py_ssize_t L, real* acc) noexcept nogil:
    if real is float:
        tg_dw_dots_f(g, P, offs, kk, L, acc)
    else:
        tg_dw_dots_d(g, P, offs, kk, L, acc)


cdef inline real _edge(const real* xp, const real* wp, Py_ssize_t h, Py_ssize_t wd,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t ih0, Py_ssize_t iw0,
                       Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    """Sum of the taps of one output pixel, checking each input pixel (border pixels)."""
    cdef Py_ssize_t i, j, ih, iw
    cdef real s = 0
    for i in range(kh):
        ih = ih0 + i * dh
        if ih < 0 or ih >= h:
            continue
        for j in range(kw):
            iw = iw0 + j * dw
            if 0 <= iw < wd:
                s = s + wp[i * kw + j] * xp[ih * wd + iw]
    return s


def _forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b, real[:, :,
             :, ::1] y, bint has_bias, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], m = o // c
    cdef Py_ssize_t p, bi, oc, ic, oh, ow, i, j, ih, off, lo, hi, flo, fhi
    cdef real bias, wv, w0, w1, w2, w3, w4, w5, w6, w7, w8
    cdef real* yrow
    cdef const real* xrow
    cdef const real* x0
    cdef const real* x1
    cdef const real* x2
    cdef const real* xp
    cdef const real* wp
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    # 3x3 kernels at stride 1 (the common depthwise layer): output rows whose three input
    # rows lie inside the image take one fused pass over the columns [flo, fhi) where all
    # nine taps read inside the image, one store per output pixel and no per-tap loop
    # overhead (rows are short: per-tap loops spent most of their time in setup). The few
    # border pixels sum their taps with checks; other rows and shapes take the tap loops.
    # Stride 2 takes the same fused pass (its loads two columns apart).
    cdef bint fuse = kh == 3 and kw == 3 and (sh == 1 or sh == 2) and (sw == 1 or sw == 2)
    flo = _lo(-pw, sw, wo)
    fhi = _hi(2 * dw - pw, sw, wd, wo, flo)
    with nogil:
        for p in prange(n * o, schedule="static", num_threads=nt):
            bi = p // o
            oc = p % o
            ic = oc // m
            bias = b[oc] if has_bias else 0
            xp = &x[bi, ic, 0, 0]
            wp = &w[oc, 0, 0, 0]
            for oh in range(ho):
                yrow = &y[bi, oc, oh, 0]
                ih = oh * sh - ph
                if fuse and ih >= 0 and ih + 2 * dh < h:
                    x0 = xp + ih * wd
                    x1 = x0 + dh * wd
                    x2 = x1 + dh * wd
                    w0 = wp[0]
                    w1 = wp[1]
                    w2 = wp[2]
                    w3 = wp[3]
                    w4 = wp[4]
                    w5 = wp[5]
                    w6 = wp[6]
                    w7 = wp[7]
                    w8 = wp[8]
                    # x0/x1/x2 shifted so that column ow reads ow, ow + dw, ow + 2*dw
                    x0 = x0 - pw
                    x1 = x1 - pw
                    x2 = x2 - pw
                    if sw == 1:
                        for ow in range(flo, fhi):
                            yrow[ow] = bias + (
                                (w0 * x0[ow] + w1 * x0[ow + dw] + w2 * x0[ow + 2 * dw])
                                + (w3 * x1[ow] + w4 * x1[ow + dw] + w5 * x1[ow + 2 * dw])
                                + (w6 * x2[ow] + w7 * x2[ow + dw] + w8 * x2[ow + 2 * dw]))
                    else:
                        for ow in range(flo, fhi):
                            yrow[ow] = bias + (
                                (w0 * x0[2 * ow] + w1 * x0[2 * ow + dw]
                                 + w2 * x0[2 * ow + 2 * dw])
                                + (w3 * x1[2 * ow] + w4 * x1[2 * ow + dw]
                                   + w5 * x1[2 * ow + 2 * dw])
                                + (w6 * x2[2 * ow] + w7 * x2[2 * ow + dw]
                                   + w8 * x2[2 * ow + 2 * dw]))
                    for ow in range(flo):
                        yrow[ow] = bias + _edge(xp, wp, h, wd, 3, 3, ih, ow * sw - pw, dh, dw)
                    for ow in range(fhi, wo):
                        yrow[ow] = bias + _edge(xp, wp, h, wd, 3, 3, ih, ow * sw - pw, dh, dw)
                    continue
                for ow in range(wo):
                    yrow[ow] = bias
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    xrow = &x[bi, ic, ih, 0]
                    for j in range(kw):
                        off = j * dw - pw
                        lo = _lo(off, sw, wo)
                        hi = _hi(off, sw, wd, wo, lo)
                        wv = w[oc, 0, i, j]
                        if sw == 1:
                            for ow in range(lo, hi):
                                yrow[ow] += wv * xrow[ow + off]
                        else:
                            for ow in range(lo, hi):
                                yrow[ow] += wv * xrow[ow * sw + off]


def _backward_x(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w, real[:, :, :, ::1] gx,
                int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t p, bi, ic, mm, oc, oh, ow, i, j, ih, iw, off, lo, hi
    cdef real wv
    cdef const real* gyrow
    cdef real* gxrow
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil:
        for p in prange(n * c, schedule="static", num_threads=nt):
            bi = p // c
            ic = p % c
            for ih in range(h):
                for iw in range(wd):
                    gx[bi, ic, ih, iw] = 0
            for mm in range(m):
                oc = ic * m + mm
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        gxrow = &gx[bi, ic, ih, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            wv = w[oc, 0, i, j]
                            if sw == 1:
                                for ow in range(lo, hi):
                                    gxrow[ow + off] += wv * gyrow[ow]
                            else:
                                for ow in range(lo, hi):
                                    gxrow[ow * sw + off] += wv * gyrow[ow]


cdef inline void _edge_w(real* acc, const real* xp, real g, Py_ssize_t wd, Py_ssize_t wo,
                         Py_ssize_t ow, Py_ssize_t iw0, Py_ssize_t dh,
                         Py_ssize_t dw) noexcept nogil:
    """Border column ow of an inside row (3x3, stride 1 or 2): add g * x to each tap's
    accumulator whose input column iw0 + j*dw is inside; xp is input row 0 of the tap."""
    cdef Py_ssize_t i, j, iw
    for i in range(3):
        for j in range(3):
            iw = iw0 + j * dw
            if 0 <= iw < wd:
                acc[(i * 3 + j) * wo + ow] += g * xp[i * dh * wd + iw]


def _backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x, real[:, :, :, ::1] gw,
                int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t oc, ic, bi, oh, ow, i, j, ih, off, lo, hi, t
    cdef real* acc = NULL
    cdef real* a
    cdef const real* gyrow
    cdef const real* xrow
    cdef real s
    cdef const real* x0
    cdef const real* x1
    cdef const real* x2
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    cdef bint fuse = kh == 3 and kw == 3 and (sh == 1 or sh == 2) and (sw == 1 or sw == 2)
    cdef Py_ssize_t flo = _lo(-pw, sw, wo)
    cdef Py_ssize_t fhi = _hi(2 * dw - pw, sw, wd, wo, flo)
    with nogil, parallel(num_threads=nt):
        # elementwise accumulators per tap and column, summed at the end: the inner
        # loop vectorises without reassociating a reduction
        acc = <real*>calloc(kh * kw * wo + 1, sizeof(real))
        for oc in prange(o, schedule="static"):
            ic = oc // m
            for t in range(kh * kw * wo):
                acc[t] = 0
            for bi in range(n):
                for oh in range(ho):
                    gyrow = &gy[bi, oc, oh, 0]
                    ih = oh * sh - ph
                    if fuse and ih >= 0 and ih + 2 * dh < h:
                        # as in _forward: the nine taps of an inside row in one pass over
                        # [flo, fhi); tap (i, j) reads x row ih + i*dh at column
                        # ow + j*dw - pw; border columns check each tap (_edge_w)
                        x0 = &x[bi, ic, ih, 0] - pw
                        x1 = x0 + dh * wd
                        x2 = x1 + dh * wd
                        for t in range(9):
                            # one loop per tap: one accumulator stream, so the compiler's
                            # runtime alias check passes and the loop runs vectorised
                            a = acc + t * wo
                            xrow = x0 + (t // 3) * dh * wd + (t % 3) * dw
                            if sw == 1:
                                for ow in range(flo, fhi):
                                    a[ow] += gyrow[ow] * xrow[ow]
                            else:
                                for ow in range(flo, fhi):
                                    a[ow] += gyrow[ow] * xrow[2 * ow]
                        for ow in range(flo):
                            _edge_w(acc, x0 + pw, gyrow[ow], wd, wo, ow, ow * sw - pw, dh, dw)
                        for ow in range(fhi, wo):
                            _edge_w(acc, x0 + pw, gyrow[ow], wd, wo, ow, ow * sw - pw, dh, dw)
                        continue
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        xrow = &x[bi, ic, ih, 0]
                        for j in range(kw):
                            off = j * dw - pw
                            lo = _lo(off, sw, wo)
                            hi = _hi(off, sw, wd, wo, lo)
                            a = acc + (i * kw + j) * wo
                            for ow in range(lo, hi):
                                a[ow] += gyrow[ow] * xrow[ow * sw + off]
            for i in range(kh):
                for j in range(kw):
                    s = 0
                    a = acc + (i * kw + j) * wo
                    for ow in range(wo):
                        s = s + a[ow]
                    gw[oc, 0, i, j] = s
        free(acc)


# ---------------------------------------------------------------------------------------
# Phase planes (dilation 1, any stride and kernel size). Each (image, channel) plane is
# padded and split once into sh*sw phase planes P[a, b][u, v] = xpad[u*sh + a, v*sw + b]
# (zeros where xpad is padding), each (Hq, Wq) with one slack row. Tap (i, j) of output
# pixel (oh, ow) reads P[i % sh, j % sw][oh + i // sh, ow + j // sw]: over the flat index
# t = oh*Wq + ow every tap is a contiguous, unit-stride stream at a fixed offset, for
# stride 2 as for stride 1, with no border tests; the inner loops run along t (whole
# planes, not short rows) and vectorise. The output is computed with row pitch Wq (the
# columns past wo are discarded). The weight gradient runs the same streams against the
# output gradient laid out with pitch Wq (zeros past wo); the input gradient splits its
# planes by output phase: phase (a, b) of the padded input gradient is a small stride-1
# correlation of the output gradient with the taps i = a + sh*i', j = b + sw*j' (the
# transposed convolution as sh*sw sub-pixel convolutions, no scatter).

cdef inline Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline void _split(const real* xp, real* P, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ph,
                        Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t Hq,
                        Py_ssize_t Wq) noexcept nogil:
    """Write the image part of every phase plane (the padding part stays zero)."""
    if real is float:
        tg_dw_split_f(xp, P, h, wd, ph, pw, sh, sw, Hq, Wq)
    else:
        tg_dw_split_d(xp, P, h, wd, ph, pw, sh, sw, Hq, Wq)


cdef inline void _plane_wgrad(const real* xp, const real* gp, real* P, real* G,
                              const Py_ssize_t* offs, Py_ssize_t h, Py_ssize_t wd,
                              Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                              Py_ssize_t Hq, Py_ssize_t Wq, Py_ssize_t kh, Py_ssize_t kw,
                              Py_ssize_t ho, Py_ssize_t wo, real* acc) noexcept nogil:
    """Add one plane's weight gradient to ``acc``: the input plane split into its phase
    planes ``P``, then the output gradient's rows (copied to the planes' row pitch in ``G``
    where it differs) dotted with each tap's shifted plane."""
    cdef Py_ssize_t oh, L = ho * Wq
    _split(xp, P, h, wd, ph, pw, sh, sw, Hq, Wq)
    if _wband(gp, P, Hq * Wq, Wq, sh, sw, kh, kw, ho, wo, acc):
        return
    if Wq == wo:
        _dots(gp, P, offs, kh * kw, L, acc)
        return
    for oh in range(ho):
        _copy(G + oh * Wq, gp + oh * wo, wo)
    _dots(G, P, offs, kh * kw, L, acc)


def _phase_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b,
                   real[:, :, :, ::1] y, bint has_bias, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], m = o // c
    cdef Py_ssize_t Hq = _cdiv(h + 2 * ph, sh) + 1, Wq = _cdiv(wd + 2 * pw, sw)
    cdef Py_ssize_t plane = Hq * Wq, L = ho * Wq, kk = kh * kw
    cdef Py_ssize_t p, bi, oc, ic, ii, jj, oh, ow
    cdef Py_ssize_t* last = NULL
    cdef Py_ssize_t* offs = NULL
    cdef real* P = NULL
    cdef real* acc = NULL
    cdef real* yp
    cdef real bias
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil, parallel(num_threads=nt):
        P = <real*>calloc(sh * sw * plane + 1, sizeof(real))
        acc = <real*>malloc((L + 1) * sizeof(real))
        last = <Py_ssize_t*>malloc(sizeof(Py_ssize_t))
        offs = <Py_ssize_t*>malloc((kk + 1) * sizeof(Py_ssize_t))
        last[0] = -1  # the plane split in P (kept across this thread's tasks: M > 1)
        for ii in range(kh):  # tap (ii, jj): its phase plane and its offset in it
            for jj in range(kw):
                offs[ii * kw + jj] = ((ii % sh) * sw + jj % sw) * plane + (ii // sh) * Wq + jj // sw
        for p in prange(n * o, schedule="static"):
            bi = p // o
            oc = p % o
            ic = oc // m
            if bi * c + ic != last[0]:
                _split(&x[bi, ic, 0, 0], P, h, wd, ph, pw, sh, sw, Hq, Wq)
                last[0] = bi * c + ic
            bias = b[oc] if has_bias else 0
            yp = &y[bi, oc, 0, 0]
            if _band(P, plane, Wq, sh, sw, kh, kw, &w[oc, 0, 0, 0], ho, wo, bias, yp):
                continue
            if Wq == wo:  # no discarded columns: straight into the output plane
                _conv(P, plane, Wq, sh, sw, kh, kw, offs, &w[oc, 0, 0, 0], L, bias, yp)
                continue
            _conv(P, plane, Wq, sh, sw, kh, kw, offs, &w[oc, 0, 0, 0], L, bias, acc)
            for oh in range(ho):
                _copy(yp + oh * wo, acc + oh * Wq, wo)
        free(P)
        free(acc)
        free(last)
        free(offs)


cdef enum:
    _CB_IMAGES = 8  # images per weight-gradient task (fixed: the sums do not depend on the team)


cdef enum:
    _LANES = 16  # weight-gradient partial sums per tap: 64 bytes of floats (8 of doubles)


def _phase_backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                      real[:, :, :, ::1] gw, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t Hq = _cdiv(h + 2 * ph, sh) + 1, Wq = _cdiv(wd + 2 * pw, sw)
    cdef Py_ssize_t plane = Hq * Wq, L = ho * Wq, kk = kh * kw
    cdef Py_ssize_t lanes = _LANES if real is float else _LANES // 2
    cdef Py_ssize_t nb = _cdiv(o, _LANES), nk = _cdiv(n, _CB_IMAGES)
    cdef Py_ssize_t p, ob, k, oc, ic, bi, i, ii, jj, t, l, oh
    cdef real* part = <real*>calloc(nk * o * kk * _LANES + 1, sizeof(real))
    cdef real* P = NULL
    cdef real* G = NULL
    cdef real* acc
    cdef Py_ssize_t* offs = NULL
    cdef real s
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    if part == NULL:
        raise MemoryError("depthwise_conv2d (direct) backward: weight-gradient partial sums")
    with nogil, parallel(num_threads=nt):
        # a task takes _LANES output channels and a group of _CB_IMAGES images, image by
        # image (the block's planes lie together in memory: a contiguous stream, where one
        # channel over every image would read a page per plane); per channel and tap, one
        # partial sum per vector lane (_dots: the flat index t adds to lane t mod lanes; no
        # reassociation inside a lane) in the task's own slot, no atomics; the end adds the
        # groups in image order, then the lanes in order, whatever the team
        P = <real*>calloc(sh * sw * plane + 1, sizeof(real))
        G = <real*>calloc(L + 1, sizeof(real))
        offs = <Py_ssize_t*>malloc((kk + 1) * sizeof(Py_ssize_t))
        for ii in range(kh):
            for jj in range(kw):
                offs[ii * kw + jj] = ((ii % sh) * sw + jj % sw) * plane + (ii // sh) * Wq + jj // sw
        for p in prange(nb * nk, schedule="static"):
            ob = p // nk
            k = p % nk
            for bi in range(k * _CB_IMAGES, min(n, (k + 1) * _CB_IMAGES)):
                for oc in range(ob * _LANES, min(o, (ob + 1) * _LANES)):
                    ic = oc // m
                    acc = part + (k * o + oc) * kk * _LANES
                    _plane_wgrad(&x[bi, ic, 0, 0], &gy[bi, oc, 0, 0], P, G, offs, h, wd, ph,
                                 pw, sh, sw, Hq, Wq, kh, kw, ho, wo, acc)
        free(P)
        free(G)
        free(offs)
    with nogil:
        for oc in range(o):
            for i in range(kk):
                s = 0
                for k in range(nk):
                    acc = part + (k * o + oc) * kk * _LANES + i * lanes
                    for l in range(lanes):
                        s = s + acc[l]
                gw[oc, 0, i // kw, i % kw] = s
    free(part)


def _phase_backward_x(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w,
                      real[:, :, :, ::1] gx, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t qh = (kh - 1) // sh, qw = (kw - 1) // sw
    cdef Py_ssize_t U = _cdiv(h + 2 * ph, sh), V = _cdiv(wd + 2 * pw, sw)
    cdef Py_ssize_t Wg = V + qw, L = U * Wg
    cdef Py_ssize_t p, bi, ic, mm, oc, a, bb, i, j, t, u, v, u0, u1, v0, v1, oh, ow
    cdef real* G = NULL
    cdef real* Q = NULL
    cdef real* X = NULL
    cdef real* wts = NULL
    cdef Py_ssize_t* offs = NULL
    cdef real* gxp
    cdef real* g
    cdef const real* gp
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil, parallel(num_threads=nt):
        # one slack row: the columns past V of the last row read past the plane
        G = <real*>calloc(m * (U + qh) * Wg + Wg + 1, sizeof(real))
        Q = <real*>malloc((L + 1) * sizeof(real))
        X = <real*>malloc((h * wd + 1) * sizeof(real))
        wts = <real*>malloc((m * kh * kw + 1) * sizeof(real))
        offs = <Py_ssize_t*>malloc((m * kh * kw + 1) * sizeof(Py_ssize_t))
        for p in prange(n * c, schedule="static"):
            bi = p // c
            ic = p % c
            for mm in range(m):  # each output gradient plane, padded by (qh, qw) top-left
                g = G + mm * (U + qh) * Wg
                gp = &gy[bi, ic * m + mm, 0, 0]
                for oh in range(ho):
                    _copy(g + (oh + qh) * Wg + qw, gp + oh * wo, wo)
            # the phases interleave in X (cache-resident), then one contiguous copy to gx
            gxp = X if sw > 1 else &gx[bi, ic, 0, 0]
            for a in range(sh):
                u0 = _cdiv(ph - a, sh) if ph > a else 0
                u1 = _cdiv(h + ph - a, sh)
                for bb in range(sw):
                    v0 = _cdiv(pw - bb, sw) if pw > bb else 0
                    v1 = _cdiv(wd + pw - bb, sw)
                    if u1 <= u0 or v1 <= v0:
                        continue
                    t = 0  # the taps landing on this phase (none: stride > kernel)
                    for mm in range(m):
                        oc = ic * m + mm
                        for i in range(_cdiv(kh - a, sh)):  # taps a + sh*i, bb + sw*j
                            for j in range(_cdiv(kw - bb, sw)):
                                wts[t] = w[oc, 0, a + sh * i, bb + sw * j]
                                offs[t] = mm * (U + qh) * Wg + (qh - i) * Wg + qw - j
                                t = t + 1
                    _lincomb(G, offs, wts, t, L, 0, Q)
                    for u in range(u0, u1):
                        g = gxp + (u * sh + a - ph) * wd + bb - pw
                        if sw == 1:
                            _copy(g + v0, Q + u * Wg + v0, v1 - v0)
                        else:
                            for v in range(v0, v1):
                                g[v * sw] = Q[u * Wg + v]
            if sw > 1:
                _copy(&gx[bi, ic, 0, 0], X, h * wd)
        free(G)
        free(Q)
        free(X)
        free(wts)
        free(offs)


def _phase_backward_all(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                        const real[:, :, :, ::1] wf, real[:, :, :, ::1] gx,
                        real[:, :, :, ::1] gw, real[::1] gb, bint need_x, bint need_w,
                        bint need_b, int ph, int pw):
    """The stride-1 backward of a multiplier-1 call on phase planes, every gradient asked
    for in one pass over gy and x (separately the input gradient, the weight gradient and
    the bias gradient would each read all of gy). Tasks as _phase_backward_w's (_LANES
    channels x _CB_IMAGES images, image by image): per (image, channel) plane, the weight
    gradient exactly as _phase_backward_w computes it (the same bits), the bias gradient as
    one partial sum per lane (each lane's pixels in order, then the groups in image order,
    then the lanes), and the input gradient as _phase_forward of the output-gradient plane
    (padded by k - 1 - padding) with the flipped filter wf, the plane still in cache."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t kh = wf.shape[2], kw = wf.shape[3], kk = kh * kw
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t qh = kh - 1 - ph, qw = kw - 1 - pw
    cdef Py_ssize_t Hq = h + 2 * ph + 1, Wq = wd + 2 * pw, plane = Hq * Wq, L = ho * Wq
    cdef Py_ssize_t Hg = ho + 2 * qh + 1, Wg = wo + 2 * qw, gplane = Hg * Wg, Lg = h * Wg
    cdef Py_ssize_t lanes = _LANES if real is float else _LANES // 2
    cdef Py_ssize_t nb = _cdiv(c, _LANES), nk = _cdiv(n, _CB_IMAGES), slot = (kk + 1) * _LANES
    cdef Py_ssize_t p, ob, k, oc, bi, i, ii, jj, l, oh
    cdef real* part = <real*>calloc(nk * c * slot + 1, sizeof(real))
    cdef real* P = NULL
    cdef real* Q = NULL
    cdef real* G = NULL
    cdef real* A = NULL
    cdef real* acc
    cdef real* gxp
    cdef Py_ssize_t* offs = NULL
    cdef Py_ssize_t* goffs = NULL
    cdef const real* gp
    cdef real s
    cdef int nt = _team((need_x + need_w) * n * c * ho * wo * kk + need_b * n * c * ho * wo)
    if part == NULL:
        raise MemoryError("depthwise_conv2d (direct) backward: gradient partial sums")
    with nogil, parallel(num_threads=nt):
        P = <real*>calloc(plane + 1, sizeof(real))  # the input plane padded (ph, pw)
        Q = <real*>calloc(gplane + 1, sizeof(real))  # the output-gradient plane padded (qh, qw)
        G = <real*>calloc(L + 1, sizeof(real))
        A = <real*>malloc((Lg + 1) * sizeof(real))
        offs = <Py_ssize_t*>malloc((kk + 1) * sizeof(Py_ssize_t))
        goffs = <Py_ssize_t*>malloc((kk + 1) * sizeof(Py_ssize_t))
        for ii in range(kh):
            for jj in range(kw):
                offs[ii * kw + jj] = ii * Wq + jj
                goffs[ii * kw + jj] = ii * Wg + jj
        for p in prange(nb * nk, schedule="static"):
            ob = p // nk
            k = p % nk
            for bi in range(k * _CB_IMAGES, min(n, (k + 1) * _CB_IMAGES)):
                for oc in range(ob * _LANES, min(c, (ob + 1) * _LANES)):
                    acc = part + (k * c + oc) * slot
                    gp = &gy[bi, oc, 0, 0]
                    if need_b:
                        _lanesum(gp, ho * wo, acc + kk * lanes)
                    if need_x:
                        _split(gp, Q, ho, wo, qh, qw, 1, 1, Hg, Wg)
                        gxp = &gx[bi, oc, 0, 0]
                        if not _band(Q, gplane, Wg, 1, 1, kh, kw, &wf[oc, 0, 0, 0], h, wd, 0, gxp):
                            if Wg == wd:
                                _conv(Q, gplane, Wg, 1, 1, kh, kw, goffs, &wf[oc, 0, 0, 0], Lg,
                                      0, gxp)
                            else:
                                _conv(Q, gplane, Wg, 1, 1, kh, kw, goffs, &wf[oc, 0, 0, 0], Lg,
                                      0, A)
                                for oh in range(h):
                                    _copy(gxp + oh * wd, A + oh * Wg, wd)
                    if need_w:
                        _plane_wgrad(&x[bi, oc, 0, 0], gp, P, G, offs, h, wd, ph, pw, 1, 1, Hq,
                                     Wq, kh, kw, ho, wo, acc)
        free(P)
        free(Q)
        free(G)
        free(A)
        free(offs)
        free(goffs)
    with nogil:
        for oc in range(c):
            for i in range(kk + 1):
                if (i < kk and not need_w) or (i == kk and not need_b):
                    continue
                s = 0
                for k in range(nk):
                    acc = part + (k * c + oc) * slot + i * lanes
                    for l in range(lanes):
                        s = s + acc[l]
                if i < kk:
                    gw[oc, 0, i // kw, i % kw] = s
                else:
                    gb[oc] = s
    free(part)


cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)


cdef inline void* _alloc64(size_t nbytes, bint zero) noexcept nogil:
    """nbytes on a 64-byte boundary (zeroed if zero), NULL if out of memory; free() frees it.
    The channel blocks' buffers: every vector load and store in them is a whole aligned
    64-byte line (malloc's 16-byte alignment splits each across two lines)."""
    cdef void* p = NULL
    if posix_memalign(&p, 64, nbytes if nbytes > 0 else 64) != 0:
        return NULL
    if zero:
        memset(p, 0, nbytes)
    return p


# ---------------------------------------------------------------------------------------
# Channel-blocked planes (dilation 1, small output planes): a task takes a block of V
# channels (16 floats or 8 doubles: one 64-byte vector) of one image, interleaves their
# padded planes pixel by pixel in a cache-resident buffer, runs the taps as vector
# multiply-adds across the V channels, and writes each channel's plane back. The lanes past
# the channel count read zeros and are not written.

cdef inline void _cbin(const real** src, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t top,
                       Py_ssize_t left, Py_ssize_t Wb, real* B) noexcept nogil:
    if real is float:
        tg_dw_cbin_f(src, h, wd, top, left, Wb, B)
    else:
        tg_dw_cbin_d(src, h, wd, top, left, Wb, B)


cdef inline void _cbout(const real* B, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t top,
                        Py_ssize_t left, Py_ssize_t Wb, real** dst) noexcept nogil:
    if real is float:
        tg_dw_cbout_f(B, h, wd, top, left, Wb, dst)
    else:
        tg_dw_cbout_d(B, h, wd, top, left, Wb, dst)


cdef inline void _cbfwd(const real* B, const real* w, const real* bias, Py_ssize_t Wb,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ho,
                        Py_ssize_t wo, real* Y) noexcept nogil:
    if real is float:
        tg_dw_cbfwd_f(B, w, bias, Wb, kh, kw, sh, sw, ho, wo, Y)
    else:
        tg_dw_cbfwd_d(B, w, bias, Wb, kh, kw, sh, sw, ho, wo, Y)


cdef inline void _cbgx(const real* Gp, Py_ssize_t Wg, Py_ssize_t PT, Py_ssize_t PL, const real* w,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                       Py_ssize_t pw, Py_ssize_t h, Py_ssize_t wd, bint add,
                       real* GX) noexcept nogil:
    if real is float:
        tg_dw_cbgx_f(Gp, Wg, PT, PL, w, kh, kw, sh, sw, ph, pw, h, wd, add, GX)
    else:
        tg_dw_cbgx_d(Gp, Wg, PT, PL, w, kh, kw, sh, sw, ph, pw, h, wd, add, GX)


cdef inline void _cbwg(const real* G, Py_ssize_t gp, const real* B, Py_ssize_t Wb, Py_ssize_t kh,
                       Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ho, Py_ssize_t wo,
                       real* acc) noexcept nogil:
    if real is float:
        tg_dw_cbwg_f(G, gp, B, Wb, kh, kw, sh, sw, ho, wo, acc)
    else:
        tg_dw_cbwg_d(G, gp, B, Wb, kh, kw, sh, sw, ho, wo, acc)


cdef inline Py_ssize_t _gpad(Py_ssize_t k, Py_ssize_t s) noexcept nogil:
    """Zero rows (columns) before the output-gradient block of the gathered input gradient:
    the most taps of one phase, less one."""
    return (k - 1) // s


cdef inline Py_ssize_t _gspan(Py_ssize_t k, Py_ssize_t s, Py_ssize_t p, Py_ssize_t n,
                              Py_ssize_t no) noexcept nogil:
    """Rows (columns) of the padded output-gradient block: the zeros before it, then the
    output rows or the rows the input's last phase row reads, whichever reach further."""
    cdef Py_ssize_t r = (n - 1 + p) // s + 1
    return _gpad(k, s) + (r if r > no else no)


cdef inline real _cb_total(const real* part, Py_ssize_t nk, Py_ssize_t stride, Py_ssize_t V,
                           Py_ssize_t oc, Py_ssize_t t) noexcept nogil:
    """Output channel oc's tap t (lane oc % V of block oc // V) summed over its nk image
    groups in order; part holds stride*V values per (block, group) task."""
    cdef Py_ssize_t k
    cdef const real* q = part + ((oc // V) * nk * stride + t) * V + oc % V
    cdef real s = 0
    for k in range(nk):
        s = s + q[k * stride * V]
    return s


cdef inline void _cb_lanes(const real[:, :, :, ::1] w, real* W, Py_ssize_t c0, Py_ssize_t step,
                           Py_ssize_t cnt, Py_ssize_t V) noexcept nogil:
    """W[t * V + l] = tap t of filter c0 + l * step (zero past cnt lanes)."""
    cdef Py_ssize_t kw = w.shape[3], t, l
    for t in range(w.shape[2] * kw):
        for l in range(V):
            W[t * V + l] = w[c0 + l * step, 0, t // kw, t % kw] if l < cnt else 0


cdef inline void _cb_sources(const real* xb, Py_ssize_t o0, Py_ssize_t cnt, Py_ssize_t m,
                             Py_ssize_t plane, Py_ssize_t V, const real** src) noexcept nogil:
    """src[l] = the input plane of output channel o0 + l, channel (o0 + l) // m of the image
    at xb (NULL past cnt lanes), without a division per lane."""
    cdef Py_ssize_t l, ci = o0 // m, r = o0 % m
    for l in range(V):
        if l < cnt:
            src[l] = xb + ci * plane
            r += 1
            if r == m:
                r = 0
                ci += 1
        else:
            src[l] = NULL


def _cb_forward(const real[:, :, :, ::1] x, const real[:, :, :, ::1] w, const real[::1] b,
                real[:, :, :, ::1] y, bint has_bias, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3], m = o // c
    cdef Py_ssize_t V = 16 if real is float else 8, kk = kh * kw, WS = (kk + 1) * V
    cdef Py_ssize_t nb = _cdiv(o, V), Hb = h + 2 * ph, Wb = wd + 2 * pw
    cdef Py_ssize_t p, bi, ob, o0, cnt, l, q, o1, c1
    cdef real* B = NULL
    cdef real* Y = NULL
    cdef real* W = NULL
    cdef const real** src = NULL
    cdef real** dst = NULL
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    # every block's tap and bias lanes, laid out once: the tasks run image-major, so
    # consecutive tasks take different blocks
    cdef real* Wall = <real*>_alloc64((nb * WS + 1) * sizeof(real), 0)
    if Wall == NULL:
        raise MemoryError("depthwise_conv2d (direct): channel-block weights")
    with nogil:
        for ob in range(nb):
            o0 = ob * V
            cnt = o - o0 if o - o0 < V else V
            _cb_lanes(w, Wall + ob * WS, o0, 1, cnt, V)
            for l in range(V):
                Wall[ob * WS + kk * V + l] = b[o0 + l] if has_bias and l < cnt else 0
    with nogil, parallel(num_threads=nt):
        B = <real*>_alloc64((Hb * Wb * V + 1) * sizeof(real), 1)  # the padding stays zero
        Y = <real*>_alloc64((ho * wo * V + 1) * sizeof(real), 0)
        src = <const real**>malloc(V * sizeof(real*))
        dst = <real**>malloc(V * sizeof(real*))
        for p in prange(n * nb, schedule="static"):
            bi = p // nb
            ob = p % nb
            o0 = ob * V
            cnt = o - o0 if o - o0 < V else V
            W = Wall + ob * WS
            if p + 1 < n * nb:  # the next task's input and output blocks, one task ahead
                q = p + 1
                o1 = (q % nb) * V
                c1 = o - o1 if o - o1 < V else V
                tg_dw_pfblock(&x[q // nb, o1 // m, 0, 0],
                              ((o1 + c1 - 1) // m - o1 // m + 1) * h * wd * sizeof(real), 0)
                tg_dw_pfblock(&y[q // nb, o1, 0, 0], c1 * ho * wo * sizeof(real), 1)
            _cb_sources(&x[bi, 0, 0, 0], o0, cnt, m, h * wd, V, src)
            for l in range(V):
                dst[l] = &y[bi, o0 + l, 0, 0] if l < cnt else NULL
            _cbin(src, h, wd, ph, pw, Wb, B)
            _cbfwd(B, W, W + kk * V, Wb, kh, kw, sh, sw, ho, wo, Y)
            _cbout(Y, ho, wo, 0, 0, wo, dst)
        free(B)
        free(Y)
        free(src)
        free(dst)
    free(Wall)


def _cb_backward_x(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] w,
                   real[:, :, :, ::1] gx, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], wd = gx.shape[3]
    cdef Py_ssize_t o = w.shape[0], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t V = 16 if real is float else 8
    cdef Py_ssize_t nb = _cdiv(c, V), PT = _gpad(kh, sh), PL = _gpad(kw, sw)
    cdef Py_ssize_t Hg = _gspan(kh, sh, ph, h, ho), Wg = _gspan(kw, sw, pw, wd, wo)
    cdef Py_ssize_t p, bi, cb, c0, cnt, l, mm, q, o1, c1
    cdef real* GX = NULL
    cdef real* G = NULL
    cdef real* W = NULL
    cdef const real** src = NULL
    cdef real** dst = NULL
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    cdef Py_ssize_t kk = kh * kw
    # the tap lanes of every (block, mm), laid out once (not per task)
    cdef real* Wall = <real*>_alloc64((nb * m * kk * V + 1) * sizeof(real), 0)
    if Wall == NULL:
        raise MemoryError("depthwise_conv2d (direct) backward: channel-block weights")
    with nogil:
        for cb in range(nb):
            c0 = cb * V
            cnt = c - c0 if c - c0 < V else V
            for mm in range(m):
                _cb_lanes(w, Wall + (cb * m + mm) * kk * V, c0 * m + mm, m, cnt, V)
    with nogil, parallel(num_threads=nt):
        # the input gradient gathered phase by phase into a dense block (every pixel
        # written once), from the output-gradient block padded with zeros (they stay zero)
        GX = <real*>_alloc64((h * wd * V + 1) * sizeof(real), 0)
        G = <real*>_alloc64((Hg * Wg * V + 1) * sizeof(real), 1)
        src = <const real**>malloc(V * sizeof(real*))
        dst = <real**>malloc(V * sizeof(real*))
        for p in prange(n * nb, schedule="static"):
            bi = p // nb
            cb = p % nb
            c0 = cb * V
            cnt = c - c0 if c - c0 < V else V
            if p + 1 < n * nb:  # the next task's blocks, one task ahead
                q = p + 1
                o1 = (q % nb) * V
                c1 = c - o1 if c - o1 < V else V
                tg_dw_pfblock(&gy[q // nb, o1 * m, 0, 0], c1 * m * ho * wo * sizeof(real), 0)
                tg_dw_pfblock(&gx[q // nb, o1, 0, 0], c1 * h * wd * sizeof(real), 1)
            for mm in range(m):  # the output channels of input channel c0 + l: (c0 + l)*m + mm
                W = Wall + (cb * m + mm) * kk * V
                for l in range(V):
                    src[l] = &gy[bi, (c0 + l) * m + mm, 0, 0] if l < cnt else NULL
                _cbin(src, ho, wo, PT, PL, Wg, G)
                _cbgx(G, Wg, PT, PL, W, kh, kw, sh, sw, ph, pw, h, wd, mm > 0, GX)
            for l in range(V):
                dst[l] = &gx[bi, c0 + l, 0, 0] if l < cnt else NULL
            _cbout(GX, h, wd, 0, 0, wd, dst)
        free(GX)
        free(G)
        free(src)
        free(dst)
    free(Wall)


def _cb_backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                   real[:, :, :, ::1] gw, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t V = 16 if real is float else 8, kk = kh * kw
    cdef Py_ssize_t nb = _cdiv(o, V), nk = _cdiv(n, _CB_IMAGES), Hb = h + 2 * ph, Wb = wd + 2 * pw
    cdef Py_ssize_t p, bi, ob, o0, cnt, l, k, t, oc
    cdef real* part = <real*>_alloc64((nb * nk * kk * V + 1) * sizeof(real), 1)
    cdef real* B = NULL
    cdef real* G = NULL
    cdef const real** src = NULL
    cdef const real** gsrc = NULL
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    if part == NULL:
        raise MemoryError("depthwise_conv2d (direct) backward: weight-gradient partial sums")
    with nogil, parallel(num_threads=nt):
        # task (block, images k*_CB_IMAGES ...): one partial sum per lane and tap; the
        # tasks' sums are added in image order at the end
        B = <real*>_alloc64((Hb * Wb * V + 1) * sizeof(real), 1)
        G = <real*>_alloc64((ho * wo * V + 1) * sizeof(real), 0)
        src = <const real**>malloc(V * sizeof(real*))
        gsrc = <const real**>malloc(V * sizeof(real*))
        for p in prange(nb * nk, schedule="static"):
            ob = p // nk
            k = p % nk
            o0 = ob * V
            cnt = o - o0 if o - o0 < V else V
            for bi in range(k * _CB_IMAGES, min(n, (k + 1) * _CB_IMAGES)):
                if bi + 1 < min(n, (k + 1) * _CB_IMAGES):
                    tg_dw_pfblock(&gy[bi + 1, o0, 0, 0], cnt * ho * wo * sizeof(real), 0)
                    tg_dw_pfblock(&x[bi + 1, o0 // m, 0, 0],
                                  ((o0 + cnt - 1) // m - o0 // m + 1) * h * wd * sizeof(real), 0)
                _cb_sources(&x[bi, 0, 0, 0], o0, cnt, m, h * wd, V, src)
                for l in range(V):
                    gsrc[l] = &gy[bi, o0 + l, 0, 0] if l < cnt else NULL
                _cbin(src, h, wd, ph, pw, Wb, B)
                _cbin(gsrc, ho, wo, 0, 0, wo, G)
                _cbwg(G, wo, B, Wb, kh, kw, sh, sw, ho, wo, part + p * kk * V)
        free(B)
        free(G)
        free(src)
        free(gsrc)
    with nogil:
        for oc in range(o):
            for t in range(kk):
                gw[oc, 0, t // kw, t % kw] = _cb_total(part, nk, kk, V, oc, t)
    free(part)


def _cb_backward_all(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                     const real[:, :, :, ::1] w, real[:, :, :, ::1] gx, real[:, :, :, ::1] gw,
                     real[::1] gb, bint need_x, bint need_w, bint need_b, int sh, int sw,
                     int ph, int pw):
    """The whole backward of a multiplier-1 call on channel blocks in one pass: a task takes
    a block of V channels and a group of _CB_IMAGES images (the weight gradient's tasks) and,
    per image, interleaves the block's output-gradient planes once for the input gradient
    (written as _cb_backward_x writes it), the weight gradient (summed as _cb_backward_w
    sums it) and the bias gradient (each lane's pixels in order, then images in order), and
    its input planes once for the weight gradient. Each array is read or written once."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t V = 16 if real is float else 8, kk = kh * kw
    cdef Py_ssize_t nb = _cdiv(c, V), nk = _cdiv(n, _CB_IMAGES), Hb = h + 2 * ph, Wb = wd + 2 * pw
    cdef Py_ssize_t PT = _gpad(kh, sh), PL = _gpad(kw, sw)
    cdef Py_ssize_t Hg = _gspan(kh, sh, ph, h, ho), Wg = _gspan(kw, sw, pw, wd, wo)
    cdef Py_ssize_t p, bi, cb, c0, cnt, l, k, t, oc, nbi, nc0, ncnt
    cdef real* part = <real*>_alloc64((nb * nk * (kk + 1) * V + 1) * sizeof(real), 1)
    cdef real* B = NULL
    cdef real* G = NULL
    cdef real* GX = NULL
    cdef real* W = NULL
    cdef real* acc = NULL
    cdef const real** src = NULL
    cdef const real** gsrc = NULL
    cdef real** dst = NULL
    cdef int nt = _team(2 * n * c * ho * wo * kh * kw)
    if part == NULL:
        raise MemoryError("depthwise_conv2d (direct) backward: gradient partial sums")
    with nogil, parallel(num_threads=nt):
        B = <real*>_alloc64((Hb * Wb * V + 1) * sizeof(real), 1)  # the padding stays zero
        # the output-gradient block with the zeros the gathered input gradient reads around
        # it (the other passes read its interior with pitch Wg)
        G = <real*>_alloc64((Hg * Wg * V + 1) * sizeof(real), 1)
        GX = <real*>_alloc64((h * wd * V + 1) * sizeof(real), 0)
        W = <real*>_alloc64((kk * V + 1) * sizeof(real), 0)
        src = <const real**>malloc(V * sizeof(real*))
        gsrc = <const real**>malloc(V * sizeof(real*))
        dst = <real**>malloc(V * sizeof(real*))
        for p in prange(nb * nk, schedule="static"):
            cb = p // nk
            k = p % nk
            c0 = cb * V
            cnt = c - c0 if c - c0 < V else V
            acc = part + p * (kk + 1) * V  # kk taps, then the bias, V lanes each
            if need_x:
                _cb_lanes(w, W, c0, 1, cnt, V)
            for bi in range(k * _CB_IMAGES, min(n, (k + 1) * _CB_IMAGES)):
                # the next image's blocks, or after the group's last image the next task's
                # first (a call of one image group per block, batch 1, has no next image)
                nbi = bi + 1
                nc0 = c0
                ncnt = cnt
                if nbi >= min(n, (k + 1) * _CB_IMAGES):
                    nbi = -1
                    if p + 1 < nb * nk:
                        nc0 = ((p + 1) // nk) * V
                        nbi = ((p + 1) % nk) * _CB_IMAGES
                        ncnt = c - nc0 if c - nc0 < V else V
                if nbi >= 0:
                    tg_dw_pfblock(&gy[nbi, nc0, 0, 0], ncnt * ho * wo * sizeof(real), 0)
                    if need_w:
                        tg_dw_pfblock(&x[nbi, nc0, 0, 0], ncnt * h * wd * sizeof(real), 0)
                    if need_x:
                        tg_dw_pfblock(&gx[nbi, nc0, 0, 0], ncnt * h * wd * sizeof(real), 1)
                for l in range(V):
                    gsrc[l] = &gy[bi, c0 + l, 0, 0] if l < cnt else NULL
                _cbin(gsrc, ho, wo, PT, PL, Wg, G)
                if need_w:
                    for l in range(V):
                        src[l] = &x[bi, c0 + l, 0, 0] if l < cnt else NULL
                    _cbin(src, h, wd, ph, pw, Wb, B)
                    _cbwg(G + (PT * Wg + PL) * V, Wg, B, Wb, kh, kw, sh, sw, ho, wo, acc)
                if need_b:
                    if real is float:
                        tg_dw_cbsum_f(G + (PT * Wg + PL) * V, Wg, ho, wo, acc + kk * V)
                    else:
                        tg_dw_cbsum_d(G + (PT * Wg + PL) * V, Wg, ho, wo, acc + kk * V)
                if need_x:
                    _cbgx(G, Wg, PT, PL, W, kh, kw, sh, sw, ph, pw, h, wd, False, GX)
                    for l in range(V):
                        dst[l] = &gx[bi, c0 + l, 0, 0] if l < cnt else NULL
                    _cbout(GX, h, wd, 0, 0, wd, dst)
        free(B)
        free(G)
        free(GX)
        free(W)
        free(src)
        free(gsrc)
        free(dst)
    with nogil:
        for oc in range(c):
            for t in range(kk if need_w else 0):
                gw[oc, 0, t // kw, t % kw] = _cb_total(part, nk, kk + 1, V, oc, t)
            if need_b:
                gb[oc] = _cb_total(part, nk, kk + 1, V, oc, kk)
    free(part)


# widest output planes taking channel blocks, by stride: at stride 1 those narrower than one
# 64-byte vector of floats (a phase-plane row would leave most of its last vector idle), but
# 8 columns for doubles (8 per vector: from 9 columns on the phase planes were as fast or
# faster); at stride 2 and more every plane that fits
_CB_W = {"1": 15, "2": 1 << 30}
_CB_W_DOUBLE = 8  # stride 1, 8-byte floats (at most _CB_W["1"])
# largest padded input plane (pixels) a channel block keeps in cache: 130 x 130, a 128 x 128
# plane padded by 1, whose interleaved block of 16 floats is about the size of a 1 MB L2
_CB_PLANE = 16900
# stride-1 weight gradients of kernels up to 3x3 with outputs this wide take channel blocks
# only where their rows are not whole vector pairs (_full_rows) and on padded planes up to
# _CB_PLANE_S1 pixels (114 x 114, a 112 x 112 plane padded by 1); elsewhere the phase
# planes' one-pass backward (no transposes) was as fast as the channel blocks' one or faster
_PHASE_WG_W = 16
_CB_PLANE_S1 = 12996


def _full_rows(wo, itemsize):
    """True for output rows of two or more whole 64-byte vectors (32, 48, 64 ... floats):
    the phase planes' row kernels run two vectors at a time with no idle or repeated
    lanes there, and kept the stride-1 backward (narrower rows leave half their sums in
    flight, other widths repeat lanes in the row's last vectors)."""
    v = 64 // itemsize
    return wo >= 2 * v and wo % v == 0


def _blocked(x_shape, wo, stride, padding, weight=False, taps=0, itemsize=4):
    """Channel blocks for small planes: the weight gradient of every plane that fits (but
    stride-1 planes at least ``_PHASE_WG_W`` outputs wide for kernels of up to ``taps`` = 9
    only up to ``_CB_PLANE_S1`` padded pixels), the forward and input gradient at stride
    2 and more, and at stride 1 for output planes up to ``_CB_W["1"]`` columns wide
    (``_CB_W_DOUBLE`` for ``itemsize`` 8: the row kernels' vectors hold 16 floats or 8
    doubles)."""
    plane = (x_shape[2] + 2 * padding[0]) * (x_shape[3] + 2 * padding[1])
    if weight and tuple(stride) == (1, 1) and 0 < taps <= 9 and wo >= _PHASE_WG_W:
        return plane <= _CB_PLANE_S1 and not _full_rows(wo, itemsize)
    key = str(min(max(stride), 2))
    widest = _CB_W[key]
    if key == "1" and itemsize == 8:
        widest = min(widest, _CB_W_DOUBLE)
    return plane <= _CB_PLANE and (weight or wo <= widest)


def _phase_fused(x_shape, w_shape, wo, stride, padding, dilation, itemsize=4):
    """True for the calls whose backward runs in one pass on phase planes
    (``_phase_backward_all``): stride 1, dilation 1, one output channel per input channel,
    padding at most k - 1, and both gradients on phase planes (neither the input gradient
    nor the weight gradient on channel blocks, see ``_blocked``)."""
    kh, kw = w_shape[2], w_shape[3]
    return (
        tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and w_shape[0] == x_shape[1]
        and x_shape[0] > 0
        and padding[0] <= kh - 1
        and padding[1] <= kw - 1
        and not _blocked(x_shape, wo, stride, padding, itemsize=itemsize)
        and not _blocked(x_shape, wo, stride, padding, weight=True, taps=kh * kw, itemsize=itemsize)
    )


def _cb_all(x_shape, w_shape, wo, stride, padding, dilation, itemsize=4):
    """True for the calls whose backward runs in one pass on channel blocks
    (``_cb_backward_all``: the input, weight and bias gradients asked for, each plane
    interleaved once): dilation 1, one output channel per input channel, and the forward
    on channel blocks, or at stride 1 (padding at most k - 1, rows not whole vector pairs:
    ``_full_rows``) the weight gradient; the input gradient is then gathered on the
    channel blocks too, where alone it takes the phase planes (see ``_blocked``)."""
    if not (tuple(dilation) == (1, 1) and w_shape[0] == x_shape[1] and x_shape[0] > 0):
        return False
    if _blocked(x_shape, wo, stride, padding, itemsize=itemsize):
        return True
    taps = w_shape[2] * w_shape[3]
    return (
        tuple(stride) == (1, 1)
        and padding[0] <= w_shape[2] - 1
        and padding[1] <= w_shape[3] - 1
        and not _full_rows(wo, itemsize)
        and _blocked(x_shape, wo, stride, padding, weight=True, taps=taps, itemsize=itemsize)
    )


def _backward_cb(gy, x, w, stride, padding, need_x, need_w, need_b):
    """The one-pass channel-block backward (see ``_cb_all``): ``(gx, gw, gb)``, None for
    each gradient not asked for."""
    _check_backward(x, w, need_x, need_w)
    dummy = np.empty((1, 1, 1, 1), dtype=x.dtype)
    gx = _out(x.shape, x.dtype) if need_x else dummy
    gw = np.empty_like(w) if need_w else dummy
    gb = np.empty(x.shape[1], dtype=x.dtype) if need_b else np.empty(1, dtype=x.dtype)
    _cb_backward_all(gy, x, w, gx, gw, gb, need_x, need_w, need_b, *stride, *padding)
    return (gx if need_x else None), (gw if need_w else None), (gb if need_b else None)


def _backward_fused(gy, x, w, stride, padding, dilation, need_x, need_w, need_b):
    """The one-pass phase-plane backward (see ``_phase_fused``): ``(gx, gw, gb)``, None for
    each gradient not asked for."""
    _check_backward(x, w, need_x, need_w)
    dummy = np.empty((1, 1, 1, 1), dtype=x.dtype)
    gx = np.empty_like(x) if need_x else dummy
    gw = np.empty_like(w) if need_w else dummy
    gb = np.empty(x.shape[1], dtype=x.dtype) if need_b else np.empty(1, dtype=x.dtype)
    wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
    _phase_backward_all(gy, x, wf, gx, gw, gb, need_x, need_w, need_b, *padding)
    if need_w and not np.isfinite(gw).all():
        # as in backward: the phase planes multiply the zero padding columns of gy by image
        # values, so a non-finite input reaches every tap; recompute with the direct loops
        _backward_w(gy, x, gw, *stride, *padding, *dilation)
    return (gx if need_x else None), (gw if need_w else None), (gb if need_b else None)


def _out(shape, dtype) -> np.ndarray:
    """An uninitialised output (or input gradient) starting on a 64-byte boundary, for the
    channel blocks: their transposes write 64-byte vectors along each plane, which then
    never straddle two cache lines (NumPy's own large arrays start 16 bytes past one; the
    phase planes' row stores showed no difference)."""
    size = int(np.prod(shape))
    pad = 64 // np.dtype(dtype).itemsize
    raw = np.empty(size + pad, dtype=dtype)
    skip = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[skip : skip + size].reshape(shape)


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    shape = (n, o, ho, wo)
    check_fits("depthwise_conv2d (direct)", {"output": int(np.prod(shape)) * x.itemsize})
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    if dilation == (1, 1) and _blocked(x.shape, wo, stride, padding, itemsize=x.itemsize):
        y = _out(shape, x.dtype)
        _cb_forward(x, w, bb, y, b is not None, *stride, *padding)
    elif dilation == (1, 1):
        y = np.empty(shape, dtype=x.dtype)
        _phase_forward(x, w, bb, y, b is not None, *stride, *padding)
    else:
        y = np.empty(shape, dtype=x.dtype)
        _forward(x, w, bb, y, b is not None, *stride, *padding, *dilation)
    return y


def _check_backward(x, w, need_x, need_w):
    """The backward's memory check (the gradients it allocates), before any kernel."""
    check_fits(
        "depthwise_conv2d (direct) backward",
        {"input gradient": x.nbytes if need_x else 0, "weight gradient": w.nbytes if need_w else 0},
    )


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    if need_x and need_w and _cb_all(
        x.shape, w.shape, gy.shape[3], stride, padding, dilation, x.itemsize
    ):
        return _backward_cb(gy, x, w, stride, padding, True, True, False)[:2]
    if need_x and need_w and _phase_fused(
        x.shape, w.shape, gy.shape[3], stride, padding, dilation, x.itemsize
    ):
        return _backward_fused(gy, x, w, stride, padding, dilation, True, True, False)[:2]
    _check_backward(x, w, need_x, need_w)
    gx = gw = None
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    phase = dh == dw == 1
    if need_x:
        blocked = phase and _blocked(x.shape, gy.shape[3], stride, padding, itemsize=x.itemsize)
        gx = _out(x.shape, x.dtype) if blocked else np.empty_like(x)
        kh, kw = w.shape[2], w.shape[3]
        qh, qw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
        if blocked:
            _cb_backward_x(gy, w, gx, sh, sw, ph, pw)
        elif phase and sh == sw == 1 and w.shape[0] == x.shape[1] and qh >= 0 and qw >= 0:
            # stride 1, one output channel per input channel: the input gradient is the
            # forward convolution of gy with the flipped kernel and padding k - 1 - padding
            wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
            _phase_forward(gy, wf, np.zeros(1, dtype=gy.dtype), gx, False, 1, 1, qh, qw)
        elif phase:
            _phase_backward_x(gy, w, gx, sh, sw, ph, pw)
        else:
            _backward_x(gy, w, gx, *stride, *padding, *dilation)
    if need_w:
        gw = np.empty_like(w)
        # the phase planes' weight gradient multiplies the zero gradient of each row's
        # padding columns by image values: a NaN or an infinity in x reaches every tap.
        # Those products only add non-finite values, so a finite result is exact; a
        # non-finite one is recomputed with the direct loops (no pass over x to check it).
        # Channel blocks multiply the output gradient by the padded input only.
        taps = w.shape[2] * w.shape[3]
        if phase and _blocked(x.shape, gy.shape[3], stride, padding, weight=True, taps=taps,
                                   itemsize=x.itemsize):
            _cb_backward_w(gy, x, gw, sh, sw, ph, pw)
        elif phase:
            _phase_backward_w(gy, x, gw, sh, sw, ph, pw)
            if not np.isfinite(gw).all():
                _backward_w(gy, x, gw, *stride, *padding, *dilation)
        else:
            _backward_w(gy, x, gw, *stride, *padding, *dilation)
    return gx, gw


def backward_with_bias(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    """``backward`` plus the bias gradient: ``(gx, gw, gb)``. Calls with one output channel
    per input channel on channel blocks (see ``_cb_all``) or, at stride 1, on phase planes
    (see ``_phase_fused``) run every gradient asked for in one pass over ``gy`` and ``x``
    (``_cb_backward_all``, ``_phase_backward_all``); other calls run ``backward`` and return
    ``gb = None``, which the op then sums itself. (At stride 1 the channel blocks' gathered
    input gradient adds each pixel's taps in the order of the phase planes' flipped-filter
    forward that ``backward`` runs for it alone: the same bits.)"""
    if _phase_fused(x.shape, w.shape, gy.shape[3], stride, padding, dilation, x.itemsize):
        return _backward_fused(gy, x, w, stride, padding, dilation, need_x, need_w, True)
    if _cb_all(x.shape, w.shape, gy.shape[3], stride, padding, dilation, x.itemsize):
        return _backward_cb(gy, x, w, stride, padding, need_x, need_w, True)
    return (*backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w), None)
