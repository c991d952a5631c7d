"""Winograd F(2x2, 3x3) convolution for 3x3 stride-1 calls, transforms compiled with Numba.

Applies to 3x3 kernels, stride 1, dilation 1, one group, any padding; every other call
runs the ``im2col-numba`` variant (this module delegates to it, so the variant interface
holds for every call, but ``auto``'s rule lists it only where it applies).

Each 2x2 output tile is computed from a 4x4 input tile ``d`` and the kernel ``g`` as
``A^T [(G g G^T) * (B^T d B)] A``: 16 multiplications per tile and channel pair instead
of 36. The 16 element-wise products summed over input channels are 16 GEMMs,
``M[k] = U[k] @ V[k]`` with ``U`` (16, O, C) the transformed weights and ``V``
(16, C, T) the transformed input tiles; they run as one ``np.matmul`` over the 16
positions. The tiles of the whole batch are processed a block at a time, the block sized
so that ``V`` and ``M`` together stay within about 1 MB (cache-resident between the input
transform, the GEMMs and the output transform).

Why F(2x2, 3x3) rather than F(4x4, 3x3): its transform matrices hold only 0, +-1 and
+-1/2, so float32 results stay within a few ulps of a direct convolution (measured and
held by the tests at 1e-4 of the output's scale; F(4x4, 3x3)'s larger interpolation
points lose about a decimal digit more), and its transforms are a few additions each.

Backward: the input gradient of a 3x3 stride-1 convolution with padding ``p <= 2`` is
itself one, of the output gradient with the flipped, transposed weights and padding
``2 - p``, and runs through the same Winograd forward; the weight gradient runs through
``im2col-cython`` (``im2col-numba`` when the Cython kernels are not built), and the input
gradient for padding above 2 through ``im2col-numba``. Calls whose arrays hold a NaN
or an infinity run ``im2col-numba`` too, so non-finite values land where a direct
convolution puts them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import _numba_cache  # noqa: F401  (compiled cache: the user's cache folder)
from ..blas import matmul
from . import im2col_numba as _fallback
from .im2col import workspace
from .reference import _out_size

_BLOCK_BYTES = 1 << 20  # V and M of one block of tiles together, about this many bytes


def applies(w_shape, stride, dilation, groups) -> bool:
    """Whether a call is one Winograd F(2x2, 3x3) runs: a 3x3 kernel, stride 1, dilation 1,
    one group (any padding)."""
    return (
        tuple(w_shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and int(groups) == 1
    )


@njit(cache=True)
def _weight_transform(w, u):
    # u[k, o, c] = (G g G^T)[k // 4, k % 4], G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]]
    o_n, c_n = w.shape[0], w.shape[1]
    t = np.empty((4, 3), dtype=w.dtype)  # G g, reused for every (o, c)
    for o in range(o_n):
        for c in range(c_n):
            for j in range(3):
                a0, a1, a2 = w[o, c, 0, j], w[o, c, 1, j], w[o, c, 2, j]
                t[0, j] = a0
                t[1, j] = 0.5 * (a0 + a1 + a2)
                t[2, j] = 0.5 * (a0 - a1 + a2)
                t[3, j] = a2
            for i in range(4):
                b0, b1, b2 = t[i, 0], t[i, 1], t[i, 2]
                u[4 * i + 0, o, c] = b0
                u[4 * i + 1, o, c] = 0.5 * (b0 + b1 + b2)
                u[4 * i + 2, o, c] = 0.5 * (b0 - b1 + b2)
                u[4 * i + 3, o, c] = b2


@njit(cache=True, inline="always")
def _at(x, n, c, r, s, h, w):
    if r < 0 or r >= h or s < 0 or s >= w:
        return x.dtype.type(0)
    return x[n, c, r, s]


@njit(parallel=True, cache=True)
def _input_transform(x, v, t0, nt, th, tw, ph, pw):
    # v[k, c, t] = (B^T d B)[k // 4, k % 4] for tile t0 + t of the batch,
    # B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]
    _, c_n, h, w = x.shape
    per_image = th * tw
    for c in prange(c_n):
        for t in range(nt):
            tile = t0 + t
            n = tile // per_image
            rem = tile - n * per_image
            r0 = 2 * (rem // tw) - ph
            s0 = 2 * (rem % tw) - pw
            if r0 >= 0 and s0 >= 0 and r0 + 4 <= h and s0 + 4 <= w:
                d00, d01, d02, d03 = (
                    x[n, c, r0, s0],
                    x[n, c, r0, s0 + 1],
                    x[n, c, r0, s0 + 2],
                    x[n, c, r0, s0 + 3],
                )
                d10, d11, d12, d13 = (
                    x[n, c, r0 + 1, s0],
                    x[n, c, r0 + 1, s0 + 1],
                    x[n, c, r0 + 1, s0 + 2],
                    x[n, c, r0 + 1, s0 + 3],
                )
                d20, d21, d22, d23 = (
                    x[n, c, r0 + 2, s0],
                    x[n, c, r0 + 2, s0 + 1],
                    x[n, c, r0 + 2, s0 + 2],
                    x[n, c, r0 + 2, s0 + 3],
                )
                d30, d31, d32, d33 = (
                    x[n, c, r0 + 3, s0],
                    x[n, c, r0 + 3, s0 + 1],
                    x[n, c, r0 + 3, s0 + 2],
                    x[n, c, r0 + 3, s0 + 3],
                )
            else:
                d00, d01, d02, d03 = (
                    _at(x, n, c, r0, s0, h, w),
                    _at(x, n, c, r0, s0 + 1, h, w),
                    _at(x, n, c, r0, s0 + 2, h, w),
                    _at(x, n, c, r0, s0 + 3, h, w),
                )
                d10, d11, d12, d13 = (
                    _at(x, n, c, r0 + 1, s0, h, w),
                    _at(x, n, c, r0 + 1, s0 + 1, h, w),
                    _at(x, n, c, r0 + 1, s0 + 2, h, w),
                    _at(x, n, c, r0 + 1, s0 + 3, h, w),
                )
                d20, d21, d22, d23 = (
                    _at(x, n, c, r0 + 2, s0, h, w),
                    _at(x, n, c, r0 + 2, s0 + 1, h, w),
                    _at(x, n, c, r0 + 2, s0 + 2, h, w),
                    _at(x, n, c, r0 + 2, s0 + 3, h, w),
                )
                d30, d31, d32, d33 = (
                    _at(x, n, c, r0 + 3, s0, h, w),
                    _at(x, n, c, r0 + 3, s0 + 1, h, w),
                    _at(x, n, c, r0 + 3, s0 + 2, h, w),
                    _at(x, n, c, r0 + 3, s0 + 3, h, w),
                )
            # rows: B^T d
            a00, a01, a02, a03 = d00 - d20, d01 - d21, d02 - d22, d03 - d23
            a10, a11, a12, a13 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
            a20, a21, a22, a23 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
            a30, a31, a32, a33 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
            # columns: (B^T d) B
            v[0, c, t], v[1, c, t], v[2, c, t], v[3, c, t] = (
                a00 - a02,
                a01 + a02,
                a02 - a01,
                a01 - a03,
            )
            v[4, c, t], v[5, c, t], v[6, c, t], v[7, c, t] = (
                a10 - a12,
                a11 + a12,
                a12 - a11,
                a11 - a13,
            )
            v[8, c, t], v[9, c, t], v[10, c, t], v[11, c, t] = (
                a20 - a22,
                a21 + a22,
                a22 - a21,
                a21 - a23,
            )
            v[12, c, t], v[13, c, t], v[14, c, t], v[15, c, t] = (
                a30 - a32,
                a31 + a32,
                a32 - a31,
                a31 - a33,
            )


@njit(parallel=True, cache=True)
def _output_transform(m, y, b, has_bias, t0, nt, th, tw):
    # y tile = A^T M A, A^T = [[1,1,1,0],[0,1,-1,-1]]
    o_n, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    per_image = th * tw
    for o in prange(o_n):
        bias = b[o] if has_bias else y.dtype.type(0)
        for t in range(nt):
            tile = t0 + t
            n = tile // per_image
            rem = tile - n * per_image
            r0 = 2 * (rem // tw)
            s0 = 2 * (rem % tw)
            # A^T M (2x4)
            p0 = m[0, o, t] + m[4, o, t] + m[8, o, t]
            p1 = m[1, o, t] + m[5, o, t] + m[9, o, t]
            p2 = m[2, o, t] + m[6, o, t] + m[10, o, t]
            p3 = m[3, o, t] + m[7, o, t] + m[11, o, t]
            q0 = m[4, o, t] - m[8, o, t] - m[12, o, t]
            q1 = m[5, o, t] - m[9, o, t] - m[13, o, t]
            q2 = m[6, o, t] - m[10, o, t] - m[14, o, t]
            q3 = m[7, o, t] - m[11, o, t] - m[15, o, t]
            y[n, o, r0, s0] = p0 + p1 + p2 + bias
            if s0 + 1 < wo:
                y[n, o, r0, s0 + 1] = p1 - p2 - p3 + bias
            if r0 + 1 < ho:
                y[n, o, r0 + 1, s0] = q0 + q1 + q2 + bias
                if s0 + 1 < wo:
                    y[n, o, r0 + 1, s0 + 1] = q1 - q2 - q3 + bias


def _winograd(x, w, b, ph: int, pw: int) -> np.ndarray:
    n, c, h, wd = x.shape
    o = w.shape[0]
    ho, wo = _out_size(h, 3, 1, ph, 1), _out_size(wd, 3, 1, pw, 1)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    if y.size == 0 or c == 0:
        y[...] = 0 if b is None else b.reshape(1, o, 1, 1)
        return y
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    tiles = n * th * tw
    u = np.empty((16, o, c), dtype=x.dtype)
    _weight_transform(w, u)
    block = max(8, min(tiles, _BLOCK_BYTES // (16 * (c + o) * x.itemsize)))
    v_buf = workspace("winograd-v", (16, c, block), x.dtype)
    m_buf = workspace("winograd-m", (16, o, block), x.dtype)
    bias = b if b is not None else np.zeros(1, dtype=x.dtype)
    for t0 in range(0, tiles, block):
        nt = min(block, tiles - t0)
        v, m = v_buf[:, :, :nt], m_buf[:, :, :nt]
        _input_transform(x, v, t0, nt, th, tw, ph, pw)
        matmul(u, v, out=m)
        _output_transform(m, y, bias, b is not None, t0, nt, th, tw)
    return y


def _weight_gradient_variant():
    """The im2col variant the weight gradient runs: Cython's when it is built (several
    times faster than Numba's on the 3x3 layers measured), else Numba's."""
    from ..registry import get

    try:
        return get("conv2d", "im2col-cython")
    except (RuntimeError, ValueError):
        return _fallback


def _finite(*arrays) -> bool:
    """Whether the arrays hold only finite values (a sum that overflows also says no).

    Winograd's transforms mix the four outputs of a tile, so a NaN or an infinity would
    spread to neighbours a direct convolution leaves finite; such calls run im2col.
    """
    return all(bool(np.isfinite(a.sum())) for a in arrays)


def forward(x, w, b, stride, padding, dilation, groups):
    if not applies(w.shape, stride, dilation, groups) or not _finite(x, w):
        return _fallback.forward(x, w, b, stride, padding, dilation, groups)
    return _winograd(x, w, b, int(padding[0]), int(padding[1]))


def backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w):
    ph, pw = (int(p) for p in padding)
    if not applies(w.shape, stride, dilation, groups) or ph > 2 or pw > 2 or not _finite(gy, w):
        return _fallback.backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w)
    gx = gw = None
    if need_x:
        if x.size == 0 or w.size == 0 or gy.size == 0:
            gx = np.zeros_like(x)
        else:
            wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            gx = _winograd(np.ascontiguousarray(gy), wf, None, 2 - ph, 2 - pw)
    if need_w:
        gw = _weight_gradient_variant().backward(
            gy, x, w, stride, padding, dilation, groups, False, True
        )[1]
    return gx, gw
