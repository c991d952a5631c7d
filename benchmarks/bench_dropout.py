"""Dropout kernels (forward + backward), every variant against PyTorch (pytest-benchmark).

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


def _torch_fn(case: str):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal(SHAPE, dtype=np.float32), requires_grad=True)
    g = torch.tensor(rng.standard_normal(SHAPE, dtype=np.float32))

    def gaussian(x):  # PyTorch has no Gaussian dropout: x * (1 + sigma * N(0, 1))
        return x * (1 + 0.5 * torch.randn_like(x))

    fn = {
        "dropout": lambda: torch.nn.functional.dropout(x, 0.5),
        "dropout2d": lambda: torch.nn.functional.dropout2d(x, 0.5),
        "gaussian_dropout": lambda: gaussian(x),
    }[case]

    def run():
        fn().backward(g)
        x.grad = None

    return run


@pytest.mark.parametrize("case, variant", _params())
def test_dropout(benchmark, case, variant):
    fn = _torch_fn(case) if variant == "torch" else _tapegrad_fn(case, variant)
    benchmark.group = f"{case} {SHAPE} float32 fwd+bwd"
    fn()  # warm-up: JIT compilation is not timed
    benchmark.pedantic(fn, rounds=20, warmup_rounds=2)
