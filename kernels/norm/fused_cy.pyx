"""Fused normalisation kernels with Cython + OpenMP: the same loops as ``fused_numba``.

Calls on fewer than ``SERIAL`` elements run on the calling thread: waking a sleeping
member of the team and waiting for it at the end of the region costs about as much as
the second thread saves on a pass this short (the family's records declare the same
bound, :data:`tapegrad.kernels.norm.SERIAL_BELOW`).
"""

import numpy as np

cimport openmp
from cython.parallel cimport prange
from libc.math cimport sqrt

ctypedef fused real:
    float
    double

cdef extern from *:
    """
    #include <stddef.h>
    /* Reductions over one contiguous run, in float64 with 8 independent partial sums so
       that gcc vectorises them without reassociation flags; built for baseline x86-64 and
       for AVX-512 (x86-64-v4), the latter chosen at run time where the CPU has it. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX512F__)
    #define TGN_V4 __attribute__((target("arch=x86-64-v4")))
    static int tgn_has_v4 = -1;
    static int tgn_use_v4(void) {
        if (tgn_has_v4 < 0) {  /* benign race: every thread computes the same value */
            __builtin_cpu_init();
            tgn_has_v4 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
                         && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
        }
        return tgn_has_v4;
    }
    #else
    #define TGN_V4
    static int tgn_use_v4(void) { return 0; }
    #endif

    /* 8 partial sums held as one vector (GCC's vector extension): gcc keeps both sums in
       vector registers (it left the plain sum in 8 scalar registers when they were arrays);
       lane l still sums elements l, l + 8, ..., so the result is the same. The loads are
       macros, not functions: a function built for the default target is not inlined into
       the x86-64-v4 clones, and a call per 8 elements returning a vector through memory
       made those clones slower than scalar code. */
    typedef double tgn_v8d __attribute__((vector_size(64)));
    typedef double tgn_v8d_u __attribute__((vector_size(64), aligned(8), may_alias));
    typedef float tgn_v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
    #if defined(__AVX512F__)
    /* one 8-lane conversion (gcc splits __builtin_convertvector into halves and shuffles) */
    #include <immintrin.h>
    #define tgn_load8_float(p) ((tgn_v8d)_mm512_cvtps_pd(_mm256_loadu_ps(p)))
    #else
    #define tgn_load8_float(p) __builtin_convertvector(*(const tgn_v8f_u *)(p), tgn_v8d)
    #endif
    #define tgn_load8_double(p) ((tgn_v8d)(*(const tgn_v8d_u *)(p)))
    /* The next run's 16 elements at the same offset, fetched ahead of the loads: the runs
       of a batch-norm channel are a plane apart (one page for a 32x32 float32 plane), and
       the hardware prefetchers stop at page boundaries. */
    #define TGN_PF(T, p)                                                                \
        do {                                                                            \
            __builtin_prefetch((p), 0, 3);                                              \
            if (sizeof(T) == 8) __builtin_prefetch((p) + 8, 0, 3);                      \
        } while (0)
    /* Over `rows` runs of n elements, `stride` elements apart (one run for a row norm, a
       channel's plane in every image for batch norm): the partial sums stay in registers
       across runs and are added up once. Two vectors of partial sums per quantity (16
       elements a step): one vector's sum waits on the previous add's latency every step,
       two keep the adders busy. The order is fixed, so results do not depend on the thread
       count. */
    /* s1 += sum(x - k), s2 += sum((x - k)^2) */
    #define TGN_SHIFTED(NAME, ATTR, T)                                                  \
    ATTR static void NAME(const T *x, ptrdiff_t rows, ptrdiff_t stride, ptrdiff_t n,    \
                          double k, double *s1, double *s2) {                           \
        tgn_v8d a = {0}, b = {0}, a1 = {0}, b1 = {0};                                   \
        for (ptrdiff_t r = 0; r < rows; r++, x += stride) {                             \
            ptrdiff_t i = 0;                                                            \
            const T *xn = r + 1 < rows ? x + stride : x;                                \
            for (; i + 16 <= n; i += 16) {                                              \
                TGN_PF(T, xn + i);                                                      \
                tgn_v8d d = tgn_load8_##T(x + i) - k;                                   \
                tgn_v8d d1 = tgn_load8_##T(x + i + 8) - k;                              \
                a += d;                                                                 \
                b += d * d;                                                             \
                a1 += d1;                                                               \
                b1 += d1 * d1;                                                          \
            }                                                                           \
            if (i + 8 <= n) {                                                           \
                tgn_v8d d = tgn_load8_##T(x + i) - k;                                   \
                a += d;                                                                 \
                b += d * d;                                                             \
                i += 8;                                                                 \
            }                                                                           \
            for (; i < n; i++) {                                                        \
                double d = (double)x[i] - k;                                            \
                a1[i & 7] += d;                                                         \
                b1[i & 7] += d * d;                                                     \
            }                                                                           \
        }                                                                               \
        a += a1;                                                                        \
        b += b1;                                                                        \
        for (int l = 0; l < 8; l++) {                                                   \
            *s1 += a[l];                                                                \
            *s2 += b[l];                                                                \
        }                                                                               \
    }
    /* sg += sum(g), sgx += sum(g * (x - mu)); g and x share the layout */
    #define TGN_DOT(NAME, ATTR, T)                                                      \
    ATTR static void NAME(const T *g, const T *x, ptrdiff_t rows, ptrdiff_t stride,     \
                          ptrdiff_t n, double mu, double *sg, double *sgx) {            \
        tgn_v8d a = {0}, b = {0}, a1 = {0}, b1 = {0};                                   \
        for (ptrdiff_t r = 0; r < rows; r++, g += stride, x += stride) {                \
            ptrdiff_t i = 0;                                                            \
            const T *gn = r + 1 < rows ? g + stride : g;                                \
            const T *xn = r + 1 < rows ? x + stride : x;                                \
            for (; i + 16 <= n; i += 16) {                                              \
                TGN_PF(T, gn + i);                                                      \
                TGN_PF(T, xn + i);                                                      \
                tgn_v8d v = tgn_load8_##T(g + i);                                       \
                tgn_v8d v1 = tgn_load8_##T(g + i + 8);                                  \
                a += v;                                                                 \
                b += v * (tgn_load8_##T(x + i) - mu);                                   \
                a1 += v1;                                                               \
                b1 += v1 * (tgn_load8_##T(x + i + 8) - mu);                             \
            }                                                                           \
            if (i + 8 <= n) {                                                           \
                tgn_v8d v = tgn_load8_##T(g + i);                                       \
                a += v;                                                                 \
                b += v * (tgn_load8_##T(x + i) - mu);                                   \
                i += 8;                                                                 \
            }                                                                           \
            for (; i < n; i++) {                                                        \
                double v = (double)g[i];                                                \
                a1[i & 7] += v;                                                         \
                b1[i & 7] += v * ((double)x[i] - mu);                                   \
            }                                                                           \
        }                                                                               \
        a += a1;                                                                        \
        b += b1;                                                                        \
        for (int l = 0; l < 8; l++) {                                                   \
            *sg += a[l];                                                                \
            *sgx += b[l];                                                               \
        }                                                                               \
    }
    /* TGN_DOT of g masked (g where mask is set, +0.0 where not): each run's masked values
       are stored in out first and summed from there (the run still in L1), so the sums are
       TGN_DOT's, bit for bit, on an array holding the masked gradient */
    #define TGN_DOTM(NAME, ATTR, T)                                                     \
    ATTR static void NAME(const T *g, const unsigned char *msk, const T *x,             \
                          T *__restrict out,                                            \
                          ptrdiff_t rows, ptrdiff_t stride, ptrdiff_t n, double mu,     \
                          double *sg, double *sgx) {                                    \
        tgn_v8d a = {0}, b = {0}, a1 = {0}, b1 = {0};                                   \
        for (ptrdiff_t r = 0; r < rows;                                                 \
             r++, g += stride, msk += stride, x += stride, out += stride) {             \
            ptrdiff_t i = 0;                                                            \
            for (; i < n; i++) { /* g read unconditionally: the mask is a select */     \
                T v = g[i];                                                             \
                out[i] = msk[i] ? v : (T)0;                                             \
            }                                                                           \
            const T *gn = r + 1 < rows ? g + stride : g;                                \
            const T *xn = r + 1 < rows ? x + stride : x;                                \
            const unsigned char *mn = r + 1 < rows ? msk + stride : msk;                \
            for (i = 0; i + 16 <= n; i += 16) {                                         \
                TGN_PF(T, gn + i);                                                      \
                TGN_PF(T, xn + i);                                                      \
                if ((i & 63) == 0) __builtin_prefetch(mn + i, 0, 3);                   \
                tgn_v8d v = tgn_load8_##T(out + i);                                     \
                tgn_v8d v1 = tgn_load8_##T(out + i + 8);                                \
                a += v;                                                                 \
                b += v * (tgn_load8_##T(x + i) - mu);                                   \
                a1 += v1;                                                               \
                b1 += v1 * (tgn_load8_##T(x + i + 8) - mu);                             \
            }                                                                           \
            if (i + 8 <= n) {                                                           \
                tgn_v8d v = tgn_load8_##T(out + i);                                     \
                a += v;                                                                 \
                b += v * (tgn_load8_##T(x + i) - mu);                                   \
                i += 8;                                                                 \
            }                                                                           \
            for (; i < n; i++) {                                                        \
                double v = (double)out[i];                                              \
                a1[i & 7] += v;                                                         \
                b1[i & 7] += v * ((double)x[i] - mu);                                   \
            }                                                                           \
        }                                                                               \
        a += a1;                                                                        \
        b += b1;                                                                        \
        for (int l = 0; l < 8; l++) {                                                   \
            *sg += a[l];                                                                \
            *sgx += b[l];                                                               \
        }                                                                               \
    }
    /* The closed-form gradient over `rows` runs: gx = af*(G - mg) - cf*(x - mf) + of, G
       the gradient (g, or gx itself for the ReLU's masked gradient: a separate function,
       as a possible overlap of g and gx kept gcc from vectorising). */
    #define TGN_GX(NAME, ATTR, T, G)                                                    \
    ATTR static void NAME(const T *g, const T *__restrict x, T *gx, ptrdiff_t rows,     \
                          ptrdiff_t stride, ptrdiff_t n, T af, T mg, T cf, T mf, T of) { \
        for (ptrdiff_t r = 0; r < rows; r++, g += stride, x += stride, gx += stride)    \
            for (ptrdiff_t i = 0; i < n; i++)                                           \
                gx[i] = af * (G[i] - mg) - cf * (x[i] - mf) + of;                       \
    }
    /* The same plus a gradient held for x already: gx = (closed form) + acc */
    #define TGN_GXA(NAME, ATTR, T, G)                                                   \
    ATTR static void NAME(const T *g, const T *__restrict x, const T *__restrict acc,   \
                          T *gx, ptrdiff_t rows, ptrdiff_t stride, ptrdiff_t n, T af,   \
                          T mg, T cf, T mf, T of) {                                     \
        for (ptrdiff_t r = 0; r < rows;                                                 \
             r++, g += stride, x += stride, acc += stride, gx += stride)                \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                T v = af * (G[i] - mg) - cf * (x[i] - mf) + of;                         \
                gx[i] = v + acc[i];                                                     \
            }                                                                           \
    }
    /* A ReLU's mask from its output: 1 where not y <= 0 (NaN and -0.0 pass as in PyTorch) */
    #define TGN_MASK(NAME, ATTR, T)                                                     \
    ATTR static void NAME(const T *__restrict y, unsigned char *__restrict m,           \
                          ptrdiff_t n) {                                                \
        for (ptrdiff_t i = 0; i < n; i++)                                               \
            m[i] = !(y[i] <= (T)0);                                                     \
    }
    /* sg += sum(g * w), sgx += sum(g * w * (x - mu)) over one run (row norm, affine) */
    #define TGN_DOTW(NAME, ATTR, T)                                                     \
    ATTR static void NAME(const T *g, const T *w, const T *x, ptrdiff_t n, double mu,   \
                          double *sg, double *sgx) {                                    \
        tgn_v8d a = {0}, b = {0}, a1 = {0}, b1 = {0};                                   \
        ptrdiff_t i = 0;                                                                \
        for (; i + 16 <= n; i += 16) {                                                  \
            tgn_v8d v = tgn_load8_##T(g + i) * tgn_load8_##T(w + i);                    \
            tgn_v8d v1 = tgn_load8_##T(g + i + 8) * tgn_load8_##T(w + i + 8);           \
            a += v;                                                                     \
            b += v * (tgn_load8_##T(x + i) - mu);                                       \
            a1 += v1;                                                                   \
            b1 += v1 * (tgn_load8_##T(x + i + 8) - mu);                                 \
        }                                                                               \
        if (i + 8 <= n) {                                                               \
            tgn_v8d v = tgn_load8_##T(g + i) * tgn_load8_##T(w + i);                    \
            a += v;                                                                     \
            b += v * (tgn_load8_##T(x + i) - mu);                                       \
            i += 8;                                                                     \
        }                                                                               \
        for (; i < n; i++) {                                                            \
            double v = (double)g[i] * (double)w[i];                                     \
            a1[i & 7] += v;                                                             \
            b1[i & 7] += v * ((double)x[i] - mu);                                       \
        }                                                                               \
        a += a1;                                                                        \
        b += b1;                                                                        \
        for (int l = 0; l < 8; l++) {                                                   \
            *sg += a[l];                                                                \
            *sgx += b[l];                                                               \
        }                                                                               \
    }
    TGN_SHIFTED(tgn_shifted_f32_base, , float)
    TGN_SHIFTED(tgn_shifted_f32_v4, TGN_V4, float)
    TGN_SHIFTED(tgn_shifted_f64_base, , double)
    TGN_SHIFTED(tgn_shifted_f64_v4, TGN_V4, double)
    TGN_DOT(tgn_dot_f32_base, , float)
    TGN_DOT(tgn_dot_f32_v4, TGN_V4, float)
    TGN_DOT(tgn_dot_f64_base, , double)
    TGN_DOT(tgn_dot_f64_v4, TGN_V4, double)
    TGN_DOTM(tgn_dotm_f32_base, , float)
    TGN_DOTM(tgn_dotm_f32_v4, TGN_V4, float)
    TGN_DOTM(tgn_dotm_f64_base, , double)
    TGN_DOTM(tgn_dotm_f64_v4, TGN_V4, double)
    TGN_GX(tgn_gx_f32_base, , float, g)
    TGN_GX(tgn_gx_f32_v4, TGN_V4, float, g)
    TGN_GX(tgn_gx_f64_base, , double, g)
    TGN_GX(tgn_gx_f64_v4, TGN_V4, double, g)
    TGN_GX(tgn_gxi_f32_base, , float, gx)
    TGN_GX(tgn_gxi_f32_v4, TGN_V4, float, gx)
    TGN_GX(tgn_gxi_f64_base, , double, gx)
    TGN_GX(tgn_gxi_f64_v4, TGN_V4, double, gx)
    TGN_GXA(tgn_gxa_f32_base, , float, g)
    TGN_GXA(tgn_gxa_f32_v4, TGN_V4, float, g)
    TGN_GXA(tgn_gxa_f64_base, , double, g)
    TGN_GXA(tgn_gxa_f64_v4, TGN_V4, double, g)
    TGN_GXA(tgn_gxai_f32_base, , float, gx)
    TGN_GXA(tgn_gxai_f32_v4, TGN_V4, float, gx)
    TGN_GXA(tgn_gxai_f64_base, , double, gx)
    TGN_GXA(tgn_gxai_f64_v4, TGN_V4, double, gx)
    TGN_MASK(tgn_mask_f32_base, , float)
    TGN_MASK(tgn_mask_f32_v4, TGN_V4, float)
    TGN_MASK(tgn_mask_f64_base, , double)
    TGN_MASK(tgn_mask_f64_v4, TGN_V4, double)
    TGN_DOTW(tgn_dotw_f32_base, , float)
    TGN_DOTW(tgn_dotw_f32_v4, TGN_V4, float)
    TGN_DOTW(tgn_dotw_f64_base, , double)
    TGN_DOTW(tgn_dotw_f64_v4, TGN_V4, double)
    #define TGN_DISPATCH(NAME) (tgn_use_v4() ? NAME##_v4 : NAME##_base)
    #define tgn_shifted_f32(...) TGN_DISPATCH(tgn_shifted_f32)(__VA_ARGS__)
    #define tgn_shifted_f64(...) TGN_DISPATCH(tgn_shifted_f64)(__VA_ARGS__)
    #define tgn_dot_f32(...) TGN_DISPATCH(tgn_dot_f32)(__VA_ARGS__)
    #define tgn_dot_f64(...) TGN_DISPATCH(tgn_dot_f64)(__VA_ARGS__)
    #define tgn_dotm_f32(...) TGN_DISPATCH(tgn_dotm_f32)(__VA_ARGS__)
    #define tgn_dotm_f64(...) TGN_DISPATCH(tgn_dotm_f64)(__VA_ARGS__)
    #define tgn_gx_f32(...) TGN_DISPATCH(tgn_gx_f32)(__VA_ARGS__)
    #define tgn_gx_f64(...) TGN_DISPATCH(tgn_gx_f64)(__VA_ARGS__)
    #define tgn_gxi_f32(...) TGN_DISPATCH(tgn_gxi_f32)(__VA_ARGS__)
    #define tgn_gxi_f64(...) TGN_DISPATCH(tgn_gxi_f64)(__VA_ARGS__)
    #define tgn_gxa_f32(...) TGN_DISPATCH(tgn_gxa_f32)(__VA_ARGS__)
    #define tgn_gxa_f64(...) TGN_DISPATCH(tgn_gxa_f64)(__VA_ARGS__)
    #define tgn_gxai_f32(...) TGN_DISPATCH(tgn_gxai_f32)(__VA_ARGS__)
    #define tgn_gxai_f64(...) TGN_DISPATCH(tgn_gxai_f64)(__VA_ARGS__)
    #define tgn_mask_f32(...) TGN_DISPATCH(tgn_mask_f32)(__VA_ARGS__)
    #define tgn_mask_f64(...) TGN_DISPATCH(tgn_mask_f64)(__VA_ARGS__)
    #define tgn_dotw_f32(...) TGN_DISPATCH(tgn_dotw_f32)(__VA_ARGS__)
    #define tgn_dotw_f64(...) TGN_DISPATCH(tgn_dotw_f64)(__VA_ARGS__)
    """
    void tgn_shifted_f32(const float* x, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n,
                         double k, double* s1, double* s2) noexcept nogil
    void tgn_shifted_f64(const double* x, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n,
                         double k, double* s1, double* s2) noexcept nogil
    void tgn_dot_f32(const float* g, const float* x, Py_ssize_t rows, Py_ssize_t stride,
                     Py_ssize_t n, double mu, double* sg, double* sgx) noexcept nogil
    void tgn_dot_f64(const double* g, const double* x, Py_ssize_t rows, Py_ssize_t stride,
                     Py_ssize_t n, double mu, double* sg, double* sgx) noexcept nogil
    void tgn_dotm_f32(const float* g, const unsigned char* msk, const float* x, float* out,
                      Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, double mu, double* sg,
                      double* sgx) noexcept nogil
    void tgn_dotm_f64(const double* g, const unsigned char* msk, const double* x, double* out,
                      Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, double mu, double* sg,
                      double* sgx) noexcept nogil
    void tgn_gx_f32(const float* g, const float* x, float* gx, Py_ssize_t rows,
                    Py_ssize_t stride, Py_ssize_t n, float af, float mg, float cf, float mf,
                    float of) noexcept nogil
    void tgn_gx_f64(const double* g, const double* x, double* gx, Py_ssize_t rows,
                    Py_ssize_t stride, Py_ssize_t n, double af, double mg, double cf, double mf,
                    double of) noexcept nogil
    void tgn_gxi_f32(const float* g, const float* x, float* gx, Py_ssize_t rows,
                     Py_ssize_t stride, Py_ssize_t n, float af, float mg, float cf, float mf,
                     float of) noexcept nogil
    void tgn_gxi_f64(const double* g, const double* x, double* gx, Py_ssize_t rows,
                     Py_ssize_t stride, Py_ssize_t n, double af, double mg, double cf,
                     double mf, double of) noexcept nogil
    void tgn_gxa_f32(const float* g, const float* x, const float* acc, float* gx,
                     Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, float af, float mg,
                     float cf, float mf, float of) noexcept nogil
    void tgn_gxa_f64(const double* g, const double* x, const double* acc, double* gx,
                     Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, double af, double mg,
                     double cf, double mf, double of) noexcept nogil
    void tgn_gxai_f32(const float* g, const float* x, const float* acc, float* gx,
                      Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, float af, float mg,
                      float cf, float mf, float of) noexcept nogil
    void tgn_gxai_f64(const double* g, const double* x, const double* acc, double* gx,
                      Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, double af, double mg,
                      double cf, double mf, double of) noexcept nogil
    void tgn_mask_f32(const float* y, unsigned char* m, Py_ssize_t n) noexcept nogil
    void tgn_mask_f64(const double* y, unsigned char* m, Py_ssize_t n) noexcept nogil
    void tgn_dotw_f32(const float* g, const float* w, const float* x, Py_ssize_t n, double mu,
                      double* sg, double* sgx) noexcept nogil
    void tgn_dotw_f64(const double* g, const double* w, const double* x, Py_ssize_t n,
                      double mu, double* sg, double* sgx) noexcept nogil


cdef inline void _shifted(const real* x, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n,
                          double k, double* s1, double* s2) noexcept nogil:
    if real is float:
        tgn_shifted_f32(x, rows, stride, n, k, s1, s2)
    else:
        tgn_shifted_f64(x, rows, stride, n, k, s1, s2)


cdef inline void _dot(const real* g, const real* x, Py_ssize_t rows, Py_ssize_t stride,
                      Py_ssize_t n, double mu, double* sg, double* sgx) noexcept nogil:
    if real is float:
        tgn_dot_f32(g, x, rows, stride, n, mu, sg, sgx)
    else:
        tgn_dot_f64(g, x, rows, stride, n, mu, sg, sgx)

cdef inline void _dotm(const real* g, const unsigned char* msk, const real* x, real* out,
                       Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, double mu, double* sg,
                       double* sgx) noexcept nogil:
    if real is float:
        tgn_dotm_f32(g, msk, x, out, rows, stride, n, mu, sg, sgx)
    else:
        tgn_dotm_f64(g, msk, x, out, rows, stride, n, mu, sg, sgx)


cdef inline void _gx(const real* g, const real* x, const real* acc, real* gx, bint inplace,
                     Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t n, real af, real mg,
                     real cf, real mf, real of) noexcept nogil:
    # acc: NULL, or a gradient the tape holds for x already (added as gx is written)
    if acc != NULL:
        if real is float:
            if inplace:
                tgn_gxai_f32(g, x, acc, gx, rows, stride, n, af, mg, cf, mf, of)
            else:
                tgn_gxa_f32(g, x, acc, gx, rows, stride, n, af, mg, cf, mf, of)
        else:
            if inplace:
                tgn_gxai_f64(g, x, acc, gx, rows, stride, n, af, mg, cf, mf, of)
            else:
                tgn_gxa_f64(g, x, acc, gx, rows, stride, n, af, mg, cf, mf, of)
        return
    if real is float:
        if inplace:
            tgn_gxi_f32(g, x, gx, rows, stride, n, af, mg, cf, mf, of)
        else:
            tgn_gx_f32(g, x, gx, rows, stride, n, af, mg, cf, mf, of)
    else:
        if inplace:
            tgn_gxi_f64(g, x, gx, rows, stride, n, af, mg, cf, mf, of)
        else:
            tgn_gx_f64(g, x, gx, rows, stride, n, af, mg, cf, mf, of)


cdef inline void _mask(const real* y, unsigned char* m, Py_ssize_t n) noexcept nogil:
    if real is float:
        tgn_mask_f32(y, m, n)
    else:
        tgn_mask_f64(y, m, n)


cdef inline void _dotw(const real* g, const real* w, const real* x, Py_ssize_t n, double mu,
                       double* sg, double* sgx) noexcept nogil:
    if real is float:
        tgn_dotw_f32(g, w, x, n, mu, sg, sgx)
    else:
        tgn_dotw_f64(g, w, x, n, mu, sg, sgx)

cdef enum:
    SERIAL = 1 << 18  # below this many elements: the calling thread alone

SERIAL_BELOW = SERIAL


cdef inline int _team(Py_ssize_t n) noexcept nogil:
    return 1 if n < SERIAL else openmp.omp_get_max_threads()


def team_size(Py_ssize_t elements):
    """The threads a call on this many elements runs on (1 below ``SERIAL_BELOW``)."""
    return _team(elements)


cdef int _CHUNKS = 4  # row chunks in row_backward, as in fused_numba


cdef inline void _bn_train_channel(const real[:, :, ::1] x, const double[::1] w,
                                   const double[::1] b, double eps, bint normvar, real[:, :, ::1] y,
                                   double[::1] mean, double[::1] invstd, double[::1] var,
                                   bint relu, unsigned char[:, :, ::1] mask,
                                   Py_ssize_t ch) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], s = x.shape[2], i, j
    cdef double m = n * s, k = x[0, ch, 0], s1 = 0, s2 = 0, d, md, v, mu, inv
    cdef real a, o, mf, u
    _shifted(&x[0, ch, 0], n, x.shape[1] * s, s, k, &s1, &s2)
    md = s1 / m
    v = s2 / m - md * md
    if v < 0:
        v = 0
    mu = k + md
    inv = 1.0 / sqrt(v + eps) if normvar else 1.0
    mean[ch] = mu
    var[ch] = v
    invstd[ch] = inv
    # centred on the dtype-rounded mean mf: x - mf is exact, the rounding goes in o
    mf = <real>mu
    a = <real>(w[ch] * inv)
    o = <real>(b[ch] - (mu - mf) * w[ch] * inv)
    if relu:  # the ReLU and its mask in the same pass (PyTorch's: NaN and -0.0 pass)
        for i in range(n):
            for j in range(s):
                u = (x[i, ch, j] - mf) * a + o
                y[i, ch, j] = 0 if u < 0 else u
            # the mask from the row of y just written (still in L1): y <= 0 exactly where
            # u <= 0. Its own loop: one loop storing both floats and bytes was slower.
            _mask(&y[i, ch, 0], &mask[i, ch, 0], s)
    else:
        for i in range(n):
            for j in range(s):
                y[i, ch, j] = (x[i, ch, j] - mf) * a + o


def _bn_train(const real[:, :, ::1] x, const double[::1] w, const double[::1] b, double eps,
              bint normvar, real[:, :, ::1] y, double[::1] mean, double[::1] invstd,
              double[::1] var, bint relu, unsigned char[:, :, ::1] mask):
    cdef Py_ssize_t ch
    cdef int nt = _team(x.shape[0] * x.shape[1] * x.shape[2])
    with nogil:
        for ch in prange(x.shape[1], schedule="static", num_threads=nt):
            _bn_train_channel(x, w, b, eps, normvar, y, mean, invstd, var, relu, mask, ch)


def _bn_eval(const real[:, :, ::1] x, const real[::1] sc, const real[::1] sh, real[:, :, ::1] y):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], s = x.shape[2], nc, i, ch, j
    cdef real a, o
    cdef int nt = _team(n * c * s)
    with nogil:
        for nc in prange(n * c, schedule="static", num_threads=nt):
            i = nc // c
            ch = nc % c
            a = sc[ch]
            o = sh[ch]
            for j in range(s):
                y[i, ch, j] = x[i, ch, j] * a + o


cdef inline void _bn_backward_channel(const real[:, :, ::1] gy, const real[:, :, ::1] x,
                                      const double[::1] mean, const double[::1] invstd,
                                      const double[::1] w, bint normvar, real[:, :, ::1] gx,
                                      double[::1] gw, double[::1] gb,
                                      const unsigned char[:, :, ::1] mask,
                                      const real[:, :, ::1] g, const real[:, :, ::1] acc,
                                      Py_ssize_t ch) noexcept nogil:
    # with a ReLU's mask: the sums pass masks gy as it reads it and stores the masked
    # gradient in gx (g is gx then), read back by the last pass while this channel's planes
    # are still in cache; the sums and the last pass are bn_backward's on the masked gradient
    cdef Py_ssize_t n = x.shape[0], s = x.shape[2], i, j
    cdef double m = n * s, mu = mean[ch], inv = invstd[ch], sg = 0, sgx = 0, a, c1
    cdef real af, cf, of, mf, mg
    if mask.shape[0] != 0:
        _dotm(&gy[0, ch, 0], &mask[0, ch, 0], &x[0, ch, 0], &gx[0, ch, 0], n, x.shape[1] * s, s,
              mu, &sg, &sgx)
    else:
        _dot(&g[0, ch, 0], &x[0, ch, 0], n, x.shape[1] * s, s, mu, &sg, &sgx)
    gb[ch] = sg
    gw[ch] = sgx * inv
    # gx = a*(gy - mean(gy)) - c1*(x - mf) + c0: the closed form with
    # xhat = (x - mu) * inv expanded, centred on the dtype-rounded mean mf as in the
    # forward (c0 = c1*(mu - mf) is that rounding). gy - mean(gy) comes first so a
    # batch of one gives exactly zero without variance normalisation.
    a = w[ch] * inv
    c1 = a * sgx * inv * inv / m if normvar else 0.0
    mf = <real>mu
    mg = <real>(sg / m)
    af = <real>a
    cf = <real>c1
    of = <real>(c1 * (mu - mf))
    _gx(&g[0, ch, 0], &x[0, ch, 0], &acc[0, ch, 0] if acc.shape[0] != 0 else NULL,
        &gx[0, ch, 0], mask.shape[0] != 0, n, x.shape[1] * s, s, af, mg, cf, mf, of)


def _bn_backward(const real[:, :, ::1] gy, const real[:, :, ::1] x, const double[::1] mean,
                 const double[::1] invstd, const double[::1] w, bint normvar, real[:, :, ::1] gx,
                 double[::1] gw, double[::1] gb, const unsigned char[:, :, ::1] mask,
                 const real[:, :, ::1] acc):
    """``mask`` of x's shape: the gradient masked first (a ReLU's); (0, 0, 0): none.
    ``acc`` of x's shape: added to gx as it is written; (0, 0, 0): none."""
    cdef Py_ssize_t ch
    cdef int nt = _team(x.shape[0] * x.shape[1] * x.shape[2])
    cdef const real[:, :, ::1] g = gy
    if mask.shape[0] != 0:
        g = gx
    with nogil:
        for ch in prange(x.shape[1], schedule="static", num_threads=nt):
            _bn_backward_channel(gy, x, mean, invstd, w, normvar, gx, gw, gb, mask, g, acc, ch)


cdef inline void _row_forward_row(const real[:, ::1] x, const real[:, ::1] w, const real[:, ::1] b,
                                  bint affine, double eps, real[:, ::1] y,
                                  double[::1] mean, double[::1] invstd,
                                  Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t k = x.shape[1], p = w.shape[0], q, j
    cdef double sft = x[i, 0], s1 = 0, s2 = 0, d, md, v, mu, inv
    cdef real a, o, mf
    _shifted(&x[i, 0], 1, k, k, sft, &s1, &s2)
    md = s1 / k
    v = s2 / k - md * md
    if v < 0:
        v = 0
    mu = sft + md
    inv = 1.0 / sqrt(v + eps)
    mean[i] = mu
    invstd[i] = inv
    mf = <real>mu  # centre on the dtype-rounded mean (see _bn_train_channel)
    a = <real>inv
    o = <real>(-(mu - mf) * inv)
    if affine:
        q = i % p
        for j in range(k):
            y[i, j] = ((x[i, j] - mf) * a + o) * w[q, j] + b[q, j]
    else:
        for j in range(k):
            y[i, j] = (x[i, j] - mf) * a + o


def _row_forward(const real[:, ::1] x, const real[:, ::1] w, const real[:, ::1] b, bint affine,
                 double eps, real[:, ::1] y, double[::1] mean, double[::1] invstd):
    cdef Py_ssize_t i
    cdef int nt = _team(x.shape[0] * x.shape[1])
    with nogil:
        for i in prange(x.shape[0], schedule="static", num_threads=nt):
            _row_forward_row(x, w, b, affine, eps, y, mean, invstd, i)


cdef inline void _row_backward_chunk(const real[:, ::1] gy, const real[:, ::1] x,
                                     const double[::1] mean, const double[::1] invstd, const real[:,
                                     ::1] w, bint affine, bint need, real[:, ::1] gx, real[:, :,
                                     ::1] gwp, real[:, :, ::1] gbp, Py_ssize_t ci) noexcept nogil:
    cdef Py_ssize_t r = x.shape[0], k = x.shape[1], p = w.shape[0], nch = gwp.shape[0]
    cdef Py_ssize_t lo = ci * r // nch, hi = (ci + 1) * r // nch, i, j, q
    cdef double sg, sgd, sgx, ad, od
    cdef real a, o, xh, mg, mgx, mf
    for i in range(lo, hi):
        q = i % p
        mf = <real>mean[i]
        ad = invstd[i]
        od = -(mean[i] - mf) * ad
        a = <real>ad
        o = <real>od
        # sums of g = gy * w and of g * (x - mf) in float64 vector registers;
        # sum(g * xhat) = sum(g * (x - mf)) * invstd + sum(g) * o
        sg = 0
        sgd = 0
        if affine:
            _dotw(&gy[i, 0], &w[q, 0], &x[i, 0], k, mf, &sg, &sgd)
        else:
            _dot(&gy[i, 0], &x[i, 0], 1, k, k, mf, &sg, &sgd)
        sgx = sgd * ad + sg * od
        mg = <real>(sg / k)
        mgx = <real>(sgx / k)
        if need:
            for j in range(k):
                xh = (x[i, j] - mf) * a + o
                gwp[ci, q, j] += gy[i, j] * xh
                gbp[ci, q, j] += gy[i, j]
        if affine:
            for j in range(k):
                xh = (x[i, j] - mf) * a + o
                gx[i, j] = a * (gy[i, j] * w[q, j] - mg - xh * mgx)
        else:
            for j in range(k):
                xh = (x[i, j] - mf) * a + o
                gx[i, j] = a * (gy[i, j] - mg - xh * mgx)


def _row_backward(const real[:, ::1] gy, const real[:, ::1] x, const double[::1] mean,
                  const double[::1] invstd, const real[:, ::1] w, bint affine, bint need, real[:,
                  ::1] gx, real[:, :, ::1] gwp, real[:, :, ::1] gbp):
    cdef Py_ssize_t ci
    cdef int nt = _team(x.shape[0] * x.shape[1])
    with nogil:
        for ci in prange(gwp.shape[0], schedule="static", num_threads=nt):
            _row_backward_chunk(gy, x, mean, invstd, w, affine, need, gx, gwp, gbp, ci)


_NO_MASK = np.empty((0, 0, 0), np.uint8)  # a call without a ReLU
BN_BACKWARD_ADDS = True  # bn_backward and bn_relu_backward take acc (see __init__)


def _forward_train(x, w, b, eps, normalize_variance, mask):
    """bn_forward_train's (y, mean, invstd, var); with a mask of x's shape (not _NO_MASK),
    the ReLU applied and its mask written in the same pass."""
    c = x.shape[1]
    if x.shape[0] * x.shape[2] == 0:  # an empty batch: no statistics to take
        return np.empty_like(x), np.zeros(c), np.ones(c), np.zeros(c)
    y = np.empty_like(x)
    mean, invstd, var = np.empty(c), np.empty(c), np.empty(c)
    relu = mask is not _NO_MASK
    _bn_train(x, w, b, eps, normalize_variance, y, mean, invstd, var, relu, mask)
    return y, mean, invstd, var


def bn_forward_train(x, w, b, eps, normalize_variance):
    return _forward_train(x, w, b, eps, normalize_variance, _NO_MASK)


def bn_relu_forward_train(x, w, b, eps, normalize_variance):
    mask = np.empty(x.shape, np.uint8)
    return (*_forward_train(x, w, b, eps, normalize_variance, mask), mask)


def bn_forward_eval(x, scale, shift):
    y = np.empty_like(x)
    _bn_eval(x, scale.astype(x.dtype), shift.astype(x.dtype), y)
    return y


def _backward(gy, x, mean, invstd, w, normalize_variance, mask, acc=None):
    """bn_backward's (gx, gw, gb); with a mask of x's shape (not _NO_MASK), of gy masked;
    with ``acc`` (x's shape and dtype), gx + acc."""
    c = x.shape[1]
    gx = np.empty_like(x)
    gw, gb = np.empty(c), np.empty(c)
    if acc is None:
        acc = np.empty((0, 0, 0), x.dtype)
    _bn_backward(gy, x, mean, invstd, w, normalize_variance, gx, gw, gb, mask, acc)
    return gx, gw, gb


def bn_backward(gy, x, mean, invstd, w, normalize_variance, acc=None):
    return _backward(gy, x, mean, invstd, w, normalize_variance, _NO_MASK, acc)


def bn_relu_backward(gy, mask, x, mean, invstd, w, normalize_variance, acc=None):
    if x.size == 0:
        c = x.shape[1]
        return np.empty_like(x), np.zeros(c), np.zeros(c)
    return _backward(gy, x, mean, invstd, w, normalize_variance, mask, acc)


def _affine(w, b, dtype):
    if w is None:
        return np.ones((1, 1), dtype), np.zeros((1, 1), dtype), False
    return w, b, True


def row_forward(x, w, b, eps):
    if x.shape[1] == 0:  # empty rows: no statistics to take
        return np.empty_like(x), np.zeros(x.shape[0]), np.ones(x.shape[0])
    r = x.shape[0]
    w_, b_, affine = _affine(w, b, x.dtype)
    y = np.empty_like(x)
    mean, invstd = np.empty(r), np.empty(r)
    _row_forward(x, w_, b_, affine, eps, y, mean, invstd)
    return y, mean, invstd


def row_backward(gy, x, mean, invstd, w, need_affine):
    r, k = x.shape
    w_, _, affine = _affine(w, w, x.dtype)
    need = affine and bool(need_affine)
    nch = max(1, min(r, _CHUNKS))
    shape = (nch, w_.shape[0], k) if need else (nch, 1, 1)
    gwp, gbp = np.zeros(shape, x.dtype), np.zeros(shape, x.dtype)
    gx = np.empty_like(x)
    _row_backward(gy, x, mean, invstd, w_, affine, need, gx, gwp, gbp)
    if not need:
        return gx, None, None
    return gx, gwp.sum(axis=0, dtype=np.float64), gbp.sum(axis=0, dtype=np.float64)
