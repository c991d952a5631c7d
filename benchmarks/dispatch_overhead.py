"""Per-call cost of dispatching an op on tiny inputs: F.*, Function.apply and Tensor methods.

The inputs are so small that the kernels do almost nothing; what is left is tapegrad's own
per-call work (argument checks, the call record, variant selection, the tape record).
Prints a Markdown table of the median microseconds per call (and the spread of the rounds),
and of each op's ``check`` alone (the validation every entry runs).

    python benchmarks/dispatch_overhead.py [--rounds 7] [--calls 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad.ops import activation, conv, dropout, norm, pool


def cases() -> dict[str, Callable[[], object]]:
    """Name -> a call on tiny inputs (inputs require grad, so a tape record is made)."""
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal((1, 2, 6, 6)).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), requires_grad=True)
    v = tg.Tensor(rng.standard_normal((4, 8)).astype(np.float32), requires_grad=True)
    g = tg.Tensor(np.ones(2, np.float32), requires_grad=True)
    b = tg.Tensor(np.zeros(2, np.float32), requires_grad=True)
    return {
        "F.conv2d": lambda: F.conv2d(x, w, padding=1),
        "Conv2d.apply": lambda: conv.Conv2d.apply(x, w, None, (1, 1), (1, 1)),
        "F.max_pool2d": lambda: F.max_pool2d(x, 2),
        "F.batch_norm (eval)": lambda: F.batch_norm(
            x, np.zeros(2, np.float32), np.ones(2, np.float32), g, b, training=False
        ),
        "F.layer_norm": lambda: F.layer_norm(v, (8,)),
        "F.dropout": lambda: F.dropout(v, 0.5),
        "Dropout.apply": lambda: dropout.Dropout.apply(v, 0.5),
        "F.relu": lambda: F.relu(v),
        "Tensor.relu": lambda: v.relu(),
        "ReLU.apply": lambda: activation.ReLU.apply(v),
        "F.softmax": lambda: F.softmax(v, dim=1),
        "Tensor.softmax": lambda: v.softmax(dim=1),
        "BatchNorm.apply": lambda: norm.BatchNorm.apply(
            x, g, b, np.zeros(2, np.float32), np.ones(2, np.float32), False
        ),
        "MaxPool2d.apply": lambda: pool.MaxPool2d.apply(x, (2, 2), (2, 2), (0, 0), (1, 1), (3, 3)),
    }


def checks() -> dict[str, Callable[[], object]]:
    """Name -> the op's ``check`` alone on the same tiny inputs (what validation costs)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    v = rng.standard_normal((4, 8)).astype(np.float32)
    g, b = np.ones(2, np.float32), np.zeros(2, np.float32)
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    return {
        "Conv2d.check": lambda: conv.Conv2d.check(x, w, None, 1, 1),
        "MaxPool2d.check": lambda: pool.MaxPool2d.check(x, 2),
        "BatchNorm.check (eval)": lambda: norm.BatchNorm.check(x, g, b, rm, rv, False),
        "LayerNorm.check": lambda: norm.LayerNorm.check(v, None, None, (8,)),
        "Dropout.check": lambda: dropout.Dropout.check(v, 0.5),
        "ReLU.check": lambda: activation.ReLU.check(v),
        "Softmax.check": lambda: activation.Softmax.check(v, 1),
    }


def main() -> None:
    """Time every case and print (and optionally write) the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--checks",
        action="store_true",
        help="only the checks, each the best of 15 x 2000 calls in process CPU time (steady "
        "on a loaded machine); one line, for alternating runs against another checkout",
    )
    a = ap.parse_args()
    if a.checks:
        import timeit

        best = {}
        for name, f in checks().items():
            timer = timeit.Timer(f, timer=time.process_time)
            timer.timeit(200)
            best[name] = min(timer.repeat(number=2000, repeat=15)) / 2000 * 1e6
        print(" ".join(f"{k.replace(' ', '_')}={v:.2f}" for k, v in best.items()))
        return
    table = cases() | checks()
    for f in table.values():  # compile and warm
        for _ in range(50):
            f()
    times: dict[str, list[float]] = {k: [] for k in table}
    for _ in range(a.rounds):  # alternate the cases within each round
        for name, f in table.items():
            t0 = time.perf_counter()
            for _ in range(a.calls):
                f()
            times[name].append((time.perf_counter() - t0) / a.calls * 1e6)
    lines = ["| call | median us | min-max us |", "|---|---:|---:|"]
    for name, ts in times.items():
        lines.append(f"| {name} | {statistics.median(ts):.1f} | {min(ts):.1f}-{max(ts):.1f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
