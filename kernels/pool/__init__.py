"""Pooling kernels.

``max_pool2d`` variant interface::

    forward(x, kernel, stride, padding, dilation, out_hw) -> (y, idx)
        x (N, C, H, W) C-contiguous; kernel/stride/padding/dilation (h, w) pairs; out_hw
        (Ho, Wo) computed by the op (ceil_mode is the op's business). Padding counts as
        -inf. idx (N, C, Ho, Wo) int32: the flat index ih*W + iw of each maximum (the
        first one in scan order on ties).
    backward(gy, idx, x_shape) -> gx     scatter-add of gy at idx

``avg_pool2d`` variant interface::

    forward(x, kernel, stride, padding, out_hw, count_include_pad) -> y
        the window sum divided by PyTorch's divisor: with count_include_pad the window
        clipped to the padded input, else the count of input pixels in it.
    backward(gy, x_shape, kernel, stride, padding, count_include_pad) -> gx

``adaptive_avg_pool2d`` variant interface::

    forward(x, out_hw) -> y     window rows floor(i*H/Ho) .. ceil((i+1)*H/Ho), columns alike
    backward(gy, x_shape) -> gx

Every pooling kernel parallelises over (image, channel) planes: memory bound, no GEMM.
"""

from ..registry import register, set_rule

# Measured on 2 cores (benchmarks/bench_pool.py): on inputs of a few million elements the
# Numba kernels ran max_pool2d 1.2-2x and avg_pool2d up to 1.1x faster than the Cython
# ones (the Cython build has no -march=native); on small inputs Cython's OpenMP regions
# start faster than Numba's thread pool.
_LARGE = 1_000_000


def _size(sig: tuple) -> int:
    try:
        n, c, h, w = sig[1]
        return n * c * h * w
    except (TypeError, ValueError, IndexError):
        return 0


def _pool_rule(sig: tuple) -> list[str]:
    if _size(sig) >= _LARGE:
        return ["direct-numba", "direct-cython"]
    return ["direct-cython", "direct-numba"]


def _max_pool_rule(sig: tuple) -> list[str]:
    # Windows fully inside the input have an unrolled 2x2 / branch-free Cython path: at 1
    # thread 0.38 ms vs Numba's 4.1 ms forward on 32x64x32x32 (2x2 stride 2), 0.06 vs
    # 0.56 ms on LeNet's 64x6x28x28; the general (padded) windows keep the size rule.
    try:
        kernel, stride, padding = sig[2], sig[3], sig[4]
        if tuple(padding) == (0, 0) and tuple(kernel) == (2, 2) and tuple(stride) == (2, 2):
            return ["direct-cython", "direct-numba"]
    except (TypeError, ValueError, IndexError):
        pass
    return _pool_rule(sig)


_P = __name__
register("max_pool2d", "reference", f"{_P}.max_reference")
register("max_pool2d", "direct-numba", f"{_P}.max_numba")
register("max_pool2d", "direct-cython", f"{_P}.max_cy")
set_rule("max_pool2d", _max_pool_rule)

register("avg_pool2d", "reference", f"{_P}.avg_reference")
register("avg_pool2d", "direct-numba", f"{_P}.avg_numba")
register("avg_pool2d", "direct-cython", f"{_P}.avg_cy")
set_rule("avg_pool2d", _pool_rule)

register("adaptive_avg_pool2d", "reference", f"{_P}.adaptive_reference")
register("adaptive_avg_pool2d", "direct-numba", f"{_P}.adaptive_numba")
register("adaptive_avg_pool2d", "direct-cython", f"{_P}.adaptive_cy")
set_rule("adaptive_avg_pool2d", lambda sig: ["direct-cython", "direct-numba"])
