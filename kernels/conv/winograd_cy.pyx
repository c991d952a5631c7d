"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution for 3x3 stride-1 calls, Cython + OpenMP,
fused per thread.

The algorithm is ``winograd_numba``'s (see its docstring for the transforms and why
F(2x2, 3x3)): each 2x2 output tile is ``A^T [(G g G^T) * (B^T d B)] A``, the 16 products
summed over input channels being 16 GEMMs ``M[k] = U[k] @ V[k]``. Here each OpenMP thread
takes whole blocks of tiles and runs the input transform, the 16 GEMMs (NumPy's own BLAS
on the calling thread, see ``kernels/cblas.py``) and the output transform of a block
back to back in its own buffers, which stay in its cache; the threads never wait for each
other between the three steps.

Calls it does not apply to (not 3x3, stride, dilation or groups other than 1), calls with a
NaN or an infinity, and builds whose NumPy BLAS is not an ILP64 OpenBLAS run
``im2col-cython``; the input gradient is the same Winograd forward on the output gradient
(flipped, transposed weights, padding ``2 - p``, for ``p <= 2``). The weight gradient is
Winograd too (F(3x3, 2x2), the transpose of the forward's algorithm): with ``M = U * V`` per
tile, ``dU[k] = sum over tiles of (A gy_tile A^T)[k] * V[k]``, 16 GEMMs
``dU[k] += GM[k] @ V[k]^T`` over each block of tiles (each thread sums its blocks into its
own ``dU``, the parts are added in thread order), then ``gw = G^T dU G``: 16 multiplications
per tile and channel pair instead of 36. It runs calls with at least ``_WGRAD_MIN_CHANNELS``
channels in and out; below that im2col-cython's weight gradient led.

F(4x4, 3x3) (6x6 input tiles, 36 GEMMs per block, Lavin and Gray's matrices) runs the forward
and input gradient of calls with outputs at least ``_F4_MIN_SIDE`` pixels high and wide and at
least ``_F4_MIN_CHANNELS`` channels in and out: 2.25 multiplications per output instead of
4. Chosen there by speed (the 3x3 64->64 layer at 32x32: forward about 0.8 of F(2x2)'s time;
on 8x8 and 16x16 outputs and few channels its larger tiles waste more padding and its
transforms cost more than the GEMM time saved) and allowed by accuracy: its float32 error is
about 3e-5 of the output's scale at 64 channels (1.6e-6 for F(2x2)), within the 1e-4 the
tests hold. In float32 on AVX-512 builds F(4x4, 3x3) runs every step in vector registers
(``winograd4_f32_threads``): the tiles of a block across the lanes, the input transform
from contiguous row vectors split into column phases by permutes, a register-tiled multiply
(8 output channels x 48 tiles of accumulators) instead of 36 BLAS calls per block (whose
fixed cost and packing dominated GEMMs of a block's size), the output transform with the
bias into y. Smaller calls and the weight gradient keep F(2x2, 3x3); on 16x16 outputs with 32
and 64 channels F(4x4, 3x3) was measured again and ran level with F(2x2) at 32->64 and well
behind it at 64->64 (benchmarks/results/winograd-wgrad.md).

On outputs of at most 32x32 with 32 or more channels in and out (``_uses_lanes``, any
batch) the forward and input gradient run F(2x2, 3x3) with
channels across the vector lanes instead (chvec-cython's ``winograd2_threads``): tiles across
the lanes fill few lanes on small planes, BLAS calls per block cost more than their small
GEMMs, and on a Zen 5 machine it ran ahead of the vector F(4x4, 3x3) up to 32x32 as well.
The weight gradient of calls with 32 or more channels in and out (``_wgrad_lanes``) is
F(2x2, 3x3) with channels across the lanes as well (chvec-cython's
``winograd2_wgrad_threads``): per transform point one product (input channels x tiles) x
(tiles x output channels) over strips of tiles, register-tiled, 16 multiplications per tile
and channel pair instead of the direct one's 36.
"""

cimport openmp
from libc.string cimport memcpy
from cython.parallel cimport prange

import numpy as np

from .. import cblas, threads
from . import im2col_cy as _fallback

try:  # the weight gradient below the Winograd one's channel counts (see ``backward``)
    from . import chvec_cy as _wgrad_direct
except ImportError:  # pragma: no cover - a build without that extension
    _wgrad_direct = None
# F(2x2, 3x3) with channels across the lanes on small planes (see ``_uses_lanes``)
_lanes = _wgrad_direct
from .im2col import memory, workspace
from .reference import _out_size


include "../_common.pxi"
include "../_gemm.pxi"

# V and M of one block of tiles together, about this many bytes per thread (F(4x4, 3x3) and
# the weight gradient); the F(2x2, 3x3) forward and input gradient take 1 / _F2_BLOCK_SHARE of
# it: their blocks, the 16 transformed weight matrices and the BLAS's packed panels then
# stay in a core's L2, and the smaller blocks ran faster from 8x8 to 32x32 outputs with 32
# to 128 channels (benchmarks/results/winograd-wgrad.md); F(4x4)'s 36 matrices per tile
# ran slower with smaller blocks (its GEMMs get too narrow).
_BLOCK_BYTES = 1 << 20
_F2_BLOCK_SHARE = 2

# Elements between the 16 matrices of a thread's V and M: the transforms write (read) the
# 16 at once, and a power-of-two distance would put all 16 streams in the same cache sets.
cdef enum:
    _PAD = 48

# The tile-row loops in C: ``omp simd`` lets the compiler run them in vector registers (the
# 16 matrices are written as 16 unit-stride streams, the input rows are read from their
# even / odd column split), which a Cython loop over raw pointers does not get. One
# definition per dtype (suffix f: float, d: double).
cdef extern from *:
    """
    #include <stddef.h>
    #define TG_WINO_TILES(T, S) \
    /* v[k * cs + j] = (B^T d B)[k / 4, k % 4] of the tile whose padded 4x4 input is column \
       pairs j, j + 1 of the rows' even (e) and odd (o) column splits: row i's even columns \
       at r + 2 i L, its odd ones at r + (2 i + 1) L */ \
    static void tg_wino_in_##S(const T* r, ptrdiff_t L, T* v, ptrdiff_t cs, ptrdiff_t j0, \
                               ptrdiff_t j1) { \
        const T *e0 = r, *o0 = r + L, *e1 = r + 2 * L, *o1 = r + 3 * L; \
        const T *e2 = r + 4 * L, *o2 = r + 5 * L, *e3 = r + 6 * L, *o3 = r + 7 * L; \
        _Pragma("omp simd") \
        for (ptrdiff_t j = j0; j < j1; j++) { \
            T a0 = e0[j] - e2[j], a1 = o0[j] - o2[j], a2 = e0[j + 1] - e2[j + 1]; \
            T a3 = o0[j + 1] - o2[j + 1]; \
            T b0 = e1[j] + e2[j], b1 = o1[j] + o2[j], b2 = e1[j + 1] + e2[j + 1]; \
            T b3 = o1[j + 1] + o2[j + 1]; \
            T c0 = e2[j] - e1[j], c1 = o2[j] - o1[j], c2 = e2[j + 1] - e1[j + 1]; \
            T c3 = o2[j + 1] - o1[j + 1]; \
            T d0 = e1[j] - e3[j], d1 = o1[j] - o3[j], d2 = e1[j + 1] - e3[j + 1]; \
            T d3 = o1[j + 1] - o3[j + 1]; \
            v[j] = a0 - a2; v[cs + j] = a1 + a2; v[2 * cs + j] = a2 - a1; \
            v[3 * cs + j] = a1 - a3; \
            v[4 * cs + j] = b0 - b2; v[5 * cs + j] = b1 + b2; v[6 * cs + j] = b2 - b1; \
            v[7 * cs + j] = b1 - b3; \
            v[8 * cs + j] = c0 - c2; v[9 * cs + j] = c1 + c2; v[10 * cs + j] = c2 - c1; \
            v[11 * cs + j] = c1 - c3; \
            v[12 * cs + j] = d0 - d2; v[13 * cs + j] = d1 + d2; v[14 * cs + j] = d2 - d1; \
            v[15 * cs + j] = d1 - d3; \
        } \
    } \
    /* m[k * os + j] = (A g A^T)[k / 4, k % 4], g the 2x2 tile at columns 2j, 2j + 1 of \
       rows y0 and y1, A = [[1,0],[1,1],[1,-1],[0,-1]] */ \
    static void tg_wino_grad_##S(const T* y0, const T* y1, T* m, ptrdiff_t os, ptrdiff_t j0, \
                                 ptrdiff_t j1) { \
        _Pragma("omp simd") \
        for (ptrdiff_t j = j0; j < j1; j++) { \
            T g00 = y0[2 * j], g01 = y0[2 * j + 1], g10 = y1[2 * j], g11 = y1[2 * j + 1]; \
            T b0 = g00 + g10, b1 = g01 + g11, c0 = g00 - g10, c1 = g01 - g11; \
            m[j] = g00; m[os + j] = g00 + g01; m[2 * os + j] = g00 - g01; \
            m[3 * os + j] = -g01; \
            m[4 * os + j] = b0; m[5 * os + j] = b0 + b1; m[6 * os + j] = b0 - b1; \
            m[7 * os + j] = -b1; \
            m[8 * os + j] = c0; m[9 * os + j] = c0 + c1; m[10 * os + j] = c0 - c1; \
            m[11 * os + j] = -c1; \
            m[12 * os + j] = -g10; m[13 * os + j] = -g10 - g11; m[14 * os + j] = g11 - g10; \
            m[15 * os + j] = g11; \
        } \
    } \
    /* columns 2j, 2j + 1 of rows y0, y1 = A^T M A + bias, A^T = [[1,1,1,0],[0,1,-1,-1]] */ \
    static void tg_wino_out_##S(const T* m, ptrdiff_t os, T* y0, T* y1, T bias, ptrdiff_t j0, \
                                ptrdiff_t j1) { \
        _Pragma("omp simd") \
        for (ptrdiff_t j = j0; j < j1; j++) { \
            T q0 = m[j] + m[4 * os + j] + m[8 * os + j]; \
            T q1 = m[os + j] + m[5 * os + j] + m[9 * os + j]; \
            T q2 = m[2 * os + j] + m[6 * os + j] + m[10 * os + j]; \
            T q3 = m[3 * os + j] + m[7 * os + j] + m[11 * os + j]; \
            T r0 = m[4 * os + j] - m[8 * os + j] - m[12 * os + j]; \
            T r1 = m[5 * os + j] - m[9 * os + j] - m[13 * os + j]; \
            T r2 = m[6 * os + j] - m[10 * os + j] - m[14 * os + j]; \
            T r3 = m[7 * os + j] - m[11 * os + j] - m[15 * os + j]; \
            y0[2 * j] = q0 + q1 + q2 + bias; \
            y0[2 * j + 1] = q1 - q2 - q3 + bias; \
            y1[2 * j] = r0 + r1 + r2 + bias; \
            y1[2 * j + 1] = r1 - r2 - r3 + bias; \
        } \
    }
    TG_WINO_TILES(float, f)
    TG_WINO_TILES(double, d)
    """
    void tg_wino_in_f(const float* r, Py_ssize_t L, float* v, Py_ssize_t cs, Py_ssize_t j0,
                      Py_ssize_t j1) nogil
    void tg_wino_in_d(const double* r, Py_ssize_t L, double* v, Py_ssize_t cs, Py_ssize_t j0,
                      Py_ssize_t j1) nogil
    void tg_wino_grad_f(const float* y0, const float* y1, float* m, Py_ssize_t os,
                        Py_ssize_t j0, Py_ssize_t j1) nogil
    void tg_wino_grad_d(const double* y0, const double* y1, double* m, Py_ssize_t os,
                        Py_ssize_t j0, Py_ssize_t j1) nogil
    void tg_wino_out_f(const float* m, Py_ssize_t os, float* y0, float* y1, float bias,
                       Py_ssize_t j0, Py_ssize_t j1) nogil
    void tg_wino_out_d(const double* m, Py_ssize_t os, double* y0, double* y1, double bias,
                       Py_ssize_t j0, Py_ssize_t j1) nogil


cdef inline void _tiles_in(const real* r, Py_ssize_t L, real* v, Py_ssize_t cs, Py_ssize_t j0,
                           Py_ssize_t j1) noexcept nogil:
    if real is float:
        tg_wino_in_f(r, L, v, cs, j0, j1)
    else:
        tg_wino_in_d(r, L, v, cs, j0, j1)


# The even / odd column split of an input row with explicit vectors: two loads, two
# shuffles and two stores per 16 (float) or 8 (double) tiles; float rows on AVX-512 builds
# in masked vectors, so a row segment shorter than a vector (16 tiles on a 32-pixel-wide
# image) is not left to scalar code. The NaN / infinity check (0 * every value read) stays
# in a vector of lane sums the caller keeps for a whole block, rather than one horizontal
# sum per row segment.
cdef extern from *:
    """
    typedef float tg_v16f __attribute__((vector_size(64), aligned(4), may_alias));
    typedef double tg_v8d __attribute__((vector_size(64), aligned(8), may_alias));
    typedef int tg_v16i __attribute__((vector_size(64)));
    typedef long long tg_v8l __attribute__((vector_size(64)));
    #define TG_EVEN16 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
    #define TG_ODD16 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
    #define TG_EVEN8 0, 2, 4, 6, 8, 10, 12, 14
    #define TG_ODD8 1, 3, 5, 7, 9, 11, 13, 15
    /* float rows with AVX-512: every tile of the row in masked vectors (rows are often
       shorter than one vector; masked-off lanes read nothing and stay zero) */
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #define TG_SPLIT_MASKED_f \
        for (; q < hi; q += 16) { \
            ptrdiff_t r = hi - q < 16 ? hi - q : 16; \
            __mmask16 m = (__mmask16)((1u << r) - 1u); \
            __mmask16 m0 = (__mmask16)(r >= 8 ? 0xffffu : (1u << (2 * r)) - 1u); \
            __mmask16 m1 = (__mmask16)(r > 8 ? (1u << (2 * r - 16)) - 1u : 0u); \
            __m512 u0 = _mm512_maskz_loadu_ps(m0, xs + 2 * q); \
            __m512 u1 = _mm512_maskz_loadu_ps(m1, xs + 2 * q + 16); \
            __m512 ev = _mm512_permutex2var_ps(u0, (__m512i)(tg_v16i){TG_EVEN16}, u1); \
            __m512 od = _mm512_permutex2var_ps(u0, (__m512i)(tg_v16i){TG_ODD16}, u1); \
            _mm512_mask_storeu_ps(e + q, m, ev); \
            _mm512_mask_storeu_ps(o + q, m, od); \
            a += (tg_v16f)_mm512_mul_ps(_mm512_setzero_ps(), _mm512_add_ps(ev, od)); \
        }
    #else
    #define TG_SPLIT_MASKED_f
    #endif
    #define TG_SPLIT_MASKED_d
    /* F(4x4)'s four column phases of a float row the same way: four masked loads, three
       shuffles per phase */
    #if defined(__AVX512F__)
    #define TG_W4_MASKED_f \
        { \
            tg_v16f a = *(tg_v16f*)chk; \
            const __m512i i0 = (__m512i)(tg_v16i){0, 4, 8, 12, 16, 20, 24, 28, \
                                                  0, 4, 8, 12, 16, 20, 24, 28}; \
            const __m512i cat = (__m512i)(tg_v16i){0, 1, 2, 3, 4, 5, 6, 7, \
                                                   16, 17, 18, 19, 20, 21, 22, 23}; \
            for (; qv < hi; qv += 16) { \
                ptrdiff_t r = hi - qv < 16 ? hi - qv : 16; \
                __m512 u[4]; \
                for (int i = 0; i < 4; i++) { \
                    ptrdiff_t k = 4 * r - 16 * i; \
                    k = k < 0 ? 0 : (k > 16 ? 16 : k); \
                    u[i] = _mm512_maskz_loadu_ps((__mmask16)((1u << k) - 1u), \
                                                 xs + 4 * qv + 16 * i); \
                } \
                __mmask16 m = (__mmask16)((1u << r) - 1u); \
                for (int f = 0; f < 4; f++) { \
                    __m512i idx = _mm512_add_epi32(i0, _mm512_set1_epi32(f)); \
                    __m512 lo8 = _mm512_permutex2var_ps(u[0], idx, u[1]); \
                    __m512 hi8 = _mm512_permutex2var_ps(u[2], idx, u[3]); \
                    __m512 ph = _mm512_permutex2var_ps(lo8, cat, hi8); \
                    _mm512_mask_storeu_ps(e + f * L + qv, m, ph); \
                    a += (tg_v16f)_mm512_mul_ps(_mm512_setzero_ps(), ph); \
                } \
            } \
            *(tg_v16f*)chk = a; \
        }
    #else
    #define TG_W4_MASKED_f
    #endif
    #define TG_W4_MASKED_d
    #define TG_SPLIT2(T, S, V, M, EV, OD) \
    /* tg_wino_split's e and o; 0 * the values read goes to the lanes of chk (L of them) \
       and the returned scalar */ \
    static T tg_wino_split2_##S(const T* xr, ptrdiff_t w, ptrdiff_t p, T* e, T* o, \
                                ptrdiff_t q0, ptrdiff_t q1, T* chk) { \
        const ptrdiff_t L = 64 / sizeof(T); \
        ptrdiff_t lo = (p + 1) / 2, hi = (w + p) / 2; /* 2q - p >= 0, 2q + 1 - p < w */ \
        if (lo < q0) lo = q0; \
        if (hi > q1) hi = q1; \
        if (hi < lo) hi = lo; \
        T acc = 0; \
        ptrdiff_t q; \
        for (q = q0; q < lo && q < q1; q++) { \
            ptrdiff_t s = 2 * q - p; \
            e[q] = (s >= 0 && s < w) ? xr[s] : (T)0; \
            o[q] = (s + 1 >= 0 && s + 1 < w) ? xr[s + 1] : (T)0; \
            acc += 0 * (e[q] + o[q]); \
        } \
        const T* xs = xr - p; \
        V a = *(V*)chk; \
        q = lo; \
        TG_SPLIT_MASKED_##S \
        for (; q + L <= hi; q += L) { \
            V u0 = *(const V*)(xs + 2 * q), u1 = *(const V*)(xs + 2 * q + L); \
            V ev = __builtin_shuffle(u0, u1, (M){EV}); \
            V od = __builtin_shuffle(u0, u1, (M){OD}); \
            *(V*)(e + q) = ev; \
            *(V*)(o + q) = od; \
            a += (T)0 * (ev + od); \
        } \
        *(V*)chk = a; \
        for (; q < hi; q++) { \
            e[q] = xs[2 * q]; \
            o[q] = xs[2 * q + 1]; \
            acc += 0 * (e[q] + o[q]); \
        } \
        for (q = hi > lo ? hi : lo; q < q1; q++) { \
            ptrdiff_t s = 2 * q - p; \
            e[q] = (s >= 0 && s < w) ? xr[s] : (T)0; \
            o[q] = (s + 1 >= 0 && s + 1 < w) ? xr[s + 1] : (T)0; \
            acc += 0 * (e[q] + o[q]); \
        } \
        return acc; \
    }
    TG_SPLIT2(float, f, tg_v16f, tg_v16i, TG_EVEN16, TG_ODD16)
    TG_SPLIT2(double, d, tg_v8d, tg_v8l, TG_EVEN8, TG_ODD8)
    """
    float tg_wino_split2_f(const float* xr, Py_ssize_t w, Py_ssize_t p, float* e, float* o,
                           Py_ssize_t q0, Py_ssize_t q1, float* chk) nogil
    double tg_wino_split2_d(const double* xr, Py_ssize_t w, Py_ssize_t p, double* e,
                            double* o, Py_ssize_t q0, Py_ssize_t q1, double* chk) nogil


cdef inline real _split(const real* xr, Py_ssize_t w, Py_ssize_t p, real* e, real* o,
                        Py_ssize_t q0, Py_ssize_t q1, real* chk) noexcept nogil:
    if real is float:
        return tg_wino_split2_f(xr, w, p, e, o, q0, q1, chk)
    else:
        return tg_wino_split2_d(xr, w, p, e, o, q0, q1, chk)


cdef inline void _tiles_grad(const real* y0, const real* y1, real* m, Py_ssize_t os,
                             Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    if real is float:
        tg_wino_grad_f(y0, y1, m, os, j0, j1)
    else:
        tg_wino_grad_d(y0, y1, m, os, j0, j1)


cdef inline void _tiles_out(const real* m, Py_ssize_t os, real* y0, real* y1, real bias,
                            Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    if real is float:
        tg_wino_out_f(m, os, y0, y1, bias, j0, j1)
    else:
        tg_wino_out_d(m, os, y0, y1, bias, j0, j1)


def applies(w_shape, stride, dilation, groups) -> bool:
    """Whether a call is one Winograd F(2x2, 3x3) runs: a 3x3 kernel, stride 1, dilation 1,
    one group (any padding)."""
    return (
        tuple(w_shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and int(groups) == 1
    )


cdef real _input_block(const real* x, real* v, real* rows, Py_ssize_t c, Py_ssize_t h,
                       Py_ssize_t w, Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t block,
                       Py_ssize_t th, Py_ssize_t tw, Py_ssize_t ph,
                       Py_ssize_t pw) noexcept nogil:
    # v[k, ch, t] = (B^T d B)[k // 4, k % 4] for tile t0 + t,
    # B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]. The block's tiles run along tile
    # rows: for each row segment and channel the four input rows it reads are split, zero
    # padded, into their even and odd columns (``rows``: 8 rows of tw + 1), and one vector
    # loop transforms the segment's tiles. Returns 0 * the sum of the values of x read: NaN
    # when one of them is a NaN or an infinity.
    cdef Py_ssize_t per_image = th * tw, ch, t, tile, img, rem, tr, tc, seg, i, q
    cdef Py_ssize_t r0, r, lw = tw + 1, cs = c * block + _PAD
    cdef real* e
    cdef real* od
    cdef real acc = 0
    cdef real chk[16]  # lane sums of the check (16 floats or 8 doubles used)
    for i in range(16):
        chk[i] = 0
    t = 0
    while t < cnt:
        tile = t0 + t
        img = tile // per_image
        rem = tile - img * per_image
        tr = rem // tw
        tc = rem - tr * tw
        seg = tw - tc
        if seg > cnt - t:
            seg = cnt - t
        r0 = 2 * tr - ph
        for ch in range(c):
            for i in range(4):
                e = rows + 2 * i * lw
                od = e + lw
                r = r0 + i
                if r < 0 or r >= h:
                    for q in range(tc, tc + seg + 1):
                        e[q] = 0
                        od[q] = 0
                else:
                    acc += _split(x + ((img * c + ch) * h + r) * w, w, pw, e, od, tc,
                                  tc + seg + 1, &chk[0])
            _tiles_in(rows, lw, v + ch * block + t - tc, cs, tc, tc + seg)
        t += seg
    for i in range(16):
        acc += chk[i]
    return acc


cdef void _output_block(const real* m, real* y, const real* bias, bint has_bias,
                        real* scratch, Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo,
                        Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t block, Py_ssize_t th,
                        Py_ssize_t tw) noexcept nogil:
    # y tile = A^T M A, A^T = [[1,1,1,0],[0,1,-1,-1]], a tile row segment at a time; a tile
    # row's second output row, when it is past the output, goes to ``scratch`` (2 tw)
    cdef Py_ssize_t per_image = th * tw, oc, t, tile, img, rem, tr, tc, seg, jfull, jend, r0
    cdef Py_ssize_t os = o * block + _PAD
    cdef const real* mp
    cdef real* y0
    cdef real* y1
    cdef real bv
    cdef real last[4]
    cdef bint two_rows
    t = 0
    while t < cnt:
        tile = t0 + t
        img = tile // per_image
        rem = tile - img * per_image
        tr = rem // tw
        tc = rem - tr * tw
        seg = tw - tc
        if seg > cnt - t:
            seg = cnt - t
        r0 = 2 * tr
        two_rows = r0 + 1 < ho
        jfull = wo // 2  # tile columns with both output columns inside
        jend = tc + seg if tc + seg < jfull else jfull
        for oc in range(o):
            bv = bias[oc] if has_bias else 0
            mp = m + oc * block + t - tc
            y0 = y + ((img * o + oc) * ho + r0) * wo
            y1 = y0 + wo if two_rows else scratch
            if jend > tc:
                _tiles_out(mp, os, y0, y1, bv, tc, jend)
            if tc + seg > jfull:  # an odd width's last tile column: one output column
                _tiles_out(mp + jfull, os, &last[0], &last[2], bv, 0, 1)
                y0[2 * jfull] = last[0]
                if two_rows:
                    y0[wo + 2 * jfull] = last[2]
        t += seg


cdef void _grad_block(const real* gy, real* gm, real* zeros, Py_ssize_t o, Py_ssize_t ho,
                      Py_ssize_t wo, Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t block,
                      Py_ssize_t th, Py_ssize_t tw) noexcept nogil:
    # gm[k, oc, t] = (A g A^T)[k // 4, k % 4] for the 2x2 output-gradient tile g of tile
    # t0 + t (zero outside the output), A = [[1,0],[1,1],[1,-1],[0,-1]]: the transpose of
    # ``_output_block``, a tile row segment at a time (``zeros``: 2 tw, the row past the
    # output of an odd height)
    cdef Py_ssize_t per_image = th * tw, oc, t, tile, img, rem, tr, tc, seg, jfull, jend, r0
    cdef Py_ssize_t os = o * block + _PAD, q
    cdef real* mp
    cdef const real* y0
    cdef const real* y1
    cdef real last[4]
    cdef bint two_rows
    for q in range(2 * tw):
        zeros[q] = 0
    t = 0
    while t < cnt:
        tile = t0 + t
        img = tile // per_image
        rem = tile - img * per_image
        tr = rem // tw
        tc = rem - tr * tw
        seg = tw - tc
        if seg > cnt - t:
            seg = cnt - t
        r0 = 2 * tr
        two_rows = r0 + 1 < ho
        jfull = wo // 2
        jend = tc + seg if tc + seg < jfull else jfull
        for oc in range(o):
            mp = gm + oc * block + t - tc
            y0 = gy + ((img * o + oc) * ho + r0) * wo
            y1 = y0 + wo if two_rows else zeros
            if jend > tc:
                _tiles_grad(y0, y1, mp, os, tc, jend)
            if tc + seg > jfull:  # an odd width's last tile column
                last[0] = y0[2 * jfull]
                last[1] = 0
                last[2] = y1[2 * jfull]
                last[3] = 0
                _tiles_grad(&last[0], &last[2], mp + jfull, os, 0, 1)
        t += seg


def weight_grad_threads(const real[:, :, :, ::1] x, const real[:, :, :, ::1] gy,
                        real[:, :, :, ::1] du, real[:, ::1] vbuf, real[:, ::1] mbuf,
                        real[:, ::1] rowbuf, int ph, int pw, Py_ssize_t block, size_t gemm,
                        int nt):
    """du[thread, k] += sum over the thread's tiles of GM[k] @ V[k]^T: each thread takes
    whole blocks of ``block`` tiles (static schedule: the same blocks and order every call,
    so the summed parts are repeatable), transforms the input tiles into ``vbuf[thread]``
    and the output-gradient tiles into ``mbuf[thread]``, and multiplies."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t th = (ho + 1) // 2, tw = (wo + 1) // 2
    cdef Py_ssize_t tiles = n * th * tw, nblocks = (tiles + block - 1) // block
    cdef Py_ssize_t blk, t0, cnt, k
    cdef int tid
    cdef real* v
    cdef real* m
    with nogil:
        for blk in prange(nblocks, schedule="static", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            t0 = blk * block
            cnt = tiles - t0
            if cnt > block:
                cnt = block
            v = &vbuf[tid, 0]
            m = &mbuf[tid, 0]
            _input_block(&x[0, 0, 0, 0], v, &rowbuf[tid, 0], c, h, w, t0, cnt, block, th, tw,
                         ph, pw)
            _grad_block(&gy[0, 0, 0, 0], m, &rowbuf[tid, 8 * (tw + 1)], o, ho, wo, t0, cnt,
                        block, th, tw)
            for k in range(16):
                _gemm(gemm, False, True, o, c, cnt, m + k * (o * block + _PAD), block,
                      v + k * (c * block + _PAD), block, 1, &du[tid, k, 0, 0], c)


# F(4x4, 3x3): 6x6 input tiles at a stride of 4, B^T, G, A^T of Lavin and Gray (points 0,
# +-1, +-2, infinity). The same pieces as above, with each input row split into its four
# column phases.
cdef extern from *:
    """
    #define TG_BT6(o0, o1, o2, o3, o4, o5, d0, d1, d2, d3, d4, d5) do { \
        o0 = 4 * d0 - 5 * d2 + d4; \
        o1 = d3 + d4 - 4 * (d1 + d2); \
        o2 = d4 - d3 + 4 * (d1 - d2); \
        o3 = d4 - d2 + 2 * (d3 - d1); \
        o4 = d4 - d2 + 2 * (d1 - d3); \
        o5 = 4 * d1 - 5 * d3 + d5; \
    } while (0)
    #define TG_AT6(o0, o1, o2, o3, m0, m1, m2, m3, m4, m5) do { \
        o0 = m0 + m1 + m2 + m3 + m4; \
        o1 = m1 - m2 + 2 * (m3 - m4); \
        o2 = m1 + m2 + 4 * (m3 + m4); \
        o3 = m1 - m2 + 8 * (m3 - m4) + m5; \
    } while (0)
    #define TG_WINO4_TILES(T, S) \
    /* v[k * cs + j] = (B^T d B)[k / 6, k % 6] of tile j: input row i's column phase f at \
       r + (4 i + f) L; the tile's six columns are phases 0-3 of j and 0-1 of j + 1. Rows \
       first (B^T d, per phase, into t: row a's phase f at t + (4 a + f) L), then columns. */ \
    static void tg_w4_in_##S(const T* r, T* t, ptrdiff_t L, T* v, ptrdiff_t cs, ptrdiff_t j0, \
                             ptrdiff_t j1) { \
        for (int f = 0; f < 4; f++) { \
            const T *d0 = r + f * L, *d1 = d0 + 4 * L, *d2 = d0 + 8 * L, *d3 = d0 + 12 * L; \
            const T *d4 = d0 + 16 * L, *d5 = d0 + 20 * L; \
            T *o0 = t + f * L, *o1 = o0 + 4 * L, *o2 = o0 + 8 * L, *o3 = o0 + 12 * L; \
            T *o4 = o0 + 16 * L, *o5 = o0 + 20 * L; \
            ptrdiff_t q1 = f < 2 ? j1 + 1 : j1; \
            _Pragma("omp simd") \
            for (ptrdiff_t q = j0; q < q1; q++) \
                TG_BT6(o0[q], o1[q], o2[q], o3[q], o4[q], o5[q], \
                       d0[q], d1[q], d2[q], d3[q], d4[q], d5[q]); \
        } \
        for (int a = 0; a < 6; a++) { \
            const T *p0 = t + 4 * a * L, *p1 = p0 + L, *p2 = p0 + 2 * L, *p3 = p0 + 3 * L; \
            T* w = v + 6 * a * cs; \
            _Pragma("omp simd") \
            for (ptrdiff_t j = j0; j < j1; j++) \
                TG_BT6(w[j], w[cs + j], w[2 * cs + j], w[3 * cs + j], w[4 * cs + j], \
                       w[5 * cs + j], p0[j], p1[j], p2[j], p3[j], p0[j + 1], p1[j + 1]); \
        } \
    } \
    /* f-th column phase: e_f[q] = xr[4 q + f - p] for q in [q0, q1), zero outside [0, w); \
       phase f at e + f L; returns 0 * the sum of the values read (NaN for a NaN or inf) */ \
    static T tg_w4_split_##S(const T* xr, ptrdiff_t w, ptrdiff_t p, T* e, ptrdiff_t L, \
                                ptrdiff_t q0, ptrdiff_t q1, T* chk) { \
        ptrdiff_t lo = (p + 3) / 4, hi = (w + p) / 4; /* 4q - p >= 0, 4q + 3 - p < w */ \
        if (lo < q0) lo = q0; \
        if (hi > q1) hi = q1; \
        if (hi < lo) hi = lo; \
        T *e0 = e, *e1 = e + L, *e2 = e + 2 * L, *e3 = e + 3 * L; \
        T acc = 0; \
        for (ptrdiff_t q = q0; q < q1; q++) { \
            if (q == lo) { q = hi; if (q >= q1) break; } \
            for (int f = 0; f < 4; f++) { \
                ptrdiff_t s = 4 * q + f - p; \
                e[f * L + q] = (s >= 0 && s < w) ? xr[s] : (T)0; \
                acc += 0 * e[f * L + q]; \
            } \
        } \
        const T* xs = xr - p; \
        ptrdiff_t qv = lo; \
        TG_W4_MASKED_##S \
        _Pragma("omp simd reduction(+:acc)") \
        for (ptrdiff_t q = qv; q < hi; q++) { \
            e0[q] = xs[4 * q]; \
            e1[q] = xs[4 * q + 1]; \
            e2[q] = xs[4 * q + 2]; \
            e3[q] = xs[4 * q + 3]; \
            acc += 0 * (e0[q] + e1[q] + e2[q] + e3[q]); \
        } \
        return acc; \
    } \
    /* columns 4j .. 4j + 3 of rows y[0..3] = A^T M A + bias: A^T M per column b of the \
       tiles into t (row a, column b at t + (6 a + b) L), then A^T M A a row at a time */ \
    static void tg_w4_out_##S(const T* m, ptrdiff_t os, T* t, ptrdiff_t L, T* y0, T* y1, \
                              T* y2, T* y3, T bias, ptrdiff_t j0, ptrdiff_t j1) { \
        for (int b = 0; b < 6; b++) { \
            const T *m0 = m + b * os, *m1 = m0 + 6 * os, *m2 = m0 + 12 * os; \
            const T *m3 = m0 + 18 * os, *m4 = m0 + 24 * os, *m5 = m0 + 30 * os; \
            T *o0 = t + b * L, *o1 = o0 + 6 * L, *o2 = o0 + 12 * L, *o3 = o0 + 18 * L; \
            _Pragma("omp simd") \
            for (ptrdiff_t j = j0; j < j1; j++) \
                TG_AT6(o0[j], o1[j], o2[j], o3[j], m0[j], m1[j], m2[j], m3[j], m4[j], m5[j]); \
        } \
        T* ys[4] = {y0, y1, y2, y3}; \
        for (int a = 0; a < 4; a++) { \
            const T *p0 = t + 6 * a * L, *p1 = p0 + L, *p2 = p0 + 2 * L, *p3 = p0 + 3 * L; \
            const T *p4 = p0 + 4 * L, *p5 = p0 + 5 * L; \
            T* y = ys[a]; \
            _Pragma("omp simd") \
            for (ptrdiff_t j = j0; j < j1; j++) { \
                T c0, c1, c2, c3; \
                TG_AT6(c0, c1, c2, c3, p0[j], p1[j], p2[j], p3[j], p4[j], p5[j]); \
                y[4 * j] = c0 + bias; \
                y[4 * j + 1] = c1 + bias; \
                y[4 * j + 2] = c2 + bias; \
                y[4 * j + 3] = c3 + bias; \
            } \
        } \
    }
    TG_WINO4_TILES(float, f)
    TG_WINO4_TILES(double, d)
    """
    void tg_w4_in_f(const float* r, float* t, Py_ssize_t L, float* v, Py_ssize_t cs,
                    Py_ssize_t j0, Py_ssize_t j1) nogil
    void tg_w4_in_d(const double* r, double* t, Py_ssize_t L, double* v, Py_ssize_t cs,
                    Py_ssize_t j0, Py_ssize_t j1) nogil
    float tg_w4_split_f(const float* xr, Py_ssize_t w, Py_ssize_t p, float* e, Py_ssize_t L,
                       Py_ssize_t q0, Py_ssize_t q1, float* chk) nogil
    double tg_w4_split_d(const double* xr, Py_ssize_t w, Py_ssize_t p, double* e, Py_ssize_t L,
                         Py_ssize_t q0, Py_ssize_t q1, double* chk) nogil
    void tg_w4_out_f(const float* m, Py_ssize_t os, float* t, Py_ssize_t L, float* y0,
                     float* y1, float* y2, float* y3, float bias, Py_ssize_t j0,
                     Py_ssize_t j1) nogil
    void tg_w4_out_d(const double* m, Py_ssize_t os, double* t, Py_ssize_t L, double* y0,
                     double* y1, double* y2, double* y3, double bias, Py_ssize_t j0,
                     Py_ssize_t j1) nogil


# F(4x4, 3x3) in float32 on AVX-512 builds, every step in vector registers (the tiles of a
# block across the lanes): each thread's block of tiles is transformed into V (36 matrices
# of C rows and ``ld`` tiles), multiplied by the packed transformed weights with a
# register-tiled kernel (8 output channels x 48 tiles of accumulators: no BLAS call, whose
# fixed cost and packing dominate GEMMs of a block's size) into M (36 matrices of O8 rows),
# and folded back with bias (and ReLU) into y. A tile row is taken 16 tiles at a time: its
# six input rows are read as contiguous vectors (zero outside the image by load masks),
# combined by B^T, split into the six column phases by permutes, combined again by B.
cdef extern from *:
    """
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #define TG_W4F_FAST 1
    #define TG_BT6V(o0, o1, o2, o3, o4, o5, d0, d1, d2, d3, d4, d5) do { \
        const __m512 f4_ = _mm512_set1_ps(4.0f), f5_ = _mm512_set1_ps(5.0f); \
        const __m512 f2_ = _mm512_set1_ps(2.0f); \
        __m512 s42_ = _mm512_sub_ps(d4, d2); \
        __m512 d13_ = _mm512_sub_ps(d1, d3); \
        o0 = _mm512_add_ps(_mm512_fnmadd_ps(f5_, d2, _mm512_mul_ps(f4_, d0)), d4); \
        o1 = _mm512_fnmadd_ps(f4_, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4)); \
        o2 = _mm512_fmadd_ps(f4_, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3)); \
        o3 = _mm512_fnmadd_ps(f2_, d13_, s42_); \
        o4 = _mm512_fmadd_ps(f2_, d13_, s42_); \
        o5 = _mm512_add_ps(_mm512_fnmadd_ps(f5_, d3, _mm512_mul_ps(f4_, d1)), d5); \
    } while (0)
    #define TG_AT6V(o0, o1, o2, o3, m0, m1, m2, m3, m4, m5) do { \
        __m512 p12_ = _mm512_add_ps(m1, m2), n12_ = _mm512_sub_ps(m1, m2); \
        __m512 p34_ = _mm512_add_ps(m3, m4), n34_ = _mm512_sub_ps(m3, m4); \
        o0 = _mm512_add_ps(_mm512_add_ps(m0, p12_), p34_); \
        o1 = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), n34_, n12_); \
        o2 = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), p34_, p12_); \
        o3 = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), n34_, n12_), m5); \
    } while (0)
    /* The segment of tiles starting at tile index ``tile`` (image-major, then tile row,
       then tile column on a th x tw grid): its image, tile row and first column, and its
       length: to the end of the tile row, at most ``left`` tiles and at most 16 (a vector). */
    static inline ptrdiff_t tg_w4f_segment(ptrdiff_t tile, ptrdiff_t left, ptrdiff_t th,
                                           ptrdiff_t tw, ptrdiff_t* img, ptrdiff_t* tr,
                                           ptrdiff_t* tc) {
        ptrdiff_t per_image = th * tw;
        *img = tile / per_image;
        ptrdiff_t rem = tile - *img * per_image;
        *tr = rem / tw;
        *tc = rem - *tr * tw;
        ptrdiff_t s = tw - *tc;
        if (s > left) s = left;
        return s > 16 ? 16 : s;
    }
    static inline __mmask16 tg_w4f_span(ptrdiff_t a, ptrdiff_t lo, ptrdiff_t hi) {
        /* lanes l of a vector starting at column a with lo <= a + l < hi */
        ptrdiff_t l0 = lo - a, l1 = hi - a;
        if (l0 < 0) l0 = 0;
        if (l1 > 16) l1 = 16;
        if (l1 <= l0) return 0;
        return (__mmask16)(((1u << l1) - 1u) & ~((1u << l0) - 1u));
    }
    /* v[k * vs + ch * vc + t] = (B^T d B)[k / 6, k % 6] of block tile t (tile t0 + t);
       returns 0 * the sum of the values read (NaN for a NaN or an infinity) */
    static float tg_w4f_input(const float* x, float* v, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                              ptrdiff_t t0, ptrdiff_t cnt, ptrdiff_t vs, ptrdiff_t vc,
                              ptrdiff_t th, ptrdiff_t tw, ptrdiff_t ph, ptrdiff_t pw) {
        const __m512 zero = _mm512_setzero_ps();
        __m512 chk = zero;
        const __m512i i0 = _mm512_set_epi32(60, 56, 52, 48, 44, 40, 36, 32,
                                            28, 24, 20, 16, 12, 8, 4, 0);
        const __m512i sh0 = _mm512_set_epi32(16, 15, 14, 13, 12, 11, 10, 9,
                                             8, 7, 6, 5, 4, 3, 2, 1);
        const __m512i sh1 = _mm512_set_epi32(17, 15, 14, 13, 12, 11, 10, 9,
                                             8, 7, 6, 5, 4, 3, 2, 1);
        ptrdiff_t t = 0;
        while (t < cnt) {
            ptrdiff_t img, tr, tc;
            ptrdiff_t s = tg_w4f_segment(t0 + t, cnt - t, th, tw, &img, &tr, &tc);
            ptrdiff_t col0 = 4 * tc - pw, r0 = 4 * tr - ph;
            int nv = (int)((4 * s + 2 + 15) / 16);
            __mmask16 cm[5];
            for (int q = 0; q < 5; q++)
                cm[q] = q < nv ? tg_w4f_span(col0 + 16 * q, 0, w) : 0;
            int rv[6];
            for (int i = 0; i < 6; i++) rv[i] = r0 + i >= 0 && r0 + i < h;
            __mmask16 sm = (__mmask16)((1u << s) - 1u);
            for (ptrdiff_t ch = 0; ch < c; ch++) {
                const float* pl = x + ((img * c + ch) * h + r0) * w + col0;
                __m512 T[6][5];
                for (int q = 0; q < 5; q++) {
                    if (q >= nv) {
                        for (int a = 0; a < 6; a++) T[a][q] = zero;
                        continue;
                    }
                    __m512 d[6];
                    for (int i = 0; i < 6; i++)
                        d[i] = rv[i] ? _mm512_maskz_loadu_ps(cm[q], pl + i * w + 16 * q) : zero;
                    /* one step of the check's dependency chain per vector of columns */
                    __m512 sum = _mm512_add_ps(_mm512_add_ps(d[0], d[1]),
                                               _mm512_add_ps(_mm512_add_ps(d[2], d[3]),
                                                             _mm512_add_ps(d[4], d[5])));
                    chk = _mm512_fmadd_ps(sum, zero, chk);
                    TG_BT6V(T[0][q], T[1][q], T[2][q], T[3][q], T[4][q], T[5][q],
                            d[0], d[1], d[2], d[3], d[4], d[5]);
                }
                float* vo = v + ch * vc + t;
                for (int a = 0; a < 6; a++) {
                    __m512 P[6];
                    for (int f = 0; f < 4; f++) {
                        __m512i idx = _mm512_add_epi32(i0, _mm512_set1_epi32(f));
                        __m512 lo = _mm512_permutex2var_ps(T[a][0], idx, T[a][1]);
                        __m512 hi = _mm512_permutex2var_ps(T[a][2],
                            _mm512_sub_epi32(idx, _mm512_set1_epi32(32)), T[a][3]);
                        P[f] = _mm512_mask_blend_ps((__mmask16)0xff00, lo, hi);
                    }
                    P[4] = _mm512_permutex2var_ps(P[0], sh0, T[a][4]);
                    P[5] = _mm512_permutex2var_ps(P[1], sh1, T[a][4]);
                    __m512 o[6];
                    TG_BT6V(o[0], o[1], o[2], o[3], o[4], o[5],
                            P[0], P[1], P[2], P[3], P[4], P[5]);
                    for (int b = 0; b < 6; b++)
                        _mm512_mask_storeu_ps(vo + (6 * a + b) * vs, sm, o[b]);
                }
            }
            t += s;
        }
        return _mm512_reduce_add_ps(chk);
    }
    /* 8 rows of m (row stride ldm) x 16 NV tiles = u (packed: c rows of 8) @ v (c rows of
       16 NV tiles, row stride ldv): the accumulators stay in registers over the c rows */
    #define TG_W4F_MK(NV) \
    static inline void tg_w4f_mk##NV(const float* u, const float* v, ptrdiff_t ldv, \
                                     ptrdiff_t c, float* m, ptrdiff_t ldm) { \
        __m512 acc[8][NV]; \
        _Pragma("GCC unroll 8") \
        for (int r = 0; r < 8; r++) \
            _Pragma("GCC unroll 4") \
            for (int n = 0; n < NV; n++) acc[r][n] = _mm512_setzero_ps(); \
        for (ptrdiff_t k = 0; k < c; k++) { \
            __m512 b[NV]; \
            _Pragma("GCC unroll 4") \
            for (int n = 0; n < NV; n++) b[n] = _mm512_loadu_ps(v + k * ldv + 16 * n); \
            _Pragma("GCC unroll 8") \
            for (int r = 0; r < 8; r++) { \
                __m512 a = _mm512_set1_ps(u[8 * k + r]); \
                _Pragma("GCC unroll 4") \
                for (int n = 0; n < NV; n++) acc[r][n] = _mm512_fmadd_ps(a, b[n], acc[r][n]); \
            } \
        } \
        _Pragma("GCC unroll 8") \
        for (int r = 0; r < 8; r++) \
            _Pragma("GCC unroll 4") \
            for (int n = 0; n < NV; n++) _mm512_storeu_ps(m + r * ldm + 16 * n, acc[r][n]); \
    }
    TG_W4F_MK(1)
    TG_W4F_MK(2)
    TG_W4F_MK(3)
    /* m[k] (o8 rows of ld) = up[k] @ v[k] for the first 16 nv tiles of the block, k < 36;
       up[k] is o8 / 8 panels of c rows of 8 output channels */
    static void tg_w4f_gemm(const float* up, const float* v, float* m, ptrdiff_t c,
                            ptrdiff_t o8, ptrdiff_t vs, ptrdiff_t vc, ptrdiff_t ms,
                            ptrdiff_t mo, ptrdiff_t ntiles) {
        for (int k = 0; k < 36; k++) {
            const float* uk = up + (ptrdiff_t)k * o8 * c;
            for (ptrdiff_t t = 0; t < ntiles; t += 48) {
                ptrdiff_t nv = (ntiles - t) / 16;
                if (nv > 3) nv = 3;
                const float* vk = v + k * vs + t;
                float* mk = m + k * ms + t;
                for (ptrdiff_t ob = 0; ob < o8; ob += 8) {
                    const float* u8 = uk + ob * c;
                    float* m8 = mk + ob * mo;
                    if (nv == 3) tg_w4f_mk3(u8, vk, vc, c, m8, mo);
                    else if (nv == 2) tg_w4f_mk2(u8, vk, vc, c, m8, mo);
                    else tg_w4f_mk1(u8, vk, vc, c, m8, mo);
                }
            }
        }
    }
    /* rows 4 tr .. 4 tr + 3 of y (those inside) = A^T M A + bias (then max(., 0) when relu)
       of each block tile, 16 tiles of a tile row at a time */
    static void tg_w4f_output(const float* m, float* y, const float* bias, int has_bias,
                              int relu, ptrdiff_t o, ptrdiff_t ho, ptrdiff_t wo, ptrdiff_t t0,
                              ptrdiff_t cnt, ptrdiff_t ms, ptrdiff_t mo, ptrdiff_t th,
                              ptrdiff_t tw) {
        const __m512i p_lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4,
                                              19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i p_hi = _mm512_add_epi32(p_lo, _mm512_set1_epi32(8));
        const __m512i q_lo = _mm512_set_epi32(23, 22, 7, 6, 21, 20, 5, 4,
                                              19, 18, 3, 2, 17, 16, 1, 0);
        const __m512i q_hi = _mm512_add_epi32(q_lo, _mm512_set1_epi32(8));
        const __m512 zero = _mm512_setzero_ps();
        ptrdiff_t t = 0;
        while (t < cnt) {
            ptrdiff_t img, tr, tc;
            ptrdiff_t s = tg_w4f_segment(t0 + t, cnt - t, th, tw, &img, &tr, &tc);
            ptrdiff_t col0 = 4 * tc, r0 = 4 * tr;
            int nrows = ho - r0 < 4 ? (int)(ho - r0) : 4;
            int nq = (int)((s + 3) / 4);
            __mmask16 cm[4];
            /* this segment's columns only: the rest of the vector belongs to other tiles */
            ptrdiff_t cend = col0 + 4 * s < wo ? col0 + 4 * s : wo;
            for (int q = 0; q < 4; q++)
                cm[q] = q < nq ? tg_w4f_span(col0 + 16 * q, col0, cend) : 0;
            __mmask16 sm = (__mmask16)((1u << s) - 1u);
            for (ptrdiff_t oc = 0; oc < o; oc++) {
                const float* mp = m + oc * mo + t;
                __m512 bv = _mm512_set1_ps(has_bias ? bias[oc] : 0.0f);
                __m512 R[4][6];
                for (int b = 0; b < 6; b++) {
                    __m512 c0 = _mm512_maskz_loadu_ps(sm, mp + b * ms);
                    __m512 c1 = _mm512_maskz_loadu_ps(sm, mp + (6 + b) * ms);
                    __m512 c2 = _mm512_maskz_loadu_ps(sm, mp + (12 + b) * ms);
                    __m512 c3 = _mm512_maskz_loadu_ps(sm, mp + (18 + b) * ms);
                    __m512 c4 = _mm512_maskz_loadu_ps(sm, mp + (24 + b) * ms);
                    __m512 c5 = _mm512_maskz_loadu_ps(sm, mp + (30 + b) * ms);
                    TG_AT6V(R[0][b], R[1][b], R[2][b], R[3][b], c0, c1, c2, c3, c4, c5);
                }
                float* yo = y + ((img * o + oc) * ho + r0) * wo + col0;
                for (int r = 0; r < nrows; r++) {
                    __m512 e0, e1, e2, e3;
                    TG_AT6V(e0, e1, e2, e3, R[r][0], R[r][1], R[r][2], R[r][3], R[r][4],
                            R[r][5]);
                    e0 = _mm512_add_ps(e0, bv);
                    e1 = _mm512_add_ps(e1, bv);
                    e2 = _mm512_add_ps(e2, bv);
                    e3 = _mm512_add_ps(e3, bv);
                    if (relu) {
                        e0 = _mm512_max_ps(e0, zero);
                        e1 = _mm512_max_ps(e1, zero);
                        e2 = _mm512_max_ps(e2, zero);
                        e3 = _mm512_max_ps(e3, zero);
                    }
                    float* yr = yo + r * wo;
                    __m512 a01 = _mm512_permutex2var_ps(e0, p_lo, e1);
                    __m512 a23 = _mm512_permutex2var_ps(e2, p_lo, e3);
                    _mm512_mask_storeu_ps(yr, cm[0], _mm512_permutex2var_ps(a01, q_lo, a23));
                    if (nq > 1)
                        _mm512_mask_storeu_ps(yr + 16, cm[1],
                                              _mm512_permutex2var_ps(a01, q_hi, a23));
                    if (nq > 2) {
                        __m512 b01 = _mm512_permutex2var_ps(e0, p_hi, e1);
                        __m512 b23 = _mm512_permutex2var_ps(e2, p_hi, e3);
                        _mm512_mask_storeu_ps(yr + 32, cm[2],
                                              _mm512_permutex2var_ps(b01, q_lo, b23));
                        if (nq > 3)
                            _mm512_mask_storeu_ps(yr + 48, cm[3],
                                                  _mm512_permutex2var_ps(b01, q_hi, b23));
                    }
                }
            }
            t += s;
        }
    }
    static float tg_w4f_block(const float* x, const float* up, const float* bias,
                              int has_bias, int relu, float* y, float* v, float* m,
                              ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t o,
                              ptrdiff_t o8, ptrdiff_t ho, ptrdiff_t wo, ptrdiff_t t0,
                              ptrdiff_t cnt, ptrdiff_t ld, ptrdiff_t th, ptrdiff_t tw,
                              ptrdiff_t ph, ptrdiff_t pw) {
        /* V as C groups of the 36 matrices' rows (a tile's 36 values of one channel close
           together for the transform), M likewise by output channel */
        ptrdiff_t vs = ld, vc = 36 * ld, ms = ld, mo = 36 * ld;
        float chk = tg_w4f_input(x, v, c, h, w, t0, cnt, vs, vc, th, tw, ph, pw);
        tg_w4f_gemm(up, v, m, c, o8, vs, vc, ms, mo, (cnt + 15) / 16 * 16);
        tg_w4f_output(m, y, bias, has_bias, relu, o, ho, wo, t0, cnt, ms, mo, th, tw);
        return chk;
    }
    #else
    #define TG_W4F_FAST 0
    static float tg_w4f_block(const float* x, const float* up, const float* bias,
                              int has_bias, int relu, float* y, float* v, float* m,
                              ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t o,
                              ptrdiff_t o8, ptrdiff_t ho, ptrdiff_t wo, ptrdiff_t t0,
                              ptrdiff_t cnt, ptrdiff_t ld, ptrdiff_t th, ptrdiff_t tw,
                              ptrdiff_t ph, ptrdiff_t pw) {
        return 0;
    }
    #endif
    """
    int TG_W4F_FAST
    float tg_w4f_block(const float* x, const float* up, const float* bias, int has_bias,
                       int relu, float* y, float* v, float* m, Py_ssize_t c, Py_ssize_t h,
                       Py_ssize_t w, Py_ssize_t o, Py_ssize_t o8, Py_ssize_t ho, Py_ssize_t wo,
                       Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t ld, Py_ssize_t th,
                       Py_ssize_t tw, Py_ssize_t ph, Py_ssize_t pw) nogil


def winograd4_f32_threads(const float[:, :, :, ::1] x, const float[:, :, ::1] up,
                          const float[::1] bias, bint has_bias, bint relu,
                          float[:, :, :, ::1] y, float[:, ::1] vbuf, float[:, ::1] mbuf,
                          float[::1] flags, int ph, int pw, Py_ssize_t block, Py_ssize_t ld,
                          int nt):
    """y = Winograd F(4x4, 3x3) of float32 x in vector registers (AVX-512 builds): ``up``
    holds the transformed weights packed by ``_pack4`` (36 x O8 / 8 panels of C rows of 8
    output channels); each thread takes whole blocks of ``block`` tiles into its own
    ``vbuf[thread]`` (36 matrices of C rows of ``ld`` tiles, 48 elements apart) and
    ``mbuf[thread]`` (as many of O8 rows) and adds 0 * the values of x it reads to
    ``flags[thread]``."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t o8 = up.shape[1] // c * 8
    cdef Py_ssize_t th = (ho + 3) // 4, tw = (wo + 3) // 4
    cdef Py_ssize_t tiles = n * th * tw, nblocks = (tiles + block - 1) // block
    cdef Py_ssize_t blk, t0, cnt
    cdef int tid
    with nogil:
        for blk in prange(nblocks, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            t0 = blk * block
            cnt = tiles - t0
            if cnt > block:
                cnt = block
            flags[tid] += tg_w4f_block(&x[0, 0, 0, 0], &up[0, 0, 0], &bias[0], has_bias, relu,
                                       &y[0, 0, 0, 0], &vbuf[tid, 0], &mbuf[tid, 0], c, h, w,
                                       o, o8, ho, wo, t0, cnt, ld, th, tw, ph, pw)


def fast4_available() -> bool:
    """Whether this build has the vector-register F(4x4, 3x3) float32 path (AVX-512)."""
    return bool(TG_W4F_FAST)


cdef real _input_block4(const real* x, real* v, real* rows, Py_ssize_t c, Py_ssize_t h,
                        Py_ssize_t w, Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t block,
                        Py_ssize_t th, Py_ssize_t tw, Py_ssize_t ph,
                        Py_ssize_t pw) noexcept nogil:
    # v[k, ch, t] = (B^T d B)[k // 6, k % 6] for tile t0 + t: a tile row segment and channel
    # at a time, its six input rows split into four column phases (``rows``: 24 rows of
    # tw + 1, then 24 more for B^T d)
    cdef Py_ssize_t per_image = th * tw, ch, t, tile, img, rem, tr, tc, seg, i, f, q
    cdef Py_ssize_t r0, r, lw = tw + 1, cs = c * block + _PAD
    cdef real* e
    cdef real acc = 0
    cdef real chk[16]  # lane sums of the check (16 floats or 8 doubles used)
    for i in range(16):
        chk[i] = 0
    t = 0
    while t < cnt:
        tile = t0 + t
        img = tile // per_image
        rem = tile - img * per_image
        tr = rem // tw
        tc = rem - tr * tw
        seg = tw - tc
        if seg > cnt - t:
            seg = cnt - t
        r0 = 4 * tr - ph
        for ch in range(c):
            for i in range(6):
                e = rows + 4 * i * lw
                r = r0 + i
                if r < 0 or r >= h:
                    for f in range(4):
                        for q in range(tc, tc + seg + 1):
                            e[f * lw + q] = 0
                else:
                    if real is float:
                        acc += tg_w4_split_f(x + ((img * c + ch) * h + r) * w, w, pw, e, lw,
                                             tc, tc + seg + 1, &chk[0])
                    else:
                        acc += tg_w4_split_d(x + ((img * c + ch) * h + r) * w, w, pw, e, lw,
                                             tc, tc + seg + 1, &chk[0])
            if real is float:
                tg_w4_in_f(rows, rows + 24 * lw, lw, v + ch * block + t - tc, cs, tc, tc + seg)
            else:
                tg_w4_in_d(rows, rows + 24 * lw, lw, v + ch * block + t - tc, cs, tc, tc + seg)
        t += seg
    for i in range(16):
        acc += chk[i]
    return acc


cdef void _output_block4(const real* m, real* y, const real* bias, bint has_bias,
                         real* scratch, Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo,
                         Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t block, Py_ssize_t th,
                         Py_ssize_t tw) noexcept nogil:
    # y tile = A^T M A (4x4); rows past the output go to ``scratch`` (4 tw), a width not a
    # multiple of 4's last tile column through ``last``; ``scratch + 4 tw`` holds A^T M
    # (24 rows of tw + 1)
    cdef Py_ssize_t per_image = th * tw, oc, t, tile, img, rem, tr, tc, seg, jfull, jend, r0
    cdef Py_ssize_t os = o * block + _PAD, i, k, nrows, lw = tw + 1
    cdef real* tmp = scratch + 4 * tw
    cdef const real* mp
    cdef real* yr[4]
    cdef real* y0
    cdef real bv
    cdef real last[16]
    t = 0
    while t < cnt:
        tile = t0 + t
        img = tile // per_image
        rem = tile - img * per_image
        tr = rem // tw
        tc = rem - tr * tw
        seg = tw - tc
        if seg > cnt - t:
            seg = cnt - t
        r0 = 4 * tr
        nrows = ho - r0 if ho - r0 < 4 else 4
        jfull = wo // 4
        jend = tc + seg if tc + seg < jfull else jfull
        for oc in range(o):
            bv = bias[oc] if has_bias else 0
            mp = m + oc * block + t - tc
            y0 = y + ((img * o + oc) * ho + r0) * wo
            for i in range(4):
                yr[i] = y0 + i * wo if i < nrows else scratch
            if jend > tc:
                if real is float:
                    tg_w4_out_f(mp, os, tmp, lw, yr[0], yr[1], yr[2], yr[3], bv, tc, jend)
                else:
                    tg_w4_out_d(mp, os, tmp, lw, yr[0], yr[1], yr[2], yr[3], bv, tc, jend)
            if tc + seg > jfull:  # a width not a multiple of 4: the last tile column
                if real is float:
                    tg_w4_out_f(mp + jfull, os, tmp, lw, &last[0], &last[4], &last[8],
                                &last[12], bv, 0, 1)
                else:
                    tg_w4_out_d(mp + jfull, os, tmp, lw, &last[0], &last[4], &last[8],
                                &last[12], bv, 0, 1)
                for i in range(nrows):
                    for k in range(wo - 4 * jfull):
                        y0[i * wo + 4 * jfull + k] = last[4 * i + k]
        t += seg


def winograd_tiles(const real[:, :, :, ::1] x, const real[:, :, ::1] u,
                   const real[::1] bias, bint has_bias, real[:, :, :, ::1] y,
                   real[:, ::1] vbuf, real[:, ::1] mbuf, real[:, ::1] rowbuf,
                   real[::1] flags, int ph, int pw, Py_ssize_t block, size_t gemm, int nt,
                   bint f4):
    """y = Winograd F(4x4, 3x3) (``f4``) or F(2x2, 3x3) of x with transformed weights ``u``
    (36 or 16, O, C): each thread transforms, multiplies and folds whole blocks of
    ``block`` tiles in its own ``vbuf[thread]`` (36 or 16 matrices of (C, block), ``_PAD``
    elements apart) and ``mbuf[thread]`` (as many of (O, block)), and adds 0 * the values
    of x it reads to ``flags[thread]`` (NaN when x holds a NaN or an infinity)."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t side = 4 if f4 else 2, nmat = 36 if f4 else 16
    cdef Py_ssize_t th = (ho + side - 1) // side, tw = (wo + side - 1) // side
    cdef Py_ssize_t tiles = n * th * tw, nblocks = (tiles + block - 1) // block
    cdef Py_ssize_t blk, t0, cnt, k
    cdef int tid
    cdef real* v
    cdef real* m
    with nogil:
        for blk in prange(nblocks, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            t0 = blk * block
            cnt = tiles - t0
            if cnt > block:
                cnt = block
            v = &vbuf[tid, 0]
            m = &mbuf[tid, 0]
            if f4:
                flags[tid] += _input_block4(&x[0, 0, 0, 0], v, &rowbuf[tid, 0], c, h, w, t0,
                                            cnt, block, th, tw, ph, pw)
            else:
                flags[tid] += _input_block(&x[0, 0, 0, 0], v, &rowbuf[tid, 0], c, h, w, t0,
                                           cnt, block, th, tw, ph, pw)
            for k in range(nmat):
                _gemm(gemm, False, False, o, cnt, c, &u[k, 0, 0], c, v + k * (c * block + _PAD),
                      block, 0, m + k * (o * block + _PAD), block)
            if f4:
                _output_block4(m, &y[0, 0, 0, 0], &bias[0], has_bias, &rowbuf[tid, 0], o, ho,
                               wo, t0, cnt, block, th, tw)
            else:
                _output_block(m, &y[0, 0, 0, 0], &bias[0], has_bias, &rowbuf[tid, 0], o, ho,
                              wo, t0, cnt, block, th, tw)


def winograd_threads(x, u, bias, has_bias, y, vbuf, mbuf, rowbuf, flags, ph, pw, block, gemm,
                     nt):
    """``winograd_tiles`` on F(2x2, 3x3) tiles (``u`` of 16 matrices)."""
    winograd_tiles(x, u, bias, has_bias, y, vbuf, mbuf, rowbuf, flags, ph, pw, block, gemm, nt,
                   False)


def winograd4_threads(x, u, bias, has_bias, y, vbuf, mbuf, rowbuf, flags, ph, pw, block, gemm,
                      nt):
    """``winograd_tiles`` on F(4x4, 3x3) tiles (``u`` of 36 matrices)."""
    winograd_tiles(x, u, bias, has_bias, y, vbuf, mbuf, rowbuf, flags, ph, pw, block, gemm, nt,
                   True)


_G4 = np.array([
    [6.0, 0.0, 0.0], [-4.0, -4.0, -4.0], [-4.0, 4.0, -4.0],
    [1.0, 2.0, 4.0], [1.0, -2.0, 4.0], [0.0, 0.0, 24.0],
]) / 24.0


# G4 w G4^T per channel pair as one matrix: _GG4[6 i + j, 3 a + b] = G4[i, a] G4[j, b]
_GG4 = np.einsum("ia,jb->ijab", _G4, _G4).reshape(36, 9)


def _weight_transform4(w):
    """u[6 i + j, o, c] = (G w[o, c] G^T)[i, j], G of F(4x4, 3x3), computed in float64: one
    (36, 9) x (9, O C) product on one BLAS thread (batched 6x3 products per channel pair
    cost one small BLAS call each, and a BLAS team woken for it competes with the kernel's)."""
    o, c = w.shape[:2]
    with cblas.single_threaded():
        u = _GG4 @ w.reshape(o * c, 9).T.astype(np.float64)
    return u.astype(w.dtype).reshape(36, o, c)


_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


# G w G^T and its transpose per channel pair as one matrix: _GG[3 a + b, 4 i + j] =
# G[i, a] G[j, b] (u = _GG^T w, gw = _GG dU)
_GG = np.einsum("ia,jb->abij", _G, _G).reshape(9, 16)


cdef extern from *:
    """
    /* u[4 i + j][a][k] (u 16 x 16 x 16) = (G g_k G^T)[i, j] for 16 filters g_k given
       tap-major in t[tap][k] (t 9 x 16, row-major taps), G of F(2x2, 3x3): the loop over k
       runs in vector lanes */
    #define TG_GWG_ROW(T, i, r0, r1, r2) \
        u[(4 * i) * 256 + a * 16 + k] = (r0); \
        u[(4 * i + 1) * 256 + a * 16 + k] = (T)0.5 * ((r0) + (r1) + (r2)); \
        u[(4 * i + 2) * 256 + a * 16 + k] = (T)0.5 * ((r0) - (r1) + (r2)); \
        u[(4 * i + 3) * 256 + a * 16 + k] = (r2);
    #define TG_GWG16(T, S) \
    static void tg_gwg16_##S(const T* t, T* u, ptrdiff_t a) { \
        ptrdiff_t k; \
        _Pragma("omp simd") for (k = 0; k < 16; k++) { \
            T g0 = t[k], g1 = t[16 + k], g2 = t[32 + k], g3 = t[48 + k], g4 = t[64 + k]; \
            T g5 = t[80 + k], g6 = t[96 + k], g7 = t[112 + k], g8 = t[128 + k]; \
            T s0 = (T)0.5 * (g0 + g6), s1 = (T)0.5 * (g1 + g7), s2 = (T)0.5 * (g2 + g8); \
            T h0 = (T)0.5 * g3, h1 = (T)0.5 * g4, h2 = (T)0.5 * g5; \
            TG_GWG_ROW(T, 0, g0, g1, g2) \
            TG_GWG_ROW(T, 1, s0 + h0, s1 + h1, s2 + h2) \
            TG_GWG_ROW(T, 2, s0 - h0, s1 - h1, s2 - h2) \
            TG_GWG_ROW(T, 3, g6, g7, g8) \
        } \
    }
    TG_GWG16(float, f) TG_GWG16(double, d)
    """
    void tg_gwg16_f(const float* t, float* u, Py_ssize_t a) noexcept nogil
    void tg_gwg16_d(const double* t, double* u, Py_ssize_t a) noexcept nogil


cdef extern from *:
    """
    /* g[o][tap] (g 16 x 9) = (G^T d_o G)[tap / 3, tap % 3] for 16 4x4 matrices d_o given
       point-major in d[4 i + j][o] (d 16 x 16; the adjoint of G g G^T), G of F(2x2, 3x3):
       the loop over o runs in vector lanes */
    #define TG_GTDG_ROW(T, r, d0, d1, d2, d3) \
        T r##0 = (d0) + (T)0.5 * ((d1) + (d2)), r##1 = (T)0.5 * ((d1) - (d2)); \
        T r##2 = (T)0.5 * ((d1) + (d2)) + (d3);
    #define TG_GTDG_OUT(T, a, r0, r1, r2, r3) \
        g[9 * k + 3 * a] = (r0) + (T)0.5 * ((r1) + (r2)); \
        g[9 * k + 3 * a + 1] = (T)0.5 * ((r1) - (r2)); \
        g[9 * k + 3 * a + 2] = (T)0.5 * ((r1) + (r2)) + (r3);
    #define TG_GTDG16(T, S) \
    static void tg_gtdg16_##S(const T* d, T* g) { \
        ptrdiff_t k; \
        _Pragma("omp simd") for (k = 0; k < 16; k++) { \
            /* column j of R = G^T D in aj_0, aj_1, aj_2 (its rows 0, 1, 2) */ \
            TG_GTDG_ROW(T, a0_, d[0 + k], d[64 + k], d[128 + k], d[192 + k]) \
            TG_GTDG_ROW(T, a1_, d[16 + k], d[80 + k], d[144 + k], d[208 + k]) \
            TG_GTDG_ROW(T, a2_, d[32 + k], d[96 + k], d[160 + k], d[224 + k]) \
            TG_GTDG_ROW(T, a3_, d[48 + k], d[112 + k], d[176 + k], d[240 + k]) \
            TG_GTDG_OUT(T, 0, a0_0, a1_0, a2_0, a3_0) \
            TG_GTDG_OUT(T, 1, a0_1, a1_1, a2_1, a3_1) \
            TG_GTDG_OUT(T, 2, a0_2, a1_2, a2_2, a3_2) \
        } \
    }
    TG_GTDG16(float, f) TG_GTDG16(double, d)
    """
    void tg_gtdg16_f(const float* d, float* g) noexcept nogil
    void tg_gtdg16_d(const double* d, double* g) noexcept nogil


def weight_untransform_lanes(const real[:, :, :, ::1] du, real[:, :, :, ::1] gw, int nt):
    """gw[k, ci] = G^T D G for D[i, j] = the sum over chunks p (in order) of
    du[p, 4 i + j, ci, k]: the channel-lane weight gradient's per-chunk products
    (chunks, 16, cp, op) summed and turned back to the (o, c, 3, 3) weight gradient in one
    threaded pass (blocks of 16 output channels in vector lanes)."""
    cdef Py_ssize_t o = gw.shape[0], c = gw.shape[1], nch = du.shape[0], ci, k0, k, q, nk, p
    cdef real* d
    cdef real* g
    cdef int tid
    if gw.shape[2] != 3 or gw.shape[3] != 3 or du.shape[1] != 16 or du.shape[2] < c or (
            du.shape[3] < o) or nch < 1 or nt < 1:
        raise ValueError(f"weight_untransform_lanes: du {tuple(du.shape)[:4]} does not fit "
                         f"gw {tuple(gw.shape)[:4]}")
    cdef real[:, ::1] blocks = np.empty((nt, 16 * 16 + 16 * 9),
                                        dtype=np.float32 if real is float else np.float64)
    with nogil:
        for ci in prange(c, schedule="static", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            d = &blocks[tid, 0]  # this thread's blocks
            g = d + 16 * 16
            for k0 in range(0, o, 16):
                nk = o - k0 if o - k0 < 16 else 16
                for q in range(16):
                    memcpy(d + 16 * q, &du[0, q, ci, k0], nk * sizeof(real))
                    for p in range(1, nch):
                        for k in range(nk):
                            d[16 * q + k] = d[16 * q + k] + du[p, q, ci, k0 + k]
                if real is float:
                    tg_gtdg16_f(d, g)
                else:
                    tg_gtdg16_d(d, g)
                for k in range(nk):
                    memcpy(&gw[k0 + k, ci, 0, 0], g + 9 * k, 9 * sizeof(real))


def weight_transform_lanes(const real[:, :, :, ::1] w, real[:, :, ::1] u, bint flip, int nt):
    """The channel-lane paths' transformed weights in one pass over w (o, c, 3, 3):
    u[4 i + j, ci, k] = (G w[k, ci] G^T)[i, j] (u (16, c, op), zero for k >= o), or with
    ``flip`` the input gradient's, the filters turned half a turn and the channel axes
    swapped: u[4 i + j, k, ci] = (G rot180(w[k, ci]) G^T)[i, j] (u (16, o, cp), zero for
    ci >= c)."""
    cdef Py_ssize_t o = w.shape[0], c = w.shape[1], a, a0, k, k0, q, na, nk, tap
    cdef Py_ssize_t rows = o if flip else c, cols = u.shape[2], lim = c if flip else o
    # element (a, k) of u's rows and columns reads the filter at w[k, a], or w[a, k] with flip
    cdef Py_ssize_t sa = w.strides[0 if flip else 1] // sizeof(real)
    cdef Py_ssize_t sk = w.strides[1 if flip else 0] // sizeof(real)
    cdef real* t
    cdef real* buf
    cdef const real* f
    cdef int tid
    if w.shape[2] != 3 or w.shape[3] != 3 or u.shape[0] != 16 or u.shape[1] != rows or (
            cols < lim) or nt < 1:
        raise ValueError(f"weight_transform_lanes: u {tuple(u.shape)[:3]} does not fit w "
                         f"{tuple(w.shape)[:4]} (flip={bool(flip)})")
    if w.shape[0] == 0 or w.shape[1] == 0:
        u[...] = 0
        return
    cdef real[:, ::1] blocks = np.empty((nt, 9 * 16 + 16 * 16 * 16),
                                        dtype=np.float32 if real is float else np.float64)
    with nogil:
        # blocks of 16 x 16 filters through this thread's buf[q][a][k], each of u's 16
        # matrices written 16 values (a cache line of float32) at a time: the matrices are a
        # power of two apart on common channel counts, so a filter's 16 values stored
        # straight to them all land in one cache set. With flip the taps are read in
        # reverse order.
        for a0 in prange(0, rows, 16, schedule="static", num_threads=nt):
            tid = openmp.omp_get_thread_num()
            t = &blocks[tid, 0]
            buf = t + 9 * 16
            na = rows - a0 if rows - a0 < 16 else 16
            for k0 in range(0, cols, 16):
                nk = cols - k0 if cols - k0 < 16 else 16
                for a in range(na):
                    for k in range(16):
                        if k0 + k < lim:
                            f = &w[0, 0, 0, 0] + (a0 + a) * sa + (k0 + k) * sk
                            for tap in range(9):
                                t[16 * tap + k] = f[8 - tap] if flip else f[tap]
                        else:
                            for tap in range(9):
                                t[16 * tap + k] = 0
                    if real is float:
                        tg_gwg16_f(t, buf, a)
                    else:
                        tg_gwg16_d(t, buf, a)
                for q in range(16):
                    for a in range(na):
                        memcpy(&u[q, a0 + a, k0], buf + 256 * q + 16 * a, nk * sizeof(real))


def _weight_transform_lanes(w, op, flip=False):
    """u[4 i + j, c, k] = (G w[k, c] G^T)[i, j] for k < o, zero up to op (with ``flip``,
    the input gradient's: see ``weight_transform_lanes``), in one threaded pass over w
    (NumPy's strided passes and a (16, 9) x (9, c o) product cost as much as the products
    themselves on 4x4 and 8x8 planes with 128+ channels)."""
    o, c = w.shape[:2]
    u = np.empty((16, o if flip else c, op), dtype=w.dtype)
    weight_transform_lanes(np.ascontiguousarray(w), u, flip, _team_size(16 * c * op))
    return u


def _weight_transform(w):
    """u[4 i + j, o, c] = (G w[o, c] G^T)[i, j], computed in the weights' dtype."""
    o, c = w.shape[:2]
    r = np.empty((3, 4, o, c), dtype=w.dtype)  # r[b, i] = (G w)[i, b]
    for b in range(3):
        w0, w1, w2 = w[:, :, 0, b], w[:, :, 1, b], w[:, :, 2, b]
        s, h = 0.5 * (w0 + w2), 0.5 * w1
        r[b, 0], r[b, 1], r[b, 2], r[b, 3] = w0, s + h, s - h, w2
    u = np.empty((4, 4, o, c), dtype=w.dtype)  # u[i, j] = (G w G^T)[i, j]
    s, h = 0.5 * (r[0] + r[2]), 0.5 * r[1]
    u[:, 0], u[:, 1], u[:, 2], u[:, 3] = r[0], s + h, s - h, r[2]
    return u.reshape(16, o, c)


# Below this many channels in or out the weight gradient runs im2col-cython's: Winograd's
# F(3x3, 2x2) transforms both x and gy for 16 GEMMs of (O, C) each, and on 8x8 to 32x32
# outputs with 32 or 64 channels that cost as much as or more than im2col's one long GEMM;
# it led from 128 channels in and out (benchmarks/results/winograd-wgrad.md).
_WGRAD_MIN_CHANNELS = 128


def _wgrad_leads(c, o) -> bool:
    """Whether the Winograd weight gradient runs a call of c input and o output channels."""
    return min(c, o) >= _WGRAD_MIN_CHANNELS


def _weight_gradient(gy, x, w, int ph, int pw, gemm):
    """gw of a 3x3 stride-1 call by Winograd F(3x3, 2x2) (see the module docstring)."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = gy.shape[2:]
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    tiles = n * th * tw
    block = _block_tiles(tiles, c, o, x.itemsize, 16)
    nt = _team_size(4 * tiles * c * o)
    nt = max(1, min(nt, (tiles + block - 1) // block))
    memory.check_fits("conv2d (winograd) backward", {
        "tile buffers": nt * 16 * (c + o) * block * x.itemsize,
        "weight gradient parts": nt * 16 * o * c * x.itemsize,
    })
    du = np.zeros((nt, 16, o, c), dtype=x.dtype)
    vbuf = workspace("winograd-v-t", (nt, 16 * (c * block + _PAD)), x.dtype)
    mbuf = workspace("winograd-m-t", (nt, 16 * (o * block + _PAD)), x.dtype)
    rowbuf = workspace("winograd-rows-t", (nt, 8 * (tw + 1) + 2 * tw), x.dtype)
    with cblas.single_threaded():
        weight_grad_threads(np.ascontiguousarray(x), np.ascontiguousarray(gy), du, vbuf, mbuf,
                            rowbuf, ph, pw, block, gemm, nt)
    dus = du.sum(axis=0) if nt > 1 else du[0]
    g = _G.astype(x.dtype)
    # non-finite: the caller's fallback; one BLAS thread (see _weight_gradient_lanes)
    with np.errstate(invalid="ignore", over="ignore"), cblas.single_threaded():
        gw = np.einsum("ia,ijoc,jb->ocab", g, dus.reshape(4, 4, o, c), g, optimize=True)
    return np.ascontiguousarray(gw, dtype=w.dtype)


def _block_tiles(tiles, c, o, itemsize, k, share=1) -> int:
    """Tiles per block: V and M of ``k`` matrices (c and o rows) in ``_BLOCK_BYTES / share``
    bytes, at least 8 tiles, at most ``tiles``."""
    return int(max(8, min(tiles, _BLOCK_BYTES // share // (k * (c + o) * itemsize))))


def _team_size(work):
    return 1 if work < _GRAIN else threads.get_num_threads()


# F(4x4, 3x3) runs calls whose output is at least this many pixels high and wide, with at
# least this many input and output channels; smaller ones F(2x2, 3x3)
_F4_MIN_SIDE = 24
_F4_MIN_CHANNELS = 48

# V and M of one block of tiles together on the vector-register F(4x4, 3x3) path, about
# this many bytes per thread
_F4_FAST_BLOCK_BYTES = 1 << 20


# F(4x4, 3x3) on the vector-register float32 path (AVX-512 builds) from these sizes: its
# transforms cost less than on the BLAS path, and it ran ahead of F(2x2, 3x3) forward and
# input gradient on 16x16 outputs with 32 and 64 channels and on 32x32 outputs with 16
# (8x8 outputs kept F(2x2): benchmarks/results/winograd-f4.md)
_F4_FAST_MIN_SIDE = 16
_F4_FAST_MIN_CHANNELS = 16


def _fast4(dtype) -> bool:
    """Whether F(4x4, 3x3) calls of this dtype run the vector-register path."""
    return dtype == np.float32 and bool(TG_W4F_FAST)


def _uses_f4(c, o, ho, wo, fast=False) -> bool:
    if fast:
        return min(ho, wo) >= _F4_FAST_MIN_SIDE and min(c, o) >= _F4_FAST_MIN_CHANNELS
    return min(ho, wo) >= _F4_MIN_SIDE and min(c, o) >= _F4_MIN_CHANNELS


def _pack4(w):
    """F(4x4, 3x3)'s transformed weights for ``winograd4_f32_threads``: (36, O8 / 8 * C, 8),
    panel p of matrix k holding u[k, 8 p + i, ch] at [k, p * C + ch, i] (O8: O rounded up to
    a multiple of 8, the extra output channels zero)."""
    u = _weight_transform4(w)
    o, c = w.shape[:2]
    o8 = -(-o // 8) * 8
    up = np.zeros((36, o8, c), dtype=np.float32)
    up[:, :o] = u
    up = up.reshape(36, o8 // 8, 8, c).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(up).reshape(36, o8 // 8 * c, 8)


def _fast_block(tiles, c, o8) -> int:
    """Tiles per block of the vector-register F(4x4, 3x3) path: V and M of the block in
    ``_F4_FAST_BLOCK_BYTES``, a multiple of 16 (one vector of tiles), at least 16."""
    blk = _F4_FAST_BLOCK_BYTES // (36 * (c + o8) * 4)
    blk = max(16, blk // 16 * 16)
    return int(min(blk, -(-tiles // 16) * 16))


def _winograd4_fast(x, w, b, int ph, int pw, y):
    """``_winograd``'s F(4x4, 3x3) float32 call on the vector-register path."""
    n, c, h, wd = x.shape
    o, ho, wo = y.shape[1:]
    th, tw = (ho + 3) // 4, (wo + 3) // 4
    tiles = n * th * tw
    o8 = -(-o // 8) * 8
    block = _fast_block(tiles, c, o8)
    ld = block
    nt = _team_size(4 * tiles * c * o)
    nt = max(1, min(nt, (tiles + block - 1) // block))
    memory.check_fits("conv2d (winograd)", {
        "tile buffers": nt * 36 * (c + o8) * ld * 4,
        "output": y.nbytes,
    })
    up = _pack4(w)
    vbuf = workspace("winograd-v-t", (nt, 36 * (c * ld + _PAD)), x.dtype)
    mbuf = workspace("winograd-m-t", (nt, 36 * (o8 * ld + _PAD)), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    flags = np.zeros(nt, dtype=x.dtype)
    winograd4_f32_threads(np.ascontiguousarray(x), up, bias, b is not None, False, y, vbuf,
                          mbuf, flags, ph, pw, block, ld, nt)
    return y if np.isfinite(flags.sum()) else None


# F(2x2, 3x3) with channels across the vector lanes (chvec-cython's ``winograd2_threads``) on
# outputs of at most _LANES_MAX_SIDE pixels high and wide with at least _LANES_MIN_CHANNELS
# channels in and out: there the other paths put tiles across the lanes (a few per row of a
# small plane) or call BLAS per block. On a Zen 5 machine it ran ahead of F(4x4, 3x3) on 16x16
# to 32x32 outputs with 32 to 256 channels (0.64-0.90 of its CPU time at 64->64 16x16, 48->48
# 24x24, 32->32 32x32, 256->256 16x16) and level with it at 64->64 and 128->128 on 32x32 and
# 64->64 on 48x48, behind at 64x64 (benchmarks/results/winograd-lanes-zen5.md); its error is the
# direct kernel's, 1-4e-6 of the output's scale against F(4x4)'s 3-8e-5. It runs one image
# (or group of images) per thread, so a batch smaller than the team leaves threads idle; it
# still ran ahead of F(4x4) splitting one image's tiles between two threads, on one image of
# 28x28 and 32x32 with 32 to 128 channels (forward and input gradient 0.6-0.95 of the time,
# 0.3 at 128 channels, where F(4x4)'s weight transform dominates;
# benchmarks/results/winograd-lanes-groups.md).
_LANES_MAX_SIDE = 32
_LANES_MIN_CHANNELS = 32
_LANES_STRIP_BYTES = 1 << 19  # V and M of one strip of tile rows, per thread
_LANES_GROUP_BYTES = 1 << 21  # at most this for one strip of several images' tiles


def _uses_lanes(c, o, ho, wo, n) -> bool:
    """Whether ``_winograd`` runs a call of n images through the channel-lane F(2x2, 3x3)
    path (any batch size)."""
    return (_lanes is not None and max(ho, wo) <= _LANES_MAX_SIDE
            and min(c, o) >= _LANES_MIN_CHANNELS)


def _winograd_lanes(x, w, b, int ph, int pw, y, flip=False):
    """``_winograd``'s call through ``winograd2_threads`` (see ``_uses_lanes``)."""
    n, c, h, wd = x.shape
    o, ho, wo = y.shape[1:]
    lanes = 64 // x.itemsize
    cp, op = -(-c // lanes) * lanes, -(-o // lanes) * lanes
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    nt = max(1, min(_team_size(4 * n * th * tw * c * o), n))
    rows, group = _lanes_strip(n, c, o, th, tw, x.itemsize, nt)
    size = _lanes.winograd2_work(c, h, wd, o, ph, pw, rows, lanes)
    memory.check_fits("conv2d (winograd)", {
        "tile buffers": nt * size * x.itemsize,
        "output": y.nbytes,
    })
    u = _weight_transform_lanes(w, op, flip)
    work = workspace("winograd-lanes", (nt, size), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    flags = np.zeros(nt, dtype=x.dtype)
    _lanes.winograd2_threads(np.ascontiguousarray(x), u, bias, b is not None, y, work, flags,
                             ph, pw, rows, nt, group)
    return y if np.isfinite(flags.sum()) else None


def _lanes_strip(n, c, o, th, tw, itemsize, nt):
    """(tile rows per strip, images per strip) of the channel-lane forward: strips of
    ``_LANES_STRIP_BYTES`` within one image; on planes whose tiles fill less than half a
    strip, the tiles of several images in one strip (each panel of the transformed weights
    is then read once for all of them, not once per image), as many as leave every thread
    of the team ``nt`` a group, in a strip of a quarter of the transformed weights' bytes,
    at least ``_LANES_STRIP_BYTES`` and at most ``_LANES_GROUP_BYTES``."""
    cp, op = _round_lanes(c, itemsize), _round_lanes(o, itemsize)
    row_bytes = 16 * tw * (cp + op) * itemsize
    rows = int(max(1, min(th, _LANES_STRIP_BYTES // row_bytes)))
    budget = min(_LANES_GROUP_BYTES, max(_LANES_STRIP_BYTES, 4 * c * op * itemsize))
    group = int(min(budget // (th * row_bytes), -(-n // nt)))
    if rows < th or group < 2:
        return rows, 1
    return group * th, group


def _round_lanes(c, itemsize):
    lanes = 64 // itemsize
    return -(-c // lanes) * lanes


# The weight gradient of calls with at least _LANES_MIN_CHANNELS channels in and out runs
# F(2x2, 3x3) with channels across the vector lanes (chvec-cython's
# ``winograd2_wgrad_threads``; its team splits the batch). On a Zen 5 machine it took
# 0.60-0.85 of the direct weight gradient's time on 8x8 to 64x64 outputs with 32 to 128
# channels (level with 16: not taken; benchmarks/results/winograd-lanes-zen5.md), and on one
# image (one thread busy) 0.6-0.87 of the direct weight gradient's on two threads (28x28 to
# 64x64, 32 to 128 channels; benchmarks/results/winograd-lanes-groups.md). Each strip of
# tiles holds GM[k] of about _WGRAD_LANES_STRIP_BYTES (it stays in L1 while the products run)
_WGRAD_LANES_STRIP_BYTES = 1 << 14
_WGRAD_LANES_CHUNKS = 4  # chunks of the batch per thread (see _weight_gradient_lanes)
# the chunks' partial sums together at most about this many bytes (fewer chunks, down to one
# per thread, at 128 channels and more): they are added one after another on one thread
_WGRAD_LANES_PARTS_BYTES = 1 << 21


def _wgrad_lanes(c, o, ho, wo, n) -> bool:
    """Whether ``backward`` runs the weight gradient of a call of n images through the
    channel-lane F(2x2, 3x3) path."""
    return (_lanes is not None and hasattr(_lanes, "winograd2_wgrad_threads")
            and min(c, o) >= _LANES_MIN_CHANNELS)


def _weight_gradient_lanes(gy, x, w, int ph, int pw, need_b=False):
    """gw of a 3x3 stride-1 call by Winograd F(2x2, 3x3) through ``winograd2_wgrad_threads``
    (see ``_wgrad_lanes``). The batch is cut into chunks of consecutive images with their own
    partial sums, added in chunk order (the same sum for a given batch and thread count).
    With ``need_b``, ``(gw, gb)``: the bias gradient summed by the same chunks from the
    output gradient they transpose."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = gy.shape[2:]
    lanes = 64 // x.itemsize
    cp, op = -(-c // lanes) * lanes, -(-o // lanes) * lanes
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    cap = int(max(tw, _WGRAD_LANES_STRIP_BYTES // (op * x.itemsize)))
    nt = max(1, min(_team_size(4 * n * th * tw * c * o), n))
    part = 16 * cp * op * x.itemsize
    nch = 1 if nt == 1 else min(n, max(nt, min(_WGRAD_LANES_CHUNKS * nt,
                                               _WGRAD_LANES_PARTS_BYTES // part)))
    size = _lanes.winograd2_wgrad_work(c, h, wd, o, ph, pw, cap, lanes)
    memory.check_fits("conv2d (winograd) backward", {
        "tile buffers": nt * size * x.itemsize,
        "weight gradient parts": nch * 16 * cp * op * x.itemsize,
    })
    du = workspace("winograd-lanes-du", (nch, 16, cp, op), x.dtype)  # zeroed by each chunk
    work = workspace("winograd-lanes-wgrad", (nt, size), x.dtype)
    bsum = np.empty((nch, op), dtype=x.dtype) if need_b else None
    _lanes.winograd2_wgrad_threads(np.ascontiguousarray(x), np.ascontiguousarray(gy), du, work,
                                   ph, pw, cap, nt, bsum)
    gw = np.empty((o, c, 3, 3), dtype=x.dtype)
    weight_untransform_lanes(du, gw, nt)  # non-finite: the caller's fallback
    if not need_b:
        return gw
    gb = bsum[0, :o].copy()  # the chunks' sums added in chunk order
    for i in range(1, nch):
        gb += bsum[i, :o]
    return gw, gb


def _winograd(x, w, b, int ph, int pw, gemm, flip=False):
    """y of a 3x3 stride-1 call by Winograd, or None when x holds a NaN or an infinity (found
    while the tiles are read: Winograd would spread it over its tiles). With ``flip``, the
    input gradient's call: w is the layer's (o, c, 3, 3) weight and the filters are
    ``rot180(w).transpose(1, 0)`` (made only by the paths that need them)."""
    n, c, h, wd = x.shape
    o = w.shape[1] if flip else w.shape[0]
    ho, wo = _out_size(h, 3, 1, ph, 1), _out_size(wd, 3, 1, pw, 1)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    if y.size == 0 or c == 0:
        y[...] = 0 if b is None else b.reshape(1, o, 1, 1)
        return y
    if _uses_lanes(c, o, ho, wo, n):
        return _winograd_lanes(x, w, b, ph, pw, y, flip)
    if flip:
        w = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    fast = _fast4(x.dtype)
    f4 = _uses_f4(c, o, ho, wo, fast)
    if f4 and fast:
        return _winograd4_fast(x, w, b, ph, pw, y)
    m, k = (4, 36) if f4 else (2, 16)  # output tile side, matrices per block
    th, tw = (ho + m - 1) // m, (wo + m - 1) // m
    tiles = n * th * tw
    block = _block_tiles(tiles, c, o, x.itemsize, k, _F2_BLOCK_SHARE if not f4 else 1)
    nt = _team_size(4 * tiles * c * o)
    nt = max(1, min(nt, (tiles + block - 1) // block))
    memory.check_fits("conv2d (winograd)", {
        "tile buffers": nt * k * (c + o) * block * x.itemsize,
        "output": y.nbytes,
    })
    u = _weight_transform4(w) if f4 else _weight_transform(w)
    vbuf = workspace("winograd-v-t", (nt, k * (c * block + _PAD)), x.dtype)
    mbuf = workspace("winograd-m-t", (nt, k * (o * block + _PAD)), x.dtype)
    rows = 48 * (tw + 1) + 4 * tw if f4 else 8 * (tw + 1) + 2 * tw
    rowbuf = workspace("winograd-rows-t", (nt, rows), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    flags = np.zeros(nt, dtype=x.dtype)
    with cblas.single_threaded():
        winograd_tiles(np.ascontiguousarray(x), u, bias, b is not None, y, vbuf, mbuf, rowbuf,
                       flags, ph, pw, block, gemm, nt, f4)
    return y if np.isfinite(flags.sum()) else None


def _finite(*arrays) -> bool:
    """Whether the arrays hold only finite values (a sum that overflows also says no)."""
    return all(bool(np.isfinite(a.sum())) for a in arrays)


def forward(x, w, b, stride, padding, dilation, groups):
    gemm = cblas.gemm_address(x.dtype)
    if gemm is None or not applies(w.shape, stride, dilation, groups) or not _finite(w):
        return _fallback.forward(x, w, b, stride, padding, dilation, groups)
    y = _winograd(x, w, b, int(padding[0]), int(padding[1]), gemm)
    if y is None:  # a NaN or an infinity in x: im2col puts it where a direct sum does
        return _fallback.forward(x, w, b, stride, padding, dilation, groups)
    return y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    return _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, False)[:2]


def backward_with_bias(gy, x, w, stride, padding, dilation, groups, need_x, need_w,
                       need_b=True):
    """``backward`` plus the bias gradient: ``(gx, gw, gb)``, gb summed by the weight
    gradient's own pass over the output gradient (the channel-lane path's chunks, or
    chvec-cython's direct weight gradient), or None where the weight gradient takes another
    path or is not asked for (the op then sums it itself)."""
    return _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, need_b)


def _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, need_b):
    ph, pw = (int(p) for p in padding)
    gemm = cblas.gemm_address(x.dtype)
    if gemm is None or not applies(w.shape, stride, dilation, groups) or not _finite(w):
        return _fallback.backward(gy, x, w, stride, padding, dilation, groups, need_x,
                                  need_w) + (None,)
    gx = gw = gb = None
    empty = x.size == 0 or w.size == 0 or gy.size == 0
    if need_x:
        if empty:
            gx = np.zeros_like(x)
        else:
            if ph <= 2 and pw <= 2:
                gx = _winograd(np.ascontiguousarray(gy), w, None, 2 - ph, 2 - pw, gemm, True)
            if gx is None:  # padding above 2, or a NaN or an infinity in gy
                gx = _fallback.backward(gy, x, w, stride, padding, dilation, groups, True,
                                        False)[0]
    if need_w:
        if empty:
            gw = np.zeros_like(w)
        else:
            if _wgrad_lanes(x.shape[1], w.shape[0], *gy.shape[2:], x.shape[0]):
                gw = _weight_gradient_lanes(gy, x, w, ph, pw, need_b)
                if need_b:
                    gw, gb = gw
                if not _finite(gw):  # as below
                    gw = gb = None
            elif _wgrad_leads(x.shape[1], w.shape[0]):
                gw = _weight_gradient(gy, x, w, ph, pw, gemm)
                # a NaN or an infinity in x or gy (every one reaches a Winograd weight
                # gradient): im2col puts it in the taps a direct sum gives it
                if not _finite(gw):
                    gw = None
            # fewer channels on larger planes: the transforms cost more than the
            # multiplications saved;
            # chvec-cython's direct weight gradient (accumulators in vector registers) ran
            # ahead of im2col-cython's on 8x8 to 32x32 outputs with 16 to 128 channels
            # (benchmarks/results/winograd-f4.md)
            elif _wgrad_direct is not None:
                _, gw, gb = _wgrad_direct.backward_with_bias(
                    gy, x, w, stride, padding, dilation, groups, False, True, need_b)
            if gw is None:
                gw = _fallback.backward(gy, x, w, stride, padding, dilation, groups, False,
                                        True)[1]
    return gx, gw, gb
