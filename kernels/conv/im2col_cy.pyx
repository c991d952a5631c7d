"""im2col convolution, unfold and fold compiled with Cython + OpenMP (see ``im2col.py``).

Bounds and wraparound checks are set by the build (setup.py), not here, so the tests
can build a checked copy.
"""

from cython.parallel cimport prange

from . import im2col as _alg

ctypedef fused real:
    float
    double


def im2col(real[:, :, :, ::1] x, real[:, ::1] cols, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int ho, int wo):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t plane = ho * wo, row, ch, i, j, b, oh, ow, ih, iw, col
    with nogil:
        for row in prange(c * kh * kw, schedule="static"):
            ch = row // (kh * kw)
            i = (row // kw) % kh
            j = row % kw
            for b in range(n):
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    col = b * plane + oh * wo
                    if ih < 0 or ih >= h:
                        for ow in range(wo):
                            cols[row, col + ow] = 0
                        continue
                    for ow in range(wo):
                        iw = ow * sw - pw + j * dw
                        if iw >= 0 and iw < w:
                            cols[row, col + ow] = x[b, ch, ih, iw]
                        else:
                            cols[row, col + ow] = 0


def col2im(real[:, ::1] cols, real[:, :, :, ::1] gx, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int ho, int wo):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef Py_ssize_t plane = ho * wo, bc, b, ch, i, j, oh, ow, ih, iw, row, col
    with nogil:
        for bc in prange(n * c, schedule="static"):
            b = bc // c
            ch = bc % c
            for ih in range(h):
                for iw in range(w):
                    gx[b, ch, ih, iw] = 0
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    for oh in range(ho):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        col = b * plane + oh * wo
                        for ow in range(wo):
                            iw = ow * sw - pw + j * dw
                            if iw >= 0 and iw < w:
                                gx[b, ch, ih, iw] += cols[row, col + ow]


def forward(x, w, b, stride, padding, dilation, groups):
    return _alg.forward(im2col, x, w, b, stride, padding, dilation, groups)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    return _alg.backward(im2col, col2im, gy, x, w, stride, padding, dilation, groups,
                         need_x, need_w)
