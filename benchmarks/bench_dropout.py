"""Dropout kernels (forward + backward), every variant side by side (pytest-benchmark).

    pytest benchmarks/bench_dropout.py --benchmark-only

N=64, C=64, 32x32 float32, 2 threads (benchmarks/conftest.py); one group per case.
"""

from __future__ import annotations

import numpy as np
import pytest
from _grid import compared

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

SHAPE = (64, 64, 32, 32)
CASES = ["dropout", "dropout2d", "gaussian_dropout"]


def _params():
    return [pytest.param(case, v, id=f"{case}-{v}") for case in CASES for v in compared(case)]


def _tapegrad_fn(case: str, variant: str):
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(SHAPE, dtype=np.float32), requires_grad=True)
    g = rng.standard_normal(SHAPE, dtype=np.float32)
    fn = {
        "dropout": lambda: F.dropout(x, 0.5),
        "dropout2d": lambda: F.dropout2d(x, 0.5),
        "gaussian_dropout": lambda: F.gaussian_dropout(x, 0.5),
    }[case]

    def run():
        with K.use(**{case: variant}):
            fn().backward(g)
        x.grad = None

    return run


@pytest.mark.parametrize("case, variant", _params())
def test_dropout(benchmark, case, variant):
    fn = _tapegrad_fn(case, variant)
    benchmark.group = f"{case} {SHAPE} float32 fwd+bwd"
    fn()  # warm-up: JIT compilation is not timed
    benchmark.pedantic(fn, rounds=20, warmup_rounds=2)
