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


# Below this many multiply-adds per call the direct kernels win (no column buffer, no
# BLAS call, ~5 us per call less overhead). Above it im2col + one GEMM wins by far:
# measured at 1 thread (the only clean reading on a shared machine), im2col-cython ran
# LeNet-5's conv layers (1->6 ch 28x28 5x5 N=64, 7.5M MACs; 6->16 ch 14x14 N=64, 15M)
# 2.5-15x faster forward and 6-15x faster backward than direct-cython, and 3->16 ch
# 32x32 N=32 (14M) 4x / 7x; direct only won calls of a few 10k MACs (1->4 ch 8x8:
# 6 us vs 11 us). Cython before Numba: 1.3-2x faster on every shape measured.
_DIRECT_MACS = 100_000


def _conv2d_rule(sig: tuple) -> list[str]:
    try:
        _, xs, ws, stride, padding, dilation = sig[:6]
        n, _, h, w = xs
        o, cg, kh, kw = ws
        ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        macs = n * o * ho * wo * cg * kh * kw
    except (TypeError, ValueError):
        return ["im2col-cython", "im2col-numba"]
    if macs < _DIRECT_MACS:
        return ["direct-cython", "direct-numba", "im2col-cython", "im2col-numba"]
    return ["im2col-cython", "im2col-numba"]


set_rule("conv2d", _conv2d_rule)
