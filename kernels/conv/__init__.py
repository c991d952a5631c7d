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

The call record, :class:`Conv2dCall`, holds the shapes and arguments by name and makes
the two kernel calls above (the op and autotune's trials both go through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, ClassVar

from .. import threads as _threads
from ..calls import KernelCall, pair
from ..registry import register, set_rule
from . import cases as _cases


class ConvLikeCall(KernelCall):
    """The kernel calls shared by the conv, depthwise and transposed-conv records: the
    arguments after the arrays are ``self.args()`` in the interface's order."""

    def args(self) -> tuple:
        """The arguments after the arrays, in the variant interface's order."""
        raise NotImplementedError

    def forward(self, mod: ModuleType, x: Any, w: Any, b: Any) -> Any:
        """The forward kernel call with variant module ``mod`` (the family's interface)."""
        return mod.forward(x, w, b, *self.args())

    def backward(self, mod: ModuleType, gy: Any, x: Any, w: Any, need_x: bool, need_w: bool):
        """(gx, gw), None where not needed."""
        return mod.backward(gy, x, w, *self.args(), need_x, need_w)

    def backward_trial(self, mod, out, inputs, needs):
        """The backward kernel call as autotune times it, on the forward's output (see
        ``KernelCall``).
        """
        x, w = inputs[0], inputs[1]
        return self.backward(mod, out, x, w, bool(needs[0]), bool(needs[1]))


@dataclass(frozen=True)
class Conv2dCall(ConvLikeCall):
    """A conv2d call: input and weight shapes, the (h, w) argument pairs, groups, dtype."""

    op: ClassVar[str] = "conv2d"
    functional: ClassVar[str] = "conv2d"
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    dtype: str

    @classmethod
    def of(cls, x, w, stride, padding, dilation, groups) -> Conv2dCall:
        """The record of a call on these arrays and arguments (shapes and dtype read from the
        arrays).
        """
        return cls(
            pair(x.shape), pair(w.shape), pair(stride), pair(padding), pair(dilation),
            int(groups), x.dtype.str,
        )  # fmt: skip

    def args(self) -> tuple:
        """The arguments after the arrays, in the variant interface's order."""
        return (self.stride, self.padding, self.dilation, self.groups)

    def out_hw(self) -> tuple[int, int]:
        """The output's (height, width)."""
        kh, kw = self.w_shape[2:]
        h, w = self.x_shape[2:]
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (
            w + 2 * pw - dw * (kw - 1) - 1
        ) // sw + 1

    def macs(self) -> int:
        """Multiply-adds of the forward call (twice this is its FLOP count)."""
        n, o = self.x_shape[0], self.w_shape[0]
        ho, wo = self.out_hw()
        return n * o * ho * wo * self.w_shape[1] * self.w_shape[2] * self.w_shape[3]

    def bench_params(self) -> dict[str, Any]:
        """The ``bench`` case parameters of this call (None when it is not a bench case)."""
        n, c, h, w = self.x_shape
        return {
            "N": n, "C": c, "H": h, "W": w, "O": self.w_shape[0],
            "k": (self.w_shape[2], self.w_shape[3]), "stride": self.stride,
            "padding": self.padding, "dilation": self.dilation, "groups": self.groups,
        }  # fmt: skip


_P = __name__
register("conv2d", "reference", f"{_P}.reference")
register("conv2d", "im2col-numba", f"{_P}.im2col_numba")
register("conv2d", "im2col-cython", f"{_P}.im2col_cy")
register("conv2d", "direct-numba", f"{_P}.direct_numba")
register("conv2d", "direct-cython", f"{_P}.direct_cy")
register("conv2d", "winograd-numba", f"{_P}.winograd_numba")
register("conv2d", "winograd-cython", f"{_P}.winograd_cy")
register("conv2d", "pointwise-cython", f"{_P}.pointwise_cy")
register("conv2d", "blocked-cython", f"{_P}.blocked_cy")
register("conv2d", "flat-cython", f"{_P}.flat_cy")
register("conv2d", "chvec-cython", f"{_P}.chvec_cy")


# Below this many multiply-adds per call the direct kernels win (no column buffer, no
# BLAS call, less fixed cost per call). Above it im2col + one GEMM wins by far: measured
# at 1 thread, im2col-cython ran LeNet-5's conv layers (1->6 ch 28x28 5x5 N=64, 7.5M MACs;
# 6->16 ch 14x14 N=64, 15M) and 3->16 ch 32x32 N=32 (14M) several times faster than
# direct-cython forward and backward; direct only won calls of a few 10k MACs (1->4 ch
# 8x8). Cython before Numba: faster on every shape measured.
_DIRECT_MACS = 100_000


def _winograd_applies(call: Conv2dCall) -> bool:
    """A 3x3 kernel, stride 1, dilation 1, one group: the calls Winograd F(2x2, 3x3) runs."""
    return (
        tuple(call.w_shape[2:]) == (3, 3)
        and call.stride == (1, 1)
        and call.dilation == (1, 1)
        and call.groups == 1
    )


# 3x3 stride-1 calls with at least 16 channels in and out and 512 output pixels (32x32 and
# 24x24 images): winograd-cython first (each thread transforms, multiplies and folds its own
# blocks of tiles), ahead of im2col-cython at these sizes forward and with both gradients
# (benchmarks/results/conv-targets.md, winograd-profile.md). On
# smaller images (8x8, 32->64 ch) or fewer channels (8, or 3 in with the input gradient)
# its transforms cost more than the multiplications saved, and im2col-cython leads. Outputs
# of 64 to 511 pixels (8x8 to 16x16 and up to about 22x22) go to winograd-cython only with 64 or
# more channels in and out (resnet8's 8x8 64->64 layer, vgg_small's 16x16 64->64): its
# blocks hold tiles of several images, its forward and input gradient led im2col-cython's
# there and it hands the weight gradient to im2col-cython's; with 32 channels on either
# side (vgg_small's 16x16 32->64) im2col-cython ran ahead forward + backward
# (benchmarks/results/winograd-wgrad.md). Outputs of 256 to 511 pixels (16x16 up to about
# 22x22) also go to winograd-cython from 32 channels when the input has at least as many
# channels as the output (resnet8's 16x16 32->32 layer): its forward and input gradient
# led im2col-cython's there at 1 and 2 threads, while with more channels out than in
# (32->64) the two ran level (benchmarks/results/winograd-mid-channels.md).
# winograd-numba (transforms, GEMMs and fold as three parallel steps per block) comes
# after im2col-cython.
_WINOGRAD_MIN_CHANNELS = 16
_WINOGRAD_MIN_PIXELS = 512
_WINOGRAD_SMALL_MIN_CHANNELS = 64
_WINOGRAD_SMALL_MIN_PIXELS = 64
_WINOGRAD_MID_MIN_CHANNELS = 32
_WINOGRAD_MID_MIN_PIXELS = 256


def _winograd_leads(call: Conv2dCall) -> bool:
    ho, wo = call.out_hw()
    c, o = call.x_shape[1], call.w_shape[0]
    channels = min(c, o)
    if ho * wo >= _WINOGRAD_MIN_PIXELS:
        return channels >= _WINOGRAD_MIN_CHANNELS
    if ho * wo >= _WINOGRAD_MID_MIN_PIXELS and c >= o >= _WINOGRAD_MID_MIN_CHANNELS:
        return True
    return ho * wo >= _WINOGRAD_SMALL_MIN_PIXELS and channels >= _WINOGRAD_SMALL_MIN_CHANNELS


# 1x1 kernels without padding, one group, any stride: pointwise-cython first (each thread
# multiplies whole images as they lie, gathering the sampled pixels when strided), ahead of
# im2col-cython's one multithreaded GEMM per image (benchmarks/results/conv-small-channels.md).
def _pointwise_applies(call: Conv2dCall) -> bool:
    return tuple(call.w_shape[2:]) == (1, 1) and not any(call.padding) and call.groups == 1


# Stride-1 calls (one group, dilation 1) with a short reduction (4 or more input channels,
# input channels x kernel taps at most 160) into 8 or more output channels: blocked-cython
# first (direct convolution with 8 output channels x 16 columns of accumulators in vector
# registers, no column buffer), ahead of Winograd and im2col, whose transforms, unfold and
# small GEMMs cost more than the arithmetic at these sizes (resnet8's 16-channel layers,
# lenet5's 6->16; benchmarks/results/conv-small-channels.md). Strided calls and wider
# reductions ran level with im2col-cython or behind it; below 8 output channels most
# accumulators idle.
_BLOCKED_MAX_REDUCTION = 160
_BLOCKED_MIN_OUT = 8
_BLOCKED_MIN_IN = 4  # one input channel (resnet8's first layer): im2col-cython ran ahead
# outputs of fewer pixels (lenet5's 10x10 6->16): im2col-cython, which multiplies blocks of
# small-plane images in one GEMM, ran ahead forward and with both gradients
_BLOCKED_MIN_PIXELS = 144


def _blocked_leads(call: Conv2dCall) -> bool:
    c, kh, kw = call.w_shape[1:]
    ho, wo = call.out_hw()
    return (
        ho * wo >= _BLOCKED_MIN_PIXELS
        and call.groups == 1
        and call.stride == (1, 1)
        and call.dilation == (1, 1)
        and c * kh * kw <= _BLOCKED_MAX_REDUCTION
        and call.w_shape[0] >= _BLOCKED_MIN_OUT
        and c >= _BLOCKED_MIN_IN
    )


# Stride-1 3x3 and 5x5 calls (one group, dilation 1) into exactly 16 output channels (one
# float32 vector) from 4 or more input channels, reduction at most 160: chvec-cython first
# (output channels across the vector lanes, one accumulator vector per output column, the
# weight gradient with one accumulator vector per tap): ahead of im2col-cython forward and
# weight gradient on lenet5's 6->16 5x5 layer (10x10 outputs), level with or slightly ahead
# of blocked-cython on resnet8's 16->16 3x3 layers at 1 and 2 threads
# (benchmarks/results/conv-small-channels.md).
_CHVEC_OUT = 16


def _chvec_leads(call: Conv2dCall) -> bool:
    c, kh, kw = call.w_shape[1:]
    return (
        call.w_shape[0] == _CHVEC_OUT
        and (kh, kw) in ((3, 3), (5, 5))
        and call.groups == 1
        and call.stride == (1, 1)
        and call.dilation == (1, 1)
        and c >= _BLOCKED_MIN_IN
        and c * kh * kw <= _BLOCKED_MAX_REDUCTION
    )


# Wider stride-1 3x3 and 5x5 calls (one group, dilation 1): 16 or more output channels, 4 or
# more input channels, fewer than 128 channels on one side at least, a reduction (input
# channels x taps) below 1152, and a batch of at least one image per thread (chvec-cython's
# threads take whole images): chvec-cython first, ahead of winograd-cython, im2col-cython
# and blocked-cython forward + backward at 1 and 2 threads on the zoo's 3x3 layers
# (vgg_small's 32x32 32->32, 16x16 32->64 and 64->64, resnet8's 16x16 32->32 and 8x8
# 64->64), 5x5 layers of 16 and 32 channels, and output counts that are not a multiple of
# 16 (24, 48): its accumulators stay in vector registers and it needs no column buffer,
# transform or GEMM call (benchmarks/results/chvec-wide.md). Winograd kept its lead on
# 8x8 outputs with 128 channels in and out; one input channel keeps im2col-cython.
_CHVEC_WIDE_MIN_OUT = 16
_CHVEC_WIDE_MAX_CHANNELS = 128  # on the narrower side
_CHVEC_WIDE_MAX_REDUCTION = 1152


def _chvec_wide_leads(call: Conv2dCall) -> bool:
    c, kh, kw = call.w_shape[1:]
    o = call.w_shape[0]
    return (
        (kh, kw) in ((3, 3), (5, 5))
        and call.groups == 1
        and call.stride == (1, 1)
        and call.dilation == (1, 1)
        and c >= _BLOCKED_MIN_IN
        and o >= _CHVEC_WIDE_MIN_OUT
        and min(c, o) < _CHVEC_WIDE_MAX_CHANNELS
        and c * kh * kw < _CHVEC_WIDE_MAX_REDUCTION
        and call.x_shape[0] >= _threads.get_num_threads()
    )


# Strided calls (stride 2 or 3, one group, dilation 1, kernels wider than 1x1) with 4 or more input
# channels, 8 to 64 output channels (to 128 with 32 or more input channels) and a reduction of at
# most 3200 (input channels x kernel taps): flat-cython first (direct convolution over the input's
# phase planes in flat tiles of output positions; the input gradient as per-phase stride-1
# convolutions, no scatter), ahead of im2col-cython forward and input gradient at these sizes
# (resnet8's stride-2 3x3 layers, 16->32 and 32->64; the 5x5 stride-2 32->48 layer;
# benchmarks/results/conv-targets.md). Outputs of fewer than 128 flattened positions keep
# im2col-cython, which multiplies blocks of small-plane images in one GEMM, unless there are 32 or
# more output channels and at least 56 positions (resnet8's 8x8 32->64 layer, conv_autoencoder's 7x7
# 16->32 layer, 8x8 32->32): there flat-cython's channel-lane tiles (no positions rounded up to 48,
# the weight gradient skipping the columns past each row) led im2col-cython in each pass at 1 and 2
# threads (benchmarks/results/strided-conv.md). At 1 and 2 threads alike: with the stride-2 phase
# planes built from one load pair per image row and the input gradient's column phases interleaved
# in registers, flat-cython also leads at 2 threads on the short reductions (144: resnet8's and
# conv_autoencoder's 16->32 3x3 layers), where im2col-cython led before
# (benchmarks/results/stride2-two-threads.md). Past 64 output channels or a reduction of 800 (64->64
# and 128->64 5x5 layers, 64->128 and 128->128 3x3 and 5x5 ones) flat-cython led im2col-cython in
# each pass too; with 192 or 256 output channels, or 128 from 8 or 16 input channels, its
# input gradient fell behind (benchmarks/results/strided-conv-wide.md).
_FLAT_MAX_REDUCTION = 3200
_FLAT_MAX_OUT = 64
_FLAT_WIDE_MAX_OUT = 128
_FLAT_WIDE_MIN_IN = 32
_FLAT_MIN_POSITIONS = 128
_FLAT_LANES_MIN_OUT = 32  # flat-cython's channel-lane tiles (its _CL_MIN_OUT)
_FLAT_LANES_MIN_POSITIONS = 56


def _flat_leads(call: Conv2dCall) -> bool:
    c, kh, kw = call.w_shape[1:]
    ho, wo = call.out_hw()
    positions = ho * (wo + (kw - 1) // max(1, call.stride[1]))
    lanes = call.w_shape[0] >= _FLAT_LANES_MIN_OUT and positions >= _FLAT_LANES_MIN_POSITIONS
    return (
        (positions >= _FLAT_MIN_POSITIONS or lanes)
        and call.groups == 1
        and call.stride[0] == call.stride[1]
        and call.stride[0] in (2, 3)
        and call.dilation == (1, 1)
        and (kh, kw) != (1, 1)
        and c >= _BLOCKED_MIN_IN
        and _BLOCKED_MIN_OUT <= call.w_shape[0] <= _FLAT_WIDE_MAX_OUT
        and (call.w_shape[0] <= _FLAT_MAX_OUT or c >= _FLAT_WIDE_MIN_IN)
        and c * kh * kw <= _FLAT_MAX_REDUCTION
    )


# float32 3x3 stride-1 calls on builds with winograd-cython's vector-register F(4x4, 3x3) path
# (AVX-512): winograd-cython first, ahead of the wide chvec-cython lead, on outputs of 400 pixels or
# more (20x20) with 32 or more channels in and out and on outputs of 256 pixels or more (16x16) with
# 64 or more: its forward and input gradient ran at 0.55 to 0.8 of chvec-cython's time there at 1
# and 2 threads (on 20x20 to 28x28 outputs with 32 to 48 channels, each pass 0.66-1.05 of
# chvec-cython's process CPU time at 1 thread, the forward + backward 0.78-0.99: winograd-f4.md);
# its weight gradient is chvec-cython's on 32x32 outputs and its own channel-lane Winograd one on
# 16x16 (benchmarks/results/winograd-small-planes.md). With fewer channels (16->16 at 32x32, 32->32
# and 32->64 at 16x16) and on 8x8 outputs chvec-cython ran level or ahead
# (benchmarks/results/winograd-f4.md).
_WINOGRAD_F4_MIN_CHANNELS = 32
_WINOGRAD_F4_MIN_PIXELS = 400
_WINOGRAD_F4_MID_MIN_CHANNELS = 64
_WINOGRAD_F4_MID_MIN_PIXELS = 256


@cache
def _winograd_module() -> ModuleType | None:
    """winograd-cython's module (None where it is not built), loaded as the registry loads
    variants (``threads.import_extension``): a plain import after ``import torch`` would
    bind it, and the conv modules it imports, to PyTorch's OpenMP runtime."""
    try:
        return _threads.import_extension(f"{_P}.winograd_cy")
    except ImportError:
        return None


def _winograd_fast4() -> bool:
    """Whether winograd-cython builds here with its vector-register F(4x4, 3x3) path."""
    winograd_cy = _winograd_module()
    return winograd_cy is not None and bool(winograd_cy.fast4_available())


def _winograd_f4_leads(call: Conv2dCall) -> bool:
    if call.dtype != "<f4" or not _winograd_applies(call):
        return False
    ho, wo = call.out_hw()
    channels = min(call.x_shape[1], call.w_shape[0])
    if min(ho, wo) < 16:
        return False
    if ho * wo >= _WINOGRAD_F4_MIN_PIXELS:
        wins = channels >= _WINOGRAD_F4_MIN_CHANNELS
    else:
        wins = ho * wo >= _WINOGRAD_F4_MID_MIN_PIXELS and channels >= _WINOGRAD_F4_MID_MIN_CHANNELS
    return wins and _winograd_fast4()


# float32 3x3 stride-1 calls with outputs of at most 32x32 and 32 or more channels in and out
# (resnet8's 16x16 32->32 and 8x8 64->64, vgg_small's 16x16 32->64), a batch of at least
# one image per thread: winograd-cython first, ahead of the wide chvec-cython lead, when it
# runs them as F(2x2, 3x3) with channels across the vector lanes (chvec-cython's
# ``winograd2_threads``): its forward and input gradient ran ahead of chvec-cython's direct
# ones there (benchmarks/results/resnet8-3x3.md, winograd-lanes-zen5.md); its weight gradient
# is Winograd with channels across the lanes too (benchmarks/results/winograd-small-planes.md).
_LANES_LEAD = True  # off: the rule before this lead (benchmarks/resnet8_3x3.py --steps)


def _winograd_lanes_leads(call: Conv2dCall) -> bool:
    if not _LANES_LEAD or call.dtype != "<f4" or not _winograd_applies(call):
        return False
    winograd_cy = _winograd_module()
    if winograd_cy is None:
        return False
    ho, wo = call.out_hw()
    return (
        bool(winograd_cy._uses_lanes(call.x_shape[1], call.w_shape[0], ho, wo, call.x_shape[0]))
        and call.x_shape[0] >= _threads.get_num_threads()
    )


def _conv2d_rule(call: Conv2dCall) -> list[str]:
    order = _conv2d_order(call)
    try:
        f4 = _winograd_f4_leads(call) or _winograd_lanes_leads(call)
        wide = not f4 and order[0] != "chvec-cython" and _chvec_wide_leads(call)
    except (AttributeError, TypeError, ValueError):
        return order
    if f4:
        return ["winograd-cython", *(v for v in order if v != "winograd-cython")]
    if wide:
        return ["chvec-cython", *order]
    return order


def _conv2d_order(call: Conv2dCall) -> list[str]:
    """The rule's order before the wide chvec-cython lead (see ``_chvec_wide_leads``)."""
    try:
        macs = call.macs()
        winograd = _winograd_applies(call)
        leads = winograd and _winograd_leads(call)
        pointwise = _pointwise_applies(call)
        blocked = _blocked_leads(call)
        chvec = _chvec_leads(call)
        flat = _flat_leads(call)
    except (AttributeError, TypeError, ValueError):
        return ["im2col-cython", "im2col-numba"]
    if macs < _DIRECT_MACS:
        return ["direct-cython", "direct-numba", "im2col-cython", "im2col-numba"]
    if pointwise:
        return ["pointwise-cython", "im2col-cython", "im2col-numba"]
    if chvec:
        return ["chvec-cython", "blocked-cython", "im2col-cython", "im2col-numba"]
    if blocked and winograd:
        return ["blocked-cython", "winograd-cython", "im2col-cython", "winograd-numba",
                "im2col-numba"]  # fmt: skip
    if blocked:
        return ["blocked-cython", "im2col-cython", "im2col-numba"]
    if flat:
        return ["flat-cython", "im2col-cython", "im2col-numba"]
    if leads:
        return ["winograd-cython", "im2col-cython", "winograd-numba", "im2col-numba"]
    if winograd:
        return ["im2col-cython", "winograd-cython", "winograd-numba", "im2col-numba"]
    return ["im2col-cython", "im2col-numba"]


set_rule("conv2d", _conv2d_rule)


# example calls, determinism row and bench case (kernels/examples.py), shared helpers in .cases
Conv2dCall.examples = _cases.CONV2D_EXAMPLES
Conv2dCall.determinism = _cases.CONV2D_DETERMINISM
Conv2dCall.bench = _cases.CONV2D_BENCH
