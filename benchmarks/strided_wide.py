"""flat-cython against im2col-cython on strided layers past 64 output channels or a reduction
of 800 (input channels x taps): each pass alone, the two variants alternated call by call. At
1 thread the time is the process's CPU time (time spent descheduled by other work on a shared
machine does not count); at more threads, wall time. Prints a markdown table: ms per pass
for each variant, flat / im2col per pass, and the variant ``auto`` picks.

    python benchmarks/strided_wide.py [--threads 1] [--repeats 9]
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import PASSES, alternated_times, kernel_passes

# (N, C, H=W, O, kernel, stride, padding): 3x3 and 5x5 stride-2/3 layers with 64 to 512
# channels, odd planes, 4x4 to 17x17 outputs
LAYERS = [
    (16, 64, 15, 64, 5, 2, 1),
    (16, 64, 28, 64, 5, 2, 2),
    (16, 128, 14, 64, 5, 2, 2),
    (16, 64, 21, 64, 5, 3, 2),
    (16, 32, 28, 96, 5, 2, 2),
    (16, 48, 33, 80, 5, 2, 2),
    (32, 64, 16, 96, 3, 2, 1),
    (32, 96, 16, 96, 3, 2, 1),
    (32, 64, 16, 128, 3, 2, 1),
    (16, 64, 32, 128, 3, 2, 1),
    (32, 128, 16, 128, 3, 2, 1),
    (16, 64, 14, 128, 5, 2, 2),
    (16, 96, 16, 128, 5, 2, 2),
    (16, 128, 16, 128, 5, 2, 2),
    (16, 32, 32, 128, 3, 2, 1),
    (16, 16, 32, 128, 3, 2, 1),
    (32, 8, 32, 128, 3, 2, 1),
    (16, 32, 32, 192, 3, 2, 1),
    (32, 128, 16, 256, 3, 2, 1),
    (16, 256, 16, 256, 3, 2, 1),
    (32, 256, 8, 256, 3, 2, 1),
    (8, 512, 8, 512, 3, 2, 1),
]
VARIANTS = ("flat-cython", "im2col-cython")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    import tapegrad as tg
    import tapegrad.kernels as K
    from tapegrad.kernels.conv import Conv2dCall

    tg.set_num_threads(a.threads)
    clock = "CPU" if a.threads == 1 else "wall"
    mods = {v: K.get("conv2d", v) for v in VARIANTS}
    print(f"{a.threads} thread(s), {clock} ms, median of {a.repeats}, float32")
    print()
    print("| layer | reduction | out | flat-cython fwd / gx / gw | im2col-cython fwd / gx / gw "
          "| flat / im2col | auto |")  # fmt: skip
    print("| --- | ---: | ---: | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for n, c, h, o, k, s, p in LAYERS:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((o, c, k, k)) * 0.05).astype(np.float32)
        args = ((s, s), (p, p), (1, 1), 1)
        ho = (h + 2 * p - k) // s + 1
        gy = rng.standard_normal((n, o, ho, ho)).astype(np.float32)
        fns = {}
        for v, mod in mods.items():
            for pas, f in kernel_passes(mod, x, w, None, gy, args).items():
                fns[(v, pas)] = f
        t = alternated_times(fns, a.repeats)
        pick = 0 if a.threads > 1 else 1
        ms = {v: [t[(v, pas)][pick] for pas in PASSES] for v in VARIANTS}
        ratio = " / ".join(f"{f / i:.2f}" for f, i in zip(*ms.values(), strict=True))
        auto = K.resolved_name("conv2d", Conv2dCall(x.shape, w.shape, *args, "<f4"))
        cells = " | ".join(" / ".join(f"{v:.2f}" for v in ms[var]) for var in VARIANTS)
        print(f"| N={n} {c}->{o} {h}x{h} {k}x{k} s{s} p{p} ({ho}x{ho} out) | {c * k * k} | {o} "
              f"| {cells} | {ratio} | {auto} |")  # fmt: skip


if __name__ == "__main__":
    main()
