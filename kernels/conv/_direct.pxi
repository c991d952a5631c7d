# Helpers shared by the direct conv2d kernels that copy each image, zero-padded, into a
# thread's own buffer of phase planes (blocked_cy.pyx, flat_cy.pyx), included textually:
# each .pyx cimports openmp and includes "../_common.pxi" (``real``, _lo, _hi) first, and
# defines ``applies``, ``_conv(x, w, b, s, ph, pw)`` and the module ``_fallback``
# (im2col-cython) that ``forward`` calls.


cdef inline void _pad_planes(const real* xb, real* xq, Py_ssize_t c, Py_ssize_t h,
                             Py_ssize_t w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t ph,
                             Py_ssize_t pw, Py_ssize_t hq, Py_ssize_t wq, Py_ssize_t cs,
                             Py_ssize_t pys, Py_ssize_t pxs, Py_ssize_t rs) noexcept nogil:
    # xq[ci * cs + py * pys + px * pxs + r * rs + q] = x[ci, r * sh + py - ph, q * sw + px - pw]
    # for py < sh, px < sw, r < hq, q < wq; zero outside the image. Per row: zeros, the
    # image's columns (a unit-stride or stride-2 copy the compiler vectorises), zeros.
    cdef Py_ssize_t ci, py, px, r, q, ih, lo, hi, off
    cdef real* d
    cdef const real* src
    for ci in range(c):
        for py in range(sh):
            for px in range(sw):
                off = px - pw
                lo = _lo(off, sw, wq)
                hi = _hi(off, sw, w, wq, lo)
                for r in range(hq):
                    d = xq + ci * cs + py * pys + px * pxs + r * rs
                    ih = r * sh + py - ph
                    if ih < 0 or ih >= h:
                        for q in range(wq):
                            d[q] = 0
                        continue
                    for q in range(lo):
                        d[q] = 0
                    src = xb + (ci * h + ih) * w + off
                    if sw == 1:
                        for q in range(lo, hi):
                            d[q] = src[q]
                    elif sw == 2:
                        for q in range(lo, hi):
                            d[q] = src[2 * q]
                    else:
                        for q in range(lo, hi):
                            d[q] = src[q * sw]
                    for q in range(hi, wq):
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
