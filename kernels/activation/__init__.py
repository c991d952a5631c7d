"""Activation kernels: ReLU, whose forward and backward are one read and one write pass.

Variant interface (``x``/``g`` C-contiguous float32/float64 of any shape, validated by
``tapegrad.ops.elementwise``)::

    relu_forward(x) -> (y, mask)     mask uint8 of x's shape, 1 where x > 0 (NaN: 0);
                                     y = x where mask, +0.0 elsewhere (NaN and -0.0 too)
    relu_backward(g, mask) -> gx     gx = g where mask, +0.0 elsewhere (even for NaN/inf g,
                                     as PyTorch's threshold_backward)
"""

from ..registry import register, set_rule

_P = __name__
register("relu", "reference", f"{_P}.reference")
register("relu", "fused-numba", f"{_P}.fused_numba")
register("relu", "fused-cython", f"{_P}.fused_cy")
set_rule("relu", lambda sig: ["fused-numba", "fused-cython"])
