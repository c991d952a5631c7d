"""The conv op's backward around the kernels: the previous glue against the current one.

For the depthwise cases of ``conv_targets.py`` (float32, forward + backward through the tape
with a bias, as that benchmark runs them), the op runs alternately with two bodies of
``ConvFunction.backward`` in one process:

- before: the kernels' ``backward`` for the input and weight gradients, the bias gradient
  as ``gy.sum(axis=(0, 2, 3))``, the input gradient handed to the tape unmarked (so the
  tape copied it into ``.grad``);
- now: ``tapegrad.ops.conv.ConvFunction.backward`` (a variant's ``backward_with_bias`` when
  it has one, else ``channel_sum``; the kernels' input gradient kept without a copy).

Rounds alternate the order; each figure is the median over rounds x ``--repeats`` calls of
the calling thread's CPU time at 1 thread (time spent waiting for a CPU on a shared machine
is not counted) or of wall time at more threads. The kernels are the same in both columns.

    python benchmarks/conv_backward_glue.py [--threads 1] [--rounds 5] [--repeats 7] [--out F]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import finish, uptime
from _timing import call_times
from conv_targets import CASES, _arrays


def _previous_backward(ctx, gy):
    from tapegrad.autograd import fresh

    x, w = ctx.saved_arrays
    need = ctx.needs_input_grad + (False,) * 3
    gy = np.ascontiguousarray(gy)
    gx, gw = ctx.call.backward(ctx.mod, gy, x, w, need[0], need[1])
    gb = gy.sum(axis=(0, 2, 3)) if need[2] else None
    return gx, fresh(gw), fresh(gb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", default="depthwise", help="cases whose name has this")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import tapegrad as tg
    import tapegrad.nn.functional as F
    from tapegrad.ops import conv as C

    tg.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    now = C.ConvFunction.__dict__["backward"]  # the staticmethod object itself
    bodies = {"before": staticmethod(_previous_backward), "now": now}
    lines = [
        f"uptime at start: {uptime()}",
        "",
        f"{args.threads} thread(s), float32, {args.rounds} rounds x {args.repeats} calls, "
        f"{'CPU' if args.threads == 1 else 'wall'} time, median",
        "",
        "| case | before ms | now ms | now / before |",
        "| --- | ---: | ---: | ---: |",
    ]
    try:
        for c in CASES:
            if args.only not in c.name or not c.backward or c.fn != "conv2d":
                continue
            x, w, b, gy = _arrays(c)
            tx, tw, tb = (tg.Tensor(a, requires_grad=True) for a in (x, w, b))

            def run(c=c, tx=tx, tw=tw, tb=tb, gy=gy):
                y = F.conv2d(tx, tw, tb, stride=c.stride, padding=c.padding, groups=c.groups)
                tx.grad = tw.grad = tb.grad = None
                y.backward(gy)

            times: dict[str, list[float]] = {"before": [], "now": []}
            for r in range(args.rounds):
                for side in ("before", "now") if r % 2 == 0 else ("now", "before"):
                    C.ConvFunction.backward = bodies[side]
                    times[side] += call_times(run, args.repeats, 2, clock)
            old, new = (1e3 * float(np.median(times[k])) for k in ("before", "now"))
            lines.append(f"| {c.name} | {old:.2f} | {new:.2f} | {new / old:.2f} |")
            print(lines[-1], flush=True)
    finally:
        C.ConvFunction.backward = bodies["now"]
    finish(lines, args.out)


if __name__ == "__main__":
    main()
