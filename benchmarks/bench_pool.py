"""pytest-benchmark suite for pooling: every variant of max_pool2d, avg_pool2d and
adaptive_avg_pool2d, forward and forward+backward.

    pytest benchmarks/bench_pool.py --benchmark-only

Benchmark groups are one case and direction each, so the variants line up side by side.
"""

from __future__ import annotations

import numpy as np
import pytest
from _grid import case_params

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

# (op, label, x shape, positional args after the input)
CASES = [
    ("max_pool2d", "N64 64ch 32x32 k2", (64, 64, 32, 32), (2,)),
    ("max_pool2d", "N32 64ch 32x32 k3 s2 p1 ceil", (32, 64, 32, 32), (3, 2, 1, 1, True)),
    ("avg_pool2d", "N64 64ch 32x32 k2", (64, 64, 32, 32), (2,)),
    ("avg_pool2d", "N32 64ch 31x31 k3 s2 p1 ceil", (32, 64, 31, 31), (3, 2, 1, True, False)),
    ("adaptive_avg_pool2d", "N64 256ch 8x8 global", (64, 256, 8, 8), (1,)),
    ("adaptive_avg_pool2d", "N32 64ch 30x30 to 7x7", (32, 64, 30, 30), ((7, 7),)),
]


@pytest.mark.parametrize("case, variant, direction", case_params(CASES))
def test_pool(benchmark, case, variant, direction):
    op, label, xs, args = case
    x = np.random.default_rng(0).standard_normal(xs).astype(np.float32)
    backward = direction == "both"
    benchmark.group = f"{op} {label} {direction}"
    benchmark.name = variant
    gx = tg.Tensor(x, requires_grad=backward)
    ff = getattr(F, op)
    gy = None

    def run():
        nonlocal gy
        y = ff(gx, *args)
        if backward:
            gx.grad = None
            if gy is None:
                gy = np.ones(y.shape, np.float32)
            y.backward(gy)

    with K.use(**{op: variant}):
        run()  # warm-up: JIT compilation, never timed
        benchmark.pedantic(run, rounds=7, warmup_rounds=1)
