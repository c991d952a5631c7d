"""Convolution kernels (2-D; conv1d runs as conv2d over a height of 1).

Variant interface (every module registered for ``conv2d``)::

    forward(x, w, b, stride, padding, dilation, groups) -> y
        x (N, C, H, W), w (O, C/groups, kH, kW), b (O,) or None, all C-contiguous and of
        one float dtype; stride/padding/dilation are (h, w) int pairs, padding symmetric.
        y (N, O, Ho, Wo) with Ho = (H + 2*ph - dh*(kH-1) - 1)//sh + 1.
    backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w) -> (gx, gw)
        gradients of x and w (None where not needed); the bias gradient is gy summed
        over (N, Ho, Wo) and is computed by the op.

Arguments arrive validated by ``tapegrad.ops.conv``: kernels do no checking.
"""

from ..registry import register, set_rule

_P = __name__
register("conv2d", "reference", f"{_P}.reference")
register("conv2d", "im2col-numba", f"{_P}.im2col_numba")
register("conv2d", "im2col-cython", f"{_P}.im2col_cy")
register("conv2d", "direct-numba", f"{_P}.direct_numba")
register("conv2d", "direct-cython", f"{_P}.direct_cy")


def _conv2d_rule(sig: tuple) -> list[str]:
    return ["im2col-cython", "im2col-numba"]


set_rule("conv2d", _conv2d_rule)
