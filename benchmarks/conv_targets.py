"""tapegrad's convolution targets against PyTorch, each framework in its own process.

Every case of the convolution targets table (float32, 2 threads each, or --threads): one process per
framework runs every case (warm-up, then ``--repeats`` timed calls, median), and the
processes alternate over ``--rounds`` rounds (tapegrad first in even rounds, PyTorch first
in odd ones); the table gives the median of the rounds' medians, their spread (min-max),
tapegrad's median over PyTorch's, the variant ``auto`` picked, and the share of the
machine's limit: GFLOP/s over a large float32 ``np.matmul``'s rate for convolutions
(direct-convolution FLOPs, 2 per multiply-add), the bytes moved over ``np.copyto``'s rate
for depthwise ones (both measured in their own process), and for depthwise cases each
kernel pass timed alone against the copy time of the bytes it reads and writes. OpenBLAS's
core-type pins (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``) are removed from both
frameworks' environments. For the conv2d forward + backward cases each pass is also timed
alone (forward, input gradient, weight gradient; tapegrad's variant ``auto`` picks called
directly, PyTorch's ``convolution_backward`` with one gradient asked for), one process per
framework. The strided conv2d cases' kernels (``flat-cython``, ``im2col-cython``) are also
timed forward + backward, called directly and alternated, at 1 thread and at ``--threads``
(one process each), with the variant ``auto`` picks at each count. The Winograd variants'
float32 error against the float64 reference is printed after the table.

    python benchmarks/conv_targets.py [--rounds 3] [--repeats 7] [--only TEXT] [--threads 2]
        [--cases targets|other] [--out FILE.md]

``--only`` keeps the cases whose name contains TEXT (e.g. ``depthwise``); repeat it to keep
several kinds. ``--threads`` sets both frameworks' thread count (default 2). ``--cases other``
runs other shapes of the same kinds instead (``OTHER_CASES``), each held to its kind's target.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np
from _report import finish, uptime
from _timing import kernel_passes, median_ms, median_s, run_worker


@dataclass(frozen=True)
class Case:
    name: str
    fn: str  # conv2d | conv_transpose2d
    x: tuple[int, int, int, int]
    w: tuple[int, int, int, int]
    stride: int
    padding: int
    groups: int
    backward: bool
    target: float
    kind: str  # gemm | copy
    output_padding: int = 0  # conv_transpose2d only


THREADS = 2  # each framework's thread count (--threads)
_ROLE = ""  # the conv-passes worker's side

CASES = [
    Case("conv2d 3x3 N=32 64->64 32x32 pad 1: fwd", "conv2d", (32, 64, 32, 32), (64, 64, 3, 3),
         1, 1, 1, False, 0.8, "gemm"),
    Case("conv2d 3x3 N=32 64->64 32x32 pad 1: fwd+bwd", "conv2d", (32, 64, 32, 32),
         (64, 64, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("conv2d 3x3 N=64 16->16 32x32 pad 1: fwd+bwd", "conv2d", (64, 16, 32, 32),
         (16, 16, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("conv2d 5x5 s2 N=16 32->48 28x28 pad 2: fwd+bwd", "conv2d", (16, 32, 28, 28),
         (48, 32, 5, 5), 2, 2, 1, True, 1.0, "gemm"),
    Case("conv2d 1x1 N=32 64->128 16x16: fwd+bwd", "conv2d", (32, 64, 16, 16),
         (128, 64, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("resnet8 3x3 s2 N=64 16->32 32x32 pad 1: fwd+bwd", "conv2d", (64, 16, 32, 32),
         (32, 16, 3, 3), 2, 1, 1, True, 1.0, "gemm"),
    Case("resnet8 3x3 s2 N=64 32->64 16x16 pad 1: fwd+bwd", "conv2d", (64, 32, 16, 16),
         (64, 32, 3, 3), 2, 1, 1, True, 1.0, "gemm"),
    Case("conv2d 3x3 s2 N=64 16->32 28x28 pad 1: fwd+bwd", "conv2d",
         (64, 16, 28, 28), (32, 16, 3, 3), 2, 1, 1, True, 1.0, "gemm"),
    # conv_autoencoder's two encoder layers on its 28x28 images (the second sees 14x14)
    Case("conv_autoencoder 3x3 s2 N=64 1->16 28x28 pad 1: fwd+bwd", "conv2d",
         (64, 1, 28, 28), (16, 1, 3, 3), 2, 1, 1, True, 1.0, "gemm"),
    Case("conv_autoencoder 3x3 s2 N=64 16->32 14x14 pad 1: fwd+bwd", "conv2d",
         (64, 16, 14, 14), (32, 16, 3, 3), 2, 1, 1, True, 1.0, "gemm"),
    Case("resnet8 1x1 s2 N=64 16->32 32x32: fwd+bwd", "conv2d", (64, 16, 32, 32),
         (32, 16, 1, 1), 2, 0, 1, True, 1.0, "gemm"),
    Case("lenet5 5x5 N=64 1->6 28x28 pad 2: fwd+bwd", "conv2d", (64, 1, 28, 28),
         (6, 1, 5, 5), 1, 2, 1, True, 1.0, "gemm"),
    Case("lenet5 5x5 N=64 6->16 14x14: fwd+bwd", "conv2d", (64, 6, 14, 14),
         (16, 6, 5, 5), 1, 0, 1, True, 1.0, "gemm"),
    # vgg_small's 3x3 layers (width 32, 32x32 input, batch 64)
    Case("vgg_small 3x3 N=64 32->32 32x32 pad 1: fwd+bwd", "conv2d", (64, 32, 32, 32),
         (32, 32, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("vgg_small 3x3 N=64 32->64 16x16 pad 1: fwd+bwd", "conv2d", (64, 32, 16, 16),
         (64, 32, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("vgg_small 3x3 N=64 64->64 16x16 pad 1: fwd+bwd", "conv2d", (64, 64, 16, 16),
         (64, 64, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    # resnet8's stride-1 layer of its last stage (8x8 images): a 3x3 stride-1 layer, held to
    # that kind's 0.8
    Case("resnet8 3x3 N=64 64->64 8x8 pad 1: fwd+bwd", "conv2d", (64, 64, 8, 8),
         (64, 64, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("depthwise 3x3 N=32 128ch 32x32 pad 1: fwd", "conv2d", (32, 128, 32, 32),
         (128, 1, 3, 3), 1, 1, 128, False, 0.5, "copy"),
    Case("depthwise 3x3 N=32 128ch 32x32 pad 1: fwd+bwd", "conv2d", (32, 128, 32, 32),
         (128, 1, 3, 3), 1, 1, 128, True, 0.6, "copy"),
    Case("depthwise 3x3 s2 N=32 256ch 16x16 pad 1: fwd+bwd", "conv2d", (32, 256, 16, 16),
         (256, 1, 3, 3), 2, 1, 256, True, 0.7, "copy"),
    Case("depthwise 5x5 N=32 128ch 32x32 pad 2: fwd+bwd", "conv2d", (32, 128, 32, 32),
         (128, 1, 5, 5), 1, 2, 128, True, 0.6, "copy"),
    Case("depthwise 5x5 s2 N=32 256ch 16x16 pad 2: fwd+bwd", "conv2d", (32, 256, 16, 16),
         (256, 1, 5, 5), 2, 2, 256, True, 0.7, "copy"),
    # mobilenet_small's depthwise layers (width 32, 32x32 input, batch 64)
    Case("depthwise mobilenet_small dw1 3x3 N=64 32ch 32x32: fwd+bwd", "conv2d",
         (64, 32, 32, 32), (32, 1, 3, 3), 1, 1, 32, True, 0.6, "copy"),
    Case("depthwise mobilenet_small dw2 3x3 s2 N=64 64ch 32x32: fwd+bwd", "conv2d",
         (64, 64, 32, 32), (64, 1, 3, 3), 2, 1, 64, True, 0.7, "copy"),
    Case("depthwise mobilenet_small dw3 3x3 N=64 128ch 16x16: fwd+bwd", "conv2d",
         (64, 128, 16, 16), (128, 1, 3, 3), 1, 1, 128, True, 0.6, "copy"),
    Case("depthwise mobilenet_small dw4 3x3 s2 N=64 128ch 16x16: fwd+bwd", "conv2d",
         (64, 128, 16, 16), (128, 1, 3, 3), 2, 1, 128, True, 0.7, "copy"),
    Case("depthwise mobilenet_small dw5 3x3 s2 N=64 256ch 8x8: fwd+bwd", "conv2d",
         (64, 256, 8, 8), (256, 1, 3, 3), 2, 1, 256, True, 0.7, "copy"),
    Case("conv_transpose2d 4x4 s2 p1 N=32 64->32 16->32: fwd+bwd", "conv_transpose2d",
         (32, 64, 16, 16), (64, 32, 4, 4), 2, 1, 1, True, 0.9, "gemm"),
    Case("conv_transpose2d 4x4 s2 p1 N=32 64->32 16->32: fwd", "conv_transpose2d",
         (32, 64, 16, 16), (64, 32, 4, 4), 2, 1, 1, False, 0.9, "gemm"),
    Case("conv_transpose2d 3x3 s2 p1 op1 N=64 32->16 7->14 (autoencoder): fwd+bwd",
         "conv_transpose2d", (64, 32, 7, 7), (32, 16, 3, 3), 2, 1, 1, True, 1.0, "gemm", 1),
    Case("conv_transpose2d 3x3 s2 p1 op1 N=64 16->1 14->28 (autoencoder): fwd+bwd",
         "conv_transpose2d", (64, 16, 14, 14), (16, 1, 3, 3), 2, 1, 1, True, 1.0, "gemm", 1),
]  # fmt: skip


# Other shapes of the same kinds (``--cases other``), each held to its kind's target: 3x3
# stride-1 layers on large, small and non-multiple-of-16 channel counts and planes, a
# 3-channel first layer, 5x5 stride 2 on odd planes, 1x1 layers wide and narrow, depthwise on
# 56x56 and 4x4 planes and with 96 channels, transposed convolutions one size up and down.
OTHER_CASES = [
    Case("conv2d 3x3 N=32 128->128 8x8 pad 1: fwd+bwd", "conv2d", (32, 128, 8, 8),
         (128, 128, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("conv2d 3x3 N=16 32->32 64x64 pad 1: fwd+bwd", "conv2d", (16, 32, 64, 64),
         (32, 32, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("conv2d 3x3 N=32 48->48 24x24 pad 1: fwd+bwd", "conv2d", (32, 48, 24, 24),
         (48, 48, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("conv2d 3x3 N=32 3->32 32x32 pad 1: fwd+bwd", "conv2d", (32, 3, 32, 32),
         (32, 3, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("conv2d 3x3 N=32 64->64 30x30 pad 0: fwd+bwd", "conv2d", (32, 64, 30, 30),
         (64, 64, 3, 3), 1, 0, 1, True, 0.8, "gemm"),
    Case("conv2d 5x5 s2 N=32 16->32 32x32 pad 2: fwd+bwd", "conv2d", (32, 16, 32, 32),
         (32, 16, 5, 5), 2, 2, 1, True, 1.0, "gemm"),
    Case("conv2d 5x5 s2 N=16 64->64 15x15 pad 1: fwd+bwd", "conv2d", (16, 64, 15, 15),
         (64, 64, 5, 5), 2, 1, 1, True, 1.0, "gemm"),
    Case("conv2d 1x1 N=64 32->64 32x32: fwd+bwd", "conv2d", (64, 32, 32, 32),
         (64, 32, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("conv2d 1x1 N=32 256->64 8x8: fwd+bwd", "conv2d", (32, 256, 8, 8),
         (64, 256, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("conv2d 1x1 N=32 24->40 28x28: fwd+bwd", "conv2d", (32, 24, 28, 28),
         (40, 24, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("depthwise 3x3 N=16 64ch 56x56 pad 1: fwd+bwd", "conv2d", (16, 64, 56, 56),
         (64, 1, 3, 3), 1, 1, 64, True, 0.6, "copy"),
    Case("depthwise 3x3 N=64 512ch 4x4 pad 1: fwd+bwd", "conv2d", (64, 512, 4, 4),
         (512, 1, 3, 3), 1, 1, 512, True, 0.6, "copy"),
    Case("depthwise 3x3 s2 N=32 96ch 28x28 pad 1: fwd+bwd", "conv2d", (32, 96, 28, 28),
         (96, 1, 3, 3), 2, 1, 96, True, 0.7, "copy"),
    Case("depthwise 5x5 N=16 96ch 28x28 pad 2: fwd+bwd", "conv2d", (16, 96, 28, 28),
         (96, 1, 5, 5), 1, 2, 96, True, 0.6, "copy"),
    Case("conv_transpose2d 4x4 s2 p1 N=16 128->64 8->16: fwd+bwd", "conv_transpose2d",
         (16, 128, 8, 8), (128, 64, 4, 4), 2, 1, 1, True, 0.9, "gemm"),
    Case("conv_transpose2d 4x4 s2 p1 N=32 32->16 32->64: fwd+bwd", "conv_transpose2d",
         (32, 32, 32, 32), (32, 16, 4, 4), 2, 1, 1, True, 0.9, "gemm"),
    Case("conv_transpose2d 3x3 s2 p1 op1 N=32 64->32 16->32: fwd+bwd", "conv_transpose2d",
         (32, 64, 16, 16), (64, 32, 3, 3), 2, 1, 1, True, 1.0, "gemm", 1),
]  # fmt: skip
# A wider sweep of each kind (``--cases sweep``): batch 1 and large batches, channel counts
# from 8 to 512 that are and are not multiples of 16, planes from 4x4 to 112x112, each held
# to its kind's target. Used to find where a kind is weak, not as a table to tune for.
SWEEP_CASES = [
    Case("sweep 3x3 N=1 64->64 32x32 pad 1: fwd+bwd", "conv2d", (1, 64, 32, 32),
         (64, 64, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=8 64->64 56x56 pad 1: fwd+bwd", "conv2d", (8, 64, 56, 56),
         (64, 64, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=16 96->96 14x14 pad 1: fwd+bwd", "conv2d", (16, 96, 14, 14),
         (96, 96, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=32 16->32 32x32 pad 1: fwd+bwd", "conv2d", (32, 16, 32, 32),
         (32, 16, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=128 32->32 8x8 pad 1: fwd+bwd", "conv2d", (128, 32, 8, 8),
         (32, 32, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=32 256->256 4x4 pad 1: fwd+bwd", "conv2d", (32, 256, 4, 4),
         (256, 256, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=32 24->40 20x20 pad 1: fwd+bwd", "conv2d", (32, 24, 20, 20),
         (40, 24, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=64 8->8 28x28 pad 1: fwd+bwd", "conv2d", (64, 8, 28, 28),
         (8, 8, 3, 3), 1, 1, 1, True, 0.8, "gemm"),
    Case("sweep 3x3 N=32 32->64 16x16 pad 1: fwd", "conv2d", (32, 32, 16, 16),
         (64, 32, 3, 3), 1, 1, 1, False, 0.8, "gemm"),
    Case("sweep 3x3 s2 N=32 64->128 16x16 pad 1: fwd+bwd", "conv2d", (32, 64, 16, 16),
         (128, 64, 3, 3), 2, 1, 1, True, 1.0, "gemm"),
    Case("sweep 5x5 s2 N=8 3->16 64x64 pad 2: fwd+bwd", "conv2d", (8, 3, 64, 64),
         (16, 3, 5, 5), 2, 2, 1, True, 1.0, "gemm"),
    Case("sweep 5x5 s2 N=32 32->64 16x16 pad 2: fwd+bwd", "conv2d", (32, 32, 16, 16),
         (64, 32, 5, 5), 2, 2, 1, True, 1.0, "gemm"),
    Case("sweep 5x5 s2 N=16 48->48 21x21 pad 0: fwd+bwd", "conv2d", (16, 48, 21, 21),
         (48, 48, 5, 5), 2, 0, 1, True, 1.0, "gemm"),
    Case("sweep 1x1 N=16 128->256 14x14: fwd+bwd", "conv2d", (16, 128, 14, 14),
         (256, 128, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("sweep 1x1 N=64 16->16 32x32: fwd+bwd", "conv2d", (64, 16, 32, 32),
         (16, 16, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("sweep 1x1 N=8 512->128 7x7: fwd+bwd", "conv2d", (8, 512, 7, 7),
         (128, 512, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("sweep 1x1 N=1 64->64 32x32: fwd+bwd", "conv2d", (1, 64, 32, 32),
         (64, 64, 1, 1), 1, 0, 1, True, 1.0, "gemm"),
    Case("sweep depthwise 3x3 N=8 32ch 112x112 pad 1: fwd+bwd", "conv2d", (8, 32, 112, 112),
         (32, 1, 3, 3), 1, 1, 32, True, 0.6, "copy"),
    Case("sweep depthwise 3x3 N=16 144ch 28x28 pad 1: fwd+bwd", "conv2d", (16, 144, 28, 28),
         (144, 1, 3, 3), 1, 1, 144, True, 0.6, "copy"),
    Case("sweep depthwise 3x3 N=1 128ch 32x32 pad 1: fwd+bwd", "conv2d", (1, 128, 32, 32),
         (128, 1, 3, 3), 1, 1, 128, True, 0.6, "copy"),
    Case("sweep depthwise 3x3 N=32 256ch 8x8 pad 1: fwd+bwd", "conv2d", (32, 256, 8, 8),
         (256, 1, 3, 3), 1, 1, 256, True, 0.6, "copy"),
    Case("sweep depthwise 3x3 s2 N=16 32ch 112x112 pad 1: fwd+bwd", "conv2d",
         (16, 32, 112, 112), (32, 1, 3, 3), 2, 1, 32, True, 0.7, "copy"),
    Case("sweep depthwise 3x3 s2 N=32 576ch 14x14 pad 1: fwd+bwd", "conv2d",
         (32, 576, 14, 14), (576, 1, 3, 3), 2, 1, 576, True, 0.7, "copy"),
    Case("sweep depthwise 5x5 s2 N=32 240ch 8x8 pad 2: fwd+bwd", "conv2d", (32, 240, 8, 8),
         (240, 1, 5, 5), 2, 2, 240, True, 0.7, "copy"),
    Case("sweep conv_transpose2d 4x4 s2 p1 N=8 256->128 4->8: fwd+bwd", "conv_transpose2d",
         (8, 256, 4, 4), (256, 128, 4, 4), 2, 1, 1, True, 0.9, "gemm"),
    Case("sweep conv_transpose2d 4x4 s2 p1 N=64 16->8 32->64: fwd+bwd", "conv_transpose2d",
         (64, 16, 32, 32), (16, 8, 4, 4), 2, 1, 1, True, 0.9, "gemm"),
    Case("sweep conv_transpose2d 4x4 s2 p1 N=1 64->32 16->32: fwd+bwd", "conv_transpose2d",
         (1, 64, 16, 16), (64, 32, 4, 4), 2, 1, 1, True, 0.9, "gemm"),
    Case("sweep conv_transpose2d 3x3 s2 p1 op1 N=16 48->24 12->24: fwd+bwd",
         "conv_transpose2d", (16, 48, 12, 12), (48, 24, 3, 3), 2, 1, 1, True, 1.0, "gemm", 1),
]  # fmt: skip
_CASE_SETS = {"targets": CASES, "other": OTHER_CASES, "sweep": SWEEP_CASES}
_CASE_SET = "targets"  # --cases


def _out_shape(c: Case) -> tuple[int, int, int, int]:
    n, _, h, w = c.x
    k = c.w[2]
    if c.fn == "conv_transpose2d":
        o = c.w[1] * c.groups
        ho = (h - 1) * c.stride - 2 * c.padding + k + c.output_padding
        return n, o, ho, (w - 1) * c.stride - 2 * c.padding + k + c.output_padding
    o = c.w[0]
    return n, o, (h + 2 * c.padding - k) // c.stride + 1, (w + 2 * c.padding - k) // c.stride + 1


def flops(c: Case) -> float:
    """Direct-convolution FLOPs of the case (forward, or forward + both gradients)."""
    n, cin = c.x[:2]
    k2 = c.w[2] * c.w[3]
    if c.fn == "conv_transpose2d":
        macs = n * cin * c.x[2] * c.x[3] * c.w[1] * k2
    else:
        _, o, ho, wo = _out_shape(c)
        macs = n * o * ho * wo * (cin // c.groups) * k2
    return 2.0 * macs * (3 if c.backward else 1)


def bytes_moved(c: Case) -> float:
    """Bytes a depthwise case must read and write: x and y forward; gy, x read and gx
    written backward (float32)."""
    xb = 4 * float(np.prod(c.x))
    yb = 4 * float(np.prod(_out_shape(c)))
    return xb + yb + ((yb + 2 * xb) if c.backward else 0)


def pass_bytes(c: Case) -> dict[str, float]:
    """Bytes each depthwise kernel pass reads and writes (float32): forward x and y; input
    gradient gy and gx; weight gradient gy and x."""
    xb = 4 * float(np.prod(c.x))
    yb = 4 * float(np.prod(_out_shape(c)))
    return {"forward": xb + yb, "input gradient": yb + xb, "weight gradient": yb + xb}


def _arrays(c: Case):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(c.x).astype(np.float32)
    w = (rng.standard_normal(c.w) * 0.05).astype(np.float32)
    ob = c.w[1] * c.groups if c.fn == "conv_transpose2d" else c.w[0]
    b = rng.standard_normal(ob).astype(np.float32)
    gy = np.random.default_rng(1).standard_normal(_out_shape(c)).astype(np.float32)
    return x, w, b, gy


def _selected(only: list[str]) -> list[Case]:
    """The cases whose name contains one of ``only`` (every case when it is empty)."""
    return [c for c in _CASE_SETS[_CASE_SET] if not only or any(t in c.name for t in only)]


def _worker_tapegrad(repeats: int, cases: list[Case]) -> dict:
    import tapegrad as tg
    import tapegrad.kernels as K
    import tapegrad.nn.functional as F

    tg.set_num_threads(THREADS)
    out = {}
    for c in cases:
        x, w, b, gy = _arrays(c)
        tx, tw, tb = (tg.Tensor(a, requires_grad=c.backward) for a in (x, w, b))
        fn = getattr(F, c.fn)
        kw = {"stride": c.stride, "padding": c.padding, "groups": c.groups}
        if c.output_padding:
            kw["output_padding"] = c.output_padding

        def run(fn=fn, tx=tx, tw=tw, tb=tb, kw=kw, gy=gy, c=c):
            y = fn(tx, tw, tb, **kw)
            if c.backward:
                tx.grad = tw.grad = tb.grad = None
                y.backward(gy)

        with K.record() as calls:
            run()
        picked = sorted({K.resolved_name(op, sig) for op, sig in calls})
        out[c.name] = {"ms": median_ms(run, repeats), "variant": ", ".join(picked)}
    return out


def _worker_passes(repeats: int, cases: list[Case]) -> dict:
    """tapegrad's depthwise kernel passes one at a time (the variant ``auto`` picks, called
    directly): forward, input gradient alone, weight gradient alone."""
    import tapegrad as tg
    import tapegrad.kernels as K
    from tapegrad.kernels.depthwise import DepthwiseConv2dCall

    tg.set_num_threads(THREADS)
    out = {}
    for c in cases:
        if c.kind != "copy":
            continue
        x, w, b, gy = _arrays(c)
        s, p = (c.stride, c.stride), (c.padding, c.padding)
        sig = DepthwiseConv2dCall(c.x, c.w, s, p, (1, 1), c.groups, "<f4")
        name = K.resolved_name("depthwise_conv2d", sig)
        mod = K.get("depthwise_conv2d", name)
        runs = kernel_passes(mod, x, w, b, gy, (s, p, (1, 1), c.groups))
        out[c.name] = {k: median_ms(f, repeats) for k, f in runs.items()}
        out[c.name]["variant"] = name
    return out


def _worker_conv_passes(repeats: int, cases: list[Case]) -> dict:
    """Each pass of the conv2d (GEMM-kind) cases alone: tapegrad's variant ``auto`` picks,
    called directly, and PyTorch's forward and ``convolution_backward`` with one gradient
    asked for. Run as two workers (``conv-passes-tapegrad``, ``conv-passes-torch``)."""
    out = {}
    torch_side = _ROLE == "conv-passes-torch"
    if torch_side:
        import torch

        torch.set_num_threads(THREADS)
        cb = torch.ops.aten.convolution_backward
    else:
        import tapegrad as tg
        import tapegrad.kernels as K
        from tapegrad.kernels.conv import Conv2dCall

        tg.set_num_threads(THREADS)
    for c in cases:
        if c.kind != "gemm" or c.fn != "conv2d" or not c.backward:
            continue
        x, w, b, gy = _arrays(c)
        s, p = (c.stride, c.stride), (c.padding, c.padding)
        if torch_side:
            tx, tw, tb, tgy = (torch.tensor(a) for a in (x, w, b, gy))

            def fwd(tx=tx, tw=tw, tb=tb, s=s, p=p):
                with torch.no_grad():
                    torch.nn.functional.conv2d(tx, tw, tb, s, p)

            runs = {
                "forward": fwd,
                "input gradient": lambda tgy=tgy, tx=tx, tw=tw, s=s, p=p: cb(
                    tgy, tx, tw, None, s, p, (1, 1), False, (0, 0), 1, (True, False, False)
                ),
                "weight gradient": lambda tgy=tgy, tx=tx, tw=tw, s=s, p=p: cb(
                    tgy, tx, tw, None, s, p, (1, 1), False, (0, 0), 1, (False, True, False)
                ),
            }
            name = ""
        else:
            sig = Conv2dCall(c.x, c.w, s, p, (1, 1), c.groups, "<f4")
            name = K.resolved_name("conv2d", sig)
            mod = K.get("conv2d", name)
            runs = kernel_passes(mod, x, w, b, gy, (s, p, (1, 1), c.groups))
        out[c.name] = {k: median_ms(f, repeats) for k, f in runs.items()}
        out[c.name]["variant"] = name
    return out


STRIDED_VARIANTS = ("flat-cython", "im2col-cython")


def _strided(c: Case) -> bool:
    """A strided conv2d forward + backward case with a kernel wider than 1x1."""
    return (
        c.fn == "conv2d"
        and c.kind == "gemm"
        and c.backward
        and c.stride > 1
        and (c.w[2:] != (1, 1))
    )


def _worker_strided_variants(repeats: int, cases: list[Case]) -> dict:
    """Kernel-level forward + backward (both gradients) of the strided conv2d cases with
    each of ``STRIDED_VARIANTS`` called directly, the variants alternated call by call,
    median of ``repeats``; and the variant ``auto`` picks at this thread count."""
    import tapegrad as tg
    import tapegrad.kernels as K
    from tapegrad.kernels.conv import Conv2dCall

    tg.set_num_threads(THREADS)
    out = {}
    for c in cases:
        if not _strided(c):
            continue
        x, w, b, gy = _arrays(c)
        a = ((c.stride, c.stride), (c.padding, c.padding), (1, 1), c.groups)
        mods = {v: K.get("conv2d", v) for v in STRIDED_VARIANTS}
        for mod in mods.values():
            for _ in range(2):
                mod.forward(x, w, b, *a)
                mod.backward(gy, x, w, *a, True, True)
        ts: dict[str, list[float]] = {v: [] for v in mods}
        for _ in range(repeats):
            for v, mod in mods.items():
                t0 = time.perf_counter()
                mod.forward(x, w, b, *a)
                mod.backward(gy, x, w, *a, True, True)
                ts[v].append(time.perf_counter() - t0)
        out[c.name] = {v: 1e3 * float(np.median(t)) for v, t in ts.items()}
        out[c.name]["auto"] = K.resolved_name("conv2d", Conv2dCall(c.x, c.w, *a, "<f4"))
    return out


def _worker_torch(repeats: int, cases: list[Case]) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    out = {}
    for c in cases:
        x, w, b, gy = (torch.tensor(a) for a in _arrays(c))
        for t in (x, w, b):
            t.requires_grad_(c.backward)
        fn = getattr(torch.nn.functional, c.fn)
        kw = {"stride": c.stride, "padding": c.padding, "groups": c.groups}
        if c.output_padding:
            kw["output_padding"] = c.output_padding

        def run(fn=fn, x=x, w=w, b=b, kw=kw, gy=gy, c=c):
            if c.backward:
                x.grad = w.grad = b.grad = None
                fn(x, w, b, **kw).backward(gy)
            else:
                with torch.no_grad():
                    fn(x, w, b, **kw)

        out[c.name] = {"ms": median_ms(run, repeats)}
    return out


def _worker_limits() -> dict:
    """float32 np.matmul GFLOP/s (2048^3, 2 threads) and np.copyto GB/s (64 MB, read +
    write counted)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 2048)).astype(np.float32)
    with threadpool_limits(2, user_api="blas"):
        t = median_s(lambda: a @ a, 7)
    src = rng.standard_normal(16 << 20).astype(np.float32)
    dst = np.empty_like(src)
    tc = median_s(lambda: np.copyto(dst, src), 9)
    return {"gemm_gflops": 2 * 2048**3 / t / 1e9, "copy_gbs": 2 * src.nbytes / tc / 1e9}


def _winograd_accuracy() -> list[str]:
    """Each Winograd variant's float32 error against the float64 reference, over the
    output's scale (its standard deviation), unit-variance inputs."""
    import tapegrad.kernels as K

    lines = []
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 64, 32, 32))
    w = rng.standard_normal((64, 64, 3, 3)) / np.sqrt(64 * 9)
    ref = K.get("conv2d", "reference")
    y64 = ref.forward(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    gy = rng.standard_normal(y64.shape)
    gx64, gw64 = ref.backward(gy, x, w, (1, 1), (1, 1), (1, 1), 1, True, True)
    for v in [v for v in K.variants("conv2d") if v.startswith("winograd")]:
        try:
            mod = K.get("conv2d", v)
        except RuntimeError:
            continue
        x32, w32, gy32 = (a.astype(np.float32) for a in (x, w, gy))
        y = mod.forward(x32, w32, None, (1, 1), (1, 1), (1, 1), 1)
        gx, gw = mod.backward(gy32, x32, w32, (1, 1), (1, 1), (1, 1), 1, True, True)
        e_y = float(np.abs(y - y64).max() / y64.std())
        e_gx = float(np.abs(gx - gx64).max() / gx64.std())
        e_gw = float(np.abs(gw - gw64).max() / gw64.std())
        lines.append(
            f"  {v:16} forward {e_y:.2e}   input gradient {e_gx:.2e}   weight gradient {e_gw:.2e}"
        )
    return lines


def _spawn(role: str, repeats: int, only: list[str] | None = None) -> dict:
    args = ["--worker", role, "--repeats", str(repeats), "--threads", str(THREADS)]
    args += ["--cases", _CASE_SET]
    for t in only or []:
        args += ["--only", t]
    return run_worker(__file__, *args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="")
    ap.add_argument("--threads", type=int, default=2, help="each framework's thread count")
    ap.add_argument("--only", action="append", default=[], help="cases whose name has this")
    ap.add_argument(
        "--cases",
        choices=sorted(_CASE_SETS),
        default="targets",
        help="the targets table's cases, other shapes of the same kinds, or a wider sweep",
    )
    ap.add_argument(
        "--worker",
        choices=["tapegrad", "torch", "limits", "accuracy", "passes", "conv-passes-tapegrad",
                 "conv-passes-torch", "strided-variants"],
    )  # fmt: skip
    args = ap.parse_args()
    global THREADS, _ROLE, _CASE_SET
    THREADS, _CASE_SET = args.threads, args.cases
    if args.worker:
        if args.worker == "tapegrad":
            res = _worker_tapegrad(args.repeats, _selected(args.only))
        elif args.worker == "torch":
            res = _worker_torch(args.repeats, _selected(args.only))
        elif args.worker == "passes":
            res = _worker_passes(args.repeats, _selected(args.only))
        elif args.worker.startswith("conv-passes"):
            _ROLE = args.worker
            res = _worker_conv_passes(args.repeats, _selected(args.only))
        elif args.worker == "strided-variants":
            res = _worker_strided_variants(args.repeats, _selected(args.only))
        elif args.worker == "limits":
            res = _worker_limits()
        else:
            res = {"lines": _winograd_accuracy()}
        print(json.dumps(res))
        return

    lines = [f"uptime at start: {uptime()}", ""]
    limits = _spawn("limits", 0)
    cases = _selected(args.only)
    ours: dict[str, list[float]] = {c.name: [] for c in cases}
    theirs: dict[str, list[float]] = {c.name: [] for c in cases}
    picked: dict[str, str] = {}
    for r in range(args.rounds):
        order = ["tapegrad", "torch"] if r % 2 == 0 else ["torch", "tapegrad"]
        for role in order:
            res = _spawn(role, args.repeats, args.only)
            for name, v in res.items():
                (ours if role == "tapegrad" else theirs)[name].append(v["ms"])
                if "variant" in v:
                    picked[name] = v["variant"]
    limits_end = _spawn("limits", 0)
    gemm = (limits["gemm_gflops"] + limits_end["gemm_gflops"]) / 2
    copy = (limits["copy_gbs"] + limits_end["copy_gbs"]) / 2
    lines.append(
        f"float32 np.matmul 2048^3, 2 threads: {limits['gemm_gflops']:.0f} / "
        f"{limits_end['gemm_gflops']:.0f} GFLOP/s (start / end); np.copyto: "
        f"{limits['copy_gbs']:.1f} / {limits_end['copy_gbs']:.1f} GB/s"
    )
    lines.append(
        f"{args.rounds} rounds x {args.repeats} calls, each framework in its own process,"
        f" {THREADS} threads, float32"
    )
    lines.append("")
    lines.append(
        "| case | tapegrad ms (spread) | PyTorch ms (spread) | ratio | target | auto picked "
        "| share of limit |"
    )
    lines.append("| --- | ---: | ---: | ---: | --- | --- | ---: |")
    for c in cases:
        a, b = ours[c.name], theirs[c.name]
        ma, mb = float(np.median(a)), float(np.median(b))
        ratio = ma / mb
        if c.kind == "gemm":
            share = (
                f"{flops(c) / ma / 1e6:.0f} GFLOP/s = {100 * flops(c) / ma / 1e6 / gemm:.0f}% GEMM"
            )
        else:
            rate = bytes_moved(c) / ma / 1e6
            share = (
                f"{rate:.1f} GB/s = {100 * rate / copy:.0f}% copy "
                f"({ma / (bytes_moved(c) / copy / 1e6):.1f}x copy time)"
            )
        ok = "ok" if ratio <= c.target else "miss"
        lines.append(
            f"| {c.name} | {ma:.2f} ({min(a):.1f}-{max(a):.1f}) | {mb:.2f} ({min(b):.1f}-"
            f"{max(b):.1f}) | {ratio:.2f} | <= {c.target} {ok} | {picked.get(c.name, '')} "
            f"| {share} |"
        )
    lines.append("")
    if any(c.kind == "copy" for c in cases):
        passes = _spawn("passes", args.repeats, args.only)
        lines.append(
            f"tapegrad's depthwise kernel passes alone ({THREADS} threads, median of "
            f"{args.repeats}): ms and multiple of the copy time of the bytes each pass reads "
            f"and writes at {copy:.1f} GB/s (goal: 2x or less)"
        )
        lines.append("")
        lines.append("| case | variant | forward | input gradient | weight gradient |")
        lines.append("| --- | --- | ---: | ---: | ---: |")
        for c in cases:
            if c.name not in passes:
                continue
            r, nb = passes[c.name], pass_bytes(c)
            cells = [f"{r[k]:.2f} ({r[k] / (nb[k] / copy / 1e6):.1f}x)" for k in nb]
            lines.append(f"| {c.name} | {r['variant']} | " + " | ".join(cells) + " |")
        lines.append("")
    if any(c.kind == "gemm" and c.fn == "conv2d" and c.backward for c in cases):
        ours_p = _spawn("conv-passes-tapegrad", args.repeats, args.only)
        theirs_p = _spawn("conv-passes-torch", args.repeats, args.only)
        lines.append(
            f"conv2d passes alone ({THREADS} threads, median of {args.repeats}, one process "
            "per framework): tapegrad ms / PyTorch ms = ratio"
        )
        lines.append("")
        lines.append("| case | variant | forward | input gradient | weight gradient |")
        lines.append("| --- | --- | ---: | ---: | ---: |")
        for c in cases:
            if c.name not in ours_p:
                continue
            r, t = ours_p[c.name], theirs_p[c.name]
            keys = ("forward", "input gradient", "weight gradient")
            cells = [f"{r[k]:.2f} / {t[k]:.2f} = {r[k] / t[k]:.2f}" for k in keys]
            lines.append(f"| {c.name} | {r['variant']} | " + " | ".join(cells) + " |")
        lines.append("")
    if any(_strided(c) for c in cases):
        lines.append(
            "Strided conv2d kernels, forward + backward called directly (no op or tape), "
            f"alternated call by call, median of {3 * args.repeats}, one process per thread "
            "count: ms and the variant auto picks at that count"
        )
        lines.append("")
        head = " | ".join(STRIDED_VARIANTS)
        lines.append(f"| case | threads | {head} | auto picks |")
        lines.append("| --- | ---: | " + "---: | " * len(STRIDED_VARIANTS) + "--- |")
        counts = sorted({1, THREADS})
        for n in counts:
            saved, THREADS = THREADS, n
            try:
                res = _spawn("strided-variants", 3 * args.repeats, args.only)
            finally:
                THREADS = saved
            for c in cases:
                if c.name in res:
                    r = res[c.name]
                    cells = " | ".join(f"{r[v]:.2f}" for v in STRIDED_VARIANTS)
                    lines.append(f"| {c.name} | {n} | {cells} | {r['auto']} |")
        lines.append("")
    if any(c.kind == "gemm" and c.fn == "conv2d" for c in cases):
        lines.append("Winograd float32 max error / output std vs the float64 reference:")
        lines += _spawn("accuracy", 0)["lines"]
    finish(lines, args.out)


if __name__ == "__main__":
    main()
