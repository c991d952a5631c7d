"""col2im transposed convolution with the conv family's Cython im2col/col2im (see ``col2im.py``)."""

from __future__ import annotations

from ..conv.im2col_cy import col2im, im2col
from . import col2im as _alg


def forward(x, w, b, stride, padding, output_padding, dilation, groups):
    return _alg.forward(col2im, x, w, b, stride, padding, output_padding, dilation, groups)


def backward(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w):
    return _alg.backward(
        im2col, gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w
    )
