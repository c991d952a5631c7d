"""pytest-benchmark suite for the convolution family: every variant of conv2d,
depthwise_conv2d and conv_transpose2d, forward and forward+backward.

    pytest benchmarks/bench_conv.py --benchmark-only
    pytest benchmarks/bench_conv.py --benchmark-only -k depthwise --benchmark-columns=median

Each benchmark group is one case and direction, so pytest-benchmark's table lines up the
variants of that case. Kernels run on 2 threads (benchmarks/conftest.py); one
warm-up call (JIT compilation, workspace allocation) precedes the timed rounds.
"""

from __future__ import annotations

import numpy as np
import pytest
from _grid import case_params

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

# (op, label, x shape, w shape, F function name, extra positional args after bias)
CASES = [
    ("conv2d", "N32 64>64 32x32 k3 p1", (32, 64, 32, 32), (64, 64, 3, 3), "conv2d", (1, 1)),
    ("conv2d", "N32 3>16 32x32 k3 p1", (32, 3, 32, 32), (16, 3, 3, 3), "conv2d", (1, 1)),
    ("conv2d", "N32 64>128 16x16 k3 s2 p1", (32, 64, 16, 16), (128, 64, 3, 3), "conv2d", (2, 1)),
    ("conv2d", "N8 32>32 16x16 k3 g2", (8, 32, 16, 16), (32, 16, 3, 3), "conv2d", (1, 1, 1, 2)),
    (
        "depthwise_conv2d",
        "N32 128ch 32x32 k3 p1",
        (32, 128, 32, 32),
        (128, 1, 3, 3),
        "conv2d",
        (1, 1, 1, 128),
    ),
    (
        "depthwise_conv2d",
        "N32 64ch x2 16x16 k5 s2 p2",
        (32, 64, 16, 16),
        (128, 1, 5, 5),
        "conv2d",
        (2, 2, 1, 64),
    ),
    (
        "conv_transpose2d",
        "N32 64>32 16>32 k4 s2 p1",
        (32, 64, 16, 16),
        (64, 32, 4, 4),
        "conv_transpose2d",
        (2, 1),
    ),
    (
        "conv_transpose2d",
        "N16 32>16 8>16 k3 s2 p1 op1",
        (16, 32, 8, 8),
        (32, 16, 3, 3),
        "conv_transpose2d",
        (2, 1, 1),
    ),
]


@pytest.mark.parametrize("case, variant, direction", case_params(CASES))
def test_conv(benchmark, case, variant, direction):
    op, label, xs, ws, fn, args = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) * 0.05).astype(np.float32)
    backward = direction == "both"
    benchmark.group = f"{op} {label} {direction}"
    benchmark.name = variant
    gx, gw = tg.Tensor(x, requires_grad=backward), tg.Tensor(w, requires_grad=backward)
    ff = getattr(F, fn)
    gy = None

    def run():
        nonlocal gy
        y = ff(gx, gw, None, *args)
        if backward:
            gx.grad = gw.grad = None
            if gy is None:
                gy = np.ones(y.shape, np.float32)
            y.backward(gy)

    with K.use(**{op: variant}):
        run()  # warm-up: JIT compilation or cache load, never timed
        benchmark.pedantic(run, rounds=7, warmup_rounds=1)
