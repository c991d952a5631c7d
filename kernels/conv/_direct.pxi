# Helpers shared by the direct conv2d kernels that copy each image, zero-padded, into a
# thread's own buffer of phase planes (blocked_cy.pyx, flat_cy.pyx), included textually:
# each .pyx cimports openmp and includes "../_common.pxi" (``real``, _lo, _hi) first, and
# defines ``applies``, ``_conv(x, w, b, s, ph, pw)`` and the module ``_fallback``
# (im2col-cython) that ``forward`` calls.


# d[i] = src[i * step] for i < n, in C: vector copies for step 1, two vector loads and one
# shuffle per vector of even elements for step 2 (while the loads stay below ``end``), the
# rest one by one.
cdef extern from *:
    """
    #define TG_TAKE(T, S, I)                                                            \
    typedef T tg_tk_u##S __attribute__((vector_size(64), aligned(sizeof(T)), may_alias)); \
    typedef I tg_tk_i##S __attribute__((vector_size(64)));                              \
    static inline void tg_take_##S(const T* src, Py_ssize_t step, T* d, Py_ssize_t n,   \
                                   const T* end) {                                      \
        enum { V = 64 / sizeof(T) };                                                    \
        Py_ssize_t i = 0, k;                                                            \
        if (step == 1) {                                                                \
            for (; i + V <= n; i += V)                                                  \
                *(tg_tk_u##S*)(d + i) = *(const tg_tk_u##S*)(src + i);                  \
        } else if (step == 2) {                                                         \
            tg_tk_i##S even;                                                            \
            for (k = 0; k < V; k++) even[k] = 2 * k;                                    \
            for (; i + V <= n && src + 2 * i + 2 * V <= end; i += V)                    \
                *(tg_tk_u##S*)(d + i) = __builtin_shuffle(                              \
                    *(const tg_tk_u##S*)(src + 2 * i),                                  \
                    *(const tg_tk_u##S*)(src + 2 * i + V), even);                       \
        }                                                                               \
        for (; i < n; i++) d[i] = src[i * step];                                        \
    }
    TG_TAKE(float, f, int)
    TG_TAKE(double, d, long long)
    """
    void tg_take_f(const float* src, Py_ssize_t step, float* d, Py_ssize_t n,
                   const float* end) noexcept nogil
    void tg_take_d(const double* src, Py_ssize_t step, double* d, Py_ssize_t n,
                   const double* end) noexcept nogil


# One row of a phase plane: d[q] = 0 for q < lo and lo + n <= q < wq, d[lo + i] = src[i * step]
# for i < n. With AVX-512 (step 1 or 2), whole vectors and one masked vector per row end:
# masked stores of zeros over the row, then per vector of the run one or two masked loads
# (only the elements the run reads, so nothing past them is touched), an even-element
# permute for step 2, and a masked store. Otherwise zeros and tg_take's copy.
cdef extern from *:
    """
    #if defined(__AVX512F__)
    #include <immintrin.h>
    static inline __mmask16 tg_m16(Py_ssize_t k) {
        return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1);
    }
    static inline __mmask8 tg_m8(Py_ssize_t k) {
        return k >= 8 ? (__mmask8)0xFF : k <= 0 ? (__mmask8)0 : (__mmask8)((1u << k) - 1);
    }
    static inline void tg_row_f(const float* src, Py_ssize_t step, float* d, Py_ssize_t lo,
                                Py_ssize_t n, Py_ssize_t wq, const float* end) {
        Py_ssize_t q, i;
        if (step != 1 && step != 2) {
            for (q = 0; q < lo; q++) d[q] = 0;
            tg_take_f(src, step, d + lo, n, end);
            for (q = lo + n; q < wq; q++) d[q] = 0;
            return;
        }
        const __m512 z = _mm512_setzero_ps();
        for (q = 0; q < wq; q += 16) _mm512_mask_storeu_ps(d + q, tg_m16(wq - q), z);
        d += lo;
        if (step == 1) {
            for (i = 0; i < n; i += 16) {
                __mmask16 m = tg_m16(n - i);
                _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, src + i));
            }
        } else {
            const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12,
                                                  10, 8, 6, 4, 2, 0);
            for (i = 0; i < n; i += 16) {
                Py_ssize_t r = 2 * (n - i) - 1;  /* source elements this vector reads */
                __m512 a = _mm512_maskz_loadu_ps(tg_m16(r), src + 2 * i);
                __m512 b = _mm512_maskz_loadu_ps(tg_m16(r - 16), src + 2 * i + 16);
                _mm512_mask_storeu_ps(d + i, tg_m16(n - i), _mm512_permutex2var_ps(a, even, b));
            }
        }
    }
    static inline void tg_row_d(const double* src, Py_ssize_t step, double* d, Py_ssize_t lo,
                                Py_ssize_t n, Py_ssize_t wq, const double* end) {
        Py_ssize_t q, i;
        if (step != 1 && step != 2) {
            for (q = 0; q < lo; q++) d[q] = 0;
            tg_take_d(src, step, d + lo, n, end);
            for (q = lo + n; q < wq; q++) d[q] = 0;
            return;
        }
        const __m512d z = _mm512_setzero_pd();
        for (q = 0; q < wq; q += 8) _mm512_mask_storeu_pd(d + q, tg_m8(wq - q), z);
        d += lo;
        if (step == 1) {
            for (i = 0; i < n; i += 8) {
                __mmask8 m = tg_m8(n - i);
                _mm512_mask_storeu_pd(d + i, m, _mm512_maskz_loadu_pd(m, src + i));
            }
        } else {
            const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
            for (i = 0; i < n; i += 8) {
                Py_ssize_t r = 2 * (n - i) - 1;
                __m512d a = _mm512_maskz_loadu_pd(tg_m8(r), src + 2 * i);
                __m512d b = _mm512_maskz_loadu_pd(tg_m8(r - 8), src + 2 * i + 8);
                _mm512_mask_storeu_pd(d + i, tg_m8(n - i), _mm512_permutex2var_pd(a, even, b));
            }
        }
    }
    /* Stride 2 in both directions: the phase planes of an image (layout as _pad_planes)
       with each image row loaded once for both column phases: per chunk of V plane
       columns, two masked loads of the 2V source columns it covers (the masks, the same
       for every row, zero the columns outside the image) and two permutes, the even
       elements to column phase 0 and the odd ones to phase 1, stored with the row's tail
       mask (so nothing past a plane row is written). Returns 0, doing nothing, when a
       row needs more than 16 chunks. */
    #define TG_PLANES2(T, S, V, M, MASK, LOAD, STORE, PERM, SETI, ZERO)                 \
    static inline int tg_planes2_##S(const T* xb, T* xq, Py_ssize_t c, Py_ssize_t h,    \
            Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t hq, Py_ssize_t wq,   \
            Py_ssize_t cs, Py_ssize_t pys, Py_ssize_t pxs, Py_ssize_t rs) {             \
        Py_ssize_t nk = (wq + V - 1) / V, k, j, ci, r, py, ih;                          \
        M ma[16], mb[16], mt[16];                                                       \
        if (nk > 16) return 0;                                                          \
        for (k = 0; k < nk; k++) {                                                      \
            Py_ssize_t lo = 2 * V * k - pw;                                             \
            ma[k] = 0; mb[k] = 0;                                                       \
            for (j = 0; j < V; j++) {                                                   \
                if (lo + j >= 0 && lo + j < w) ma[k] |= (M)1 << j;                       \
                if (lo + V + j >= 0 && lo + V + j < w) mb[k] |= (M)1 << j;               \
            }                                                                           \
            mt[k] = MASK(wq - V * k);                                                   \
        }                                                                               \
        const __m512i ev = SETI(0), od = SETI(1);                                       \
        for (ci = 0; ci < c; ci++)                                                      \
            for (r = 0; r < hq; r++)                                                    \
                for (py = 0; py < 2; py++) {                                            \
                    T* d0 = xq + ci * cs + py * pys + r * rs;                           \
                    T* d1 = d0 + pxs;                                                   \
                    ih = 2 * r + py - ph;                                               \
                    if (ih < 0 || ih >= h) {                                            \
                        for (k = 0; k < nk; k++) {                                      \
                            STORE(d0 + V * k, mt[k], ZERO());                           \
                            STORE(d1 + V * k, mt[k], ZERO());                           \
                        }                                                               \
                        continue;                                                       \
                    }                                                                   \
                    const T* src = xb + (ci * h + ih) * w - pw;                         \
                    for (k = 0; k < nk; k++) {                                          \
                        __typeof__(ZERO()) a = LOAD(ma[k], src + 2 * V * k);            \
                        __typeof__(ZERO()) b = LOAD(mb[k], src + 2 * V * k + V);        \
                        STORE(d0 + V * k, mt[k], PERM(a, ev, b));                       \
                        STORE(d1 + V * k, mt[k], PERM(a, od, b));                       \
                    }                                                                   \
                }                                                                       \
        return 1;                                                                       \
    }
    #define TG_SETI_F(o) _mm512_set_epi32(30 + o, 28 + o, 26 + o, 24 + o, 22 + o, 20 + o, \
        18 + o, 16 + o, 14 + o, 12 + o, 10 + o, 8 + o, 6 + o, 4 + o, 2 + o, o)
    #define TG_SETI_D(o) _mm512_set_epi64(14 + o, 12 + o, 10 + o, 8 + o, 6 + o, 4 + o,  \
        2 + o, o)
    TG_PLANES2(float, f, 16, __mmask16, tg_m16, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps,
               _mm512_permutex2var_ps, TG_SETI_F, _mm512_setzero_ps)
    TG_PLANES2(double, d, 8, __mmask8, tg_m8, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd,
               _mm512_permutex2var_pd, TG_SETI_D, _mm512_setzero_pd)
    #else
    #define TG_PLANES2(T, S)                                                            \
    static inline int tg_planes2_##S(const T* xb, T* xq, Py_ssize_t c, Py_ssize_t h,    \
            Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t hq, Py_ssize_t wq,   \
            Py_ssize_t cs, Py_ssize_t pys, Py_ssize_t pxs, Py_ssize_t rs) {             \
        return 0;                                                                       \
    }
    TG_PLANES2(float, f)
    TG_PLANES2(double, d)
    #define TG_ROW(T, S)                                                                \
    static inline void tg_row_##S(const T* src, Py_ssize_t step, T* d, Py_ssize_t lo,   \
                                  Py_ssize_t n, Py_ssize_t wq, const T* end) {          \
        Py_ssize_t q;                                                                   \
        for (q = 0; q < lo; q++) d[q] = 0;                                              \
        tg_take_##S(src, step, d + lo, n, end);                                         \
        for (q = lo + n; q < wq; q++) d[q] = 0;                                         \
    }
    TG_ROW(float, f)
    TG_ROW(double, d)
    #endif
    """
    void tg_row_f(const float* src, Py_ssize_t step, float* d, Py_ssize_t lo, Py_ssize_t n,
                  Py_ssize_t wq, const float* end) noexcept nogil
    void tg_row_d(const double* src, Py_ssize_t step, double* d, Py_ssize_t lo, Py_ssize_t n,
                  Py_ssize_t wq, const double* end) noexcept nogil
    int tg_planes2_f(const float* xb, float* xq, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t hq, Py_ssize_t wq, Py_ssize_t cs,
                     Py_ssize_t pys, Py_ssize_t pxs, Py_ssize_t rs) noexcept nogil
    int tg_planes2_d(const double* xb, double* xq, Py_ssize_t c, Py_ssize_t h, Py_ssize_t w,
                     Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t hq, Py_ssize_t wq, Py_ssize_t cs,
                     Py_ssize_t pys, Py_ssize_t pxs, Py_ssize_t rs) noexcept nogil


cdef inline void _pad_planes(const real* xb, real* xq, Py_ssize_t c, Py_ssize_t h,
                             Py_ssize_t w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                             Py_ssize_t pw, Py_ssize_t hq, Py_ssize_t wq, Py_ssize_t cs,
                             Py_ssize_t pys, Py_ssize_t pxs, Py_ssize_t rs) noexcept nogil:
    # xq[ci * cs + py * pys + px * pxs + r * rs + q] = x[ci, r * sh + py - ph, q * sw + px - pw]
    # for py < sh, px < sw, r < hq, q < wq; zero outside the image. The image's rows in
    # order, each read once for its sw phases: zeros, the image's columns, zeros (tg_row).
    cdef Py_ssize_t ci, py, px, r, q, ih, off
    cdef Py_ssize_t lo[8]
    cdef Py_ssize_t hi[8]
    cdef real* d
    cdef const real* src
    cdef const real* end = xb + c * h * w
    if sh == 2 and sw == 2:
        if real is float:
            if tg_planes2_f(xb, xq, c, h, w, ph, pw, hq, wq, cs, pys, pxs, rs):
                return
        else:
            if tg_planes2_d(xb, xq, c, h, w, ph, pw, hq, wq, cs, pys, pxs, rs):
                return
    for px in range(sw):
        lo[px] = _lo(px - pw, sw, wq)
        hi[px] = _hi(px - pw, sw, w, wq, lo[px])
    for ci in range(c):
        for r in range(hq):
            for py in range(sh):
                ih = r * sh + py - ph
                for px in range(sw):
                    d = xq + ci * cs + py * pys + px * pxs + r * rs
                    if ih < 0 or ih >= h:
                        if real is float:
                            tg_row_f(xb, 1, d, 0, 0, wq, end)
                        else:
                            tg_row_d(xb, 1, d, 0, 0, wq, end)
                        continue
                    src = xb + (ci * h + ih) * w + px - pw + lo[px] * sw
                    if real is float:
                        tg_row_f(src, sw, d, lo[px], hi[px] - lo[px], wq, end)
                    else:
                        tg_row_d(src, sw, d, lo[px], hi[px] - lo[px], wq, end)


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
    return _conv(x, w, b, int(stride[0]), int(padding[0]), int(padding[1]))
