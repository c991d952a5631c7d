"""Normalisation kernels, every variant against PyTorch (pytest-benchmark).

    pytest benchmarks/bench_norm.py --benchmark-only

One group per case (N=64, C=64, 32x32 float32; 2 threads via benchmarks/conftest.py), so
the table lines up the variants of a case. ``norm_vs_torch.py`` prints the same cases as
ratios with GB/s.
"""

from __future__ import annotations

import numpy as np
import pytest
from _grid import compared

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

SHAPE = (64, 64, 32, 32)
CASES = ["batch_norm-train", "batch_norm-eval", "layer_norm", "group_norm"]


def _op(case: str) -> str:
    return case.split("-")[0]


def _params():
    return [pytest.param(case, v, id=f"{case}-{v}") for case in CASES for v in compared(_op(case))]


def _tapegrad_fn(case: str, variant: str):
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(SHAPE, dtype=np.float32), requires_grad=True)
    g = rng.standard_normal(SHAPE, dtype=np.float32)
    c = SHAPE[1]
    w = tg.Tensor(np.ones(c, np.float32), requires_grad=True)
    b = tg.Tensor(np.zeros(c, np.float32), requires_grad=True)
    rm, rv = tg.Tensor(np.zeros(c, np.float32)), tg.Tensor(np.ones(c, np.float32))
    lw = tg.Tensor(np.ones(SHAPE[1:], np.float32), requires_grad=True)
    lb = tg.Tensor(np.zeros(SHAPE[1:], np.float32), requires_grad=True)
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


def _torch_fn(case: str):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal(SHAPE, dtype=np.float32), requires_grad=True)
    g = torch.tensor(rng.standard_normal(SHAPE, dtype=np.float32))
    c = SHAPE[1]
    w, b = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    rm, rv = torch.zeros(c), torch.ones(c)
    lw = torch.ones(SHAPE[1:], requires_grad=True)
    lb = torch.zeros(SHAPE[1:], requires_grad=True)

    def run():
        if case == "batch_norm-train":
            tf.batch_norm(x, rm, rv, w, b, training=True).backward(g)
        elif case == "batch_norm-eval":
            with torch.no_grad():
                tf.batch_norm(x, rm, rv, w, b)
        elif case == "layer_norm":
            tf.layer_norm(x, SHAPE[1:], lw, lb).backward(g)
        else:
            tf.group_norm(x, 8, w, b).backward(g)
        x.grad = w.grad = b.grad = lw.grad = lb.grad = None

    return run


@pytest.mark.parametrize("case, variant", _params())
def test_norm(benchmark, case, variant):
    fn = _torch_fn(case) if variant == "torch" else _tapegrad_fn(case, variant)
    benchmark.group = f"{case} {SHAPE} float32 (fwd+bwd unless eval)"
    fn()  # warm-up: JIT compilation is not timed
    benchmark.pedantic(fn, rounds=20, warmup_rounds=2)
