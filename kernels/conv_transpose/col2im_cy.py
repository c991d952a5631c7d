"""col2im transposed convolution with the conv family's Cython im2col/col2im (see ``col2im.py``).

When NumPy's BLAS can be called from the kernel's threads (``kernels/cblas.py``), the
calls run on ``im2col-cython``'s threaded drivers instead, each thread taking whole images:
the forward is conv2d's input gradient (GEMM into the thread's columns, folded straight
into the image's output, no batch-wide column matrix and no extra pass), the input
gradient a conv2d forward of the output gradient, the weight gradient conv2d's weight
gradient with the roles of input and output gradient swapped.
"""

from __future__ import annotations

import numpy as np

from .. import memory
from ..conv import im2col_cy as _conv
from ..conv.im2col import _check_cols, _growth, workspace
from ..conv.im2col_cy import col2im, im2col
from . import col2im as _alg
from .reference import out_size


def _plan(x, w, stride, padding, output_padding, dilation):
    """(gemm address, nt, ho, wo), the address None when the threaded drivers do not run."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    ho = out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    wo = out_size(wd, kw, stride[1], padding[1], output_padding[1], dilation[1])
    gemm = None
    if ho > 0 and wo > 0:
        gemm = _conv._threaded(x, w, stride, padding, h, wd)
    nt = _conv._team_size(n * c * h * wd * og * kh * kw)
    return gemm, nt, ho, wo


def forward(x, w, b, stride, padding, output_padding, dilation, groups):
    gemm, nt, ho, wo = _plan(x, w, stride, padding, output_padding, dilation)
    if gemm is None:
        return _alg.forward(col2im, x, w, b, stride, padding, output_padding, dilation, groups)
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    o = og * groups
    rows = o * kh * kw
    # the batch-wide column limit of the col2im driver holds here too
    _check_cols(np.empty((n, o, 0, 0), x.dtype), kh, kw, h, wd, "conv_transpose2d (col2im)")
    memory.check_fits("conv_transpose2d (col2im)", {
        "column buffers": _growth("gcols-t", (nt, rows, h * wd), x.dtype),
        "output": n * o * ho * wo * x.itemsize,
    })  # fmt: skip
    y = np.empty((n, o, ho, wo), dtype=x.dtype)
    gcols = workspace("gcols-t", (nt, rows, h * wd), x.dtype)
    dummy3, dummy4 = np.empty((1, 1, 1), x.dtype), np.empty((1, 1, 1, 1), x.dtype)
    with _conv.cblas.single_threaded():
        # y is conv2d's input gradient for output gradient x (y is only written)
        _conv.backward_threads(x, y, w.reshape(c, og * kh * kw), y, dummy4, dummy3, gcols,
                               True, False, kh, kw, *stride, *padding, *dilation, groups, gemm,
                               nt)  # fmt: skip
    if b is not None:
        y += b.reshape(1, o, 1, 1)
    return y


def backward(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w):
    gemm, nt, _, _ = _plan(x, w, stride, padding, output_padding, dilation)
    if gemm is None or gy.size == 0 or not (need_x or need_w):
        return _alg.backward(
            im2col, gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w
        )
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    o = og * groups
    rows, k = o * kh * kw, og * kh * kw
    _check_cols(gy, kh, kw, h, wd, "conv_transpose2d (col2im)")
    memory.check_fits("conv_transpose2d (col2im) backward", {
        "column buffers": _growth("cols-t", (nt, rows, h * wd), x.dtype),
        "input gradient": x.nbytes if need_x else 0,
        "weight gradient": (nt + 1) * w.nbytes if need_w else 0,
    })  # fmt: skip
    gy = np.ascontiguousarray(gy)
    w2 = w.reshape(c, k)
    cols = workspace("cols-t", (nt, rows, h * wd), x.dtype)
    dummy1, dummy3 = np.zeros(1, x.dtype), np.empty((1, 1, 1), x.dtype)
    dummy4 = np.empty((1, 1, 1, 1), x.dtype)
    gx = gw = None
    with _conv.cblas.single_threaded():
        if need_x:  # conv2d forward of gy with the same weights
            gx = np.empty_like(x)
            _conv.forward_threads(gy, w2, dummy1, False, gx, cols, kh, kw, *stride, *padding,
                                  *dilation, groups, gemm, nt)  # fmt: skip
        if need_w:  # conv2d's weight gradient: input gy, output gradient x
            parts = np.zeros((nt, groups, k, c // groups), dtype=x.dtype)
            _conv.backward_threads(np.ascontiguousarray(x), gy, w2, dummy4, parts, cols, dummy3,
                                   False, True, kh, kw, *stride, *padding, *dilation, groups,
                                   gemm, nt)  # fmt: skip
            gw_t = parts.sum(axis=0) if nt > 1 else parts[0]
            gw = np.ascontiguousarray(gw_t.transpose(0, 2, 1)).reshape(w.shape)
    return gx, gw
