"""Transposed convolution kernels (2-D; conv_transpose1d runs over a height of 1).

Transposed convolution is the adjoint of convolution: every input pixel scatters its
value times the filter into the output, the filter 'dragged' by the stride. Its forward
is conv2d's input gradient, its input gradient is a conv2d forward.

Variant interface (every module registered for ``conv_transpose2d``)::

    forward(x, w, b, stride, padding, output_padding, dilation, groups) -> y
        x (N, C_in, H, W), w (C_in, C_out/groups, kH, kW), b (C_out,) or None, all
        C-contiguous and of one float dtype; the other arguments (h, w) int pairs.
        y (N, C_out, Ho, Wo), Ho = (H-1)*sh - 2*ph + dh*(kH-1) + oph + 1.
    backward(gy, x, w, stride, padding, output_padding, dilation, groups, need_x, need_w)
        -> (gx, gw), None where not needed; the op sums gy for the bias gradient.

Variants: ``reference`` (NumPy, per tap), ``col2im-*`` (one GEMM per group to columns,
then the conv family's col2im scatter-adds them), ``direct-*`` (the scatter written out).
"""

from ..registry import register, set_rule

_P = __name__
register("conv_transpose2d", "reference", f"{_P}.reference")
register("conv_transpose2d", "col2im-numba", f"{_P}.col2im_numba")
register("conv_transpose2d", "col2im-cython", f"{_P}.col2im_cy")
register("conv_transpose2d", "direct-numba", f"{_P}.direct_numba")
register("conv_transpose2d", "direct-cython", f"{_P}.direct_cy")


# Small calls go to col2im-cython (one single-threaded BLAS call and im2col on the calling
# thread below their grains), large ones to col2im-numba. Medians on 2 loaded cores, ms fwd /
# bwd, col2im-cython vs direct-cython: N=8 16->8 ch 8x8 (1M multiply-adds) 0.04 / 0.06 vs
# 0.38 / 0.98; conv_autoencoder's decoder, N=64 32->16 7x7 (14M) 10 / 18 vs 22 / 48 and
# 16->1 14x14 (1.8M) 0.15 / 1.7 vs 1.9 / 7.0; a 4-channel 4x4 call ties (0.01 / 0.02).
_DIRECT_MACS = 20_000_000


def _conv_transpose2d_rule(sig: tuple) -> list[str]:
    try:
        n, c, h, w = sig[1]
        _, og, kh, kw = sig[2]
        macs = n * c * h * w * og * kh * kw
    except (TypeError, ValueError, IndexError):
        return ["col2im-numba", "col2im-cython"]
    if macs < _DIRECT_MACS:
        return ["col2im-cython", "col2im-numba", "direct-cython", "direct-numba"]
    return ["col2im-numba", "col2im-cython"]


set_rule("conv_transpose2d", _conv_transpose2d_rule)
