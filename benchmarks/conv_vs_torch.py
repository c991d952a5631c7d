"""tapegrad's convolution family side by side with PyTorch (CPU, same process, float32).

Both frameworks run with 2 threads (``torch.set_num_threads(2)``,
``tapegrad.set_num_threads(2)``). Each case is warmed up (JIT compilation and first-touch
allocation excluded), then timed ``--repeats`` times, tapegrad and PyTorch interleaved so
both see the same machine load; medians are reported. ``ratio`` is tapegrad's median
over PyTorch's (lower is better). GFLOP/s counts 2 flops per multiply-add (pooling: one
per window element); ``%GEMM`` is that rate over a large float32 ``np.matmul`` measured
in the same run. ``--variants`` adds one row per registered variant. JIT times are
measured in subprocesses: the first call of the Numba variant with an empty Numba cache,
then again with the cache that run filled (warm), each minus the steady-state time.

    python benchmarks/conv_vs_torch.py [--repeats 15] [--variants] [--no-jit]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F


@dataclass
class Case:
    name: str
    op: str  # registry op name
    target: float
    flops: float
    make: Callable  # (backward: bool) -> (tapegrad thunk, torch thunk)
    backward: bool
    numba: str  # the Numba variant whose JIT time is reported


def _conv_case(torch, backward: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64, 32, 32)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    return _pair(torch, F.conv2d, torch.nn.functional.conv2d, x, w, b, (1, 1), backward)


def _dw_case(torch, backward: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 128, 32, 32)).astype(np.float32)
    w = rng.standard_normal((128, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    return _pair(torch, F.conv2d, torch.nn.functional.conv2d, x, w, b, (1, 1, 1, 128), backward)


def _ct_case(torch, backward: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((64, 32, 4, 4)) * 0.05).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    return _pair(
        torch,
        F.conv_transpose2d,
        torch.nn.functional.conv_transpose2d,
        x,
        w,
        b,
        (2, 1),
        backward,
    )


def _pool_case(torch, backward: bool):
    x = np.random.default_rng(0).standard_normal((64, 64, 32, 32)).astype(np.float32)

    def ours_fn(t):
        return F.max_pool2d(t, 2)

    def theirs_fn(t):
        return torch.nn.functional.max_pool2d(t, 2)

    tx = tg.Tensor(x, requires_grad=backward)
    px = torch.tensor(x, requires_grad=backward)
    gy = np.ones((64, 64, 16, 16), np.float32)
    pgy = torch.tensor(gy)

    def ours():
        y = ours_fn(tx)
        if backward:
            tx.grad = None
            y.backward(gy)

    def theirs():
        y = theirs_fn(px)
        if backward:
            px.grad = None
            y.backward(pgy)

    return ours, theirs


def _pair(torch, ours_fn, theirs_fn, x, w, b, args, backward):
    tx, tw, tb = (tg.Tensor(a, requires_grad=backward) for a in (x, w, b))
    px, pw, pb = (torch.tensor(a, requires_grad=backward) for a in (x, w, b))
    with torch.no_grad():
        shape = tuple(theirs_fn(px, pw, pb, *args).shape)
    gy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    pgy = torch.tensor(gy)

    def ours():
        y = ours_fn(tx, tw, tb, *args)
        if backward:
            tx.grad = tw.grad = tb.grad = None
            y.backward(gy)

    def theirs():
        if backward:
            px.grad = pw.grad = pb.grad = None
            theirs_fn(px, pw, pb, *args).backward(pgy)
        else:
            with torch.no_grad():
                theirs_fn(px, pw, pb, *args)

    return ours, theirs


_CONV = 2 * 32 * 64 * 32 * 32 * 64 * 9
_DW = 2 * 32 * 128 * 32 * 32 * 9
_CT = 2 * 32 * 64 * 16 * 16 * 32 * 16
_POOL = 64 * 64 * 16 * 16 * 4

CASES = [
    Case(
        "conv2d 3x3 N=32 64->64 32x32 pad 1: fwd",
        "conv2d",
        1.0,
        _CONV,
        _conv_case,
        False,
        "im2col-numba",
    ),
    Case(
        "conv2d 3x3 N=32 64->64 32x32 pad 1: fwd+bwd",
        "conv2d",
        1.1,
        3 * _CONV,
        _conv_case,
        True,
        "im2col-numba",
    ),
    Case(
        "depthwise 3x3 N=32 128ch 32x32 pad 1: fwd",
        "depthwise_conv2d",
        0.25,
        _DW,
        _dw_case,
        False,
        "direct-numba",
    ),
    Case(
        "depthwise 3x3 N=32 128ch 32x32 pad 1: fwd+bwd",
        "depthwise_conv2d",
        0.35,
        3 * _DW,
        _dw_case,
        True,
        "direct-numba",
    ),
    Case(
        "conv_transpose2d 4x4 s2 p1 N=32 64->32 16->32: fwd+bwd",
        "conv_transpose2d",
        1.2,
        3 * _CT,
        _ct_case,
        True,
        "col2im-numba",
    ),
    Case(
        "max_pool2d 2x2 N=64 64ch 32x32: fwd+bwd",
        "max_pool2d",
        0.5,
        2 * _POOL,
        _pool_case,
        True,
        "direct-numba",
    ),
]


def _interleaved(a: Callable, b: Callable, repeats: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return float(np.median(ta)), float(np.median(tb))


def gemm_rate(n: int = 2048, repeats: int = 7) -> float:
    """float32 GFLOP/s of np.matmul on n x n matrices (median after warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    a @ b
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(ts)) / 1e9


def _chosen(case: Case, torch) -> str:
    ours, _ = case.make(torch, False)
    with K.record() as calls:
        ours()
    return ", ".join(K.resolved_name(op, sig) for op, sig in calls if op == case.op)


_JIT_SNIPPET = """
import time, sys
t0 = time.perf_counter()
import numpy as np, torch, tapegrad as tg, tapegrad.kernels as K
sys.path.insert(0, {bench_dir!r})
import conv_vs_torch as B
tg.set_num_threads(2); torch.set_num_threads(2)
case = B.CASES[{idx}]
ours, _ = case.make(torch, case.backward)
with K.use(**{{case.op: case.numba}}):
    t0 = time.perf_counter(); ours(); first = time.perf_counter() - t0
    ts = []
    for _ in range(3):
        t0 = time.perf_counter(); ours(); ts.append(time.perf_counter() - t0)
print(first - sorted(ts)[1])
"""


def jit_times(idx: int, cache_dir: str) -> tuple[float, float]:
    """(first-call overhead with an empty Numba cache, the same with the warm cache), s."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = _JIT_SNIPPET.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), idx=idx)
    out = []
    for _ in range(2):
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        out.append(float(res.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--variants", action="store_true", help="one row per registered variant")
    ap.add_argument("--no-jit", action="store_true", help="skip the JIT-time subprocesses")
    ap.add_argument("--only", type=str, default="", help="run cases whose name contains this")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    tg.set_num_threads(2)
    rate = gemm_rate()
    print(f"float32 np.matmul 2048^3 with 2 threads: {rate:.1f} GFLOP/s\n")
    head = (
        f"| {'case (float32)':55} | {'variant':24} | tapegrad ms | torch ms | ratio | target"
        " | GFLOP/s | %GEMM |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for case in CASES:
        if args.only and args.only not in case.name:
            continue
        rows = [("auto: " + _chosen(case, torch), None)]
        if args.variants:
            rows += [(v, v) for v in K.variants(case.op) if v != "reference"]
        for label, variant in rows:
            ours, theirs = case.make(torch, case.backward)
            if variant is None:
                t_ours, t_theirs = _interleaved(ours, theirs, args.repeats)
            else:
                with K.use(**{case.op: variant}):
                    t_ours, t_theirs = _interleaved(ours, theirs, args.repeats)
            gf = case.flops / t_ours / 1e9
            ok = "ok" if t_ours / t_theirs <= case.target else "MISS"
            print(
                f"| {case.name:55} | {label:24} | {t_ours * 1e3:11.2f} | {t_theirs * 1e3:8.2f} "
                f"| {t_ours / t_theirs:5.2f} | <={case.target:<4} {ok:4} | {gf:7.1f} "
                f"| {100 * gf / rate:4.0f}% |",
                flush=True,
            )
    if not args.no_jit:
        print("\nNumba JIT, first call minus steady-state call (s): empty cache / warm cache")
        with tempfile.TemporaryDirectory() as d:
            for i, case in enumerate(CASES):
                if args.only and args.only not in case.name:
                    continue
                cold, warm = jit_times(i, os.path.join(d, str(i)))
                print(f"  {case.name:55} {case.numba:14} {cold:7.2f} / {warm:5.2f}", flush=True)
    print(f"\nfloat32 np.matmul rate at the end of the run: {gemm_rate():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
