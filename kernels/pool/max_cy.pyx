"""Max pooling with Cython + OpenMP: the same loops as ``max_numba``.

The 2x2 stride-2 window on float32 (LeNet's and VGG's pools) has AVX-512 paths where the
build targets it: the forward reads each window's two input rows as vector pairs, splits
them into even and odd columns in registers and writes 16 outputs and their indices per
step, one pass over the plane; the backward writes each input pixel once (the output
gradient where the index points, zero elsewhere) instead of zero-filling the plane and
scattering into it, whenever every index lies in its own 2x2 cell, whatever pool produced
it; otherwise it falls back to the zero-fill and scatter-add.
"""

import numpy as np

cimport openmp
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset


include "../_common.pxi"


# The 2x2 stride-2 rows in C. Each tap replaces the running maximum when strictly greater
# or NaN, in scan order (tap 0, 1, then the second row's 0, 1): the rule of the loops below.
# Masked loads and stores cover the row's last part vector, so any width takes this path.
cdef extern from *:
    """
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #define TG_MP_VEC 1
    /* the even column of each of 16 windows (ev) and the taps' offsets in the window:
       1, the row below (w) and its right neighbour (w + 1) */
    #define TG_MP_TAPS(w)                                                               \
        const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,  \
                                             24, 26, 28, 30);                           \
        const __m512i one = _mm512_set1_epi32(1), tw = _mm512_set1_epi32(w),            \
                      tw1 = _mm512_set1_epi32((w) + 1);
    static inline __mmask16 tg_mp_mask(Py_ssize_t n) {
        return n >= 16 ? (__mmask16)0xFFFF : (n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1));
    }
    /* y[ow], ip[ow] for ow < wo: the window over rows r0, r1 at columns 2 ow, 2 ow + 1;
       the index base + 2 ow + (0, 1, w or w + 1) */
    static void tg_mp_fwd_row(const float* r0, const float* r1, float* y, int* ip,
                              Py_ssize_t wo, int base, int w) {
        TG_MP_TAPS(w)
        const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for (Py_ssize_t ow = 0; ow < wo; ow += 16) {
            Py_ssize_t n = wo - ow < 16 ? wo - ow : 16;
            __mmask16 mo = tg_mp_mask(n), m0 = tg_mp_mask(2 * n), m1 = tg_mp_mask(2 * n - 16);
            __m512 a0 = _mm512_maskz_loadu_ps(m0, r0 + 2 * ow);
            __m512 a1 = _mm512_maskz_loadu_ps(m1, r0 + 2 * ow + 16);
            __m512 b0 = _mm512_maskz_loadu_ps(m0, r1 + 2 * ow);
            __m512 b1 = _mm512_maskz_loadu_ps(m1, r1 + 2 * ow + 16);
            __m512 t1 = _mm512_permutex2var_ps(a0, od, a1);
            __m512 t2 = _mm512_permutex2var_ps(b0, ev, b1);
            __m512 t3 = _mm512_permutex2var_ps(b0, od, b1);
            __m512 best = _mm512_permutex2var_ps(a0, ev, a1);
            __m512i arg = _mm512_setzero_si512();
            __mmask16 k = _mm512_cmp_ps_mask(t1, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(t1, t1, _CMP_UNORD_Q);
            best = _mm512_mask_mov_ps(best, k, t1);
            arg = _mm512_mask_mov_epi32(arg, k, one);
            k = _mm512_cmp_ps_mask(t2, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(t2, t2, _CMP_UNORD_Q);
            best = _mm512_mask_mov_ps(best, k, t2);
            arg = _mm512_mask_mov_epi32(arg, k, tw);
            k = _mm512_cmp_ps_mask(t3, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(t3, t3, _CMP_UNORD_Q);
            best = _mm512_mask_mov_ps(best, k, t3);
            arg = _mm512_mask_mov_epi32(arg, k, tw1);
            __m512i at = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int)ow), ev);
            _mm512_mask_storeu_ps(y + ow, mo, best);
            _mm512_mask_storeu_epi32(ip + ow, mo, _mm512_add_epi32(at, arg));
        }
    }
    /* gx rows x0, x1 (columns 0 .. 2 wo - 1) from gy row g: each g[ow] written where ip[ow]
       points, zeros at the other three pixels of its cell. Returns 0 as soon as an index
       lies outside its own cell (rows written so far are then to be redone by the caller). */
    static int tg_mp_bwd_row(const float* g, const int* ip, float* x0, float* x1,
                             Py_ssize_t wo, int base, int w) {
        TG_MP_TAPS(w)
        const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        for (Py_ssize_t ow = 0; ow < wo; ow += 16) {
            Py_ssize_t n = wo - ow < 16 ? wo - ow : 16;
            __mmask16 mo = tg_mp_mask(n), m0 = tg_mp_mask(2 * n), m1 = tg_mp_mask(2 * n - 16);
            __m512i d = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(mo, ip + ow),
                                         _mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int)ow), ev));
            __mmask16 k0 = _mm512_mask_cmpeq_epi32_mask(mo, d, _mm512_setzero_si512());
            __mmask16 k1 = _mm512_mask_cmpeq_epi32_mask(mo, d, one);
            __mmask16 k2 = _mm512_mask_cmpeq_epi32_mask(mo, d, tw);
            __mmask16 k3 = _mm512_mask_cmpeq_epi32_mask(mo, d, tw1);
            if ((__mmask16)(k0 | k1 | k2 | k3) != mo) return 0;
            __m512 gv = _mm512_maskz_loadu_ps(mo, g + ow);
            __m512 e = _mm512_maskz_mov_ps(k0, gv), o = _mm512_maskz_mov_ps(k1, gv);
            _mm512_mask_storeu_ps(x0 + 2 * ow, m0, _mm512_permutex2var_ps(e, lo, o));
            _mm512_mask_storeu_ps(x0 + 2 * ow + 16, m1, _mm512_permutex2var_ps(e, hi, o));
            e = _mm512_maskz_mov_ps(k2, gv);
            o = _mm512_maskz_mov_ps(k3, gv);
            _mm512_mask_storeu_ps(x1 + 2 * ow, m0, _mm512_permutex2var_ps(e, lo, o));
            _mm512_mask_storeu_ps(x1 + 2 * ow + 16, m1, _mm512_permutex2var_ps(e, hi, o));
        }
        return 1;
    }
    #else
    #define TG_MP_VEC 0
    static void tg_mp_fwd_row(const float* r0, const float* r1, float* y, int* ip,
                              Py_ssize_t wo, int base, int w) {}
    static int tg_mp_bwd_row(const float* g, const int* ip, float* x0, float* x1,
                             Py_ssize_t wo, int base, int w) { return 0; }
    #endif
    """
    bint TG_MP_VEC
    void tg_mp_fwd_row(const float* r0, const float* r1, float* y, int* ip, Py_ssize_t wo,
                       int base, int w) noexcept nogil
    int tg_mp_bwd_row(const float* g, const int* ip, float* x0, float* x1, Py_ssize_t wo,
                      int base, int w) noexcept nogil


def _forward(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] idx,
             int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, i, j, ih, iw
    cdef real best, v
    cdef real[:, ::1] hv
    cdef int[:, ::1] ha
    cdef int arg
    cdef bint inside = (ph == 0 and pw == 0 and (ho - 1) * sh + (kh - 1) * dh < h
                        and (wo - 1) * sw + (kw - 1) * dw < w)
    # the raw-pointer paths below skip buffer checks: take them only on consistent shapes
    inside = inside and _same4(y.shape, idx.shape) and y.shape[0] == n and y.shape[1] == c
    if inside and n * c * ho * wo == 0:
        return
    if (real is float and TG_MP_VEC and inside and kh == 2 and kw == 2 and sh == 2 and sw == 2
            and dh == 1 and dw == 1):
        _forward_2x2_vec(x, y, idx)
        return
    if inside and kh == 2 and kw == 2 and sh == 2 and sw == 2 and dh == 1 and dw == 1:
        # per-thread scratch of one plane's row pairs
        nt = _team(n * c * ho * wo * 4)
        hv = np.empty((nt, 2 * ho * wo), dtype=np.float32 if real is float else np.float64)
        ha = np.empty((nt, 2 * ho * wo), dtype=np.int32)
        _forward_2x2(x, y, idx, hv, ha)
        return
    if inside:
        _forward_inside(x, y, idx, kh, kw, sh, sw, dh, dw)
        return
    nt = _team(n * c * ho * wo * kh * kw)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for oh in range(ho):
                for ow in range(wo):
                    best = -INFINITY
                    arg = -1
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        for j in range(kw):
                            iw = ow * sw - pw + j * dw
                            if iw < 0 or iw >= w:
                                continue
                            v = x[b, ch, ih, iw]
                            if v > best or v != v or arg < 0:
                                best = v
                                arg = <int>(ih * w + iw)
                    y[b, ch, oh, ow] = best
                    idx[b, ch, oh, ow] = arg


# Every window inside the input (no padding, no ceil-mode overhang): no bounds checks, the
# first tap seeds the maximum, later taps replace it when strictly greater or NaN - the same
# argmax as the general loop above (first in scan order on ties; a NaN propagates, its
# index the last NaN in scan order, as in PyTorch).
cdef void _forward_inside(const real[:, :, :, ::1] x, real[:, :, :, ::1] y, int[:, :, :, ::1] idx,
                          int kh, int kw, int sh, int sw, int dh, int dw) noexcept:
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, oh, ow, i, j, p
    cdef real best, v
    cdef int arg
    cdef const real* xp
    cdef real* yp
    cdef int* ip
    nt = _team(n * c * ho * wo * kh * kw)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            xp = &x[0, 0, 0, 0] + bc * h * w
            yp = &y[0, 0, 0, 0] + bc * ho * wo
            ip = &idx[0, 0, 0, 0] + bc * ho * wo
            for oh in range(ho):
                for ow in range(wo):
                    p = oh * sh * w + ow * sw
                    best = xp[p]
                    arg = <int>p
                    for i in range(kh):
                        for j in range(kw):
                            v = xp[p + i * dh * w + j * dw]
                            if v > best or v != v:
                                best = v
                                arg = <int>(p + i * dh * w + j * dw)
                    yp[oh * wo + ow] = best
                    ip[oh * wo + ow] = arg


# The common 2x2 stride-2 window (LeNet, VGG), in two passes without branches. Each tap
# replaces the running maximum when strictly greater or NaN (the rule of the loops above:
# first maximum in scan order on ties, the last NaN), written as selects so the compiler
# turns each pass into vector compares and blends (random data makes a compare-and-jump
# loop mispredict about half the time). Pass 1 reduces the horizontal pairs of every input
# row of the plane in one run over the plane (one loop of h * wo, long enough for whole
# vectors even when a row holds fewer outputs than a vector has lanes); pass 2 reduces the
# two rows of each window. Pass 1 then pass 2 picks the same tap as the scan: the pair of
# the second row wins only when its maximum is strictly greater than, or is, a NaN.
cdef inline void _pairs(const real* r, real* hv, int* ha, Py_ssize_t m) noexcept nogil:
    # hv[k], ha[k]: the maximum of r[2k], r[2k + 1] and which of the two (0 or 1)
    cdef Py_ssize_t k
    cdef real a, b
    cdef bint t
    for k in range(m):
        a = r[2 * k]
        b = r[2 * k + 1]
        t = (b > a) | (b != b)
        hv[k] = b if t else a
        ha[k] = 1 if t else 0


cdef inline void _rows(const real* h0, const int* a0, const real* h1, const int* a1,
                       real* yp, int* ip, Py_ssize_t wo, int p0, int w) noexcept nogil:
    cdef Py_ssize_t ow
    cdef real a, b
    cdef bint t
    for ow in range(wo):
        a = h0[ow]
        b = h1[ow]
        t = (b > a) | (b != b)
        yp[ow] = b if t else a
        ip[ow] = p0 + <int>(2 * ow) + (w + a1[ow] if t else a0[ow])


cdef void _forward_2x2(const real[:, :, :, ::1] x, real[:, :, :, ::1] y,
                       int[:, :, :, ::1] idx, real[:, ::1] hv, int[:, ::1] ha) noexcept:
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt, me
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, oh, r
    cdef const real* xp
    cdef real* yp
    cdef int* ip
    cdef real* hp
    cdef int* ap
    nt = _team(n * c * ho * wo * 4)
    if nt > hv.shape[0]:
        nt = <int>hv.shape[0]
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            me = openmp.omp_get_thread_num()
            hp = &hv[me, 0]
            ap = &ha[me, 0]
            xp = &x[0, 0, 0, 0] + bc * h * w
            yp = &y[0, 0, 0, 0] + bc * ho * wo
            ip = &idx[0, 0, 0, 0] + bc * ho * wo
            if w == 2 * wo:  # rows back to back: the plane's pairs in one run
                _pairs(xp, hp, ap, 2 * ho * wo)
            else:
                for r in range(2 * ho):
                    _pairs(xp + r * w, hp + r * wo, ap + r * wo, wo)
            for oh in range(ho):
                _rows(hp + 2 * oh * wo, ap + 2 * oh * wo, hp + (2 * oh + 1) * wo,
                      ap + (2 * oh + 1) * wo, yp + oh * wo, ip + oh * wo, wo,
                      <int>(2 * oh * w), <int>w)


cdef void _forward_2x2_vec(const float[:, :, :, ::1] x, float[:, :, :, ::1] y,
                           int[:, :, :, ::1] idx) noexcept:
    # the 2x2 stride-2 window in one pass per plane (tg_mp_fwd_row)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t bc, oh
    cdef const float* xp
    cdef int nt = _team(n * c * ho * wo * 4)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            xp = &x[0, 0, 0, 0] + bc * h * w
            for oh in range(ho):
                tg_mp_fwd_row(xp + 2 * oh * w, xp + (2 * oh + 1) * w,
                              &y[0, 0, 0, 0] + (bc * ho + oh) * wo,
                              &idx[0, 0, 0, 0] + (bc * ho + oh) * wo, wo, <int>(2 * oh * w),
                              <int>w)


cdef enum:
    _CELLS_MIN_WO = 8


cdef inline bint _cells_plane(const float* gyp, const int* ip, float* gxp, Py_ssize_t h,
                              Py_ssize_t w, Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    # gx of one plane written pixel by pixel when every index lies in its own 2x2 cell
    # (the cells are disjoint: no pixel takes two gradients); False if one does not
    cdef Py_ssize_t oh, r
    for oh in range(ho):
        if not tg_mp_bwd_row(gyp + oh * wo, ip + oh * wo, gxp + 2 * oh * w,
                             gxp + (2 * oh + 1) * w, wo, <int>(2 * oh * w), <int>w):
            return False
    if w > 2 * wo:  # the odd last column no cell covers
        for r in range(2 * ho):
            gxp[r * w + w - 1] = 0
    if h > 2 * ho:
        memset(gxp + 2 * ho * w, 0, (h - 2 * ho) * w * sizeof(float))
    return True


cdef inline void _scatter_plane(const real* gyp, const int* ip, real* gxp, Py_ssize_t hw,
                                Py_ssize_t m) noexcept nogil:
    # a zero-fill plus one indexed add per output
    cdef Py_ssize_t k
    cdef int a
    memset(gxp, 0, hw * sizeof(real))
    for k in range(m):
        a = ip[k]
        if a >= 0 and a < hw:
            gxp[a] += gyp[k]


cdef inline bint _same4(Py_ssize_t* a, Py_ssize_t* b) noexcept:
    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[3] == b[3]


def _backward(const real[:, :, :, ::1] gy, const int[:, :, :, ::1] idx, real[:, :, :, ::1] gx):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef int nt
    cdef Py_ssize_t ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t bc, b, ch, oh, ow, ih, iw, k, hw = h * w
    cdef int a
    cdef bint cells
    cdef real* gxp
    cdef const real* gyp
    cdef const int* ip
    if _same4(gy.shape, idx.shape) and gy.shape[0] == n and gy.shape[1] == c:
        if n * c == 0 or hw == 0:
            return
        # rows of fewer outputs than half a vector: the zero-fill and scatter cost less
        cells = (real is float and TG_MP_VEC and ho > 0 and wo >= _CELLS_MIN_WO
                 and h - 2 * ho in (0, 1) and w - 2 * wo in (0, 1))
        nt = _team(n * c * hw)
        with nogil:
            for bc in prange(n * c, schedule="static", num_threads=nt):
                # raw plane pointers: a zero-fill plus one indexed add per output
                gxp = &gx[0, 0, 0, 0] + bc * hw
                gyp = &gy[0, 0, 0, 0] + bc * ho * wo
                ip = &idx[0, 0, 0, 0] + bc * ho * wo
                if real is float:
                    if not (cells and _cells_plane(gyp, ip, gxp, h, w, ho, wo)):
                        _scatter_plane(gyp, ip, gxp, hw, ho * wo)
                else:
                    _scatter_plane(gyp, ip, gxp, hw, ho * wo)
        return
    nt = _team(n * c * h * w)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for ih in range(h):
                for iw in range(w):
                    gx[b, ch, ih, iw] = 0
            for oh in range(ho):
                for ow in range(wo):
                    a = idx[b, ch, oh, ow]
                    if a >= 0:
                        gx[b, ch, a // w, a % w] += gy[b, ch, oh, ow]


def forward(x, kernel, stride, padding, dilation, out_hw):
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    idx = np.empty((n, c, *out_hw), dtype=np.int32)
    _forward(x, y, idx, *kernel, *stride, *padding, *dilation)
    return y, idx


def backward(gy, idx, x_shape):
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward(gy, idx, gx)
    return gx
