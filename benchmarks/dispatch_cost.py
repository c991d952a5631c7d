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

``--parts`` splits the dispatch of each op into its pieces, each timed alone the same way:

- ``wrapper``: the ``F.*`` function around ``Function.apply`` (argument defaults);
- ``check``: the op's argument validation (``Function.check``);
- ``record``: building the call record, the signature the variant is chosen by
  (``Conv2dCall.of``, ...);
- ``lookup``: choosing the variant (``tuning.resolve``: the registry, the ``use()`` and
  environment overrides, autotune's switch and cache, ``auto``'s rule memo);
- ``glue``: the op's own forward around those (contiguity, saving for the backward);
- ``tape``: ``Function.apply`` less the check and the forward: the tape record, the saved
  arrays' versions, the output Tensor.

    python benchmarks/dispatch_cost.py [--calls 200] [--repeats 200] [--parts]
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


PARTS = ("wrapper", "check", "record", "lookup", "glue", "tape")


def part_cases() -> list[tuple[str, dict[str, Callable[[], object]]]]:
    """(name, timed pieces) per op: the public call, ``apply``, check, forward, call record,
    variant lookup and kernel, each callable alone on the same arrays."""
    from tapegrad.autograd import Context
    from tapegrad.kernels.activation import ReluCall
    from tapegrad.kernels.conv import Conv2dCall
    from tapegrad.kernels.pool import MaxPool2dCall
    from tapegrad.ops import tuning
    from tapegrad.ops.activation import ReLU
    from tapegrad.ops.conv import conv2d_function
    from tapegrad.ops.pool import MaxPool2d

    rng = np.random.default_rng(0)
    f32 = np.float32
    xa = rng.standard_normal((2, 3, 4, 4)).astype(f32)
    wa = rng.standard_normal((4, 3, 1, 1)).astype(f32)
    ba = rng.standard_normal(4).astype(f32)
    x, w, b = (tg.tensor(a, requires_grad=True) for a in (xa, wa, ba))
    out = []

    ctx = Context((True,))
    call = ReluCall.of(xa)
    mod = tuning.resolve(ctx, call, xa)
    out.append(
        (
            "relu",
            {
                "public": lambda: F.relu(x),
                "apply": lambda: ReLU.apply(x),
                "check": lambda: ReLU.check(xa),
                "forward": lambda: ReLU.forward(Context((True,)), xa),
                "record": lambda: ReluCall.of(xa),
                "lookup": lambda: tuning.resolve(ctx, call, xa),
                "kernel": lambda: call.forward(mod, xa),
            },
        )
    )

    fn = conv2d_function(xa.shape, wa.shape, 1)
    checked = fn.check(xa, wa, ba)
    ctx3 = Context((True, True, True))
    ccall = Conv2dCall.of(xa, wa, *checked[3:])
    cmod = tuning.resolve(ctx3, ccall, xa, wa, ba)
    out.append(
        (
            "conv2d 1x1",
            {
                "public": lambda: F.conv2d(x, w, b),
                "apply": lambda: fn.apply(x, w, b),
                "check": lambda: fn.check(xa, wa, ba),
                "forward": lambda: fn.forward(Context((True, True, True)), *checked),
                "record": lambda: Conv2dCall.of(xa, wa, *checked[3:]),
                "lookup": lambda: tuning.resolve(ctx3, ccall, xa, wa, ba),
                "kernel": lambda: ccall.forward(cmod, xa, wa, ba),
            },
        )
    )

    pargs = MaxPool2d.check(xa, 2)
    pcall = MaxPool2dCall.of(*pargs)
    pmod = tuning.resolve(ctx, pcall, xa)
    out.append(
        (
            "max_pool2d 2x2",
            {
                "public": lambda: F.max_pool2d(x, 2),
                "apply": lambda: MaxPool2d.apply(x, 2),
                "check": lambda: MaxPool2d.check(xa, 2),
                "forward": lambda: MaxPool2d.forward(Context((True,)), *pargs),
                "record": lambda: MaxPool2dCall.of(*pargs),
                "lookup": lambda: tuning.resolve(ctx, pcall, xa),
                "kernel": lambda: pcall.forward(pmod, xa),
            },
        )
    )
    return out


def parts_table(calls: int, repeats: int) -> list[str]:
    """The markdown rows of ``--parts``: µs per piece of each op's forward dispatch."""
    rows = [
        "| op (forward, recorded) | op µs | kernel µs | dispatch µs | " + " | ".join(PARTS) + " |",
        "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in PARTS) + " |",
    ]
    for name, fns in part_cases():
        t = {k: best_us(f, calls, repeats) for k, f in fns.items()}
        piece = {
            "wrapper": t["public"] - t["apply"],
            "check": t["check"],
            "record": t["record"],
            "lookup": t["lookup"],
            "glue": t["forward"] - t["record"] - t["lookup"] - t["kernel"],
            "tape": t["apply"] - t["check"] - t["forward"],
        }
        rows.append(
            f"| {name} | {t['public']:.1f} | {t['kernel']:.1f} | {t['public'] - t['kernel']:.1f} | "
            + " | ".join(f"{piece[k]:.1f}" for k in PARTS)
            + " |"
        )
    return rows


def main() -> None:
    """Print the table of µs per op."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--parts", action="store_true", help="split the dispatch into its pieces")
    args = ap.parse_args()
    tg.set_num_threads(1)
    print(f"load {os.getloadavg()[0]:.1f}; 1 thread; best of {args.repeats} x {args.calls} calls")
    if args.parts:
        print()
        print("\n".join(parts_table(args.calls, args.repeats)))
        return
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
