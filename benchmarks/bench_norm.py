"""Normalisation kernels, every variant side by side (pytest-benchmark).

    pytest benchmarks/bench_norm.py --benchmark-only

One group per case (N=64, C=64, 32x32 float32; 2 threads via benchmarks/conftest.py), so
the table lines up the variants of a case. ``norm_vs_torch.py`` compares the same cases with
PyTorch, each framework in its own process, as ratios with GB/s.
"""

from __future__ import annotations

import pytest
from _grid import compared
from norm_vs_torch import SHAPE, norm_tensors

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

CASES = ["batch_norm-train", "batch_norm-eval", "layer_norm", "group_norm"]


def _op(case: str) -> str:
    return case.split("-")[0]


def _params():
    return [pytest.param(case, v, id=f"{case}-{v}") for case in CASES for v in compared(_op(case))]


def _tapegrad_fn(case: str, variant: str):
    x, g, w, b, rm, rv, lw, lb = norm_tensors()
    op = _op(case)

    def run():
        with K.use(**{op: variant}):
            if case == "batch_norm-train":
                F.batch_norm(x, rm, rv, w, b, training=True).backward(g)
            elif case == "batch_norm-eval":
                with tg.no_grad():
                    F.batch_norm(x, rm, rv, w, b)
            elif case == "layer_norm":
                F.layer_norm(x, SHAPE[1:], lw, lb).backward(g)
            else:
                F.group_norm(x, 8, w, b).backward(g)
        x.grad = w.grad = b.grad = lw.grad = lb.grad = None

    return run


@pytest.mark.parametrize("case, variant", _params())
def test_norm(benchmark, case, variant):
    fn = _tapegrad_fn(case, variant)
    benchmark.group = f"{case} {SHAPE} float32 (fwd+bwd unless eval)"
    fn()  # warm-up: JIT compilation is not timed
    benchmark.pedantic(fn, rounds=20, warmup_rounds=2)
