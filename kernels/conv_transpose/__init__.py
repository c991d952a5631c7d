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
then the conv family's col2im scatter-adds them), ``direct-*`` (the scatter written out),
``phase-cython`` (per output phase a stride-1 convolution with the taps landing on it,
GEMMs reading a padded copy of the image in place, or direct register tiles for 12 to 16
output channels, each output pixel written once; the
gradients of calls with 24+ input channels by direct register-tiled kernels on a padded
copy of the output gradient, other calls' from one unfold of it shared by both GEMMs;
small planes with many channels by one GEMM per chunk of images, the images side by side).

The call record is :class:`ConvTranspose2dCall` (the conv family's kernel calls, with
``output_padding`` among the arguments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..calls import pair
from ..conv import ConvLikeCall
from ..conv import cases as _cases
from ..registry import register, set_rule


@dataclass(frozen=True)
class ConvTranspose2dCall(ConvLikeCall):
    """A conv_transpose2d call: shapes, the (h, w) argument pairs, groups, dtype."""

    op: ClassVar[str] = "conv_transpose2d"
    functional: ClassVar[str] = "conv_transpose2d"
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    dtype: str

    @classmethod
    def of(cls, x, w, stride, padding, output_padding, dilation, groups) -> ConvTranspose2dCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(
            pair(x.shape), pair(w.shape), pair(stride), pair(padding), pair(output_padding),
            pair(dilation), int(groups), x.dtype.str,
        )  # fmt: skip

    def args(self) -> tuple:
        """The arguments after the arrays, in the variant interface's order."""
        return (self.stride, self.padding, self.output_padding, self.dilation, self.groups)

    def macs(self) -> int:
        """Multiply-adds of the forward call (twice this is its FLOP count)."""
        n, c, h, w = self.x_shape
        _, og, kh, kw = self.w_shape
        return n * c * h * w * og * kh * kw

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        n, c, h, w = self.x_shape
        return {
            "N": n, "C": c, "H": h, "W": w, "O": self.w_shape[1] * self.groups,
            "k": (self.w_shape[2], self.w_shape[3]), "stride": self.stride,
            "padding": self.padding, "output_padding": self.output_padding,
            "dilation": self.dilation, "groups": self.groups,
        }  # fmt: skip


_P = __name__
register("conv_transpose2d", "reference", f"{_P}.reference")
register("conv_transpose2d", "col2im-numba", f"{_P}.col2im_numba")
register("conv_transpose2d", "col2im-cython", f"{_P}.col2im_cy")
register("conv_transpose2d", "direct-numba", f"{_P}.direct_numba")
register("conv_transpose2d", "direct-cython", f"{_P}.direct_cy")
register("conv_transpose2d", "phase-cython", f"{_P}.phase_cy")


# Small calls go to col2im-cython (one single-threaded BLAS call and im2col on the calling
# thread below their grains), and so do large ones: its threads each take whole images
# (GEMM and fold per image, see col2im_cy.py), ahead of col2im-numba. direct-cython ran
# behind col2im-cython forward and backward from 1M multiply-adds (N=8 16->8 ch 8x8) up to
# conv_autoencoder's decoder layers, and tied only on calls of a few channels
# (benchmarks/results/conv-targets.md).
_DIRECT_MACS = 20_000_000


# phase-cython goes first from this many multiply-adds on, groups 1 (with fewer than 8
# output channels its forward is col2im-cython's and its backward its own). Medians on 2
# loaded cores, ms fwd / bwd, phase-cython vs col2im-cython, 1 thread: N=32 64->32 ch
# 16->32 4x4 stride 2 16.3 / 40.7 vs 22.9 / 41.6; conv_autoencoder's decoder at N=64,
# 32->16 7x7 0.93 / (tie) vs 1.41; one image 32->16 7x7 ties. The 16->1 layer's backward:
# benchmarks/results/conv-transpose-phase.md.
_PHASE_MACS = 1_000_000


def _conv_transpose2d_rule(call: ConvTranspose2dCall) -> list[str]:
    try:
        macs = call.macs()
        phase = call.groups == 1 and macs >= _PHASE_MACS
    except (AttributeError, TypeError, ValueError, IndexError):
        return ["col2im-numba", "col2im-cython"]
    if macs < _DIRECT_MACS:
        names = ["col2im-cython", "col2im-numba", "direct-cython", "direct-numba"]
    else:
        names = ["col2im-cython", "col2im-numba"]
    return ["phase-cython", *names] if phase else [*names, "phase-cython"]


set_rule("conv_transpose2d", _conv_transpose2d_rule)


# example calls, determinism row and bench case (kernels/examples.py; kernels/conv/cases.py)
ConvTranspose2dCall.examples = _cases.CONV_TRANSPOSE2D_EXAMPLES
ConvTranspose2dCall.determinism = _cases.CONV_TRANSPOSE2D_DETERMINISM
ConvTranspose2dCall.bench = _cases.CONV_TRANSPOSE2D_BENCH
