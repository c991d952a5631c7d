"""Depthwise convolution kernels (``groups == C_in``, channel multiplier M = C_out / C_in >= 1).

Depthwise convolution does k*k multiply-adds per output element and is memory bound: a
per-group GEMM (im2col with C_in tiny GEMMs) wastes its time in overhead, so it has its
own direct kernels that stream each input plane once per output channel.

``direct-cython`` (first in ``auto``) pads and splits each (image, channel) plane by stride
phase in cache, so every tap is a unit-stride stream. Its inner loops are 64-byte vector
code built for AVX-512, AVX2 + FMA and baseline x86-64 and picked by the CPU at load time;
3x3 and 5x5 filters at stride 1 or 2 have unrolled kernels (weights in registers, several
output rows per phase-row load, two vectors along rows at least two vectors wide: enough
independent sums to keep the multiply-add units busy) for the forward, the stride-1 input
gradient (the forward with flipped filters) and the weight gradient (per-tap lane sums in
registers). Small planes, where a vector along a row of outputs would be partly idle, run
on channel blocks instead: every stride-2 call whose padded input plane fits in cache (up
to 16900 pixels, 130 x 130) and stride-1 calls with outputs narrower than one vector (up to
15 columns for float32, 8 for float64) take 16 channels (8 for float64) of one image at a
time, interleave their padded planes pixel by pixel in cache (16 x 16 register
transposes), run each tap as one vector multiply-add across the 16 channels for all three
passes, and transpose the results back; the input gradient is gathered phase by phase
(each input pixel sums the taps that land on it, written once, no read-modify-write);
their outputs and input gradients, and every buffer they use in cache, start on 64-byte
boundaries, so the whole-vector loads and stores never straddle two cache lines; each task
asks for the memory of the one after it ahead of time (a block of one image is one short
contiguous run, too short for the hardware prefetchers). The weight gradient runs
this way for every plane that fits, at stride 1 too, one lane per channel over fixed groups
of 8 images, added in image order; stride-1 calls with kernels up to 3x3 and outputs 16 or
more columns wide take the phase planes instead (no transposes), in tasks of 16 output
channels x 8 images, added in image order too, where their rows are whole pairs of vectors
(32, 48, 64 ... floats) or the padded plane is larger than 114 x 114. Calls with one output
channel per input channel run the whole backward (input, weight and bias gradients) in one
pass over the output gradient and the input, each plane used for all three while it is in
cache: on channel blocks where the forward or (at stride 1, padding at most k - 1) the
weight gradient takes them -- the stride-1 input gradient is then gathered on the blocks
too, in the order of the phase planes' flipped-filter forward, so the same bits --, and on
the phase planes at stride 1 where both gradients take those. All sums run in a fixed order: a call
repeats bit for bit on one machine, at any thread count. ``benchmarks/conv_targets.py``
times each pass against the copy time of the bytes it moves.

Variant interface (every module registered for ``depthwise_conv2d``), the ``conv2d``
interface with ``groups == C``::

    forward(x, w, b, stride, padding, dilation, groups) -> y
        x (N, C, H, W), w (C*M, 1, kH, kW), b (C*M,) or None; output channel o reads
        input channel o // M (PyTorch's grouping).
    backward(gy, x, w, stride, padding, dilation, groups, need_x, need_w) -> (gx, gw)

A variant may also define (the op calls it when the bias needs a gradient)::

    backward_with_bias(gy, x, w, stride, padding, dilation, groups, need_x, need_w)
        -> (gx, gw, gb): gb (C*M,) is gy summed over (N, Ho, Wo), or None for calls where
        the variant leaves that sum to the op. direct-cython computes all three in one pass
        over gy and x for multiplier-1 calls on channel blocks.

The call record is :class:`DepthwiseConv2dCall`: conv2d's record (and kernel calls) under
this op's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..conv import Conv2dCall
from ..conv import cases as _cases
from ..registry import register, set_rule


@dataclass(frozen=True)
class DepthwiseConv2dCall(Conv2dCall):
    """A depthwise conv2d call (``groups == C_in``): conv2d's fields and kernel calls."""

    op: ClassVar[str] = "depthwise_conv2d"


_P = __name__
register("depthwise_conv2d", "reference", f"{_P}.reference")
register("depthwise_conv2d", "direct-numba", f"{_P}.direct_numba")
register("depthwise_conv2d", "direct-cython", f"{_P}.direct_cy")


def _depthwise_rule(call: DepthwiseConv2dCall) -> list[str]:
    return ["direct-cython", "direct-numba"]


set_rule("depthwise_conv2d", _depthwise_rule)


# example calls, determinism row and bench case (kernels/examples.py; kernels/conv/cases.py)
DepthwiseConv2dCall.examples = _cases.DEPTHWISE_EXAMPLES
DepthwiseConv2dCall.determinism = _cases.DEPTHWISE_DETERMINISM
DepthwiseConv2dCall.bench = _cases.DEPTHWISE_BENCH
