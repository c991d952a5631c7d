"""Fused epilogues: a ReLU applied in the same pass as the work before it.

Two ops, one module per variant:

- ``bias_relu``: the pass after a convolution (or batch norm) run without its bias: the
  bias added and the ReLU applied in place, in one pass that also writes the ReLU's mask;
  its backward masks the output gradient and sums the bias gradient in one pass.
- ``add_relu``: ``relu(a + b)`` of a residual block in one pass (output and mask).

Variant interface (C-contiguous float32/float64 arrays, validated by ``tapegrad.ops.fused``)::

    bias_relu_forward(y, b) -> mask
        y (N, C, *) is changed in place to relu(y + b[c]) (b (C,) of y's dtype, or None for
        relu(y)); mask uint8 of y's shape, 1 where not (y + b) <= 0. As PyTorch's ReLU:
        NaN and -0.0 pass through, the gradient flows through NaN.
    masked_backward(g, mask, channel_sum) -> (gx, gb)
        gx = g where mask, +0.0 elsewhere (NaN/inf in g included); with channel_sum, gb (C,)
        of g's dtype is gx summed over every axis but 1 (NumPy's sum, as the unfused
        convolution's bias gradient), else None.
    add_relu_forward(a, b) -> (y, mask)
        a, b of one shape and dtype: y = relu(a + b), mask as above.

The call records are :class:`BiasReluCall` and :class:`AddReluCall`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from ..calls import KernelCall, nchw, pair
from ..registry import register, set_rule

_FUNCTIONS = ("bias_relu_forward", "masked_backward", "add_relu_forward")


@dataclass(frozen=True)
class BiasReluCall(KernelCall):
    """A bias + ReLU epilogue call: the output's shape, whether there is a bias, the dtype."""

    kernel_functions: ClassVar[tuple[str, ...]] = _FUNCTIONS
    op: ClassVar[str] = "bias_relu"
    functional: ClassVar[str] = "conv2d_relu"
    y_shape: tuple[int, ...]
    bias: bool
    dtype: str

    @classmethod
    def of(cls, y, b) -> BiasReluCall:
        """The record of a call on these arrays (shape and dtype read from them)."""
        return cls(pair(y.shape), b is not None, y.dtype.str)

    def forward(self, mod: ModuleType, y: Any, b: Any) -> Any:
        """The mask; ``y`` is changed in place."""
        return mod.bias_relu_forward(y, b)

    def backward(self, mod: ModuleType, g: Any, mask: Any) -> Any:
        """(gx, gb): the masked gradient and, with a bias, its per-channel sum."""
        return mod.masked_backward(g, mask, self.bias)

    def trial(self, inputs, needs, training):
        """Autotune's trial on a copy of the output: the forward works in place."""
        y, b = inputs

        def run(mod: ModuleType) -> None:
            out = y.copy()
            mask = self.forward(mod, out, b)
            if training:
                self.backward(mod, out, mask)

        return run

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return nchw(self.y_shape) if 2 <= len(self.y_shape) <= 4 else None


@dataclass(frozen=True)
class AddReluCall(KernelCall):
    """An ``add_relu`` call: the operands' shape and dtype."""

    kernel_functions: ClassVar[tuple[str, ...]] = _FUNCTIONS
    op: ClassVar[str] = "add_relu"
    functional: ClassVar[str] = "add_relu"
    x_shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, a) -> AddReluCall:
        """The record of a call on these arrays (shape and dtype read from them)."""
        return cls(pair(a.shape), a.dtype.str)

    def forward(self, mod: ModuleType, a: Any, b: Any) -> Any:
        """(y, mask)"""
        return mod.add_relu_forward(a, b)

    def backward(self, mod: ModuleType, g: Any, mask: Any) -> Any:
        """The masked gradient (the same for both operands)."""
        return mod.masked_backward(g, mask, False)[0]

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output."""
        return self.backward(mod, *out)

    def bench_params(self) -> dict[str, Any] | None:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        return nchw(self.x_shape) if 2 <= len(self.x_shape) <= 4 else None


_P = __name__
for _op in ("bias_relu", "add_relu"):
    register(_op, "reference", f"{_P}.reference")
    register(_op, "fused-numba", f"{_P}.epilogue_numba")
    set_rule(_op, lambda call: ["fused-numba"])
