"""Winograd F(2x2, 3x3) convolution for 3x3 stride-1 calls, Cython + OpenMP, fused per thread.

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
per tile and channel pair instead of 36.
"""

cimport openmp
from cython.parallel cimport prange

import numpy as np

from .. import cblas, threads
from . import im2col_cy as _fallback
from .im2col import memory, workspace
from .reference import _out_size


include "../_common.pxi"
include "../_gemm.pxi"

# V and M of one block of tiles together, about this many bytes per thread
_BLOCK_BYTES = 1 << 20

# Elements between the 16 matrices of a thread's V and M: the transforms write (read) the
# 16 at once, and a power-of-two distance would put all 16 streams in the same cache sets.
cdef enum:
    _PAD = 48


def applies(w_shape, stride, dilation, groups) -> bool:
    """Whether a call is one Winograd F(2x2, 3x3) runs: a 3x3 kernel, stride 1, dilation 1,
    one group (any padding)."""
    return (
        tuple(w_shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and int(groups) == 1
    )


cdef void _input_block(const real* x, real* v, real* rows, Py_ssize_t c, Py_ssize_t h,
                       Py_ssize_t w, Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t block,
                       Py_ssize_t th, Py_ssize_t tw, Py_ssize_t ph,
                       Py_ssize_t pw) noexcept nogil:
    # v[k, ch, t] = (B^T d B)[k // 4, k % 4] for tile t0 + t,
    # B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]. The block's tiles run along tile
    # rows: for each row segment and channel the four input rows it reads are copied, zero
    # padded, into ``rows`` (4 x (2 tw + 2)), and one branch-free loop transforms the tiles.
    cdef Py_ssize_t per_image = th * tw, ch, t, tile, img, rem, tr, tc, seg, jj, i, q
    cdef Py_ssize_t r0, r, s0, qlo, qhi, wp = 2 * tw + 2, cs = c * block + _PAD
    cdef const real* xr
    cdef const real* p0
    cdef const real* p1
    cdef const real* p2
    cdef const real* p3
    cdef real* vp
    cdef real* rp
    cdef real a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33
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
        qlo = 2 * tc  # padded columns [qlo, qhi) the segment reads
        qhi = 2 * (tc + seg) + 2
        p0 = rows
        p1 = rows + wp
        p2 = rows + 2 * wp
        p3 = rows + 3 * wp
        for ch in range(c):
            for i in range(4):
                rp = rows + i * wp
                r = r0 + i
                if r < 0 or r >= h:
                    for q in range(qlo, qhi):
                        rp[q] = 0
                    continue
                xr = x + ((img * c + ch) * h + r) * w - pw  # xr[q] is padded column q
                for q in range(qlo, qhi):
                    rp[q] = xr[q] if 0 <= q - pw < w else 0
            vp = v + ch * block + t - tc
            for jj in range(tc, tc + seg):
                s0 = 2 * jj
                a00 = p0[s0] - p2[s0]
                a01 = p0[s0 + 1] - p2[s0 + 1]
                a02 = p0[s0 + 2] - p2[s0 + 2]
                a03 = p0[s0 + 3] - p2[s0 + 3]
                a10 = p1[s0] + p2[s0]
                a11 = p1[s0 + 1] + p2[s0 + 1]
                a12 = p1[s0 + 2] + p2[s0 + 2]
                a13 = p1[s0 + 3] + p2[s0 + 3]
                a20 = p2[s0] - p1[s0]
                a21 = p2[s0 + 1] - p1[s0 + 1]
                a22 = p2[s0 + 2] - p1[s0 + 2]
                a23 = p2[s0 + 3] - p1[s0 + 3]
                a30 = p1[s0] - p3[s0]
                a31 = p1[s0 + 1] - p3[s0 + 1]
                a32 = p1[s0 + 2] - p3[s0 + 2]
                a33 = p1[s0 + 3] - p3[s0 + 3]
                vp[jj] = a00 - a02
                vp[cs + jj] = a01 + a02
                vp[2 * cs + jj] = a02 - a01
                vp[3 * cs + jj] = a01 - a03
                vp[4 * cs + jj] = a10 - a12
                vp[5 * cs + jj] = a11 + a12
                vp[6 * cs + jj] = a12 - a11
                vp[7 * cs + jj] = a11 - a13
                vp[8 * cs + jj] = a20 - a22
                vp[9 * cs + jj] = a21 + a22
                vp[10 * cs + jj] = a22 - a21
                vp[11 * cs + jj] = a21 - a23
                vp[12 * cs + jj] = a30 - a32
                vp[13 * cs + jj] = a31 + a32
                vp[14 * cs + jj] = a32 - a31
                vp[15 * cs + jj] = a31 - a33
        t += seg


cdef void _output_block(const real* m, real* y, const real* bias, bint has_bias,
                        Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t t0,
                        Py_ssize_t cnt, Py_ssize_t block, Py_ssize_t th,
                        Py_ssize_t tw) noexcept nogil:
    # y tile = A^T M A, A^T = [[1,1,1,0],[0,1,-1,-1]], a tile row segment at a time
    cdef Py_ssize_t per_image = th * tw, oc, t, tile, img, rem, tr, tc, seg, j, jfull, r0
    cdef Py_ssize_t os = o * block + _PAD
    cdef const real* mp
    cdef real* y0
    cdef real* y1
    cdef real bv, q0, q1, q2, q3, r_0, r_1, r_2, r_3
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
        for oc in range(o):
            bv = bias[oc] if has_bias else 0
            mp = m + oc * block + t - tc
            y0 = y + ((img * o + oc) * ho + r0) * wo
            y1 = y0 + wo
            for j in range(tc, tc + seg):
                q0 = mp[j] + mp[4 * os + j] + mp[8 * os + j]
                q1 = mp[os + j] + mp[5 * os + j] + mp[9 * os + j]
                q2 = mp[2 * os + j] + mp[6 * os + j] + mp[10 * os + j]
                q3 = mp[3 * os + j] + mp[7 * os + j] + mp[11 * os + j]
                y0[2 * j] = q0 + q1 + q2 + bv
                if j < jfull:
                    y0[2 * j + 1] = q1 - q2 - q3 + bv
                if two_rows:
                    r_0 = mp[4 * os + j] - mp[8 * os + j] - mp[12 * os + j]
                    r_1 = mp[5 * os + j] - mp[9 * os + j] - mp[13 * os + j]
                    r_2 = mp[6 * os + j] - mp[10 * os + j] - mp[14 * os + j]
                    r_3 = mp[7 * os + j] - mp[11 * os + j] - mp[15 * os + j]
                    y1[2 * j] = r_0 + r_1 + r_2 + bv
                    if j < jfull:
                        y1[2 * j + 1] = r_1 - r_2 - r_3 + bv
        t += seg


cdef void _grad_block(const real* gy, real* gm, Py_ssize_t o, Py_ssize_t ho, Py_ssize_t wo,
                      Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t block, Py_ssize_t th,
                      Py_ssize_t tw) noexcept nogil:
    # gm[k, oc, t] = (A g A^T)[k // 4, k % 4] for the 2x2 output-gradient tile g of tile
    # t0 + t (zero outside the output), A = [[1,0],[1,1],[1,-1],[0,-1]]: the transpose of
    # ``_output_block``, a tile row segment at a time
    cdef Py_ssize_t per_image = th * tw, oc, t, tile, img, rem, tr, tc, seg, j, jfull, r0
    cdef Py_ssize_t os = o * block + _PAD
    cdef real* mp
    cdef const real* y0
    cdef const real* y1
    cdef real g00, g01, g10, g11, a0, a1, b0, b1, c0, c1, d0, d1
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
        jfull = wo // 2
        for oc in range(o):
            mp = gm + oc * block + t - tc
            y0 = gy + ((img * o + oc) * ho + r0) * wo
            y1 = y0 + wo
            for j in range(tc, tc + seg):
                g00 = y0[2 * j]
                g01 = y0[2 * j + 1] if j < jfull else 0
                g10 = 0
                g11 = 0
                if two_rows:
                    g10 = y1[2 * j]
                    g11 = y1[2 * j + 1] if j < jfull else 0
                # rows of A g: g0, g0 + g1, g0 - g1, -g1
                a0 = g00
                a1 = g01
                b0 = g00 + g10
                b1 = g01 + g11
                c0 = g00 - g10
                c1 = g01 - g11
                d0 = -g10
                d1 = -g11
                # columns: (p, q) -> (p, p + q, p - q, -q)
                mp[j] = a0
                mp[os + j] = a0 + a1
                mp[2 * os + j] = a0 - a1
                mp[3 * os + j] = -a1
                mp[4 * os + j] = b0
                mp[5 * os + j] = b0 + b1
                mp[6 * os + j] = b0 - b1
                mp[7 * os + j] = -b1
                mp[8 * os + j] = c0
                mp[9 * os + j] = c0 + c1
                mp[10 * os + j] = c0 - c1
                mp[11 * os + j] = -c1
                mp[12 * os + j] = d0
                mp[13 * os + j] = d0 + d1
                mp[14 * os + j] = d0 - d1
                mp[15 * os + j] = -d1
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
            _grad_block(&gy[0, 0, 0, 0], m, o, ho, wo, t0, cnt, block, th, tw)
            for k in range(16):
                _gemm(gemm, False, True, o, c, cnt, m + k * (o * block + _PAD), block,
                      v + k * (c * block + _PAD), block, 1, &du[tid, k, 0, 0], c)


def winograd_threads(const real[:, :, :, ::1] x, const real[:, :, ::1] u, const real[::1] bias,
                     bint has_bias, real[:, :, :, ::1] y, real[:, ::1] vbuf, real[:, ::1] mbuf,
                     real[:, ::1] rowbuf, int ph, int pw, Py_ssize_t block, size_t gemm, int nt):
    """y = Winograd F(2x2, 3x3) of x with transformed weights ``u`` (16, O, C): each thread
    transforms, multiplies and folds whole blocks of ``block`` tiles in its own
    ``vbuf[thread]`` (16 matrices of (C, block), ``_PAD`` elements apart) and
    ``mbuf[thread]`` (16 of (O, block))."""
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t o = y.shape[1], ho = y.shape[2], wo = y.shape[3]
    cdef Py_ssize_t th = (ho + 1) // 2, tw = (wo + 1) // 2
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
            _input_block(&x[0, 0, 0, 0], v, &rowbuf[tid, 0], c, h, w, t0, cnt, block, th, tw,
                         ph, pw)
            for k in range(16):
                _gemm(gemm, False, False, o, cnt, c, &u[k, 0, 0], c, v + k * (c * block + _PAD),
                      block, 0, m + k * (o * block + _PAD), block)
            _output_block(m, &y[0, 0, 0, 0], &bias[0], has_bias, o, ho, wo, t0, cnt, block,
                          th, tw)


_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def _weight_transform(w):
    """u[4 i + j, o, c] = (G w[o, c] G^T)[i, j], computed in the weights' dtype."""
    g = _G.astype(w.dtype)
    u = np.einsum("ia,ocab,jb->ijoc", g, w, g, optimize=True)
    return np.ascontiguousarray(u.reshape(16, w.shape[0], w.shape[1]))


# Below this many input channels the weight gradient runs im2col-cython's (a 3-channel
# first layer's 16 GEMMs have 3 columns each; benchmarks/results/winograd-profile.md).
_WGRAD_MIN_CHANNELS = 8


def _weight_gradient(gy, x, w, int ph, int pw, gemm):
    """gw of a 3x3 stride-1 call by Winograd F(3x3, 2x2) (see the module docstring)."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = gy.shape[2:]
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    tiles = n * th * tw
    block = int(max(8, min(tiles, _BLOCK_BYTES // (16 * (c + o) * x.itemsize))))
    nt = _team_size(4 * tiles * c * o)
    nt = max(1, min(nt, (tiles + block - 1) // block))
    memory.check_fits("conv2d (winograd) backward", {
        "tile buffers": nt * 16 * (c + o) * block * x.itemsize,
        "weight gradient parts": nt * 16 * o * c * x.itemsize,
    })
    du = np.zeros((nt, 16, o, c), dtype=x.dtype)
    vbuf = workspace("winograd-v-t", (nt, 16 * (c * block + _PAD)), x.dtype)
    mbuf = workspace("winograd-m-t", (nt, 16 * (o * block + _PAD)), x.dtype)
    rowbuf = workspace("winograd-rows-t", (nt, 4 * (2 * tw + 2)), x.dtype)
    with cblas.single_threaded():
        weight_grad_threads(np.ascontiguousarray(x), np.ascontiguousarray(gy), du, vbuf, mbuf,
                            rowbuf, ph, pw, block, gemm, nt)
    dus = du.sum(axis=0) if nt > 1 else du[0]
    g = _G.astype(x.dtype)
    gw = np.einsum("ia,ijoc,jb->ocab", g, dus.reshape(4, 4, o, c), g, optimize=True)
    return np.ascontiguousarray(gw, dtype=w.dtype)


def _team_size(work):
    return 1 if work < _GRAIN else threads.get_num_threads()


def _winograd(x, w, b, int ph, int pw, gemm):
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = _out_size(h, 3, 1, ph, 1), _out_size(wd, 3, 1, pw, 1)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    if y.size == 0 or c == 0:
        y[...] = 0 if b is None else b.reshape(1, o, 1, 1)
        return y
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    tiles = n * th * tw
    block = int(max(8, min(tiles, _BLOCK_BYTES // (16 * (c + o) * x.itemsize))))
    nt = _team_size(4 * tiles * c * o)
    nt = max(1, min(nt, (tiles + block - 1) // block))
    memory.check_fits("conv2d (winograd)", {
        "tile buffers": nt * 16 * (c + o) * block * x.itemsize,
        "output": y.nbytes,
    })
    u = _weight_transform(w)
    vbuf = workspace("winograd-v-t", (nt, 16 * (c * block + _PAD)), x.dtype)
    mbuf = workspace("winograd-m-t", (nt, 16 * (o * block + _PAD)), x.dtype)
    rowbuf = workspace("winograd-rows-t", (nt, 4 * (2 * tw + 2)), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    with cblas.single_threaded():
        winograd_threads(np.ascontiguousarray(x), u, bias, b is not None, y, vbuf, mbuf, rowbuf,
                         ph, pw, block, gemm, nt)
    return y


def _finite(*arrays) -> bool:
    """Whether the arrays hold only finite values (a sum that overflows also says no)."""
    return all(bool(np.isfinite(a.sum())) for a in arrays)


def forward(x, w, b, stride, padding, dilation, groups):
    gemm = cblas.gemm_address(x.dtype)
    if gemm is None or not applies(w.shape, stride, dilation, groups) or not _finite(x, w):
        return _fallback.forward(x, w, b, stride, padding, dilation, groups)
    return _winograd(x, w, b, int(padding[0]), int(padding[1]), gemm)


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    ph, pw = (int(p) for p in padding)
    gemm = cblas.gemm_address(x.dtype)
    if gemm is None or not applies(w.shape, stride, dilation, groups) or not _finite(gy, w):
        return _fallback.backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w)
    gx = gw = None
    empty = x.size == 0 or w.size == 0 or gy.size == 0
    if need_x:
        if empty:
            gx = np.zeros_like(x)
        elif ph > 2 or pw > 2:
            gx = _fallback.backward(gy, x, w, stride, padding, dilation, groups, True, False)[0]
        else:
            wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            gx = _winograd(np.ascontiguousarray(gy), wf, None, 2 - ph, 2 - pw, gemm)
    if need_w:
        if empty:
            gw = np.zeros_like(w)
        elif x.shape[1] < _WGRAD_MIN_CHANNELS or not _finite(x):
            # few input channels: the 16 GEMMs are too thin to pay for the transforms; a NaN
            # or an infinity in x: im2col puts it in the taps a direct sum gives it
            gw = _fallback.backward(gy, x, w, stride, padding, dilation, groups, False, True)[1]
        else:
            gw = _weight_gradient(gy, x, w, ph, pw, gemm)
    return gx, gw
