"""Pooling kernels.

``max_pool2d`` variant interface::

    forward(x, kernel, stride, padding, dilation, out_hw) -> (y, idx)
        x (N, C, H, W) C-contiguous; kernel/stride/padding/dilation (h, w) pairs; out_hw
        (Ho, Wo) computed by the op (ceil_mode is the op's business). Padding counts as
        -inf. idx (N, C, Ho, Wo) int32: the flat index ih*W + iw of each maximum (the
        first one in scan order on ties).
    backward(gy, idx, x_shape) -> gx     scatter-add of gy at idx
"""

from ..registry import register, set_rule

_P = __name__
register("max_pool2d", "reference", f"{_P}.max_reference")
register("max_pool2d", "direct-numba", f"{_P}.max_numba")
register("max_pool2d", "direct-cython", f"{_P}.max_cy")
set_rule("max_pool2d", lambda sig: ["direct-cython", "direct-numba"])
