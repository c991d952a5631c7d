"""max_pool2d 2x2 stride 2 passes of the zoo's pools against the machine's copy bandwidth.

    python benchmarks/max_pool_passes.py [--threads 1,2] [--repeats 41] [--out FILE]

For lenet5's and vgg_small's pools (batch 64, float32): the forward (output and indices) and
the backward (the input gradient) of one kernel variant, median ms over ``--repeats`` calls,
and the bytes each pass reads and writes per second beside ``np.copyto``'s rate measured in
the same process. Compare two builds by running the script from each checkout.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _report import finish, uptime
from _timing import call_times

import tapegrad as tg
import tapegrad.kernels as K

SHAPES = {
    "lenet5 pool 1": (64, 6, 28, 28),
    "lenet5 pool 2": (64, 16, 10, 10),
    "vgg_small pool 1": (64, 32, 32, 32),
    "vgg_small pool 2": (64, 64, 16, 16),
}


def copy_gbs(repeats: int) -> float:
    """np.copyto's rate (bytes read + written per second, GB/s) on 8 MB."""
    a = np.ones(2 << 20, np.float32)
    b = np.empty_like(a)
    ts = call_times(lambda: np.copyto(b, a), repeats)
    return 2 * a.nbytes / float(np.median(ts)) / 1e9


def pass_seconds(mod, x, y, idx, out, repeats: int) -> tuple[float, float]:
    """Median seconds of the forward and of the backward."""
    fwd = call_times(lambda: mod.forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out), repeats)
    bwd = call_times(lambda: mod.backward(y, idx, x.shape), repeats)
    return float(np.median(fwd)), float(np.median(bwd))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=41)
    p.add_argument("--variant", default="direct-cython")
    p.add_argument("--out", default="")
    args = p.parse_args()
    mod = K.get("max_pool2d", args.variant)
    rng = np.random.default_rng(0)
    lines = [
        f"uptime at start: {uptime()}",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]
    lines += [
        "",
        f"max_pool2d 2x2 stride 2, float32, {args.variant}, median of {args.repeats} calls",
        "",
        "| pool | input | threads | forward ms | GB/s | backward ms | GB/s | copy GB/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in [int(s) for s in args.threads.split(",")]:
        tg.set_num_threads(t)
        for name, shape in SHAPES.items():
            x = rng.standard_normal(shape, dtype=np.float32)
            out = (shape[2] // 2, shape[3] // 2)
            y, idx = mod.forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out)
            moved = x.nbytes + y.nbytes + idx.nbytes  # either pass: x-sized and y-sized arrays
            fwd, bwd = pass_seconds(mod, x, y, idx, out, args.repeats)
            lines.append(
                f"| {name} | {'x'.join(map(str, shape))} | {t} | {1e3 * fwd:.3f} | "
                f"{moved / fwd / 1e9:.1f} | {1e3 * bwd:.3f} | {moved / bwd / 1e9:.1f} | "
                f"{copy_gbs(args.repeats):.1f} |"
            )
    finish(lines, args.out)


if __name__ == "__main__":
    main()
