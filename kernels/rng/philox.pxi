# Philox-4x32-10 and Box-Muller, shared by the Cython kernels through ``include``: the
# same arithmetic and stream layout as ``philox_numba`` (bit-identical to it).
#
# The group function and the mask loops are small C functions (verbatim below) built
# twice, for baseline x86-64 and for AVX-512 (x86-64-v4), the latter picked at run time
# where the CPU has it: the build flags target baseline x86-64, whose SSE2 cannot run the
# 64 lanes of a group side by side efficiently (Numba compiles for the host CPU anyway).
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.math cimport sqrt, log, cos, sin

cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>
    /* The 256 words of group g: out[w * 64 + j] = word w of Philox block 64 g + j.
       State is kept in 64-bit lanes (as in the Numba kernel) so no 32/64-bit shuffles
       are needed between rounds. */
    #define TG_PHILOX_BODY                                                              \
        const uint64_t LO = 0xFFFFFFFFu;                                                \
        for (int j = 0; j < 64; j++) {                                                  \
            uint64_t blk = g * 64 + (uint64_t)j;                                        \
            uint64_t c0 = blk & LO, c1 = blk >> 32, c2 = s0, c3 = s1, ka = k0, kb = k1; \
            _Pragma("GCC unroll 10")                                                    \
            for (int r = 0; r < 10; r++) {                                              \
                uint64_t p0 = 0xD2511F53u * c0, p1 = 0xCD9E8D57u * c2;                  \
                uint64_t n0 = (p1 >> 32) ^ c1 ^ ka, n2 = (p0 >> 32) ^ c3 ^ kb;          \
                c1 = p1 & LO;                                                           \
                c3 = p0 & LO;                                                           \
                c0 = n0;                                                                \
                c2 = n2;                                                                \
                ka = (ka + 0x9E3779B9u) & LO;                                           \
                kb = (kb + 0xBB67AE85u) & LO;                                           \
            }                                                                           \
            out[j] = (uint32_t)c0;                                                      \
            out[64 + j] = (uint32_t)c1;                                                 \
            out[128 + j] = (uint32_t)c2;                                                \
            out[192 + j] = (uint32_t)c3;                                                \
        }

    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    /* Each hot loop is built twice: baseline x86-64 (the extension's build flags) and
       AVX-512 (x86-64-v4), the latter chosen at run time where the CPU has it. */
    #define TG_V4 __attribute__((target("arch=x86-64-v4")))
    static int tg_has_v4 = -1;
    static int tg_use_v4(void) {
        if (tg_has_v4 < 0) {  /* benign race: every thread computes the same value */
            __builtin_cpu_init();
            tg_has_v4 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
                        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
        }
        return tg_has_v4;
    }
    #else
    #define TG_V4
    static int tg_use_v4(void) { return 0; }
    #endif

    static void tg_philox_group_base(uint64_t g, uint32_t s0, uint32_t s1, uint32_t k0,
                                     uint32_t k1, uint32_t *restrict out) {
        TG_PHILOX_BODY
    }
    TG_V4 static void tg_philox_group_v4(uint64_t g, uint32_t s0, uint32_t s1, uint32_t k0,
                                         uint32_t k1, uint32_t *restrict out) {
        TG_PHILOX_BODY
    }
    static void tg_philox_group(uint64_t g, uint32_t s0, uint32_t s1, uint32_t k0,
                                uint32_t k1, uint32_t *out) {
        if (tg_use_v4())
            tg_philox_group_v4(g, s0, s1, k0, k1, out);
        else
            tg_philox_group_base(g, s0, s1, k0, k1, out);
    }

    /* keep = bits >= thr (thr is 64-bit: 2**32 drops all); y = x * (scale * keep),
       multiplied (not selected), as PyTorch does: a dropped NaN stays NaN. The compare
       runs on 32 bits (SSE2 has no 64-bit compare): thr = 2**32 becomes "none kept". */
    #define TG_KEEP_APPLY(NAME, ATTR, T)                                                \
    ATTR static void NAME(const uint32_t *bits, uint64_t thr, const T *x, T *y,         \
                          uint8_t *keep, ptrdiff_t m, T scale) {                        \
        uint32_t t = (uint32_t)thr;                                                     \
        uint8_t any = thr <= 0xFFFFFFFFu;                                               \
        for (ptrdiff_t i = 0; i < m; i++) {                                             \
            uint8_t k = (bits[i] >= t) & any;                                           \
            keep[i] = k;                                                                \
            y[i] = x[i] * (scale * (T)k);                                               \
        }                                                                               \
    }
    /* out = g * (scale * keep) */
    #define TG_MASK_MUL(NAME, ATTR, T)                                                  \
    ATTR static void NAME(const T *g, const uint8_t *keep, T *out, ptrdiff_t n,         \
                          T scale) {                                                    \
        for (ptrdiff_t i = 0; i < n; i++) out[i] = g[i] * (scale * (T)keep[i]);         \
    }
    TG_KEEP_APPLY(tg_keep_apply_f32_base, , float)
    TG_KEEP_APPLY(tg_keep_apply_f32_v4, TG_V4, float)
    TG_KEEP_APPLY(tg_keep_apply_f64_base, , double)
    TG_KEEP_APPLY(tg_keep_apply_f64_v4, TG_V4, double)
    TG_MASK_MUL(tg_mask_mul_f32_base, , float)
    TG_MASK_MUL(tg_mask_mul_f32_v4, TG_V4, float)
    TG_MASK_MUL(tg_mask_mul_f64_base, , double)
    TG_MASK_MUL(tg_mask_mul_f64_v4, TG_V4, double)
    #define TG_DISPATCH(NAME) (tg_use_v4() ? NAME##_v4 : NAME##_base)
    #define tg_keep_apply_f32(...) TG_DISPATCH(tg_keep_apply_f32)(__VA_ARGS__)
    #define tg_keep_apply_f64(...) TG_DISPATCH(tg_keep_apply_f64)(__VA_ARGS__)
    #define tg_mask_mul_f32(...) TG_DISPATCH(tg_mask_mul_f32)(__VA_ARGS__)
    #define tg_mask_mul_f64(...) TG_DISPATCH(tg_mask_mul_f64)(__VA_ARGS__)
    """
    void tg_philox_group(uint64_t g, uint32_t s0, uint32_t s1, uint32_t k0, uint32_t k1,
                         uint32_t* out) noexcept nogil
    void tg_keep_apply_f32(const uint32_t* bits, uint64_t thr, const float* x, float* y,
                           uint8_t* keep, Py_ssize_t m, float scale) noexcept nogil
    void tg_keep_apply_f64(const uint32_t* bits, uint64_t thr, const double* x, double* y,
                           uint8_t* keep, Py_ssize_t m, double scale) noexcept nogil
    void tg_mask_mul_f32(const float* g, const uint8_t* keep, float* out, Py_ssize_t n,
                         float scale) noexcept nogil
    void tg_mask_mul_f64(const double* g, const uint8_t* keep, double* out, Py_ssize_t n,
                         double scale) noexcept nogil

cdef enum:
    LANES = 64
    GROUP = 256


cdef inline void philox_group(uint64_t g, uint32_t s0, uint32_t s1, uint32_t k0,
                              uint32_t k1, uint32_t* out) noexcept nogil:
    tg_philox_group(g, s0, s1, k0, k1, out)


cdef inline void box_muller(uint32_t a, uint32_t b, double* z) noexcept nogil:
    cdef double ua = (<double>a + 0.5) * 2.3283064365386963e-10
    cdef double ub = (<double>b + 0.5) * 2.3283064365386963e-10
    cdef double r = sqrt(-2.0 * log(ua))
    cdef double t = 6.283185307179586 * ub
    z[0] = r * cos(t)
    z[1] = r * sin(t)


cdef inline void normal_group(uint64_t g, uint32_t s0, uint32_t s1, uint32_t k0,
                              uint32_t k1, uint32_t* bits, double* out) noexcept nogil:
    """The 256 normals of group g (``bits``: 256 words of scratch)."""
    cdef int j
    cdef double z[2]
    philox_group(g, s0, s1, k0, k1, bits)
    for j in range(LANES):
        box_muller(bits[j], bits[LANES + j], z)
        out[j] = z[0]
        out[LANES + j] = z[1]
        box_muller(bits[2 * LANES + j], bits[3 * LANES + j], z)
        out[2 * LANES + j] = z[0]
        out[3 * LANES + j] = z[1]
