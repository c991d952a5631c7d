"""im2col convolution, unfold and fold compiled with Cython + OpenMP (see ``im2col.py``).

Bounds and wraparound checks are set by the build (setup.py), not here, so the tests
can build a checked copy.
"""

cimport openmp
from cython.parallel cimport prange

import numpy as np

from .. import cblas, threads
from . import im2col as _alg
from .im2col import workspace


include "../_common.pxi"
include "../_gemm.pxi"

from libc.stdint cimport uint32_t, uint64_t


def im2col(const real[:, :, :, ::1] x, real[:, ::1] cols, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int ho, int wo):
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef int nt
    cdef Py_ssize_t plane = ho * wo, row, ch, i, j, b, oh, k, ih, off, lo, hi
    cdef real* dst
    cdef const real* src
    nt = _team(c * kh * kw * n * plane)
    with nogil:
        for row in prange(c * kh * kw, schedule="static", num_threads=nt):
            ch = row // (kh * kw)
            i = (row // kw) % kh
            j = row % kw
            off = j * dw - pw
            # columns reading inside the image: one range per tap, no per-pixel branch
            lo = _lo(off, sw, wo)
            hi = _hi(off, sw, w, wo, lo)
            for b in range(n):
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    dst = &cols[row, b * plane + oh * wo]
                    if ih < 0 or ih >= h:
                        for k in range(wo):
                            dst[k] = 0
                        continue
                    for k in range(lo):
                        dst[k] = 0
                    for k in range(hi, wo):
                        dst[k] = 0
                    src = &x[b, ch, ih, 0]
                    if sw == 1:
                        for k in range(lo, hi):
                            dst[k] = src[k + off]
                    else:
                        for k in range(lo, hi):
                            dst[k] = src[k * sw + off]


def col2im(const real[:, ::1] cols, real[:, :, :, ::1] gx, int kh, int kw, int sh, int sw,
           int ph, int pw, int dh, int dw, int ho, int wo):
    cdef Py_ssize_t n = gx.shape[0], c = gx.shape[1], h = gx.shape[2], w = gx.shape[3]
    cdef int nt
    cdef Py_ssize_t plane = ho * wo, bc, b, ch, i, j, oh, k, ih, iw, row, off, lo, hi
    cdef real* dst
    cdef const real* src
    nt = _team(c * kh * kw * n * plane)
    with nogil:
        for bc in prange(n * c, schedule="static", num_threads=nt):
            b = bc // c
            ch = bc % c
            for ih in range(h):
                for iw in range(w):
                    gx[b, ch, ih, iw] = 0
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    off = j * dw - pw
                    lo = _lo(off, sw, wo)
                    hi = _hi(off, sw, w, wo, lo)
                    for oh in range(ho):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= h:
                            continue
                        src = &cols[row, b * plane + oh * wo]
                        dst = &gx[b, ch, ih, 0]
                        if sw == 1:
                            for k in range(lo, hi):
                                dst[k + off] += src[k]
                        else:
                            for k in range(lo, hi):
                                dst[k * sw + off] += src[k]


# Row copies in whole 32-, 16-, 8- and 4-byte moves, the last move overlapping the one
# before it (a fixed-size memcpy compiles to one load and one store): an output row of 8
# or 16 pixels is copied in one or two vector moves, inline, instead of a library call.
cdef extern from *:
    """
    static inline void tg_copy_row(void* dst, const void* src, Py_ssize_t n) {
        char* d = (char*)dst;
        const char* s = (const char*)src;
        Py_ssize_t k;
        if (n >= 32) {
            for (k = 0; k + 32 <= n; k += 32) __builtin_memcpy(d + k, s + k, 32);
            if (k < n) __builtin_memcpy(d + n - 32, s + n - 32, 32);
        } else if (n >= 16) {
            __builtin_memcpy(d, s, 16);
            __builtin_memcpy(d + n - 16, s + n - 16, 16);
        } else if (n >= 8) {
            __builtin_memcpy(d, s, 8);
            __builtin_memcpy(d + n - 8, s + n - 8, 8);
        } else if (n >= 4) {
            __builtin_memcpy(d, s, 4);
        }
    }

    /* d[k] = src[2 k] for k < n (a stride-2 output row of the unfold) in whole vectors,
       each one shuffle of two loads (the even lanes); may write past d[n - 1] up to
       d[room - 1] (elements the caller writes again later) and reads no further than
       end, finishing element by element where either stops a whole vector */
    #define TG_EVEN(T, S, I)                                                            \
    typedef T tg_ev_u##S __attribute__((vector_size(64), aligned(sizeof(T)), may_alias)); \
    typedef I tg_ev_i##S __attribute__((vector_size(64)));                              \
    static inline void tg_even_##S(const T* src, T* d, Py_ssize_t n, Py_ssize_t room,   \
                                   const T* end) {                                      \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_ev_i##S even;                                                                \
        Py_ssize_t i = 0, k;                                                            \
        for (k = 0; k < V; k++) even[k] = 2 * k;                                        \
        for (; i < n && i + V <= room && src + 2 * i + 2 * V <= end; i += V)            \
            *(tg_ev_u##S*)(d + i) = __builtin_shuffle(*(const tg_ev_u##S*)(src + 2 * i), \
                                                      *(const tg_ev_u##S*)(src + 2 * i + V), \
                                                      even);                            \
        for (; i < n; i++) d[i] = src[2 * i];                                           \
    }
    TG_EVEN(float, f, int)
    TG_EVEN(double, d, long long)

    /* d[2 k] += src[k] for k < n (a stride-2 row of the fold) in whole vectors: src
       interleaved with -0.0 (which leaves the odd elements' bits as they are) and added to
       two vectors of d; element by element for the row's last part (less than a vector)
       and where two vectors of d would reach dend */
    #define TG_ADD_EVEN(T, S)                                                           \
    static inline void tg_add_even_##S(const T* src, T* d, Py_ssize_t n,                \
                                       const T* dend) {                                 \
        enum { V = 64 / sizeof(T) };                                                    \
        tg_ev_i##S lo, hi;                                                              \
        tg_ev_u##S z, sv, a, b;                                                         \
        Py_ssize_t i = 0, k;                                                            \
        for (k = 0; k < V / 2; k++) {                                                   \
            lo[2 * k] = k; lo[2 * k + 1] = V + k;                                       \
            hi[2 * k] = V / 2 + k; hi[2 * k + 1] = V + V / 2 + k;                       \
        }                                                                               \
        for (k = 0; k < V; k++) z[k] = -0.0;                                            \
        for (; i + V <= n && d + 2 * i + 2 * V <= dend; i += V) {                       \
            sv = *(const tg_ev_u##S*)(src + i);                                         \
            a = *(tg_ev_u##S*)(d + 2 * i) + __builtin_shuffle(sv, z, lo);               \
            b = *(tg_ev_u##S*)(d + 2 * i + V) + __builtin_shuffle(sv, z, hi);           \
            *(tg_ev_u##S*)(d + 2 * i) = a;                                              \
            *(tg_ev_u##S*)(d + 2 * i + V) = b;                                          \
        }                                                                               \
        for (; i < n; i++) d[2 * i] += src[i];                                          \
    }
    TG_ADD_EVEN(float, f)
    TG_ADD_EVEN(double, d)
    """
    void tg_copy_row(void* dst, const void* src, Py_ssize_t nbytes) noexcept nogil
    void tg_even_f(const float* src, float* d, Py_ssize_t n, Py_ssize_t room,
                   const float* end) noexcept nogil
    void tg_even_d(const double* src, double* d, Py_ssize_t n, Py_ssize_t room,
                   const double* end) noexcept nogil
    void tg_add_even_f(const float* src, float* d, Py_ssize_t n, const float* dend) noexcept nogil
    void tg_add_even_d(const double* src, double* d, Py_ssize_t n,
                       const double* dend) noexcept nogil


# One image's unfold and fold, serial: the per-thread pieces of the threaded drivers below.
# Both work on the image zero-padded into a per-thread buffer (hp x wp per channel), so
# every output row reads or adds one plain run of the padded row, with no bounds tests and
# no zero fill. ``cols`` points at the image's first column; its rows are ``ld`` elements
# apart (the columns of a block of images side by side: image i starts at column
# i * ho * wo).
cdef const real* _padded(const real* xb, real* pad, Py_ssize_t c, Py_ssize_t h,
                         Py_ssize_t w, Py_ssize_t ph, Py_ssize_t pw) noexcept nogil:
    """xb itself when there is no padding, else its zero-padded copy in ``pad``."""
    cdef Py_ssize_t hp = h + 2 * ph, wp = w + 2 * pw, ch, r, k
    cdef real* d
    if ph == 0 and pw == 0:
        return xb
    for ch in range(c):
        d = pad + ch * hp * wp
        for k in range(ph * wp):
            d[k] = 0
        for r in range(h):
            d = pad + (ch * hp + ph + r) * wp
            for k in range(pw):
                d[k] = 0
            tg_copy_row(d + pw, xb + (ch * h + r) * w, w * sizeof(real))
            for k in range(pw + w, wp):
                d[k] = 0
        d = pad + (ch * hp + ph + h) * wp
        for k in range(ph * wp):
            d[k] = 0
    return pad


cdef void _unfold1(const real* xp, real* cols, Py_ssize_t ld, Py_ssize_t c, Py_ssize_t hp,
                   Py_ssize_t wp, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                   Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    """Columns of the padded image ``xp`` (C, hp, wp)."""
    cdef Py_ssize_t row, ch, i, j, oh, k
    cdef real* dst
    cdef const real* src
    cdef const real* end = xp + c * hp * wp
    for row in range(c * kh * kw):
        ch = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        for oh in range(ho):
            dst = cols + row * ld + oh * wo
            src = xp + (ch * hp + oh * sh + i * dh) * wp + j * dw
            if sw == 1:
                tg_copy_row(dst, src, wo * sizeof(real))
            elif sw == 2:
                # whole vectors may run into this image's later rows of the same column
                # row, which are written after this one
                if real is float:
                    tg_even_f(src, dst, wo, (ho - oh) * wo, end)
                else:
                    tg_even_d(src, dst, wo, (ho - oh) * wo, end)
            else:
                for k in range(wo):
                    dst[k] = src[k * sw]


cdef void _fold1(const real* cols, Py_ssize_t ld, real* gxb, real* pad, Py_ssize_t c,
                 Py_ssize_t h, Py_ssize_t w, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                 Py_ssize_t sw, Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                 Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    """gxb = fold(cols), summed in a zeroed padded plane (``pad``, or gxb itself when there
    is no padding) one channel at a time, each element's taps in (i, j, oh) order."""
    cdef Py_ssize_t hp = h + 2 * ph, wp = w + 2 * pw, ch, i, j, oh, k, r, row
    cdef bint padded = ph != 0 or pw != 0
    cdef real* acc
    cdef real* dst
    cdef const real* src
    for ch in range(c):  # one channel plane takes all its taps while it is in cache
        acc = pad if padded else gxb + ch * h * w
        for k in range(hp * wp):
            acc[k] = 0
        for i in range(kh):
            for j in range(kw):
                row = (ch * kh + i) * kw + j
                for oh in range(ho):
                    src = cols + row * ld + oh * wo
                    dst = acc + (oh * sh + i * dh) * wp + j * dw
                    if sw == 1:
                        for k in range(wo):
                            dst[k] += src[k]
                    elif sw == 2:  # vectors of d stop at the plane's end
                        if real is float:
                            tg_add_even_f(src, dst, wo, acc + hp * wp)
                        else:
                            tg_add_even_d(src, dst, wo, acc + hp * wp)
                    else:
                        for k in range(wo):
                            dst[k * sw] += src[k]
        if padded:
            for r in range(h):
                tg_copy_row(gxb + (ch * h + r) * w, acc + (ph + r) * wp + pw, w * sizeof(real))


def forward_blocks(const real[:, :, :, ::1] x, const real[:, ::1] w2, const real[::1] bias,
                   bint has_bias, real[:, :, :, ::1] y, real[:, :, ::1] cols,
                   real[:, :, ::1] ybuf, real[:, ::1] pad, int kh, int kw, int sh, int sw,
                   int ph, int pw, int dh, int dw, int groups, Py_ssize_t block, size_t gemm,
                   int nt, bint relu=False, unsigned char[:, :, :, ::1] mask=None):
    """y[b] = w2 @ unfold(x[b]) (+ bias) for blocks of ``block`` images: each thread takes
    whole blocks, unfolds the block's images side by side into its own column buffer
    ``cols[thread]`` (rows, block * Ho * Wo) and runs one GEMM per group over all of them,
    into ``ybuf[thread]`` (O, block * Ho * Wo), copied to y with the bias; a block of one
    image is multiplied straight into ``y[b]``. ``pad[thread]`` holds one zero-padded
    image (C * (H + 2 ph) * (W + 2 pw) elements; unused without padding).

    With ``relu``, y is written as the ``bias_relu`` epilogue leaves it (``kernels/fused``:
    ``u = y + bias``, or y itself without a bias, so -0.0 passes; y = 0 where u < 0) and
    ``mask`` (uint8, y's shape) gets 1 where not u <= 0, by the thread that wrote the
    block, while the block is in cache."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t plane = ho * wo, k = (c // groups) * kh * kw, og = o // groups
    cdef Py_ssize_t nblocks = (n + block - 1) // block
    cdef Py_ssize_t hp = h + 2 * ph, wp = w + 2 * pw
    cdef Py_ssize_t blk, b0, m, ld, i, g, oc, q
    cdef int tid
    cdef real bv, u
    cdef real* cb
    cdef real* yb
    cdef real* yp
    cdef const real* sp
    cdef unsigned char* mp
    if relu and (mask is None or any(mask.shape[d] != y.shape[d] for d in range(4))):
        raise ValueError("forward_blocks: relu needs a mask of y's shape")
    with nogil:
        for blk in prange(nblocks, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            b0 = blk * block
            m = n - b0
            if m > block:
                m = block
            ld = m * plane
            cb = &cols[tid, 0, 0]
            for i in range(m):
                _unfold1(_padded(&x[b0 + i, 0, 0, 0], &pad[tid, 0], c, h, w, ph, pw),
                         cb + i * plane, ld, c, hp, wp, kh, kw, sh, sw, dh, dw, ho, wo)
            if m == 1:  # straight into the output
                for g in range(groups):
                    _gemm(gemm, False, False, og, plane, k, &w2[g * og, 0], k,
                          cb + g * k * plane, plane, 0, &y[b0, g * og, 0, 0], plane)
                if relu:
                    for oc in range(o):
                        bv = bias[oc] if has_bias else 0
                        yp = &y[b0, oc, 0, 0]
                        mp = &mask[b0, oc, 0, 0]
                        for q in range(plane):
                            u = yp[q] + bv if has_bias else yp[q]
                            mp[q] = not (u <= 0)
                            yp[q] = 0 if u < 0 else u
                elif has_bias:
                    for oc in range(o):
                        bv = bias[oc]
                        yp = &y[b0, oc, 0, 0]
                        for q in range(plane):
                            yp[q] = yp[q] + bv
                continue
            yb = &ybuf[tid, 0, 0]
            for g in range(groups):
                _gemm(gemm, False, False, og, ld, k, &w2[g * og, 0], k, cb + g * k * ld, ld,
                      0, yb + g * og * ld, ld)
            for i in range(m):
                for oc in range(o):
                    bv = bias[oc] if has_bias else 0
                    yp = &y[b0 + i, oc, 0, 0]
                    sp = yb + oc * ld + i * plane
                    if relu:
                        mp = &mask[b0 + i, oc, 0, 0]
                        for q in range(plane):
                            u = sp[q] + bv if has_bias else sp[q]
                            mp[q] = not (u <= 0)
                            yp[q] = 0 if u < 0 else u
                    else:
                        for q in range(plane):
                            yp[q] = sp[q] + bv


def _pad_buffers(x, ph, pw, nt):
    """One zero-padded image per thread (a single element when there is no padding)."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    size = c * (h + 2 * ph) * (w + 2 * pw) if ph or pw else 1
    return workspace("pad-t", (nt, size), x.dtype)


def forward_threads(const real[:, :, :, ::1] x, const real[:, ::1] w2, const real[::1] bias,
                    bint has_bias, real[:, :, :, ::1] y, real[:, :, ::1] cols, int kh, int kw,
                    int sh, int sw, int ph, int pw, int dh, int dw, int groups, size_t gemm,
                    int nt):
    """y[b] = w2 @ unfold(x[b]) (+ bias): each thread takes whole images, unfolds one into
    its own column buffer ``cols[thread]`` and multiplies it straight into ``y[b]``
    (``forward_blocks`` with blocks of one image)."""
    pad = _pad_buffers(x, ph, pw, nt)
    forward_blocks(x, w2, bias, has_bias, y, cols, cols, pad, kh, kw, sh, sw, ph, pw, dh, dw,
                   groups, 1, gemm, nt)


cdef inline real _masked_copy_sum(const real* g, const unsigned char* mask, real* out,
                                  Py_ssize_t n) noexcept nogil:
    """out = g where mask else +0.0 (n elements); returns out's sum. The copy ANDs the
    gradient's bits with all-ones / all-zeros (branch-free, as ``_flat.pxi``'s masked pass:
    a ternary compiles to a branch that a random mask mispredicts; +0.0 for a NaN or inf
    where the mask is 0); the sum runs in 16 partial sums, added in a fixed order."""
    cdef real part[16]
    cdef real total = 0
    cdef Py_ssize_t q, l, whole = n - n % 16
    cdef const uint32_t* g32
    cdef uint32_t* o32
    cdef const uint64_t* g64
    cdef uint64_t* o64
    if real is float:
        g32, o32 = <const uint32_t*>g, <uint32_t*>out
        for q in range(n):
            o32[q] = g32[q] & (0u - <uint32_t>mask[q])
    else:
        g64, o64 = <const uint64_t*>g, <uint64_t*>out
        for q in range(n):
            o64[q] = g64[q] & (0u - <uint64_t>mask[q])
    for l in range(16):
        part[l] = 0
    for q in range(0, whole, 16):
        for l in range(16):
            part[l] = part[l] + out[q + l]
    for l in range(16):
        total = total + part[l]
    for q in range(whole, n):
        total = total + out[q]
    return total


def backward_blocks(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                    const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, :, :, ::1] gw_parts,
                    real[:, :, ::1] cols, real[:, :, ::1] gcols, real[:, :, ::1] gybuf,
                    real[:, ::1] pad, bint need_x, bint need_w, int kh, int kw, int sh, int sw,
                    int ph, int pw, int dh, int dw, int groups, Py_ssize_t block, size_t gemm,
                    int nt, const unsigned char[:, :, :, ::1] mask=None,
                    real[:, ::1] gb_parts=None):
    """The gradients over blocks of ``block`` images: ``gw_parts[j, g]`` (the weight
    gradient transposed, (K, O/groups)) sums ``unfold(x)_g @ gy_g.T`` over chunk j of the
    batch, ``gx[b] = fold(w2.T @ gy[b])``.

    The batch is cut into ``gw_parts.shape[0]`` chunks of consecutive images, fixed by the
    batch size alone; threads take whole chunks as they come free (a thread that starts
    late does not hold the others back) and each chunk is summed in image order into its
    own part, so the weight gradient (the parts summed in chunk order) is the same on
    every call whatever the thread count. Within a chunk, blocks of ``block`` images are
    unfolded side by side into ``cols[thread]`` (rows, block * Ho * Wo), their output
    gradients copied side by side into ``gybuf[thread]`` (O, block * Ho * Wo), and each
    product is one GEMM over the block. ``pad[thread]`` holds one zero-padded image or
    input-gradient plane (as in ``forward_blocks``).

    With a ReLU ``mask`` (uint8, gy's shape; ``forward_relu``'s), gy is read through it
    (``g where mask, +0.0 elsewhere``, the ``bias_relu`` epilogue's backward) as it is
    copied into ``gybuf[thread]`` (blocks of one image too), and ``gb_parts[j, o]``
    (zeroed by the caller, one row per chunk) gets chunk j's masked gradient summed over
    its images and pixels, in image order: the bias gradient is the rows summed in
    order."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = gy.shape[1], ho = gy.shape[2], wo = gy.shape[3]
    cdef Py_ssize_t plane = ho * wo, k = (c // groups) * kh * kw, og = o // groups
    cdef Py_ssize_t nchunks = gw_parts.shape[0] if need_w else n
    cdef Py_ssize_t hp = h + 2 * ph, wp = w + 2 * pw
    cdef Py_ssize_t j, lo, hi, b0, m, ld, i, g, oc, q
    cdef int tid
    cdef real* cb
    cdef real* gc
    cdef real* gb
    cdef real* dp
    cdef const real* sp
    cdef bint relu = mask is not None
    if nchunks > n:
        nchunks = n
    if relu and (gb_parts is None or gb_parts.shape[0] < nchunks or gb_parts.shape[1] != o
                 or any(mask.shape[d] != gy.shape[d] for d in range(4))):
        raise ValueError("backward_blocks: a mask of gy's shape needs gb_parts (chunks, O)")
    with nogil:
        for j in prange(nchunks, schedule="dynamic", chunksize=1, num_threads=nt):
            tid = openmp.omp_get_thread_num()
            lo = j * n // nchunks
            hi = (j + 1) * n // nchunks
            b0 = lo
            while b0 < hi:
                m = hi - b0
                if m > block:
                    m = block
                ld = m * plane
                if m == 1 and not relu:
                    gb = <real*>&gy[b0, 0, 0, 0]  # one image: already (O, Ho*Wo)
                else:
                    gb = &gybuf[tid, 0, 0]
                    for i in range(m):
                        for oc in range(o):
                            sp = &gy[b0 + i, oc, 0, 0]
                            dp = gb + oc * ld + i * plane
                            if relu:
                                gb_parts[j, oc] = gb_parts[j, oc] + _masked_copy_sum(
                                    sp, &mask[b0 + i, oc, 0, 0], dp, plane)
                            else:
                                for q in range(plane):
                                    dp[q] = sp[q]
                if need_w:
                    cb = &cols[tid, 0, 0]
                    for i in range(m):
                        _unfold1(_padded(&x[b0 + i, 0, 0, 0], &pad[tid, 0], c, h, w, ph, pw),
                                 cb + i * plane, ld, c, hp, wp, kh, kw, sh, sw, dh, dw, ho, wo)
                    for g in range(groups):
                        _gemm(gemm, False, True, k, og, ld, cb + g * k * ld, ld,
                              gb + g * og * ld, ld, 1, &gw_parts[j, g, 0, 0], og)
                if need_x:
                    gc = &gcols[tid, 0, 0]
                    for g in range(groups):
                        _gemm(gemm, True, False, k, ld, og, &w2[g * og, 0], k,
                              gb + g * og * ld, ld, 0, gc + g * k * ld, ld)
                    for i in range(m):
                        _fold1(gc + i * plane, ld, &gx[b0 + i, 0, 0, 0], &pad[tid, 0], c, h, w,
                               kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)
                b0 = b0 + m


def backward_threads(const real[:, :, :, ::1] gy, const real[:, :, :, ::1] x,
                     const real[:, ::1] w2, real[:, :, :, ::1] gx, real[:, :, :, ::1] gw_parts,
                     real[:, :, ::1] cols, real[:, :, ::1] gcols, bint need_x, bint need_w,
                     int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                     int groups, size_t gemm, int nt):
    """``backward_blocks`` one image at a time: ``gw_parts[j, g]`` sums
    ``unfold(x[b])_g @ gy[b]_g.T`` over the j-th of ``gw_parts.shape[0]`` chunks of
    consecutive images, ``gx[b] = fold(w2.T @ gy[b])``."""
    pad = _pad_buffers(x, ph, pw, nt)
    backward_blocks(gy, x, w2, gx, gw_parts, cols, gcols, cols, pad, need_x, need_w, kh, kw,
                    sh, sw, ph, pw, dh, dw, groups, 1, gemm, nt)


# The threaded drivers need at least this many output pixels per image (below it, the
# whole batch's columns in one GEMM, im2col.py). Since they multiply blocks of images side
# by side they ran ahead of the batch-wide GEMM on planes of 4x4 and 7x7 pixels as well.
_THREADS_MIN_PLANE = 1


def _threaded(x, w, stride, padding, ho, wo):
    """The GEMM address when the threaded drivers run this call, else None."""
    if ho * wo < _THREADS_MIN_PLANE or x.size == 0 or w.size == 0:
        return None
    if x.dtype not in (np.float32, np.float64) or _alg._pointwise(w, stride, padding, 1):
        return None
    return cblas.gemm_address(x.dtype)


def _team_size(macs):
    return 1 if macs < _GRAIN else threads.get_num_threads()


# Images per GEMM in the threaded drivers: a block's columns side by side make one GEMM at
# least _BLOCK_COLS wide (one image of a small plane gives a thin GEMM whose weight packing
# and call cost rival its arithmetic), while one thread's column buffer stays under
# _BLOCK_BYTES. The weight gradient is summed in at most _GW_CHUNKS parts, one per chunk of
# consecutive images, whatever the thread count.
_BLOCK_COLS = 128
_BLOCK_BYTES = 2 << 20
_GW_CHUNKS = 16
_GW_PARTS_BYTES = 64 << 20


def _block(n, rows, plane, itemsize):
    """Images per GEMM for a batch of ``n`` with ``rows`` column rows per output pixel."""
    m = -(-_BLOCK_COLS // plane)
    m = min(m, max(1, _BLOCK_BYTES // max(1, rows * plane * itemsize)))
    return max(1, min(m, n))


def _chunks(n, m, w_nbytes):
    """Chunks of the batch for the weight gradient's parts (a function of the shapes only,
    so the summation order does not depend on the thread count)."""
    cap = max(1, _GW_PARTS_BYTES // max(1, w_nbytes))
    return max(1, min(_GW_CHUNKS, n // m, cap))


def forward(x, w, b, stride, padding, dilation, groups):
    y = _forward(x, w, b, stride, padding, dilation, groups, False)
    if y is None:
        return _alg.forward(im2col, x, w, b, stride, padding, dilation, groups)
    return y


def forward_relu(x, w, b, stride, padding, dilation, groups):
    """``(relu(y), mask)`` for ``y = forward(x, w, b, ...)``: the bias and the ReLU applied
    by the threaded driver as each block of images is copied out of its GEMM (the
    ``bias_relu`` epilogue's values and uint8 mask, ``kernels/fused``), or None where this
    call does not run the threaded driver (the caller then runs the forward and the
    epilogue apart)."""
    return _forward(x, w, b, stride, padding, dilation, groups, True)


def _forward(x, w, b, stride, padding, dilation, groups, relu):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = _alg._out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _alg._out_size(wd, kw, stride[1], padding[1], dilation[1])
    gemm = _threaded(x, w, stride, padding, ho, wo) if groups == 1 or c % groups == 0 else None
    if gemm is None or ho <= 0 or wo <= 0:
        return None
    # the batch-wide column limit holds here too (a call refused by one driver is refused
    # by both), though these buffers are per thread
    _alg._check_cols(x, kh, kw, ho, wo, "conv2d (im2col)")
    nt = _team_size(n * o * ho * wo * cg * kh * kw)
    rows, plane = c * kh * kw, ho * wo
    # blocks of images where they make the GEMM wider, but at least two blocks per thread
    m = min(_block(n, rows, plane, x.itemsize), max(1, n // (2 * nt)))
    _alg.memory.check_fits("conv2d (im2col)", {
        "column buffers": _alg._growth("cols-t", (nt, rows, m * plane), x.dtype),
        "GEMM buffers": _alg._growth("gemm-t", (nt, o, m * plane), x.dtype) if m > 1 else 0,
        "output": n * o * plane * x.itemsize,
        "ReLU mask": n * o * plane if relu else 0,
    })
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    cols = workspace("cols-t", (nt, rows, m * plane), x.dtype)
    ybuf = workspace("gemm-t", (nt, o, m * plane), x.dtype) if m > 1 else cols
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    pad = _pad_buffers(x, *padding, nt)
    mask = np.empty(y.shape, np.uint8) if relu else None
    with cblas.single_threaded():
        forward_blocks(x, w.reshape(o, cg * kh * kw), bias, b is not None, y, cols, ybuf, pad,
                       kh, kw, *stride, *padding, *dilation, groups, m, gemm, nt, relu, mask)
    return (y, mask) if relu else y


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    out = _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, None)
    if out is None:
        return _alg.backward(im2col, col2im, gy, x, w, stride, padding, dilation, groups,
                             need_x, need_w)
    return out[:2]


def backward_relu(gy, mask, x, w, stride, padding, dilation, groups, need_x, need_w):
    """``(gx, gw, gb)`` of ``relu(conv2d(x, w, b, ...))`` for its output gradient ``gy``
    and the ReLU's uint8 ``mask`` (1 where the gradient flows): the mask applied and the
    bias gradient summed by the threaded driver as it copies each block of gy, no masked
    copy of gy first; None where this call does not run the threaded driver (the caller
    then masks gy and runs ``backward``)."""
    if not (need_x or need_w):
        return None
    mask = np.ascontiguousarray(mask).reshape(gy.shape)
    return _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, mask)


def _backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w, mask):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = gy.shape[2:]
    gemm = _threaded(x, w, stride, padding, ho, wo) if gy.size else None
    if gemm is None or not (need_x or need_w):
        return None
    relu = mask is not None
    _alg._check_cols(x, kh, kw, ho, wo, "conv2d (im2col)")
    nt = _team_size(n * o * ho * wo * cg * kh * kw)
    rows, og, k, plane = c * kh * kw, o // groups, cg * kh * kw, ho * wo
    m = _block(n, rows, plane, x.itemsize)
    nchunks = _chunks(n, m, w.nbytes) if need_w else 1
    lb = m * plane
    _alg.memory.check_fits("conv2d (im2col) backward", {
        "column buffers": _alg._growth("cols-t", (nt, rows, lb), x.dtype) if need_w else 0,
        "column gradients": _alg._growth("gcols-t", (nt, rows, lb), x.dtype) if need_x else 0,
        "output gradient blocks": (_alg._growth("gemm-t", (nt, o, lb), x.dtype)
                                   if m > 1 or relu else 0),
        "input gradient": x.nbytes if need_x else 0,
        "weight gradient": (nchunks + 1) * w.nbytes if need_w else 0,
    })
    gy = np.ascontiguousarray(gy)
    dummy3 = np.empty((1, 1, 1), dtype=x.dtype)
    gx = np.empty_like(x) if need_x else np.empty((1, 1, 1, 1), dtype=x.dtype)
    parts = (np.zeros((nchunks, groups, k, og), dtype=x.dtype) if need_w
             else np.empty((1, 1, 1, 1), dtype=x.dtype))
    cols = workspace("cols-t", (nt, rows, lb), x.dtype) if need_w else dummy3
    gcols = workspace("gcols-t", (nt, rows, lb), x.dtype) if need_x else dummy3
    gybuf = workspace("gemm-t", (nt, o, lb), x.dtype) if m > 1 or relu else dummy3
    pad = _pad_buffers(x, *padding, nt)
    # the bias gradient's rows: one per chunk of the weight gradient (one per image
    # without it), as backward_blocks cuts the batch
    gb_parts = np.zeros((nchunks if need_w else n, o), x.dtype) if relu else None
    with cblas.single_threaded():
        backward_blocks(gy, x, w.reshape(o, k), gx, parts, cols, gcols, gybuf, pad, need_x,
                        need_w, kh, kw, *stride, *padding, *dilation, groups, m, gemm, nt,
                        mask, gb_parts)
    gw = None
    if need_w:
        gw_t = parts.sum(axis=0) if nchunks > 1 else parts[0]
        gw = np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape(w.shape).astype(w.dtype, copy=False)
    gb = np.add.reduce(gb_parts, axis=0) if relu else None
    return (gx if need_x else None), gw, gb
