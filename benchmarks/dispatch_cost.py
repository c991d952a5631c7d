"""What an op costs beyond its kernel: the microseconds per call of tapegrad's dispatch.

For each op, on inputs so small that the kernel itself takes a few microseconds, this
times (in one process, best of several repeats of many calls):

- ``op``: the public call (``F.relu(x)``, ``F.conv2d(x, w, b)``, ...) on Tensors that
  require grad, so a tape record is made, as in a training step's forward;
- ``kernel``: the same kernel variant called directly on the arrays (what the op runs);
- ``dispatch``: the difference -- argument checks, call record, variant selection,
  autotune checks, the tape record and the output Tensor.

The backward's bookkeeping (``loss.backward()`` over a chain of ops, per op, minus the
backward kernels) is printed too.

    python benchmarks/dispatch_cost.py [--calls 200] [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F


def best_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Best over ``repeats`` of the mean µs per call of ``fn`` over ``calls`` calls (short
    repeats, many of them: on a shared machine the best one ran without interruption)."""
    for _ in range(50):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def cases() -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(name, public call, direct kernel call) for each measured op."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    xa = rng.standard_normal((2, 3, 4, 4)).astype(f32)
    wa = rng.standard_normal((4, 3, 1, 1)).astype(f32)
    ba = rng.standard_normal(4).astype(f32)
    x = tg.tensor(xa, requires_grad=True)
    w = tg.tensor(wa, requires_grad=True)
    b = tg.tensor(ba, requires_grad=True)
    g = tg.tensor(np.ones(3, f32), requires_grad=True)
    beta = tg.tensor(np.zeros(3, f32), requires_grad=True)
    rm, rv = np.zeros(3, f32), np.ones(3, f32)
    y = tg.tensor(rng.standard_normal((2, 3, 4, 4)).astype(f32), requires_grad=True)

    from tapegrad.kernels.activation import ReluCall
    from tapegrad.kernels.conv import Conv2dCall

    relu_call = ReluCall.of(xa)
    relu_mod = K.resolve("relu", relu_call)
    conv_call = Conv2dCall.of(xa, wa, (1, 1), (0, 0), (1, 1), 1)
    conv_mod = K.resolve("conv2d", conv_call)
    out = [
        ("relu", lambda: F.relu(x), lambda: relu_call.forward(relu_mod, xa)),
        (
            "conv2d 1x1",
            lambda: F.conv2d(x, w, b),
            lambda: conv_call.forward(conv_mod, xa, wa, ba),
        ),
        ("add", lambda: x + y, lambda: np.add(xa, xa)),
        (
            "batch_norm",
            lambda: F.batch_norm(x, rm, rv, g, beta, training=True),
            None,
        ),
    ]
    return out


def backward_us(depth: int, calls: int, repeats: int) -> float:
    """µs per op of ``backward()`` through a chain of ``depth`` relu ops, and of the same
    chain's backward kernels called directly."""
    from tapegrad.kernels.activation import ReluCall

    xa = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    x = tg.tensor(xa, requires_grad=True)

    def run() -> None:
        h = x
        for _ in range(depth):
            h = F.relu(h)
        h.sum().backward()

    def fwd() -> None:
        h = x
        for _ in range(depth):
            h = F.relu(h)
        h.sum()

    call = ReluCall.of(xa)
    mod = K.resolve("relu", call)
    _, mask = call.forward(mod, xa)
    g = np.ones_like(xa)

    def kernels() -> None:
        for _ in range(depth):
            call.backward(mod, g, mask)

    n = max(calls // depth, 10)
    total = best_us(run, n, repeats) - best_us(fwd, n, repeats) - best_us(kernels, n, repeats)
    return total / depth


def main() -> None:
    """Print the table of µs per op."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    tg.set_num_threads(1)
    print(f"load {os.getloadavg()[0]:.1f}; 1 thread; best of {args.repeats} x {args.calls} calls")
    print()
    print("| op (forward, recorded) | op µs | kernel µs | dispatch µs |")
    print("| --- | ---: | ---: | ---: |")
    for name, op, kernel in cases():
        t_op = best_us(op, args.calls, args.repeats)
        if kernel is None:
            print(f"| {name} | {t_op:.1f} | - | - |")
            continue
        t_k = best_us(kernel, args.calls, args.repeats)
        print(f"| {name} | {t_op:.1f} | {t_k:.1f} | {t_op - t_k:.1f} |")
    per_op = backward_us(20, args.calls, args.repeats)
    print(f"\nbackward bookkeeping (tape walk, gradient routing) per op: {per_op:.1f} µs")


if __name__ == "__main__":
    main()
