"""The col2im algorithm for transposed convolution, shared by its Numba and Cython variants.

Forward: one GEMM per group, ``cols[(o, i, j), (n, h, w)] = w2[c, (o, i, j)].T @ x2[c, (n, h, w)]``
(every input pixel's weighted filter, as a column), then ``col2im`` scatter-adds the
columns into the output: exactly conv2d's input-gradient fold, with the transposed
convolution's output in the role of the convolution's input.
Backward: ``cols = im2col(gy)``, then ``gx2 = (cols.T @ w2.T).T`` and ``gw2 = x2 @ cols.T``.

The backends supply the conv family's ``im2col`` and ``col2im`` (see ``conv/im2col.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import memory
from ..blas import matmul
from ..conv.im2col import _cols_buffer, _growth
from .reference import out_size


def _x2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c, h * w).transpose(1, 0, 2)).reshape(c, n * h * w)


def forward(col2im: Callable, x, w, b, stride, padding, output_padding, dilation, groups):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg, k = c // groups, og * kh * kw
    o = og * groups
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    out_bytes = n * o * ho * wo * x.itemsize
    buffers = {"output": out_bytes, "input columns": x.nbytes}
    if out_bytes and x.size:
        buffers["column buffer"] = _growth("cols", (o * kh * kw, n * h * wd), x.dtype)
    memory.check_fits("conv_transpose2d (col2im)", buffers)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    if y.size == 0 or x.size == 0:  # PyTorch's empty result, or the bias alone
        y[...] = 0 if b is None else b.reshape(1, o, 1, 1)
        return y
    cols = _cols_buffer(y, kh, kw, h, wd, "conv_transpose2d (col2im)")  # (o*kh*kw, n*h*w)
    x2 = _x2(x)
    w2 = w.reshape(c, k)
    for g in range(groups):
        rows = slice(g * cg, (g + 1) * cg)
        matmul(w2[rows].T, x2[rows], out=cols[g * k : (g + 1) * k])
    col2im(cols, y, kh, kw, *stride, *padding, *dilation, h, wd)
    if b is not None:
        y += b.reshape(1, o, 1, 1)
    return y


def backward(
    im2col: Callable,
    gy,
    x,
    w,
    stride,
    padding,
    output_padding,
    dilation,
    groups,
    need_x,
    need_w,
):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg, k = c // groups, og * kh * kw
    if x.size == 0 or w.size == 0 or gy.size == 0:  # nothing flows: zero gradients
        return (np.zeros_like(x) if need_x else None), (np.zeros_like(w) if need_w else None)
    memory.check_fits(
        "conv_transpose2d (col2im) backward",
        {
            "column buffer": _growth("cols", (og * groups * kh * kw, n * h * wd), gy.dtype),
            "input gradient": 2 * x.nbytes if need_x else 0,
            "weight gradient": 2 * w.nbytes if need_w else 0,
            "input columns": x.nbytes if need_w else 0,
        },
    )
    cols = _cols_buffer(gy, kh, kw, h, wd, "conv_transpose2d (col2im)")
    im2col(gy, cols, kh, kw, *stride, *padding, *dilation, h, wd)
    w2 = w.reshape(c, k)
    gx = gw = None
    if need_x:
        # transposed (cols.T @ w2.T, pixels x channels): the output's long axis is the GEMM's
        # row axis, which OpenBLAS handles much better than a 64-row product with a long
        # column axis (about 1.3-2x on the conv_autoencoder shapes); the NCHW copy that
        # follows was needed either way.
        if groups == 1:
            gxt = matmul(cols.T, w2.T)
        else:
            gxt = np.empty((n * h * wd, c), dtype=x.dtype)
            for g in range(groups):
                rows = slice(g * cg, (g + 1) * cg)
                gxt[:, rows] = matmul(cols[g * k : (g + 1) * k].T, w2[rows].T)
        gx = np.ascontiguousarray(gxt.reshape(n, h * wd, c).transpose(0, 2, 1))
        gx = gx.reshape(n, c, h, wd)
    if need_w:
        x2 = _x2(x)
        gw2 = np.empty_like(w2)
        for g in range(groups):
            rows = slice(g * cg, (g + 1) * cg)
            # transposed (cols @ x2.T): much faster in OpenBLAS than x2 @ cols.T for a
            # long contraction axis, see conv/im2col.py
            gw2[rows] = matmul(cols[g * k : (g + 1) * k], x2[rows].T).T
        gw = gw2.reshape(w.shape)
    return gx, gw
