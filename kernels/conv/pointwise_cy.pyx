"""1x1 convolutions (any stride, no padding, one group) as GEMMs on the NCHW data as it lies,
compiled with Cython + OpenMP.

A 1x1 convolution of one image is ``y[b] = w2 @ x[b]`` with ``w2`` (O, C) and ``x[b]``
(C, H*W): no unfold. Each OpenMP thread takes whole images (the forward hands them out
dynamically, the backward statically: see below). With a stride the thread first gathers
its image's sampled pixels (C, Ho*Wo) into its own buffer. A batch of fewer than 3 images
per thread that the threads cannot share evenly (one image, or three on two threads) is
split by channels instead: the forward and the input gradient in items of (image, slice of
output or input channels), the weight and bias gradients by output channels per thread
over every image (``backward_rows``), so no thread idles and no parts are summed.

The per-image products run on this module's own AVX-512 kernel for float32 (the forward
of 48 or more output channels and the input gradient of 48 or more input channels, on
planes of 64 to 256 pixels: tiles of 6 rows x up to 64 columns, bias or held gradient
added as a tile is stored), else on NumPy's own ``cblas_?gemm`` on
one BLAS thread per OpenMP thread, so the images' GEMMs run side by side instead of one
small multithreaded GEMM after another.

Backward, per image: ``gx[b] = w2.T @ gy[b]`` (scattered back to the sampled pixels when
strided) and ``gw_parts[thread] += gy[b] @ x[b].T``; for float32 stride-1 calls with rows
of whole vectors, 64+ pixels, 32+ input and at most 128 output channels the weight
gradient runs on a tile kernel over chunks of consecutive images instead (see
``_own_w``). ``backward_with_bias`` also sums the bias gradient per thread in the same
parallel region. The parts are summed in thread order after the loop, so the gradients are
the same on every call. Calls of any other shape go to ``im2col-cython``.

Bounds and wraparound checks are set by the build (setup.py), not here.
"""

cimport openmp
from cython.parallel cimport parallel, prange
from libc.string cimport memset

import math

import numpy as np

from .. import cblas, memory, threads
from . import im2col_cy as _fallback
from .im2col import workspace


include "../_common.pxi"
include "../_gemm.pxi"


# The weight gradient's own kernel (C, GCC vector types of 64 bytes: 16 floats or 8 doubles,
# one AVX-512 register). gw[o, c] += the sum over a chunk of images and their pixels of
# gy[b, o, q] * x[b, c, q]: both operands have the pixel axis contiguous, so a tile of 4
# output channels x 6 input channels keeps 24 vector accumulators of per-lane partial sums
# over the whole chunk (10 vector loads feed 24 multiply-adds) and adds each across its
# lanes once per chunk. The chunk's rows are first copied to 64-byte boundaries (a split
# load across two cache lines costs two), zero-padded to whole vectors. Tile rows past the
# last channel repeat the last one; their sums are not stored.
cdef extern from *:
    """
    #define TG_PW_MO 4
    #define TG_PW_MC 6
    /* one load of each x vector per step, kept in a register for its 4 multiply-adds (else the
       compiler folds it into each of them: 28 loads per 24 multiply-adds instead of 10) */
    #if defined(__AVX512F__) && defined(__GNUC__)
    #define TG_PW_IN_REGISTER(v) __asm__("" : "+v"(v))
    #else
    #define TG_PW_IN_REGISTER(v) ((void)0)
    #endif
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #define TG_PW_HSUM_f(v) _mm512_reduce_add_ps((__m512)(v))
    #define TG_PW_HSUM_d(v) _mm512_reduce_add_pd((__m512d)(v))
    #else
    #define TG_PW_HSUM_f(v) tg_pw_hsum_f(v)
    #define TG_PW_HSUM_d(v) tg_pw_hsum_d(v)
    #endif
    #define TG_PW_WGRAD(T, S)                                                               \\
    typedef T tg_pw_v##S __attribute__((vector_size(64)));                                  \\
    static inline T tg_pw_hsum_##S(tg_pw_v##S v) {                                          \\
        T s = 0;                                                                            \\
        for (Py_ssize_t l = 0; l < (Py_ssize_t)(64 / sizeof(T)); l++) s += v[l];            \\
        return s;                                                                           \\
    }                                                                                       \\
    /* dst row r = src row r (p values) then zeros up to pp, for r < rows: one copy when    \\
       p == pp (the rows then lie back to back in both) */                                  \\
    static void tg_pw_pack_##S(const T* src, Py_ssize_t rows, Py_ssize_t p, Py_ssize_t pp,  \\
                               T* dst) {                                                    \\
        if (p == pp) {                                                                      \\
            __builtin_memcpy(dst, src, rows * p * sizeof(T));                               \\
            return;                                                                         \\
        }                                                                                   \\
        for (Py_ssize_t r = 0; r < rows; r++) {                                             \\
            __builtin_memcpy(dst + r * pp, src + r * p, p * sizeof(T));                     \\
            for (Py_ssize_t q = p; q < pp; q++) dst[r * pp + q] = 0;                        \\
        }                                                                                   \\
    }                                                                                       \\
    static T* tg_pw_align_##S(T* a) {                                                       \\
        return (T*)(((size_t)a + 63) & ~(size_t)63);                                        \\
    }                                                                                       \\
    /* gw[oc, ci] (row-major, o x c) += sum over b < nb and q < pp of                       \\
       gy[b * o * pp + oc * pp + q] * x[b * c * pp + ci * pp + q]: rows of pp values (a whole\\
       number of vectors) at 64-byte boundaries */                                          \\
    static void tg_pw_wgrad_##S(const T* gy, const T* x, Py_ssize_t nb, Py_ssize_t o,       \\
                                Py_ssize_t c, Py_ssize_t pp, T* gw) {                       \\
        enum { V = 64 / sizeof(T) };                                                        \\
        Py_ssize_t o0, c0, b, q, i, j;                                                      \\
        for (o0 = 0; o0 < o; o0 += TG_PW_MO) {                                              \\
            const T* g[TG_PW_MO];                                                           \\
            for (i = 0; i < TG_PW_MO; i++) g[i] = gy + (o0 + i < o ? o0 + i : o - 1) * pp;  \\
            for (c0 = 0; c0 < c; c0 += TG_PW_MC) {                                          \\
                const T* xr[TG_PW_MC];                                                      \\
                tg_pw_v##S acc[TG_PW_MO][TG_PW_MC], a[TG_PW_MO], v;                         \\
                T out[TG_PW_MO][TG_PW_MC];                                                  \\
                for (j = 0; j < TG_PW_MC; j++) xr[j] = x + (c0 + j < c ? c0 + j : c - 1) * pp;\\
                _Pragma("GCC unroll 4") for (i = 0; i < TG_PW_MO; i++)                      \\
                    _Pragma("GCC unroll 6") for (j = 0; j < TG_PW_MC; j++)                  \\
                        acc[i][j] = (tg_pw_v##S){0};                                        \\
                for (b = 0; b < nb; b++) {                                                  \\
                    const Py_ssize_t go = b * o * pp, xo = b * c * pp;                      \\
                    for (q = 0; q < pp; q += V) {                                           \\
                        _Pragma("GCC unroll 4") for (i = 0; i < TG_PW_MO; i++)              \\
                            a[i] = *(const tg_pw_v##S*)(g[i] + go + q);                     \\
                        _Pragma("GCC unroll 6") for (j = 0; j < TG_PW_MC; j++) {            \\
                            v = *(const tg_pw_v##S*)(xr[j] + xo + q);                       \\
                            TG_PW_IN_REGISTER(v);                                           \\
                            _Pragma("GCC unroll 4") for (i = 0; i < TG_PW_MO; i++)          \\
                                acc[i][j] += a[i] * v;                                      \\
                        }                                                                   \\
                    }                                                                       \\
                }                                                                           \\
                /* across the lanes with constant indices only, so acc stays in registers */\\
                _Pragma("GCC unroll 4") for (i = 0; i < TG_PW_MO; i++)                      \\
                    _Pragma("GCC unroll 6") for (j = 0; j < TG_PW_MC; j++)                  \\
                        out[i][j] = TG_PW_HSUM_##S(acc[i][j]);                              \\
                for (i = 0; i < TG_PW_MO && o0 + i < o; i++)                                \\
                    for (j = 0; j < TG_PW_MC && c0 + j < c; j++)                            \\
                        gw[(o0 + i) * c + c0 + j] += out[i][j];                             \\
            }                                                                               \\
        }                                                                                   \\
    }
    TG_PW_WGRAD(float, f)
    TG_PW_WGRAD(double, d)
    """
    void tg_pw_wgrad_f(const float* gy, const float* x, Py_ssize_t nb, Py_ssize_t o,
                       Py_ssize_t c, Py_ssize_t pp, float* gw) noexcept nogil
    void tg_pw_wgrad_d(const double* gy, const double* x, Py_ssize_t nb, Py_ssize_t o,
                       Py_ssize_t c, Py_ssize_t pp, double* gw) noexcept nogil
    void tg_pw_pack_f(const float* src, Py_ssize_t rows, Py_ssize_t p, Py_ssize_t pp,
                      float* dst) noexcept nogil
    void tg_pw_pack_d(const double* src, Py_ssize_t rows, Py_ssize_t p, Py_ssize_t pp,
                      double* dst) noexcept nogil
    float* tg_pw_align_f(float* a) noexcept nogil
    double* tg_pw_align_d(double* a) noexcept nogil


# The forward's and the input gradient's own kernel (float32, AVX-512 builds only): one
# image's y = a @ b with b (K x P) as it lies (x, or gy) and a the weights (w2, or w2 read
# transposed through its strides). Strips of up to 64 columns x 6 rows keep 24 accumulator
# vectors; each step loads 4 vectors of b (split loads when a row does not start at a
# 64-byte boundary cost little here: 4 per 24 multiply-adds) and broadcasts 6 weights. The
# bias, or the gradient already held (``accumulate``), is added as the tile is stored.
cdef extern from *:
    """
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #define TG_PW_HAVE_NN 1
    #define TG_PW_NM 6
    #define TG_PW_NN_STRIP(NV)                                                                      \\
    static void tg_pw_nn_strip##NV(const float* a, Py_ssize_t sm, Py_ssize_t sk, const float* bq,   \\
                                   Py_ssize_t M, Py_ssize_t K, Py_ssize_t P, Py_ssize_t nq,         \\
                                   float* yq, int accumulate, const float* bias) {                  \\
        Py_ssize_t m0, k, i, v;                                                                     \\
        __mmask16 mk[NV];                                                                           \\
        for (v = 0; v < NV; v++) {                                                                  \\
            Py_ssize_t n = nq - 16 * v;                                                             \\
            mk[v] = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);                       \\
        }                                                                                           \\
        for (m0 = 0; m0 < M; m0 += TG_PW_NM) {                                                      \\
            const float* ar[TG_PW_NM];                                                              \\
            __m512 acc[TG_PW_NM][NV], b[NV];                                                        \\
            for (i = 0; i < TG_PW_NM; i++) ar[i] = a + (m0 + i < M ? m0 + i : M - 1) * sm;          \\
            _Pragma("GCC unroll 6") for (i = 0; i < TG_PW_NM; i++)                                  \\
                _Pragma("GCC unroll 4") for (v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();   \\
            for (k = 0; k < K; k++) {                                                               \\
                _Pragma("GCC unroll 4") for (v = 0; v < NV; v++)                                    \\
                    b[v] = _mm512_maskz_loadu_ps(mk[v], bq + k * P + 16 * v);                       \\
                _Pragma("GCC unroll 6") for (i = 0; i < TG_PW_NM; i++) {                            \\
                    __m512 av = _mm512_set1_ps(ar[i][k * sk]);                                      \\
                    _Pragma("GCC unroll 4") for (v = 0; v < NV; v++)                                \\
                        acc[i][v] = _mm512_fmadd_ps(av, b[v], acc[i][v]);                           \\
                }                                                                                   \\
            }                                                                                       \\
            _Pragma("GCC unroll 6") for (i = 0; i < TG_PW_NM; i++) {                                \\
                if (m0 + i >= M) break;                                                             \\
                float* yr = yq + (m0 + i) * P;                                                      \\
                _Pragma("GCC unroll 4") for (v = 0; v < NV; v++) {                                  \\
                    __m512 r = acc[i][v];                                                           \\
                    if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk[v], yr + 16 * v));\\
                    if (bias) r = _mm512_add_ps(r, _mm512_set1_ps(bias[m0 + i]));                   \\
                    _mm512_mask_storeu_ps(yr + 16 * v, mk[v], r);                                   \\
                }                                                                                   \\
            }                                                                                       \\
        }                                                                                           \\
    }
    TG_PW_NN_STRIP(1)
    TG_PW_NN_STRIP(2)
    TG_PW_NN_STRIP(3)
    TG_PW_NN_STRIP(4)
    /* y[m, q] = (y[m, q] if accumulate) + sum over k < K of a[m * sm + k * sk] * b[k * P + q]
       (+ bias[m] if bias) for m < M, q < P: strips of up to 64 columns (4 vectors, the last
       one masked) x 6 rows of 24 accumulators; each strip of b stays in L1 across the rows */
    static void tg_pw_nn_f(const float* a, Py_ssize_t sm, Py_ssize_t sk, const float* b,
                           Py_ssize_t M, Py_ssize_t K, Py_ssize_t P, float* y, int accumulate,
                           const float* bias) {
        for (Py_ssize_t q0 = 0; q0 < P; q0 += 64) {
            Py_ssize_t nq = P - q0 < 64 ? P - q0 : 64;
            switch ((nq + 15) / 16) {
            case 1: tg_pw_nn_strip1(a, sm, sk, b + q0, M, K, P, nq, y + q0, accumulate, bias); break;
            case 2: tg_pw_nn_strip2(a, sm, sk, b + q0, M, K, P, nq, y + q0, accumulate, bias); break;
            case 3: tg_pw_nn_strip3(a, sm, sk, b + q0, M, K, P, nq, y + q0, accumulate, bias); break;
            default: tg_pw_nn_strip4(a, sm, sk, b + q0, M, K, P, nq, y + q0, accumulate, bias);
            }
        }
    }
    #else
    #define TG_PW_HAVE_NN 0
    static void tg_pw_nn_f(const float* a, Py_ssize_t sm, Py_ssize_t sk, const float* b,
                           Py_ssize_t M, Py_ssize_t K, Py_ssize_t P, float* y,
                           int accumulate, const float* bias) {}
    #endif
    """
    const int TG_PW_HAVE_NN
    void tg_pw_nn_f(const float* a, Py_ssize_t sm, Py_ssize_t sk, const float* b,
                    Py_ssize_t M, Py_ssize_t K, Py_ssize_t P, float* y, int accumulate,
                    const float* bias) noexcept nogil


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


cdef inline bint _nn(bint own, const real* a, Py_ssize_t sm, Py_ssize_t sk, const real* b,
                     Py_ssize_t m, Py_ssize_t k, Py_ssize_t p, real* y, bint accumulate,
                     const real* bias) noexcept nogil:
    # y (m x p) = a @ b (+ y with ``accumulate``, + bias per row unless NULL) on the own
    # kernel when ``own`` (float32 only); False when the caller is to run the BLAS instead
    if real is float:
        if own:
            tg_pw_nn_f(a, sm, sk, b, m, k, p, y, accumulate, bias)
            return True
    return False


def forward_threads(const real[:, :, :, ::1] x, const real[:, ::1] w2, const real[::1] bias,
                    bint has_bias, real[:, :, :, ::1] y, real[:, ::1] buf, int sh, int sw,
                    size_t gemm, int nt, bint own_nn=False, Py_ssize_t ns=1,
                    Py_ssize_t rs=0):
    """y[b] = w2 @ x[b][:, ::sh, ::sw] (+ bias), on the own kernel with ``own_nn``
    (float32), else the BLAS. The work items are (image, slice of ``rs`` output channels),
    ``ns`` slices per image (1: whole images; a strided item gathers its whole image)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t p = ho * wo, b, oc, q, k, o0, os
    cdef bint strided = sh != 1 or sw != 1
    cdef int tid
    cdef real bv
    cdef const real* src
    cdef real* yp
    cdef const real* bp = &bias[0] if has_bias else NULL
    if ns < 1 or rs < 1:
        ns, rs = 1, o
    with nogil:
        # dynamic: no sum crosses items, and a thread that loses its core to another
        # process leaves its remaining items to the others
        for k in prange(n * ns, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            b = k // ns
            o0 = (k % ns) * rs
            os = min(rs, o - o0)
            if os <= 0:
                continue
            src = &x[b, 0, 0, 0]
            if strided:
                _gather(src, &buf[tid, 0], c, h, w, sh, sw, ho, wo)
                src = &buf[tid, 0]
            if _nn(own_nn, &w2[o0, 0], c, 1, src, os, c, p, &y[b, o0, 0, 0], False,
                   bp + o0 if has_bias else NULL):
                continue
            _gemm(gemm, False, False, os, p, c, &w2[o0, 0], c, src, p, 0, &y[b, o0, 0, 0], p)
            if has_bias:
                for oc in range(o0, o0 + os):
                    bv = bias[oc]
                    yp = &y[b, oc, 0, 0]
                    for q in range(p):
                        yp[q] = yp[q] + bv


cdef inline void _channel_sums(const real* g, Py_ssize_t o, Py_ssize_t p,
                               real* out) noexcept nogil:
    # out[oc] += sum of g[oc, :] for oc < o, 16 running sums per channel so the compiler
    # keeps them in a vector (a single running sum would be one add after another)
    cdef real acc[16]
    cdef Py_ssize_t oc, q, l
    cdef real s
    cdef const real* r
    for oc in range(o):
        r = g + oc * p
        for l in range(16):
            acc[l] = 0
        q = 0
        while q + 16 <= p:
            for l in range(16):
                acc[l] = acc[l] + r[q + l]
            q = q + 16
        s = 0
        while q < p:
            s = s + r[q]
            q = q + 1
        for l in range(16):
            s = s + acc[l]
        out[oc] = out[oc] + s


cdef inline void _wgrad(const real* gy, const real* x, Py_ssize_t nb, Py_ssize_t o,
                        Py_ssize_t c, Py_ssize_t p, Py_ssize_t pp, real* packed,
                        real* gw) noexcept nogil:
    # gw += the chunk's gy @ x.T, gy's and x's rows copied first to ``packed`` (64-byte
    # aligned, room for the chunk's rows of pp values)
    cdef real* px = packed + nb * o * pp
    if real is float:
        tg_pw_pack_f(gy, nb * o, p, pp, packed)
        tg_pw_pack_f(x, nb * c, p, pp, px)
        tg_pw_wgrad_f(packed, px, nb, o, c, pp, gw)
    else:
        tg_pw_pack_d(gy, nb * o, p, pp, packed)
        tg_pw_pack_d(x, nb * c, p, pp, px)
        tg_pw_wgrad_d(packed, px, nb, o, c, pp, gw)


cdef inline void _pack(const real* src, Py_ssize_t rows, Py_ssize_t p, Py_ssize_t pp,
                       real* dst) noexcept nogil:
    if real is float:
        tg_pw_pack_f(src, rows, p, pp, dst)
    else:
        tg_pw_pack_d(src, rows, p, pp, dst)


cdef inline void _wgrad_packed(const real* gy, const real* x, Py_ssize_t nb, Py_ssize_t o,
                               Py_ssize_t c, Py_ssize_t pp, real* gw) noexcept nogil:
    # gw (row stride c) += the packed chunk's gy @ x.T (see tg_pw_wgrad)
    if real is float:
        tg_pw_wgrad_f(gy, x, nb, o, c, pp, gw)
    else:
        tg_pw_wgrad_d(gy, x, nb, o, c, pp, gw)


cdef inline real* _aligned(real* a) noexcept nogil:
    if real is float:
        return tg_pw_align_f(a)
    else:
        return tg_pw_align_d(a)


def backward_threads(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                     const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, :, ::1] parts,
                     real[:, ::1] gw, real[:, ::1] bparts, real[:, ::1] buf, bint need_x,
                     bint need_w, bint need_b, int sh, int sw, size_t gemm, int nt,
                     bint accumulate, Py_ssize_t chunk, bint own_w, real[::1] packed,
                     bint own_nn=False):
    """Thread t takes an even share of the images, [t * n // nt, (t + 1) * n // nt), in
    chunks of up to ``chunk`` consecutive images: parts[t] += gy[b] @ x[b][:, ::sh,
    ::sw].T summed over the chunk (with ``own_w``, stride 1 only, by the tile kernel on
    the chunk copied to ``packed``, else one GEMM per image), gx[b] = scatter(w2.T @
    gy[b]) and with ``need_b`` bparts[t, oc] += the sum of gy[b, oc]. With
    ``accumulate``, gx holds a gradient already and the input gradient is added to it
    (the GEMM's beta = 1, or an add at the sampled pixels only when strided). When
    strided, buf[thread] holds one image's sampled pixels. Each part is zeroed by its
    thread as its share starts; with more than one thread, gw = the parts summed in
    thread order, by rows of gw shared among the threads after the loop."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t p = ho * wo, b, k, t, b0, nb, lo, share, r, q, u
    cdef Py_ssize_t v = 64 // sizeof(real), pp = (p + v - 1) // v * v
    cdef Py_ssize_t per_thread = chunk * (o + c) * pp
    cdef real* pk = _aligned(&packed[0])
    # each thread's share of the images in cpt chunks of up to ``chunk``
    cdef Py_ssize_t cpt = ((n + nt - 1) // nt + chunk - 1) // chunk
    cdef bint strided = sh != 1 or sw != 1
    cdef int tid
    cdef const real* src
    with nogil, parallel(num_threads=nt):
        # static: runs of cpt chunks, run t the images [t * n // nt, (t + 1) * n // nt), so
        # each thread sums the same images in the same order on every call and the threads'
        # shares differ by one image at most (runs of whole fixed-size chunks gave 32
        # images in chunks of 6 to the threads as 18 and 14)
        for k in prange(nt * cpt, schedule="static"):
            tid = openmp.omp_get_thread_num()
            t = k // cpt
            if k % cpt == 0:
                # the share's first chunk: this thread's parts start from zero, in its cache
                if need_w:
                    memset(&parts[t, 0, 0], 0, o * c * sizeof(real))
                if need_b:
                    memset(&bparts[t, 0], 0, o * sizeof(real))
            lo = t * n // nt
            share = (t + 1) * n // nt - lo
            b0 = lo + (k % cpt) * share // cpt
            nb = lo + (k % cpt + 1) * share // cpt - b0
            if nb <= 0:
                continue
            if need_w and own_w:
                _wgrad(&gy[b0, 0, 0, 0], &x[b0, 0, 0, 0], nb, o, c, p, pp,
                       pk + tid * per_thread, &parts[t, 0, 0])
            for b in range(b0, b0 + nb):
                if need_w and not own_w:
                    src = &x[b, 0, 0, 0]
                    if strided:
                        _gather(src, &buf[tid, 0], c, h, w, sh, sw, ho, wo)
                        src = &buf[tid, 0]
                    _gemm(gemm, False, True, o, c, p, &gy[b, 0, 0, 0], p, src, p, 1,
                          &parts[t, 0, 0], c)
                if need_x:
                    if strided:
                        if not _nn(own_nn, &w2[0, 0], 1, c, &gy[b, 0, 0, 0], c, o, p,
                                   &buf[tid, 0], False, NULL):
                            _gemm(gemm, True, False, c, p, o, &w2[0, 0], c, &gy[b, 0, 0, 0], p,
                                  0, &buf[tid, 0], p)
                        _scatter(&buf[tid, 0], &gx[b, 0, 0, 0], c, h, w, sh, sw, ho, wo,
                                 accumulate)
                    elif not _nn(own_nn, &w2[0, 0], 1, c, &gy[b, 0, 0, 0], c, o, p,
                                 &gx[b, 0, 0, 0], accumulate, NULL):
                        _gemm(gemm, True, False, c, p, o, &w2[0, 0], c, &gy[b, 0, 0, 0], p,
                              1 if accumulate else 0, &gx[b, 0, 0, 0], p)
                if need_b:
                    _channel_sums(&gy[b, 0, 0, 0], o, p, &bparts[t, 0])
        # the parts summed in thread order (the same bits on every call), rows shared out
        for r in prange(o if need_w and nt > 1 else 0, schedule="static"):
            for q in range(c):
                gw[r, q] = parts[0, r, q]
            for u in range(1, nt):
                for q in range(c):
                    gw[r, q] = gw[r, q] + parts[u, r, q]


def backward_rows(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                  const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, ::1] gw,
                  real[::1] gb, real[:, ::1] buf, bint need_x, bint need_w, bint need_b,
                  int sh, int sw, size_t gemm, int nt, bint accumulate, Py_ssize_t rw,
                  Py_ssize_t chunk, bint own_w, real[::1] packed, Py_ssize_t ns,
                  Py_ssize_t rx, bint own_nn=False):
    """The backward split by rows instead of by images, for batches the images do not
    share out evenly among the threads. Thread t takes output channels [t * rw, (t + 1) *
    rw) of the weight gradient (``gw``, zeros on entry) and of the bias gradient (``gb``)
    over every image, so no thread's part is summed with another's (with ``own_w``, stride
    1 only, by the tile kernel on chunks of ``chunk`` images copied to ``packed``, else one
    GEMM per image). Then the input gradient in items (image, slice of ``rx`` input
    channels), ``ns`` slices per image, shared out in equal runs. ``accumulate`` and
    ``buf`` as in ``backward_threads``; a strided item gathers its whole image."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t p = ho * wo, b, t, k, b0, nb, o0, os, c0, cs
    cdef Py_ssize_t v = 64 // sizeof(real), pp = (p + v - 1) // v * v
    cdef Py_ssize_t per_thread = chunk * (rw + c) * pp
    cdef real* pk = _aligned(&packed[0])
    cdef real* mine
    cdef bint strided = sh != 1 or sw != 1
    cdef int tid
    cdef const real* src
    with nogil, parallel(num_threads=nt):
        for t in prange(nt, schedule="static"):
            tid = openmp.omp_get_thread_num()
            o0 = t * rw
            os = min(rw, o - o0)
            if os > 0 and need_w and own_w:
                mine = pk + tid * per_thread
                b0 = 0
                while b0 < n:
                    nb = min(chunk, n - b0)
                    # the chunk's gy rows o0.. of each image, then its x rows, as in _wgrad
                    for b in range(nb):
                        _pack(&gy[b0 + b, o0, 0, 0], os, p, pp, mine + b * os * pp)
                    _pack(&x[b0, 0, 0, 0], nb * c, p, pp, mine + nb * os * pp)
                    _wgrad_packed(mine, mine + nb * os * pp, nb, os, c, pp, &gw[o0, 0])
                    b0 = b0 + nb
            elif os > 0 and need_w:
                for b in range(n):
                    src = &x[b, 0, 0, 0]
                    if strided:
                        _gather(src, &buf[tid, 0], c, h, w, sh, sw, ho, wo)
                        src = &buf[tid, 0]
                    _gemm(gemm, False, True, os, c, p, &gy[b, o0, 0, 0], p, src, p, 1,
                          &gw[o0, 0], c)
            if os > 0 and need_b:
                for b in range(n):
                    _channel_sums(&gy[b, o0, 0, 0], os, p, &gb[o0])
        for k in prange(n * ns if need_x else 0, schedule="static"):
            tid = openmp.omp_get_thread_num()
            b = k // ns
            c0 = (k % ns) * rx
            cs = min(rx, c - c0)
            if cs <= 0:
                continue
            if strided:
                if not _nn(own_nn, &w2[0, c0], 1, c, &gy[b, 0, 0, 0], cs, o, p,
                           &buf[tid, 0], False, NULL):
                    _gemm(gemm, True, False, cs, p, o, &w2[0, c0], c, &gy[b, 0, 0, 0], p, 0,
                          &buf[tid, 0], p)
                _scatter(&buf[tid, 0], &gx[b, c0, 0, 0], cs, h, w, sh, sw, ho, wo,
                         accumulate)
            elif not _nn(own_nn, &w2[0, c0], 1, c, &gy[b, 0, 0, 0], cs, o, p,
                         &gx[b, c0, 0, 0], accumulate, NULL):
                _gemm(gemm, True, False, cs, p, o, &w2[0, c0], c, &gy[b, 0, 0, 0], p,
                      1 if accumulate else 0, &gx[b, c0, 0, 0], p)


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
    ns, rs = _slices(n, nt, o)
    with cblas.single_threaded():
        forward_threads(x, w.reshape(o, c), bias, b is not None, y, buf, sh, sw, gemm, nt,
                        _own_nn(x.dtype, ho * wo, o), ns, rs)
    return y


# The weight gradient's tile kernel runs over chunks of consecutive images whose output
# gradients and inputs fit together in about half of a core's L2 cache, so the tiles after
# the first read them from there; each tile's lanes are added once per chunk.
_CHUNK_BYTES = 1 << 19
# None: the rule below; True or False: the tile kernel for every stride-1 call, or never
_OWN_W = None


def _own_w(o, c, p, dtype):
    """Whether a stride-1 call's weight gradient runs on the tile kernel, not one BLAS GEMM
    per image: float32, rows of a whole number of vectors (the chunk is one copy), 64 or
    more pixels (lanes added once per tile and chunk, not per few multiply-adds), 32 or
    more input channels and at most 128 output channels (benchmarks/results/pointwise-
    wgrad.md: outside these the BLAS ran level or ahead)."""
    if _OWN_W is not None:
        return _OWN_W
    return dtype == np.float32 and p % 16 == 0 and p >= 64 and c >= 32 and o <= 128


# None: the rule below; True or False: every float32 call's forward and input gradient on
# the own kernel (where the build has AVX-512), or none
_OWN_NN = None
HAVE_NN = bool(TG_PW_HAVE_NN)
# products of fewer rows (output channels for the forward, input channels for the input
# gradient) ran level with the BLAS or behind it (benchmarks/results/pointwise-wgrad.md):
# their tiles of 6 rows leave rows idle and each strip of x or gy is read for few rows
_NN_MIN_ROWS = 48
# planes of fewer pixels leave lanes or accumulators idle (2x2 planes ran at 2-3x the
# BLAS's time, 4x4 and 7x7 level or behind); on larger planes (14x14 to 32x32) each strip's
# rows lie far apart in memory and the kernel ran level with the BLAS or behind it
_NN_MIN_PIXELS = 64
_NN_MAX_PIXELS = 256


def _own_nn(dtype, pixels, rows):
    """Whether a float32 call's forward (``rows``: its output channels) or input gradient
    (``rows``: its input channels) on planes of ``pixels`` output pixels runs on the own
    kernel, not the BLAS."""
    if not HAVE_NN or dtype != np.float32 or _OWN_NN is False:
        return False
    if _OWN_NN is True:
        return True
    return _NN_MIN_PIXELS <= pixels <= _NN_MAX_PIXELS and rows >= _NN_MIN_ROWS


# Batches of fewer images than 3 per thread that do not share out evenly among the threads
# (one image on two threads leaves one idle, three leave one idle half the time) are split
# by channels instead: items of (image, slice of rows), and the weight gradient by output
# channels (``backward_rows``). With 3+ images per thread the split, which halves each
# GEMM's rows, ran level with whole images (benchmarks/results/pointwise-batch1.md).
_SPLIT_BELOW_PER_THREAD = 3
# rows per slice: a multiple of 8 (whole vectors of rows for the BLAS's packing, whole
# tiles of the weight-gradient tile kernel's 4 rows), and calls of fewer rows than two such
# slices stay whole
_SLICE_ROWS = 8
# None: the rule below; True or False: every call of two or more threads split by rows, or
# none (whole images per thread)
_SPLIT = None


def _split(n, nt):
    """Whether a batch of ``n`` images on ``nt`` threads is split by channels."""
    if nt <= 1 or _SPLIT is False:
        return False
    return _SPLIT is True or (n % nt != 0 and n < _SPLIT_BELOW_PER_THREAD * nt)


def _slices(n, nt, rows):
    """(slices per image, rows per slice) of a pass over ``rows`` output rows: (1, rows)
    unless the batch is split, else enough slices that the items share out evenly."""
    if not _split(n, nt) or rows < 2 * _SLICE_ROWS:
        return 1, rows
    ns = nt // math.gcd(n, nt) if _SPLIT is None else nt
    rs = -(-rows // ns)
    rs = -(-rs // _SLICE_ROWS) * _SLICE_ROWS
    return -(-rows // rs), rs


def _chunk(n, nt, per_image):
    """Images per chunk: up to _CHUNK_BYTES of data, and every thread with a chunk."""
    return max(1, min(-(-n // nt), _CHUNK_BYTES // max(per_image, 1)))


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    """(gx, gw) of a conv2d call (None for a gradient not asked for)."""
    return _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, None,
                     False)[:2]


def backward_with_bias(gy, x, w, stride, padding, dilation, groups, need_x, need_w,
                       need_b=True):
    """``backward`` plus the bias gradient: ``(gx, gw, gb)``, the bias gradient summed per
    thread in the same parallel region as each image's gradients, while its output
    gradient is in cache (None when not asked for or when the call goes to
    ``im2col-cython``, for the op to sum itself)."""
    return _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, None,
                     need_b)


def backward_accumulate(gy, x, w, stride, padding, dilation, groups, need_w, acc):
    """``backward`` with the input gradient added into ``acc`` (x's shape and dtype, C-
    contiguous, writable: a gradient the tape already holds for x) instead of a new
    array: ``(acc, gw)``. Strided calls add only at the sampled pixels, so the zeros of
    a strided 1x1 call's input gradient are never written or read again."""
    return _backward(gy, x, w, stride, padding, dilation, groups, True, need_w, acc,
                     False)[:2]


def _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, acc, need_b):
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = gy.shape[2:]
    sh, sw = int(stride[0]), int(stride[1])
    gemm = _gemm_for(x, w, gy.size) if applies(w.shape, padding, dilation, groups) else None
    if gemm is None or not (need_x or need_w) or gy.dtype != x.dtype:
        gx, gw = _fallback.backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w)
        if acc is not None:
            gx = np.add(acc, gx, out=acc)
        return gx, gw, None
    strided = (sh, sw) != (1, 1)
    nt = _team_size(n * o * ho * wo * c)
    own_w = need_w and not strided and _own_w(o, c, ho * wo, x.dtype)
    v = 64 // x.itemsize
    pp = -(-(ho * wo) // v) * v
    if _split(n, nt):
        return _backward_rows(gy, x, w, sh, sw, need_x, need_w, acc, need_b, gemm, nt, own_w,
                              pp)
    chunk = _chunk(n, nt, (o + c) * pp * x.itemsize) if own_w else 1
    memory.check_fits("conv2d (pointwise) backward", {
        "sampled pixels": nt * c * ho * wo * x.itemsize if strided else 0,
        "packed chunks": nt * chunk * (o + c) * pp * x.itemsize if own_w else 0,
        "input gradient": x.nbytes if need_x and acc is None else 0,
        "weight gradient": (nt + 1) * w.nbytes if need_w else 0,
    })
    gy = np.ascontiguousarray(gy)
    if acc is not None:
        gx = acc
    else:
        gx = np.empty_like(x) if need_x else np.empty((1, 1, 1, 1), dtype=x.dtype)
    parts = (np.empty((nt, o, c), dtype=x.dtype) if need_w
             else np.empty((1, 1, 1), dtype=x.dtype))
    gw2 = (np.empty((o, c), dtype=x.dtype) if need_w and nt > 1
           else np.empty((1, 1), dtype=x.dtype))
    bparts = (np.empty((nt, o), dtype=x.dtype) if need_b
              else np.empty((1, 1), dtype=x.dtype))
    buf = (workspace("pointwise-t", (nt, c * ho * wo), x.dtype) if strided
           else np.empty((1, 1), dtype=x.dtype))
    packed = workspace("pointwise-w", (nt * chunk * (o + c) * pp + v if own_w else 1,),
                       x.dtype)
    with cblas.single_threaded():
        backward_threads(gy, x, w.reshape(o, c), gx, parts, gw2, bparts, buf, need_x,
                         need_w, need_b, sh, sw, gemm, nt, acc is not None, chunk, own_w,
                         packed, _own_nn(x.dtype, ho * wo, c))
    gw = gb = None
    if need_w:
        gw = (gw2 if nt > 1 else parts[0]).reshape(w.shape)
    if need_b:
        gb = bparts[0]
        for t in range(1, nt):
            gb = gb + bparts[t]
    return (gx if need_x else None), gw, gb


def _backward_rows(gy, x, w, sh, sw, need_x, need_w, acc, need_b, gemm, nt, own_w, pp):
    """``_backward``'s work split by channels (``backward_rows``)."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = gy.shape[2:]
    strided = (sh, sw) != (1, 1)
    rw = -(-o // nt)
    rw = -(-rw // _SLICE_ROWS) * _SLICE_ROWS
    ns, rx = _slices(n, nt, c)
    v = 64 // x.itemsize
    chunk = max(1, min(n, _CHUNK_BYTES // ((rw + c) * pp * x.itemsize))) if own_w else 1
    memory.check_fits("conv2d (pointwise) backward", {
        "sampled pixels": nt * c * ho * wo * x.itemsize if strided else 0,
        "packed chunks": nt * chunk * (rw + c) * pp * x.itemsize if own_w else 0,
        "input gradient": x.nbytes if need_x and acc is None else 0,
        "weight gradient": w.nbytes if need_w else 0,
    })
    gy = np.ascontiguousarray(gy)
    if acc is not None:
        gx = acc
    else:
        gx = np.empty_like(x) if need_x else np.empty((1, 1, 1, 1), dtype=x.dtype)
    gw = np.zeros((o, c), dtype=x.dtype) if need_w else np.empty((1, 1), dtype=x.dtype)
    gb = np.zeros(o, dtype=x.dtype) if need_b else np.empty(1, dtype=x.dtype)
    buf = (workspace("pointwise-t", (nt, c * ho * wo), x.dtype) if strided
           else np.empty((1, 1), dtype=x.dtype))
    packed = workspace("pointwise-w", (nt * chunk * (rw + c) * pp + v if own_w else 1,),
                       x.dtype)
    with cblas.single_threaded():
        backward_rows(gy, x, w.reshape(o, c), gx, gw, gb, buf, need_x, need_w, need_b, sh,
                      sw, gemm, nt, acc is not None, rw, chunk, own_w, packed, ns, rx,
                      _own_nn(x.dtype, ho * wo, c))
    return ((gx if need_x else None), (gw.reshape(w.shape) if need_w else None),
            (gb if need_b else None))
