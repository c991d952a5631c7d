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


cdef inline void _pad_planes(const real* xb, real* xq, Py_ssize_t c, Py_ssize_t h,
                             Py_ssize_t w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                             Py_ssize_t pw, Py_ssize_t hq, Py_ssize_t wq, Py_ssize_t cs,
                             Py_ssize_t pys, Py_ssize_t pxs, Py_ssize_t rs) noexcept nogil:
    # xq[ci * cs + py * pys + px * pxs + r * rs + q] = x[ci, r * sh + py - ph, q * sw + px - pw]
    # for py < sh, px < sw, r < hq, q < wq; zero outside the image. The image's rows in
    # order, each read once for its sw phases: zeros, the image's columns, zeros.
    cdef Py_ssize_t ci, py, px, r, q, ih, off
    cdef Py_ssize_t lo[8]
    cdef Py_ssize_t hi[8]
    cdef real* d
    cdef const real* src
    cdef const real* end = xb + c * h * w
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
                        for q in range(wq):
                            d[q] = 0
                        continue
                    for q in range(lo[px]):
                        d[q] = 0
                    src = xb + (ci * h + ih) * w + px - pw + lo[px] * sw
                    if real is float:
                        tg_take_f(src, sw, d + lo[px], hi[px] - lo[px], end)
                    else:
                        tg_take_d(src, sw, d + lo[px], hi[px] - lo[px], end)
                    for q in range(hi[px], wq):
                        d[q] = 0


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
