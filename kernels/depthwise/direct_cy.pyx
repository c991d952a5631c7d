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
    #define TG_DW_CONV(T, S, V, K, ST, R)                                               \
    TG_DW_CLONES static int tg_dw_band##K##ST##_##S(const T* P, Py_ssize_t plane,        \
            Py_ssize_t Wq, const T* w, Py_ssize_t ho, Py_ssize_t wo, T bias, T* y) {     \
        const T* r[ST][ST];                                                             \
        T wk[K * K];                                                                    \
        Py_ssize_t rb, r0, c, cc, i, j, a, q, o;                                        \
        if (ho < R || wo < V) return 0;                                                 \
        for (i = 0; i < ST; i++)                                                        \
            for (j = 0; j < ST; j++) r[i][j] = P + (i * ST + j) * plane;                \
        for (i = 0; i < K * K; i++) wk[i] = w[i];                                       \
        for (rb = 0; rb < ho; rb += R) {                                                \
            r0 = rb + R <= ho ? rb : ho - R;                                            \
            for (c = 0; c < wo; c += V) {                                               \
                cc = c + V <= wo ? c : wo - V;                                          \
                const Py_ssize_t ti0 = r0 * Wq + cc;                                    \
                tg_dw_v##S acc[R];                                                      \
                _Pragma("GCC unroll 8")                                                 \
                for (o = 0; o < R; o++) { acc[o] = (tg_dw_v##S){0}; acc[o] += bias; }   \
                _Pragma("GCC unroll 16")                                                \
                for (q = 0; q < R + (K - 1) / ST; q++) {                                \
                    _Pragma("GCC unroll 4")                                             \
                    for (a = 0; a < ST; a++) {                                          \
                        _Pragma("GCC unroll 8")                                         \
                        for (j = 0; j < K; j++) {                                       \
                            tg_dw_v##S v = *(const tg_dw_u##S*)(                        \
                                r[a][j % ST] + q * Wq + j / ST + ti0);                  \
                            _Pragma("GCC unroll 8")                                     \
                            for (o = 0; o < R; o++) {                                   \
                                Py_ssize_t ti = (q - o) * ST + a;                       \
                                if (q >= o && ti < K) acc[o] += wk[ti * K + j] * v;     \
                            }                                                           \
                        }                                                               \
                    }                                                                   \
                }                                                                       \
                _Pragma("GCC unroll 8")                                                 \
                for (o = 0; o < R; o++)                                                 \
                    *(tg_dw_u##S*)(y + (r0 + o) * wo + cc) = acc[o];                    \
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
    TG_DW_SPLIT(float, f)
    TG_DW_SPLIT(double, d)
    TG_DW_CONV(float, f, 16, 3, 1, 4)
    TG_DW_CONV(float, f, 16, 3, 2, 4)
    TG_DW_CONV(float, f, 16, 5, 1, 3)
    TG_DW_CONV(float, f, 16, 5, 2, 3)
    TG_DW_CONV(double, d, 8, 3, 1, 4)
    TG_DW_CONV(double, d, 8, 3, 2, 4)
    TG_DW_CONV(double, d, 8, 5, 1, 3)
    TG_DW_CONV(double, d, 8, 5, 2, 3)
    /* half-width (32-byte) vectors for float planes 8 to 15 outputs wide */
    typedef float tg_dw_vh __attribute__((vector_size(32)));
    typedef float tg_dw_uh __attribute__((vector_size(32), aligned(4), may_alias));
    TG_DW_CONV(float, h, 8, 3, 1, 4)
    TG_DW_CONV(float, h, 8, 3, 2, 4)
    TG_DW_CONV(float, h, 8, 5, 1, 3)
    TG_DW_CONV(float, h, 8, 5, 2, 3)
    TG_DW_WGRAD(float, h, 8, 3, 1, 2)
    TG_DW_WGRAD(float, h, 8, 3, 2, 2)
    TG_DW_WGRAD(float, h, 8, 5, 1, 1)
    TG_DW_WGRAD(float, h, 8, 5, 2, 1)
    TG_DW_WGRAD(float, f, 16, 3, 1, 2)
    TG_DW_WGRAD(float, f, 16, 3, 2, 2)
    TG_DW_WGRAD(float, f, 16, 5, 1, 1)
    TG_DW_WGRAD(float, f, 16, 5, 2, 1)
    TG_DW_WGRAD(double, d, 8, 3, 1, 2)
    TG_DW_WGRAD(double, d, 8, 3, 2, 2)
    TG_DW_WGRAD(double, d, 8, 5, 1, 1)
    TG_DW_WGRAD(double, d, 8, 5, 2, 1)
    """
    void tg_dw_lincomb_f(const float* src, const Py_ssize_t* offs, const float* w,
                         Py_ssize_t nt, Py_ssize_t L, float bias, float* out) noexcept nogil
    void tg_dw_lincomb_d(const double* src, const Py_ssize_t* offs, const double* w,
                         Py_ssize_t nt, Py_ssize_t L, double bias, double* out) noexcept nogil
    void tg_dw_dots_f(const float* g, const float* P, const Py_ssize_t* offs, Py_ssize_t kk,
                      Py_ssize_t L, float* acc) noexcept nogil
    void tg_dw_dots_d(const double* g, const double* P, const Py_ssize_t* offs, Py_ssize_t kk,
                      Py_ssize_t L, double* acc) noexcept nogil
    int tg_dw_wband31_f(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_wband31_d(const double* gy, const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, double* acc) noexcept nogil
    int tg_dw_wband32_f(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_wband32_d(const double* gy, const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, double* acc) noexcept nogil
    int tg_dw_wband51_f(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_wband51_d(const double* gy, const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, double* acc) noexcept nogil
    int tg_dw_wband52_f(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_wband52_d(const double* gy, const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, double* acc) noexcept nogil
    int tg_dw_wband31_h(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_band31_h(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    int tg_dw_wband32_h(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_band32_h(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    int tg_dw_wband51_h(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_band51_h(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    int tg_dw_wband52_h(const float* gy, const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                           Py_ssize_t ho, Py_ssize_t wo, float* acc) noexcept nogil
    int tg_dw_band52_h(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    void tg_dw_copy_f(float* dst, const float* src, Py_ssize_t n) noexcept nogil
    void tg_dw_copy_d(double* dst, const double* src, Py_ssize_t n) noexcept nogil
    void tg_dw_split_f(const float* xp, float* P, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ph,
                       Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t Hq,
                       Py_ssize_t Wq) noexcept nogil
    void tg_dw_split_d(const double* xp, double* P, Py_ssize_t h, Py_ssize_t wd, Py_ssize_t ph,
                       Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t Hq,
                       Py_ssize_t Wq) noexcept nogil
    void tg_dw_conv31_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const float* w, Py_ssize_t L, float bias, float* out) noexcept nogil
    int tg_dw_band31_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    void tg_dw_conv31_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const double* w, Py_ssize_t L, double bias, double* out) noexcept nogil
    int tg_dw_band31_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq, const double* w,
                          Py_ssize_t ho, Py_ssize_t wo, double bias, double* y) noexcept nogil
    void tg_dw_conv32_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const float* w, Py_ssize_t L, float bias, float* out) noexcept nogil
    int tg_dw_band32_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    void tg_dw_conv32_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const double* w, Py_ssize_t L, double bias, double* out) noexcept nogil
    int tg_dw_band32_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq, const double* w,
                          Py_ssize_t ho, Py_ssize_t wo, double bias, double* y) noexcept nogil
    void tg_dw_conv51_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const float* w, Py_ssize_t L, float bias, float* out) noexcept nogil
    int tg_dw_band51_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    void tg_dw_conv51_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const double* w, Py_ssize_t L, double bias, double* out) noexcept nogil
    int tg_dw_band51_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq, const double* w,
                          Py_ssize_t ho, Py_ssize_t wo, double bias, double* y) noexcept nogil
    void tg_dw_conv52_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const float* w, Py_ssize_t L, float bias, float* out) noexcept nogil
    int tg_dw_band52_f(const float* P, Py_ssize_t plane, Py_ssize_t Wq, const float* w,
                          Py_ssize_t ho, Py_ssize_t wo, float bias, float* y) noexcept nogil
    void tg_dw_conv52_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq,
                          const double* w, Py_ssize_t L, double bias, double* out) noexcept nogil
    int tg_dw_band52_d(const double* P, Py_ssize_t plane, Py_ssize_t Wq, const double* w,
                          Py_ssize_t ho, Py_ssize_t wo, double bias, double* y) noexcept nogil


cdef inline void _copy(real* dst, const real* src, Py_ssize_t n) noexcept nogil:
    if real is float:
        tg_dw_copy_f(dst, src, n)
    else:
        tg_dw_copy_d(dst, src, n)


cdef inline void _lincomb(const real* src, const Py_ssize_t* offs, const real* w, Py_ssize_t nt,
                          Py_ssize_t L, real bias, real* out) noexcept nogil:
    if real is float:
        tg_dw_lincomb_f(src, offs, w, nt, L, bias, out)
    else:
        tg_dw_lincomb_d(src, offs, w, nt, L, bias, out)


cdef inline bint _band(const real* P, Py_ssize_t plane, Py_ssize_t Wq, Py_ssize_t sh,
                       Py_ssize_t sw, Py_ssize_t kh, Py_ssize_t kw, const real* w, Py_ssize_t ho,
                       Py_ssize_t wo, real bias, real* y) noexcept nogil:
    """The forward of one plane straight into the output plane y (3x3 and 5x5 at stride 1
    or 2, output rows at least one vector wide: 16 floats, or 8 with half-width vectors, or
    8 doubles); False when it does not apply."""
    cdef int key = (kh * 10 + sw) if kh == kw and sh == sw else 0
    if real is float:
        if key == 31:
            return (tg_dw_band31_f(P, plane, Wq, w, ho, wo, bias, y)
                    or tg_dw_band31_h(P, plane, Wq, w, ho, wo, bias, y))
        if key == 32:
            return (tg_dw_band32_f(P, plane, Wq, w, ho, wo, bias, y)
                    or tg_dw_band32_h(P, plane, Wq, w, ho, wo, bias, y))
        if key == 51:
            return (tg_dw_band51_f(P, plane, Wq, w, ho, wo, bias, y)
                    or tg_dw_band51_h(P, plane, Wq, w, ho, wo, bias, y))
        if key == 52:
            return (tg_dw_band52_f(P, plane, Wq, w, ho, wo, bias, y)
                    or tg_dw_band52_h(P, plane, Wq, w, ho, wo, bias, y))
    else:
        if key == 31:
            return tg_dw_band31_d(P, plane, Wq, w, ho, wo, bias, y)
        if key == 32:
            return tg_dw_band32_d(P, plane, Wq, w, ho, wo, bias, y)
        if key == 51:
            return tg_dw_band51_d(P, plane, Wq, w, ho, wo, bias, y)
        if key == 52:
            return tg_dw_band52_d(P, plane, Wq, w, ho, wo, bias, y)
    return False


cdef inline void _conv(const real* P, Py_ssize_t plane, Py_ssize_t Wq, Py_ssize_t sh,
                       Py_ssize_t sw, Py_ssize_t kh, Py_ssize_t kw, const Py_ssize_t* offs,
                       const real* w, Py_ssize_t L, real bias, real* out) noexcept nogil:
    """The forward of one plane from its phase planes P: the unrolled kernels for 3x3 and
    5x5 at stride 1 or 2 (the same along both axes), the tap list (offs) for the others."""
    cdef int key = (kh * 10 + sw) if kh == kw and sh == sw else 0
    if real is float:
        if key == 31:
            tg_dw_conv31_f(P, plane, Wq, w, L, bias, out)
        elif key == 32:
            tg_dw_conv32_f(P, plane, Wq, w, L, bias, out)
        elif key == 51:
            tg_dw_conv51_f(P, plane, Wq, w, L, bias, out)
        elif key == 52:
            tg_dw_conv52_f(P, plane, Wq, w, L, bias, out)
        else:
            tg_dw_lincomb_f(P, offs, w, kh * kw, L, bias, out)
    else:
        if key == 31:
            tg_dw_conv31_d(P, plane, Wq, w, L, bias, out)
        elif key == 32:
            tg_dw_conv32_d(P, plane, Wq, w, L, bias, out)
        elif key == 51:
            tg_dw_conv51_d(P, plane, Wq, w, L, bias, out)
        elif key == 52:
            tg_dw_conv52_d(P, plane, Wq, w, L, bias, out)
        else:
            tg_dw_lincomb_d(P, offs, w, kh * kw, L, bias, out)


cdef inline bint _wband(const real* gy, const real* P, Py_ssize_t plane, Py_ssize_t Wq,
                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t kh, Py_ssize_t kw,
                        Py_ssize_t ho, Py_ssize_t wo, real* acc) noexcept nogil:
    """The weight gradient of one plane straight from the output gradient (3x3 and 5x5 at
    stride 1 or 2, output planes at least one vector wide); False when it does not apply."""
    cdef int key = (kh * 10 + sw) if kh == kw and sh == sw else 0
    if real is float:
        if key == 31:
            return (tg_dw_wband31_f(gy, P, plane, Wq, ho, wo, acc)
                    or tg_dw_wband31_h(gy, P, plane, Wq, ho, wo, acc))
        if key == 32:
            return (tg_dw_wband32_f(gy, P, plane, Wq, ho, wo, acc)
                    or tg_dw_wband32_h(gy, P, plane, Wq, ho, wo, acc))
        if key == 51:
            return (tg_dw_wband51_f(gy, P, plane, Wq, ho, wo, acc)
                    or tg_dw_wband51_h(gy, P, plane, Wq, ho, wo, acc))
        if key == 52:
            return (tg_dw_wband52_f(gy, P, plane, Wq, ho, wo, acc)
                    or tg_dw_wband52_h(gy, P, plane, Wq, ho, wo, acc))
    else:
        if key == 31:
            return tg_dw_wband31_d(gy, P, plane, Wq, ho, wo, acc)
        if key == 32:
            return tg_dw_wband32_d(gy, P, plane, Wq, ho, wo, acc)
        if key == 51:
            return tg_dw_wband51_d(gy, P, plane, Wq, ho, wo, acc)
        if key == 52:
            return tg_dw_wband52_d(gy, P, plane, Wq, ho, wo, acc)
    return False


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
    _LANES = 16  # weight-gradient partial sums per tap: 64 bytes of floats (8 of doubles)


def _phase_backward_w(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                      real[:, :, :, ::1] gw, int sh, int sw, int ph, int pw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3]
    cdef Py_ssize_t o = gw.shape[0], kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3], m = o // c
    cdef Py_ssize_t Hq = _cdiv(h + 2 * ph, sh) + 1, Wq = _cdiv(wd + 2 * pw, sw)
    cdef Py_ssize_t plane = Hq * Wq, L = ho * Wq, kk = kh * kw
    cdef Py_ssize_t lanes = _LANES if real is float else _LANES // 2
    cdef Py_ssize_t oc, ic, bi, i, ii, jj, t, l, oh, ow
    cdef real* P = NULL
    cdef real* G = NULL
    cdef real* acc = NULL
    cdef Py_ssize_t* offs = NULL
    cdef real* a
    cdef const real* gp
    cdef real s
    cdef int nt = _team(n * o * ho * wo * kh * kw)
    with nogil, parallel(num_threads=nt):
        # per tap, one partial sum per vector lane (_dots: the flat index t adds to lane
        # t mod lanes; no reassociation inside a lane), the lanes summed in order at the
        # end; each thread owns whole output channels (no atomics)
        P = <real*>calloc(sh * sw * plane + 1, sizeof(real))
        G = <real*>calloc(L + 1, sizeof(real))
        acc = <real*>malloc((kk * _LANES + 1) * sizeof(real))
        offs = <Py_ssize_t*>malloc((kk + 1) * sizeof(Py_ssize_t))
        for ii in range(kh):
            for jj in range(kw):
                offs[ii * kw + jj] = ((ii % sh) * sw + jj % sw) * plane + (ii // sh) * Wq + jj // sw
        for oc in prange(o, schedule="static"):
            ic = oc // m
            for t in range(kk * lanes):
                acc[t] = 0
            for bi in range(n):
                _split(&x[bi, ic, 0, 0], P, h, wd, ph, pw, sh, sw, Hq, Wq)
                gp = &gy[bi, oc, 0, 0]
                if _wband(gp, P, plane, Wq, sh, sw, kh, kw, ho, wo, acc):
                    continue
                if Wq == wo:
                    _dots(gp, P, offs, kk, L, acc)
                    continue
                for oh in range(ho):
                    _copy(G + oh * Wq, gp + oh * wo, wo)
                _dots(G, P, offs, kk, L, acc)
            for i in range(kk):
                s = 0
                a = acc + i * lanes
                for l in range(lanes):
                    s = s + a[l]
                gw[oc, 0, i // kw, i % kw] = s
        free(P)
        free(G)
        free(acc)
        free(offs)


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


def forward(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    shape = (n, o, ho, wo)
    check_fits("depthwise_conv2d (direct)", {"output": int(np.prod(shape)) * x.itemsize})
    y = np.empty(shape, dtype=x.dtype)
    bb = b if b is not None else np.zeros(1, dtype=x.dtype)
    if dilation == (1, 1):
        _phase_forward(x, w, bb, y, b is not None, *stride, *padding)
    else:
        _forward(x, w, bb, y, b is not None, *stride, *padding, *dilation)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    check_fits(
        "depthwise_conv2d (direct) backward",
        {"input gradient": x.nbytes if need_x else 0, "weight gradient": w.nbytes if need_w else 0},
    )
    gx = gw = None
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    phase = dh == dw == 1
    if need_x:
        gx = np.empty_like(x)
        kh, kw = w.shape[2], w.shape[3]
        qh, qw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
        if phase and sh == sw == 1 and w.shape[0] == x.shape[1] and qh >= 0 and qw >= 0:
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
        # non-finite one is recomputed with the direct loops (no pass over x to check it)
        if phase:
            _phase_backward_w(gy, x, gw, sh, sw, ph, pw)
        if not phase or not np.isfinite(gw).all():
            _backward_w(gy, x, gw, *stride, *padding, *dilation)
    return gx, gw
