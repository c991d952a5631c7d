"""resnet8's training step with and without backwards that add the tape's pending gradient.

    python benchmarks/pending_grad_sums.py [--threads 1,2] [--steps 30] [--out FILE]

resnet8 sums two gradients for three tensors per step (the first conv's output: its
batch norm and the first residual skip; each downsampling block's normalised input: its
1x1 shortcut and its 3x3 conv). With ``tapegrad.autograd.pending_grad`` the batch norm's
and the 1x1 convolution's kernels add the waiting gradient as they write theirs; switched
off (``autograd._pending`` returning None) the tape adds the two in a pass of its own.
Steps alternate between the two in one process (which runs first flips every pair);
printed: each side's median and minimum, and the median of the paired differences. At 1
thread the clock is process CPU time, at more threads wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import finish, uptime

import tapegrad as tg
from tapegrad import autograd
from tapegrad.bench.steps import tapegrad_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", default="")
    args = p.parse_args()
    lines = [f"uptime at start: {uptime()}", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())]
    lines += [
        "",
        f"resnet8, batch 64, SGD momentum; {args.steps} steps each, alternated",
        "",
        "| threads | clock | tape adds: median ms | min | kernels add: median ms | min "
        "| paired difference, median ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    orig = autograd._pending
    for nt in [int(s) for s in args.threads.split(",")]:
        tg.set_num_threads(nt)
        clock = time.process_time if nt == 1 else time.perf_counter
        step = tapegrad_step("resnet8", 64)
        for _ in range(5):
            step()
        res: dict[str, list[float]] = {"tape": [], "kernel": []}
        try:
            for r in range(args.steps):
                for k in ("kernel", "tape") if r % 2 else ("tape", "kernel"):
                    autograd._pending = orig if k == "kernel" else (lambda *a: None)
                    t0 = clock()
                    step()
                    res[k].append(clock() - t0)
        finally:
            autograd._pending = orig
        a, b = np.array(res["tape"]) * 1e3, np.array(res["kernel"]) * 1e3
        lines.append(
            f"| {nt} | {'CPU' if nt == 1 else 'wall'} | {np.median(a):.2f} | {a.min():.2f} | "
            f"{np.median(b):.2f} | {b.min():.2f} | {np.median(a - b):.2f} |"
        )
    finish(lines, args.out)


if __name__ == "__main__":
    main()
