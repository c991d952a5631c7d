"""The autoencoder's output ops: sigmoid and the MSE loss, forward and backward.

    python benchmarks/output_ops.py [--repeats 201] [--out FILE]

On conv_autoencoder's output shape (64x1x28x28) in float32 and float64, at 1 thread: the
median microseconds of ``F.sigmoid``'s forward and backward through the tape, on logits
of mixed signs (standard normal) and on mostly negative ones (a trained autoencoder's
background pixels), and of ``F.mse_loss`` against a target that needs no gradient. Compare
two builds by running the script from each checkout.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import finish, uptime
from _timing import call_times

import tapegrad as tg
import tapegrad.nn.functional as F

SHAPE = (64, 1, 28, 28)


def fwd_bwd_us(fn, x: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median microseconds of ``fn``'s forward and of its backward (a fresh graph each)."""

    def forward():
        return fn(tg.tensor(x, requires_grad=True))

    fwd = call_times(forward, repeats)
    outs = [forward() for _ in range(repeats)]
    it = iter(outs)
    bwd = call_times(lambda: next(it).sum().backward(), repeats - 2)
    return 1e6 * float(np.median(fwd)), 1e6 * float(np.median(bwd))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=201)
    p.add_argument("--out", default="")
    args = p.parse_args()
    tg.set_num_threads(1)
    rng = np.random.default_rng(0)
    lines = [f"uptime at start: {uptime()}", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())]
    lines += [
        "",
        f"shape {'x'.join(map(str, SHAPE))}, 1 thread, median of {args.repeats} calls",
        "(the backward includes the .sum() node's)",
        "",
        "| op | input | dtype | forward us | backward us |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for dt in (np.float32, np.float64):
        z = rng.standard_normal(SHAPE).astype(dt)
        cases = {
            "sigmoid, mixed signs": (F.sigmoid, z),
            "sigmoid, negative logits": (F.sigmoid, -np.abs(z) - 3),
        }
        target = tg.tensor(rng.random(SHAPE).astype(dt))
        x = rng.random(SHAPE).astype(dt)
        cases["mse_loss"] = (lambda t, target=target: F.mse_loss(t, target), x)
        for name, (fn, x) in cases.items():
            op, _, what = name.partition(", ")
            f_us, b_us = fwd_bwd_us(fn, x, args.repeats)
            lines.append(
                f"| {op} | {what or 'random'} | {np.dtype(dt).name} | {f_us:.1f} | {b_us:.1f} |"
            )
    finish(lines, args.out)


if __name__ == "__main__":
    main()
