"""The gradients of a transposed convolution by direct register-tiled kernels, Cython +
OpenMP: both from one zero-padded copy of each image's output gradient.

The input gradient of ``y = conv_transpose2d(x, w)`` is conv2d of the output gradient with
the same weights, stride, padding and dilation::

    gx[c, a, t] = sum over (o, i, j) of w[c, o, i, j] * gy[o, a*sh - ph + i*dh, t*sw - pw + j*dw]

Each thread copies one image's output gradient, zero-padded, into its own buffer and
computes tiles of ``_CB`` input channels x ``_WB`` consecutive columns of one row of gx:
``_WB`` accumulators of ``_CB`` channels that the C compiler keeps in vector registers
while it runs over (o, i, j), one load of ``_CB`` weights (``wt[o, i, j, c]``, the channels
padded with zeros to a multiple of ``_CB``) and ``_WB`` broadcast gradients per step. No
column buffer, no GEMM, each gx element written once.

``forward_direct``: the forward of calls with at most ``_NB`` output channels, by output
phases, in the same kind of register tiles (the output channels across the lanes, the
padded image's pixels broadcast); ``wide``, calls with up to ``_CB`` output channels, by
the input gradient's own tile on the padded image at stride 1.
"""

cimport openmp
from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

include "../_common.pxi"
include "_relu.pxi"


cdef enum:
    _QSPAN = 256  # reduce_parts' columns of gw per task (a multiple of 8)
    _CB = 32  # input channels per tile (two AVX-512 float32 vectors)
    _WB = 8   # columns per tile
    _NB = 16  # the narrow forward tile's output channels (one vector; 2 rows x _WB columns)


cdef extern from *:
    """
    #define TG_TG_TILE(T, S)                                                                \
    typedef T tg_tg_v##S __attribute__((vector_size(16 * sizeof(T))));                   \
    typedef T tg_tg_u##S __attribute__((vector_size(16 * sizeof(T)), aligned(sizeof(T)), \
                                        may_alias));                                      \
    static inline __attribute__((always_inline)) void                                     \
    tg_tg_tile_body_##S(const T* gp, const T* wt, Py_ssize_t o, Py_ssize_t kh,            \
                        Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t cp,       \
                        Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t r0,       \
                        Py_ssize_t t0, Py_ssize_t c0, T* out) {                           \
        /* out[k * 32 + cc] = sum w[c0 + cc, oc, i, j] * gp[oc, r0 + i*dh,                 \
           (t0 + k) * sw + j*dw], k < 8, cc < 32 */                                       \
        tg_tg_v##S a0[8], a1[8];                                                          \
        Py_ssize_t oc, i, j, k;                                                           \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) { a0[k] = (tg_tg_v##S){0};        \
                                                          a1[k] = (tg_tg_v##S){0}; }      \
        for (oc = 0; oc < o; oc++) {                                                      \
            for (i = 0; i < kh; i++) {                                                    \
                const T* row = gp + (oc * hp + r0 + i * dh) * wp + t0 * sw;               \
                const T* wv = wt + ((oc * kh + i) * kw) * cp + c0;                        \
                /* the next channel's row (a plane further, out of the prefetchers'        \
                   reach) on its way to L1 while this one is read (past the last plane:    \
                   a hint, never a fault) */                                               \
                __builtin_prefetch(row + hp * wp);                                        \
                __builtin_prefetch(row + hp * wp + 64 / sizeof(T));                       \
                _Pragma("GCC unroll 4") for (j = 0; j < kw; j++, wv += cp) {              \
                    tg_tg_v##S w0 = *(const tg_tg_u##S*)wv;                               \
                    tg_tg_v##S w1 = *(const tg_tg_u##S*)(wv + 16);                        \
                    const T* src = row + j * dw;                                          \
                    _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                     \
                        T g = src[k * sw];                                                \
                        a0[k] += w0 * g;                                                  \
                        a1[k] += w1 * g;                                                  \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                                 \
            *(tg_tg_u##S*)(out + k * 32) = a0[k];                                         \
            *(tg_tg_u##S*)(out + k * 32 + 16) = a1[k];                                    \
        }                                                                                 \
    }                                                                                     \
    static void tg_tg_tile_##S(const T* gp, const T* wt, Py_ssize_t o, Py_ssize_t kh,     \
                               Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp,               \
                               Py_ssize_t cp, Py_ssize_t sw, Py_ssize_t dh,               \
                               Py_ssize_t dw, Py_ssize_t r0, Py_ssize_t t0,               \
                               Py_ssize_t c0, T* out) {                                   \
        /* the body with the filter's width and the column stride as constants where the  \
           common kernels have them (the forward's phases of 4x4 and 3x3 stride-2          \
           filters: 2 or 1 taps wide at stride 1; the input gradients of 4x4 and 3x3       \
           filters at stride 2 and 1): the tap loop unrolled whole, no remainder dispatch  \
           per (channel, filter row), the gradient's columns at fixed offsets */           \
        if (sw == 1 && kw == 2)                                                           \
            tg_tg_tile_body_##S(gp, wt, o, kh, 2, hp, wp, cp, 1, dh, dw, r0, t0, c0, out); \
        else if (sw == 1 && kw == 1)                                                      \
            tg_tg_tile_body_##S(gp, wt, o, kh, 1, hp, wp, cp, 1, dh, dw, r0, t0, c0, out); \
        else if (sw == 2 && kw == 4)                                                      \
            tg_tg_tile_body_##S(gp, wt, o, kh, 4, hp, wp, cp, 2, dh, dw, r0, t0, c0, out); \
        else if (sw == 2 && kw == 3)                                                      \
            tg_tg_tile_body_##S(gp, wt, o, kh, 3, hp, wp, cp, 2, dh, dw, r0, t0, c0, out); \
        else if (sw == 1 && kw == 3)                                                      \
            tg_tg_tile_body_##S(gp, wt, o, kh, 3, hp, wp, cp, 1, dh, dw, r0, t0, c0, out); \
        else                                                                              \
            tg_tg_tile_body_##S(gp, wt, o, kh, kw, hp, wp, cp, sw, dh, dw, r0, t0, c0, out); \
    }
    TG_TG_TILE(float, f)
    TG_TG_TILE(double, d)

    #define TG_TG_WTILE(T, S)                                                               \
    static void tg_tg_wtile_##S(const T* gp, const T* xt, const Py_ssize_t* qoff,         \
                                Py_ssize_t h, Py_ssize_t w, Py_ssize_t cp, Py_ssize_t sh, \
                                Py_ssize_t sw, Py_ssize_t wp, Py_ssize_t c0, T* out) {    \
        /* out[k * cp + c0 + cc] += sum over (a, t) of xt[(a*w + t)*32 + cc] *             \
           gp[qoff[k] + a*sh*wp + t*sw], k < 8, cc < 32 (xt: one block of 32 channels) */ \
        tg_tg_v##S a0[8], a1[8];                                                          \
        Py_ssize_t a, t, k, q[8];                                                         \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) { a0[k] = (tg_tg_v##S){0};        \
                                                          a1[k] = (tg_tg_v##S){0};        \
                                                          q[k] = qoff[k]; }               \
        for (a = 0; a < h; a++) {                                                         \
            const T* xv = xt + a * w * 32;                                                \
            const T* g = gp + a * sh * wp;                                                \
            for (t = 0; t < w; t++, xv += 32, g += sw) {                                  \
                tg_tg_v##S v0 = *(const tg_tg_u##S*)xv;                                   \
                tg_tg_v##S v1 = *(const tg_tg_u##S*)(xv + 16);                            \
                _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                         \
                    T s = g[q[k]];                                                        \
                    a0[k] += v0 * s;                                                      \
                    a1[k] += v1 * s;                                                      \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                                 \
            *(tg_tg_u##S*)(out + k * cp + c0) += a0[k];                                   \
            *(tg_tg_u##S*)(out + k * cp + c0 + 16) += a1[k];                              \
        }                                                                                 \
    }
    TG_TG_WTILE(float, f)
    TG_TG_WTILE(double, d)

    #define TG_TG_MOVE(T, S)                                                                \
    static void tg_tg_store_##S(const T* acc, T* dst, Py_ssize_t stride) {                \
        /* a full input-gradient tile into gx: dst[cc*stride + k] = acc[k*32 + cc] */     \
        Py_ssize_t cc, k;                                                                 \
        for (cc = 0; cc < 32; cc++) {                                                     \
            _Pragma("GCC unroll 8") for (k = 0; k < 8; k++)                               \
                dst[cc * stride + k] = acc[k * 32 + cc];                                  \
        }                                                                                 \
    }                                                                                     \
    static void tg_tg_xt_##S(const T* x, T* xt, Py_ssize_t c, Py_ssize_t hw) {            \
        /* xt[(tc*hw + pos)*32 + cc] = x[(tc*32 + cc)*hw + pos], 0 for channels >= c:     \
           in blocks of 16 positions x 32 channels, both sides within L1 */                \
        Py_ssize_t tc, p0, cc, k, np, ch, ntc = (c + 31) / 32;                            \
        for (tc = 0; tc < ntc; tc++) {                                                    \
            T* dst = xt + tc * hw * 32;                                                   \
            for (p0 = 0; p0 < hw; p0 += 16) {                                             \
                np = hw - p0 < 16 ? hw - p0 : 16;                                         \
                for (cc = 0; cc < 32; cc++) {                                             \
                    ch = tc * 32 + cc;                                                    \
                    if (ch < c) {                                                         \
                        const T* src = x + ch * hw + p0;                                  \
                        for (k = 0; k < np; k++) dst[(p0 + k) * 32 + cc] = src[k];        \
                    } else {                                                              \
                        for (k = 0; k < np; k++) dst[(p0 + k) * 32 + cc] = 0;             \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }
    TG_TG_MOVE(float, f)
    TG_TG_MOVE(double, d)

    #if defined(__AVX__)
    #include <immintrin.h>
    /* dst[j*ds + k] = src[k*ss + j], j, k < 8: one 8x8 transpose in AVX registers */
    static inline void tg_tg_t8_f(const float* src, Py_ssize_t ss, float* dst,
                                  Py_ssize_t ds) {
        __m256 r[8], t[8], u[8];
        int k;
        for (k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(src + k * ss);
        for (k = 0; k < 8; k += 2) {
            t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
            t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
        }
        for (k = 0; k < 8; k += 4) {
            u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
            u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
            u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
            u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
        }
        for (k = 0; k < 4; k++) {
            _mm256_storeu_ps(dst + k * ds, _mm256_permute2f128_ps(u[k], u[k + 4], 0x20));
            _mm256_storeu_ps(dst + (k + 4) * ds, _mm256_permute2f128_ps(u[k], u[k + 4], 0x31));
        }
    }
    /* float32's full tile by four 8x8 transposes in AVX registers (the scalar
       tg_tg_store_f moves one element per load and store) */
    static void tg_tg_store8_f(const float* acc, float* dst, Py_ssize_t stride) {
        Py_ssize_t q;
        for (q = 0; q < 4; q++) tg_tg_t8_f(acc + q * 8, 32, dst + q * 8 * stride, stride);
    }
    /* tg_tg_xt_f's transposed image by 8x8 transposes: per 8 channels, 8 positions at a
       time (the scalar version moves one value per load and store) */
    static void tg_tg_xt8_f(const float* x, float* xt, Py_ssize_t c, Py_ssize_t hw) {
        Py_ssize_t tc, cq, ch0, p, r, ntc = (c + 31) / 32, full = hw / 8 * 8;
        for (tc = 0; tc < ntc; tc++) {
            float* dst = xt + tc * hw * 32;
            for (cq = 0; cq < 4; cq++) {
                ch0 = tc * 32 + cq * 8;
                if (ch0 + 8 <= c) {
                    for (p = 0; p < full; p += 8)
                        tg_tg_t8_f(x + ch0 * hw + p, hw, dst + p * 32 + cq * 8, 32);
                    for (p = full; p < hw; p++)
                        for (r = 0; r < 8; r++)
                            dst[p * 32 + cq * 8 + r] = x[(ch0 + r) * hw + p];
                } else {
                    for (p = 0; p < hw; p++)
                        for (r = 0; r < 8; r++)
                            dst[p * 32 + cq * 8 + r] = ch0 + r < c ? x[(ch0 + r) * hw + p] : 0;
                }
            }
        }
    }
    #else
    #define tg_tg_store8_f tg_tg_store_f
    #define tg_tg_xt8_f tg_tg_xt_f
    static inline void tg_tg_t8_f(const float* src, Py_ssize_t ss, float* dst,
                                  Py_ssize_t ds) {
        int j, k;
        for (j = 0; j < 8; j++)
            for (k = 0; k < 8; k++) dst[j * ds + k] = src[k * ss + j];
    }
    #endif

    /* A forward tile of the wide kernels (out[k*32 + oc], k < nk, oc < nc) into a stride-2
       output row, each channel's row at y + oc*stride: y[oc*stride + 2k] = out[k*32 + oc]
       + bias[oc]. With AVX-512: the tile transposed in registers (tg_tg_store8_f into a
       buffer on the stack), each channel's nk values spread to the even lanes of one
       vector by one permute, and written by one store masked to those lanes (the odd
       columns, another phase's, untouched), instead of one scalar load, add and store per
       value. */
    #if defined(__AVX512F__) && defined(__AVX__)
    static void tg_tg_put2_f(const float* out, float* y, Py_ssize_t stride,
                             const float* bias, Py_ssize_t nc, Py_ssize_t nk) {
        float t[32 * 8] __attribute__((aligned(64)));
        const __m512i spread = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
        const __mmask16 m = (__mmask16)(((1u << (2 * nk)) - 1u) & 0x5555u);
        Py_ssize_t oc;
        tg_tg_store8_f(out, t, 8);
        for (oc = 0; oc < nc; oc++) {
            __m512 v = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(
                _mm256_load_ps(t + oc * 8)));
            v = _mm512_add_ps(v, _mm512_set1_ps(bias[oc]));
            _mm512_mask_storeu_ps(y + oc * stride, m, v);
        }
    }
    /* Two forward tiles of one row's two column phases (out0: even columns, nk0 of them;
       out1: odd, nk1 <= nk0) into the row, each channel's 2*nk0 values interleaved by one
       two-source permute and written by one store (masked only on a partial tile):
       y[oc*stride + 2k] = out0[k*32 + oc] + bias[oc], y[oc*stride + 2k + 1] =
       out1[k*32 + oc] + bias[oc]. */
    static void tg_tg_put22_f(const float* out0, const float* out1, float* y,
                              Py_ssize_t stride, const float* bias, Py_ssize_t nc,
                              Py_ssize_t nk0, Py_ssize_t nk1) {
        float t0[32 * 8] __attribute__((aligned(64)));
        float t1[32 * 8] __attribute__((aligned(64)));
        const __m512i zip = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                             16, 0);
        const __mmask16 m = (__mmask16)((((1u << (2 * nk0)) - 1u) & 0x5555u)
                                        | (((1u << (2 * nk1)) - 1u) & 0xAAAAu));
        Py_ssize_t oc;
        tg_tg_store8_f(out0, t0, 8);
        tg_tg_store8_f(out1, t1, 8);
        for (oc = 0; oc < nc; oc++) {
            __m512 v = _mm512_permutex2var_ps(
                _mm512_castps256_ps512(_mm256_load_ps(t0 + oc * 8)), zip,
                _mm512_castps256_ps512(_mm256_load_ps(t1 + oc * 8)));
            v = _mm512_add_ps(v, _mm512_set1_ps(bias[oc]));
            if (m == 0xFFFFu)
                _mm512_storeu_ps(y + oc * stride, v);
            else
                _mm512_mask_storeu_ps(y + oc * stride, m, v);
        }
    }
    #else
    static void tg_tg_put22_f(const float* out0, const float* out1, float* y,
                              Py_ssize_t stride, const float* bias, Py_ssize_t nc,
                              Py_ssize_t nk0, Py_ssize_t nk1) {
        Py_ssize_t oc, k;
        for (oc = 0; oc < nc; oc++) {
            for (k = 0; k < nk0; k++) y[oc * stride + 2 * k] = out0[k * 32 + oc] + bias[oc];
            for (k = 0; k < nk1; k++) y[oc * stride + 2 * k + 1] = out1[k * 32 + oc] + bias[oc];
        }
    }
    static void tg_tg_put2_f(const float* out, float* y, Py_ssize_t stride,
                             const float* bias, Py_ssize_t nc, Py_ssize_t nk) {
        Py_ssize_t oc, k;
        for (oc = 0; oc < nc; oc++)
            for (k = 0; k < nk; k++)
                y[oc * stride + 2 * k] = out[k * 32 + oc] + bias[oc];
    }
    #endif

    #define TG_TG_NTILE(T, S)                                                               \
    static inline __attribute__((always_inline)) void                                     \
    tg_tg_ntile_body_##S(const T* xp, const T* wt, Py_ssize_t c, Py_ssize_t kh,           \
                         Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t dh,      \
                         Py_ssize_t dw, Py_ssize_t r0, Py_ssize_t t0, T* out) {           \
        /* out[(r*8 + k) * 16 + oc] = sum wt[((ci*kh + i)*kw + j)*16 + oc] *              \
           xp[ci, r0 + r + i*dh, t0 + k + j*dw], r < 2, k < 8, oc < 16 */                 \
        tg_tg_v##S a0[8], a1[8];                                                          \
        Py_ssize_t ci, i, j, k;                                                           \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) { a0[k] = (tg_tg_v##S){0};        \
                                                          a1[k] = (tg_tg_v##S){0}; }      \
        for (ci = 0; ci < c; ci++) {                                                      \
            for (i = 0; i < kh; i++) {                                                    \
                const T* row = xp + (ci * hp + r0 + i * dh) * wp + t0;                    \
                const T* wv = wt + ((ci * kh + i) * kw) * 16;                             \
                for (j = 0; j < kw; j++, wv += 16) {                                      \
                    tg_tg_v##S w0 = *(const tg_tg_u##S*)wv;                               \
                    const T* s0 = row + j * dw;                                           \
                    const T* s1 = s0 + wp;                                                \
                    _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                     \
                        a0[k] += w0 * s0[k];                                              \
                        a1[k] += w0 * s1[k];                                              \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        _Pragma("GCC unroll 8") for (k = 0; k < 8; k++) {                                 \
            *(tg_tg_u##S*)(out + k * 16) = a0[k];                                         \
            *(tg_tg_u##S*)(out + (8 + k) * 16) = a1[k];                                   \
        }                                                                                 \
    }                                                                                     \
    static void tg_tg_ntile_##S(const T* xp, const T* wt, Py_ssize_t c, Py_ssize_t kh,    \
                                Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp,              \
                                Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t r0,              \
                                Py_ssize_t t0, T* out) {                                  \
        /* the body with the phase's tap counts as constants for the stride-2 phases of    \
           4x4 and 3x3 filters (2 x 2, 2 x 1, 1 x 2, 1 x 1): the tap loops unrolled */     \
        if (kh == 2 && kw == 2)                                                           \
            tg_tg_ntile_body_##S(xp, wt, c, 2, 2, hp, wp, dh, dw, r0, t0, out);           \
        else if (kh == 2 && kw == 1)                                                      \
            tg_tg_ntile_body_##S(xp, wt, c, 2, 1, hp, wp, dh, dw, r0, t0, out);           \
        else if (kh == 1 && kw == 2)                                                      \
            tg_tg_ntile_body_##S(xp, wt, c, 1, 2, hp, wp, dh, dw, r0, t0, out);           \
        else if (kh == 1 && kw == 1)                                                      \
            tg_tg_ntile_body_##S(xp, wt, c, 1, 1, hp, wp, dh, dw, r0, t0, out);           \
        else                                                                              \
            tg_tg_ntile_body_##S(xp, wt, c, kh, kw, hp, wp, dh, dw, r0, t0, out);         \
    }
    TG_TG_NTILE(float, f)
    TG_TG_NTILE(double, d)
    """
    void tg_tg_tile_f(const float* gp, const float* wt, Py_ssize_t o, Py_ssize_t kh,
                      Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t cp, Py_ssize_t sw,
                      Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t r0, Py_ssize_t t0, Py_ssize_t c0,
                      float* out) noexcept nogil
    void tg_tg_tile_d(const double* gp, const double* wt, Py_ssize_t o, Py_ssize_t kh,
                      Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t cp, Py_ssize_t sw,
                      Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t r0, Py_ssize_t t0, Py_ssize_t c0,
                      double* out) noexcept nogil
    void tg_tg_wtile_f(const float* gp, const float* xt, const Py_ssize_t* qoff, Py_ssize_t h,
                       Py_ssize_t w, Py_ssize_t cp, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t wp,
                       Py_ssize_t c0, float* out) noexcept nogil
    void tg_tg_wtile_d(const double* gp, const double* xt, const Py_ssize_t* qoff,
                       Py_ssize_t h, Py_ssize_t w, Py_ssize_t cp, Py_ssize_t sh, Py_ssize_t sw,
                       Py_ssize_t wp, Py_ssize_t c0, double* out) noexcept nogil
    void tg_tg_store8_f(const float* acc, float* dst, Py_ssize_t stride) noexcept nogil
    void tg_tg_put22_f(const float* out0, const float* out1, float* y, Py_ssize_t stride,
                       const float* bias, Py_ssize_t nc, Py_ssize_t nk0,
                       Py_ssize_t nk1) noexcept nogil
    void tg_tg_put2_f(const float* out, float* y, Py_ssize_t stride, const float* bias,
                      Py_ssize_t nc, Py_ssize_t nk) noexcept nogil
    void tg_tg_store_d(const double* acc, double* dst, Py_ssize_t stride) noexcept nogil
    void tg_tg_xt_f(const float* x, float* xt, Py_ssize_t c, Py_ssize_t hw) noexcept nogil
    void tg_tg_xt_d(const double* x, double* xt, Py_ssize_t c, Py_ssize_t hw) noexcept nogil
    void tg_tg_xt8_f(const float* x, float* xt, Py_ssize_t c, Py_ssize_t hw) noexcept nogil
    void tg_tg_t8_f(const float* src, Py_ssize_t ss, float* dst, Py_ssize_t ds) noexcept nogil
    void tg_tg_ntile_f(const float* xp, const float* wt, Py_ssize_t c, Py_ssize_t kh,
                       Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t dh,
                       Py_ssize_t dw, Py_ssize_t r0, Py_ssize_t t0, float* out) noexcept nogil
    void tg_tg_ntile_d(const double* xp, const double* wt, Py_ssize_t c, Py_ssize_t kh,
                       Py_ssize_t kw, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t dh,
                       Py_ssize_t dw, Py_ssize_t r0, Py_ssize_t t0, double* out) noexcept nogil


cdef inline void _pad_gy(const real* src0, real* gp, Py_ssize_t o, Py_ssize_t ho,
                         Py_ssize_t wo, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t ph,
                         Py_ssize_t pw, Py_ssize_t* fresh) noexcept nogil:
    # gp[oc, y + ph, x + pw] = gy[oc, y, x] (one image), zeros around: the zeros written on
    # the thread's first image of the call (fresh[0] == 0), only the image's rows after
    cdef Py_ssize_t oc, y, r, n = min(wo, wp - pw)
    if fresh[0] == 0:
        memset(gp, 0, o * hp * wp * sizeof(real))
        fresh[0] = 1
    if n <= 0:
        return
    for oc in range(o):
        for y in range(ho):
            r = y + ph
            if r >= hp:
                break
            memcpy(gp + (oc * hp + r) * wp + pw, src0 + (oc * ho + y) * wo, n * sizeof(real))


cdef inline void _mask_gy(const real* src, const unsigned char* m, real* dst, real* rows,
                          Py_ssize_t size) noexcept nogil:
    # one image: dst = src where m else +0.0 (the gradient's bits ANDed with all-ones or
    # all-zeros, branch-free, as kernels/_flat.pxi masks), and rows += dst element by element
    # (rows NULL: not added)
    cdef Py_ssize_t k
    cdef const uint32_t* s32
    cdef uint32_t* d32
    cdef const uint64_t* s64
    cdef uint64_t* d64
    if real is float:
        s32, d32 = <const uint32_t*>src, <uint32_t*>dst
        for k in range(size):
            d32[k] = s32[k] & (0u - <uint32_t>m[k])
    else:
        s64, d64 = <const uint64_t*>src, <uint64_t*>dst
        for k in range(size):
            d64[k] = s64[k] & (0u - <uint64_t>m[k])
    if rows != NULL:
        _add_rows(dst, rows, size)


cdef inline void _add_rows(const real* src, real* rows, Py_ssize_t size) noexcept nogil:
    # rows += src element by element (one image of gy: the bias gradient's first reduction)
    cdef Py_ssize_t k
    for k in range(size):
        rows[k] = rows[k] + src[k]


def grads(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x, const real[::1] wt,
          const Py_ssize_t[::1] qoff, real[:, :, :, ::1] gx, real[:, :, ::1] parts,
          real[:, ::1] buf, real[:, ::1] accs, real[:, ::1] xts, bint need_x, bint need_w,
          int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int hp, int wp,
          int cp, int nt, Py_ssize_t[::1] fresh,
          const unsigned char[:, :, :, ::1] mask=None, real[:, ::1] masked=None,
          real[:, ::1] rows=None, Py_ssize_t split=1, bint zero=False):
    """Both gradients (those asked for) of ``y = conv_transpose2d(x, w)``, one image per
    thread at a time from one padded copy of gy[b] (``buf[thread]``: O planes of hp x wp,
    gy[b, o, y, x] at row y + ph, column x + pw, zeros around).

    Input gradient (``need_x``): gx = conv2d(gy, w) (stride, padding, dilation as given)
    in tiles of ``_CB`` input channels x ``_WB`` columns through the thread's accumulators
    ``accs[thread]``; ``wt[(((tc*O + o)*kh + i)*kw + j)*_CB + cc] = w[tc*_CB + cc, o, i, j]``
    (each block of ``_CB`` input channels' weights contiguous), zero for channels >= C.

    Weight gradient (``need_w``): parts[thread, q, c] += sum over the thread's images b and
    positions (a, t) of x[b, c, a, t] * gyp[b][qoff[q] + a*sh*wp + t*sw], ``qoff[q] =
    (o*hp + i*dh)*wp + j*dw`` for ``q = (o*kh + i)*kw + j`` (a multiple of 8 long, padded
    with zeros whose rows are ignored): ``gw[c, o, i, j] = sum over threads of parts[., q,
    c]``; ``xts[thread]``: x[b] transposed, per block of ``_CB`` channels (positions,
    ``_CB``), the blocks one after the other. Each thread takes a fixed,
    contiguous range of images (static schedule), so the sum is the same on every call.
    Arrays not asked for may be any placeholder of their dtype and rank.

    With ``mask`` (gy's shape, uint8): the gradients of gy where mask else +0.0 (the ReLU
    after the transposed convolution), each image masked into ``masked[thread]`` (one
    image of gy) as it is read, and added element by element into ``rows[thread]`` (one
    image of gy, zeros on entry): the images' sum, the bias gradient's first reduction
    (the caller sums the threads' rows and each channel's row). With ``rows`` and no
    ``mask``: gy's images added into ``rows`` as they are read, unmasked.

    ``split`` > 1 (fewer images than threads): each image's work shared by ``split`` tasks
    (every task pads the image into its thread's buffer): task k takes the k-th of
    ``split`` even ranges of gx's rows and of the weight gradient's tiles of 8 (output
    channel, tap) pairs, and only task 0 adds the image into ``rows``.

    ``zero``: each thread zeroes its own ``parts`` (with ``need_w``) and ``rows`` at its
    first task (``fresh[tid]`` still 0; their entry values then do not matter: reused
    workspaces); the caller zeroes those of threads left without a task (``fresh`` 0 after
    the call)."""
    cdef Py_ssize_t n = gy.shape[0], o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t b, k, a, t0, c0, nk, nc, cc, tc, tw, tq, ci, pos, task, part
    cdef Py_ssize_t ntc = (c + _CB - 1) // _CB, ntw = (w + _WB - 1) // _WB
    cdef Py_ssize_t ntq = qoff.shape[0] // 8, hw = h * w, wblock = o * kh * kw * _CB
    cdef int tid
    cdef bint use_mask = mask is not None
    cdef bint use_rows = rows is not None
    cdef real* gp
    cdef real* row
    cdef real* acc
    cdef real* gxb
    cdef real* xt
    cdef const real* src
    with nogil:
        for task in prange(n * split, schedule="static", num_threads=nt):
            b = task // split
            part = task % split
            tid = openmp.omp_get_thread_num()
            gp = &buf[tid, 0]
            if zero and fresh[tid] == 0:  # the thread's first task (_pad_gy then sets fresh)
                if need_w:
                    memset(&parts[tid, 0, 0], 0, parts.shape[1] * parts.shape[2] * sizeof(real))
                if use_rows:
                    memset(&rows[tid, 0], 0, rows.shape[1] * sizeof(real))
            if use_mask:
                _mask_gy(&gy[b, 0, 0, 0], &mask[b, 0, 0, 0], &masked[tid, 0],
                         &rows[tid, 0] if part == 0 else NULL, o * ho * wo)
                _pad_gy(&masked[tid, 0], gp, o, ho, wo, hp, wp, ph, pw, &fresh[tid])
            else:
                if use_rows and part == 0:
                    _add_rows(&gy[b, 0, 0, 0], &rows[tid, 0], o * ho * wo)
                _pad_gy(&gy[b, 0, 0, 0], gp, o, ho, wo, hp, wp, ph, pw, &fresh[tid])
            if need_x:
                acc = &accs[tid, 0]
                gxb = &gx[b, 0, 0, 0]
                for a in range(part * h // split, (part + 1) * h // split):
                    for tc in range(ntc):
                        c0 = tc * _CB
                        nc = min(_CB, c - c0)
                        for tw in range(ntw):
                            t0 = tw * _WB
                            nk = min(_WB, w - t0)
                            if real is float:
                                tg_tg_tile_f(gp, &wt[tc * wblock], o, kh, kw, hp, wp, _CB, sw,
                                             dh, dw, a * sh, t0, 0, acc)
                            else:
                                tg_tg_tile_d(gp, &wt[tc * wblock], o, kh, kw, hp, wp, _CB, sw,
                                             dh, dw, a * sh, t0, 0, acc)
                            row = gxb + (c0 * h + a) * w + t0
                            if nc == _CB and nk == _WB:
                                if real is float:
                                    tg_tg_store8_f(acc, row, hw)
                                else:
                                    tg_tg_store_d(acc, row, hw)
                                continue
                            for cc in range(nc):
                                for k in range(nk):
                                    row[cc * hw + k] = acc[k * _CB + cc]
            if need_w:
                xt = &xts[tid, 0]
                if real is float:
                    tg_tg_xt8_f(&x[b, 0, 0, 0], xt, c, hw)
                else:
                    tg_tg_xt_d(&x[b, 0, 0, 0], xt, c, hw)
                # channel blocks outermost: one block of the transposed image (hw x _CB,
                # contiguous) stays in L1 while every (output channel, tap) tile reads it
                for tc in range(cp // _CB):
                    for tq in range(part * ntq // split, (part + 1) * ntq // split):
                        if real is float:
                            tg_tg_wtile_f(gp, xt + tc * hw * _CB, &qoff[tq * 8], h, w, cp, sh,
                                          sw, wp, tc * _CB, &parts[tid, tq * 8, 0])
                        else:
                            tg_tg_wtile_d(gp, xt + tc * hw * _CB, &qoff[tq * 8], h, w, cp, sh,
                                          sw, wp, tc * _CB, &parts[tid, tq * 8, 0])


def channel_blocks(const real[:, ::1] src, real[::1] dst):
    """``dst[(tc*R + r)*_CB + cc] = src[tc*_CB + cc, r]`` (src (C, R)), zero for channels
    >= C: the input gradient's weight table (``grads``' ``wt``, R = O*kh*kw) by the
    transposed images' 8 x 8 transposes instead of NumPy's strided copy."""
    cdef Py_ssize_t c = src.shape[0], r = src.shape[1]
    if c == 0 or r == 0:
        return
    with nogil:
        if real is float:
            tg_tg_xt8_f(&src[0, 0], &dst[0], c, r)
        else:
            tg_tg_xt_d(&src[0, 0], &dst[0], c, r)


def reduce_parts(real[:, :, ::1] parts, real[:, ::1] gw, int nt):
    """``gw[c, q] = sum over t of parts[t, q, c]`` (q < gw.shape[1], c < gw.shape[0]): the
    weight gradient from the threads' partial sums (``grads``' ``parts``), added in thread
    order into ``parts[0]`` (which it overwrites), then transposed by 8 x 8 blocks in
    gw's order, 16 of its rows at a time (whole cache lines written one after the other,
    where blocks down a column of blocks wrote half lines ``q``'s count apart, a power of
    two on the usual layers), the work shared by ``nt`` threads: no serial NumPy sum and
    strided transposed copy."""
    cdef Py_ssize_t nparts = parts.shape[0], cp = parts.shape[2]
    cdef Py_ssize_t c = gw.shape[0], nq = gw.shape[1]
    cdef Py_ssize_t q, t, k, task, q0, c0, qq, kk, c1, ce, qs, qend
    cdef Py_ssize_t nqc = (nq + _QSPAN - 1) // _QSPAN
    if c == 0 or nq == 0:
        return
    with nogil:
        if nparts > 1:
            for q in prange(nq, schedule="static", num_threads=nt):
                for t in range(1, nparts):
                    for k in range(c):
                        parts[0, q, k] = parts[0, q, k] + parts[t, q, k]
        # tasks: 16 rows of gw x _QSPAN of its columns
        for task in prange((c + 15) // 16 * nqc, schedule="static", num_threads=nt):
            c0 = (task // nqc) * 16
            ce = min(c0 + 16, c)
            qs = (task % nqc) * _QSPAN
            qend = min(qs + _QSPAN, nq)
            for c1 in range(c0, ce, 8):
                for q0 in range(qs, qend, 8):
                    if real is float:
                        if q0 + 8 <= qend and c1 + 8 <= ce:
                            tg_tg_t8_f(&parts[0, q0, c1], cp, &gw[c1, q0], nq)
                            continue
                    for qq in range(q0, min(q0 + 8, qend)):
                        for kk in range(c1, min(c1 + 8, ce)):
                            gw[kk, qq] = parts[0, qq, kk]


def gather(const real[::1] src, const Py_ssize_t[::1] index, real[::1] out, int nt=1):
    """``out[k] = src[index[k]]``, 0 where ``index[k]`` is ``len(src)`` (the zero lanes of
    ``forward_direct``'s weight tables past the output channels): one pass, no copy of
    ``src`` with a zero appended and no temporary as NumPy's fancy indexing makes; ``out``
    shared by ``nt`` threads in contiguous ranges."""
    cdef Py_ssize_t k, i, n = index.shape[0], m = src.shape[0]
    with nogil:
        for k in prange(n, schedule="static", num_threads=nt):
            i = index[k]
            out[k] = src[i] if i < m else 0


def forward_direct(const real[:, :, :, ::1] x, const real[::1] wtab,
                   const Py_ssize_t[:, ::1] tab, const real[::1] bias, bint has_bias,
                   real[:, :, :, ::1] y, real[:, ::1] xpad, real[:, ::1] accs,
                   Py_ssize_t[::1] fresh, int sh, int sw, int pt, int pl, int hp, int wp,
                   int nt, bint relu=False, unsigned char[:, :, :, ::1] mask=None,
                   bint wide=False, Py_ssize_t wblock=0, Py_ssize_t split=1):
    """y = the transposed convolution of x (at most ``_NB`` output channels) by output
    phases, each a stride-1 convolution of the zero-padded image in register tiles of
    ``_NB`` output channels (one vector, zero-padded) x 2 rows x ``_WB`` columns of the
    phase's grid, one image per thread at a time: no GEMM, no phase buffer, each output
    pixel written once with its bias.

    ``tab[p] = (ry, rx, nty, ntx, dy, dx, dhp, dwp, qh, qw, woff)``: phase p's first output
    row and column, its taps (nty x ntx, their input rows ``dy + i*dhp``, columns ``dx +
    j*dwp`` relative to the output pixel's (a, t) in the phase grid), its grid qh x qw and
    its weights ``wtab[woff + ((c*nty + i)*ntx + j)*_NB + o]`` (zero for o >= O).
    ``wide`` (at most ``_CB`` output channels): tiles of ``_CB`` output channels x 1 row x
    ``_WB`` columns instead (``tg_tg_tile``, the input gradient's), ``_CB`` in place of
    ``_NB`` in the weights' index; with ``wblock`` > 0, more than ``_CB`` output channels in
    blocks of ``_CB``, block k's weight table at ``wtab[k * wblock:]`` (its channels
    ``k*_CB`` on, the last block's lanes past O zero).
    ``xpad[thread]``: one image padded, C planes of hp x wp, the image at row pt, column
    pl, zeros around (written on the thread's first image, then only its rows; every tile
    reads inside it). ``accs[thread]``: two tiles (a row's two column phases, float32
    wide tiles at stride 2: written together, interleaved). With ``relu``, each image's
    output then as ``relu(v)`` and ``mask`` 1 where not v <= 0 (``kernels/fused``'s
    epilogue). ``split`` > 1 (fewer images than threads): each image shared by ``split``
    tasks, task k taking the k-th of ``split`` ranges of the phases' grid rows (an even
    number of rows each, the last to the end), every task padding the image into its own
    thread's buffer."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3], nph = tab.shape[0]
    cdef Py_ssize_t b, p, ry, rx, nty, ntx, dy, dx, dhp, dwp, qh, qw, woff
    cdef Py_ssize_t a, t, tw, t0, nk, nk1, k, oc, r, cb, ob, task, part, alo, ahi, ae
    cdef Py_ssize_t rows = 0
    cdef bint paired
    cdef real* acc1
    cdef Py_ssize_t nblk = (o + _CB - 1) // _CB if wide and wblock > 0 else 1
    cdef int tid
    cdef real bv
    cdef real* xp
    cdef real* acc
    cdef real* yrow
    with nogil:
        for p in range(nph):
            rows = max(rows, tab[p, 8])
        for task in prange(n * split, schedule="dynamic", chunksize=1, num_threads=nt):
            b = task // split
            part = task % split
            # the task's grid rows [alo, ahi): even bounds (the narrow tiles' row pairs)
            alo = part * rows // split // 2 * 2
            ahi = rows if part == split - 1 else (part + 1) * rows // split // 2 * 2
            tid = openmp.omp_get_thread_num()
            xp = &xpad[tid, 0]
            acc = &accs[tid, 0]
            _pad_gy(&x[b, 0, 0, 0], xp, c, h, w, hp, wp, pt, pl, &fresh[tid])
            paired = False
            for p in range(nph):
                if paired:  # the odd-column phase, written with the previous one
                    paired = False
                    continue
                ry = tab[p, 0]
                rx = tab[p, 1]
                nty = tab[p, 2]
                ntx = tab[p, 3]
                dy = tab[p, 4]
                dx = tab[p, 5]
                dhp = tab[p, 6]
                dwp = tab[p, 7]
                qh = tab[p, 8]
                qw = tab[p, 9]
                woff = tab[p, 10]
                if qh <= 0 or qw <= 0:  # a phase past the output's last row or column
                    continue
                if nty == 0 or ntx == 0:  # a phase no tap reaches: the bias alone
                    for oc in range(o):
                        bv = bias[oc] if has_bias else 0
                        for a in range(alo, min(qh, ahi)):
                            yrow = &y[b, oc, ry + sh * a, rx]
                            for t in range(qw):
                                yrow[t * sw] = bv
                    continue
                if real is float:
                    # stride-2 columns, float32: the row's two column phases tile by tile
                    # side by side, each channel's values interleaved in registers and
                    # stored contiguously (tg_tg_put22_f) when the odd phase has taps on
                    # the same rows and no more columns
                    if (wide and sw == 2 and rx == 0 and p + 1 < nph and tab[p + 1, 1] == 1
                            and tab[p + 1, 2] > 0 and tab[p + 1, 3] > 0 and tab[p + 1, 8] == qh
                            and 0 < tab[p + 1, 9] <= qw):
                        paired = True
                        acc1 = acc + _CB * _WB
                        for cb in range(nblk):
                            ob = min(_CB, o - cb * _CB)
                            for a in range(alo, min(qh, ahi)):
                                for tw in range((qw + _WB - 1) // _WB):
                                    t0 = tw * _WB
                                    nk = min(_WB, qw - t0)
                                    nk1 = max(0, min(_WB, tab[p + 1, 9] - t0))
                                    tg_tg_tile_f(xp, &wtab[cb * wblock + woff], c, nty, ntx, hp,
                                                 wp, _CB, 1, dhp, dwp, a + pt + dy, t0 + pl + dx,
                                                 0, acc)
                                    if nk1 > 0:
                                        tg_tg_tile_f(xp, &wtab[cb * wblock + tab[p + 1, 10]], c,
                                                     tab[p + 1, 2], tab[p + 1, 3], hp, wp, _CB, 1,
                                                     tab[p + 1, 6], tab[p + 1, 7],
                                                     a + pt + tab[p + 1, 4],
                                                     t0 + pl + tab[p + 1, 5], 0, acc1)
                                    tg_tg_put22_f(acc, acc1, &y[b, cb * _CB, ry + sh * a, t0 * 2],
                                                  ho * wo, &bias[cb * _CB], ob, nk, nk1)
                        continue
                if wide:
                    # _CB output channels x 1 row x _WB columns: the input gradient's tile
                    # on the padded image at stride 1 (its weights w[c, o, i, j] in the
                    # input gradient's w[o, c, i, j] place)
                    for cb in range(nblk):
                        ob = min(_CB, o - cb * _CB)
                        for a in range(alo, min(qh, ahi)):
                            for tw in range((qw + _WB - 1) // _WB):
                                t0 = tw * _WB
                                nk = min(_WB, qw - t0)
                                if real is float:
                                    tg_tg_tile_f(xp, &wtab[cb * wblock + woff], c, nty, ntx, hp,
                                                 wp, _CB, 1, dhp, dwp, a + pt + dy, t0 + pl + dx,
                                                 0, acc)
                                else:
                                    tg_tg_tile_d(xp, &wtab[cb * wblock + woff], c, nty, ntx, hp,
                                                 wp, _CB, 1, dhp, dwp, a + pt + dy, t0 + pl + dx,
                                                 0, acc)
                                if real is float:
                                    if sw == 2:  # bias: zeros when the call has none
                                        tg_tg_put2_f(acc, &y[b, cb * _CB, ry + sh * a, rx + t0 * sw],
                                                     ho * wo, &bias[cb * _CB], ob, nk)
                                        continue
                                for oc in range(ob):
                                    bv = bias[cb * _CB + oc] if has_bias else 0
                                    yrow = &y[b, cb * _CB + oc, ry + sh * a, rx + t0 * sw]
                                    if nk == _WB:  # a constant count: no branch per element
                                        for k in range(_WB):
                                            yrow[k * sw] = acc[k * _CB + oc] + bv
                                    else:
                                        for k in range(nk):
                                            yrow[k * sw] = acc[k * _CB + oc] + bv
                    continue
                ae = min(qh, ahi)
                for a in range(alo, ae, 2):
                    for tw in range((qw + _WB - 1) // _WB):
                        t0 = tw * _WB
                        nk = min(_WB, qw - t0)
                        if real is float:
                            tg_tg_ntile_f(xp, &wtab[woff], c, nty, ntx, hp, wp, dhp, dwp,
                                          a + pt + dy, t0 + pl + dx, acc)
                        else:
                            tg_tg_ntile_d(xp, &wtab[woff], c, nty, ntx, hp, wp, dhp, dwp,
                                          a + pt + dy, t0 + pl + dx, acc)
                        for r in range(min(2, ae - a)):
                            for oc in range(o):
                                bv = bias[oc] if has_bias else 0
                                yrow = &y[b, oc, ry + sh * (a + r), rx + t0 * sw]
                                for k in range(nk):
                                    yrow[k * sw] = acc[(r * _WB + k) * _NB + oc] + bv
            r = min(ho, sh * ahi) if part < split - 1 else ho
            if relu and r > sh * alo:  # the task's output rows
                for oc in range(o):
                    _relu_row(&y[b, oc, sh * alo, 0], &mask[b, oc, sh * alo, 0],
                              (r - sh * alo) * wo)
