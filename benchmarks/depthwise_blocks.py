"""Depthwise passes on channel blocks against the phase planes, as multiples of the copy time.

For every depthwise case of ``conv_targets.py`` (float32), each pass of ``direct-cython``
(forward, input gradient, weight gradient) runs with the layout ``auto`` uses now and with
the phase planes forced (the layout every call took before channel blocks), alternating
calls in one process. Each figure is the minimum over ``--repeats`` calls of the calling
thread's CPU time at 1 thread (steady on a shared machine: time spent waiting for the CPU
is not counted) or of wall time at 2 threads, over the time the bytes the pass must read and
write take at ``np.copyto``'s rate on 64 MB arrays, measured the same way (goal: 2x or less).

    python benchmarks/depthwise_blocks.py [--threads 1] [--repeats 15] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import finish, uptime
from _timing import call_times
from conv_targets import CASES, _arrays, pass_bytes


def _best(fn, repeats: int, clock) -> float:
    return min(call_times(fn, repeats, 2, clock))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import tapegrad as tg
    import tapegrad.kernels as K

    tg.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    mod = K.get("depthwise_conv2d", "direct-cython")
    saved = dict(mod._CB_W), mod._CB_PLANE
    lines = [f"uptime at start: {uptime()}", ""]
    src = np.ones(16 << 20, dtype=np.float32)  # 64 MB, as conv_targets.py's copy rate
    dst = np.empty_like(src)
    rate = 2 * src.nbytes / _best(lambda: np.copyto(dst, src), 9, clock)
    lines.append(f"np.copyto, 64 MB (read + write counted): {rate / 1e9:.1f} GB/s")
    what = "CPU time of the calling thread" if args.threads == 1 else "wall time"
    lines.append(
        f"direct-cython, {args.threads} thread(s), float32, minimum {what} of "
        f"{args.repeats} calls: ms (multiple of the copy time), phase planes -> now"
    )
    lines.append("")
    lines.append("| case | forward | input gradient | weight gradient |")
    lines.append("| --- | ---: | ---: | ---: |")
    for c in CASES:
        if c.kind != "copy":
            continue
        x, w, b, gy = _arrays(c)
        a = ((c.stride,) * 2, (c.padding,) * 2, (1, 1), c.groups)
        runs = {
            "forward": lambda x=x, w=w, b=b, a=a: mod.forward(x, w, b, *a),
            "input gradient": lambda gy=gy, x=x, w=w, a=a: mod.backward(gy, x, w, *a, True, False),
            "weight gradient": lambda gy=gy, x=x, w=w, a=a: mod.backward(gy, x, w, *a, False, True),
        }
        cells = []
        for k, nb in pass_bytes(c).items():
            t_copy = nb / rate
            ts = []
            for phase in (True, False):
                if phase:
                    mod._CB_W.update({"1": 0, "2": 0})
                    mod._CB_PLANE = 0
                else:
                    mod._CB_W.update(saved[0])
                    mod._CB_PLANE = saved[1]
                ts.append(_best(runs[k], args.repeats, clock))
            cells.append(
                f"{1e3 * ts[0]:.2f} ({ts[0] / t_copy:.1f}x) -> {1e3 * ts[1]:.2f} "
                f"({ts[1] / t_copy:.1f}x)"
            )
        lines.append(f"| {c.name} | " + " | ".join(cells) + " |")
    mod._CB_W.update(saved[0])
    mod._CB_PLANE = saved[1]
    lines.append("")
    finish(lines, args.out)


if __name__ == "__main__":
    main()
