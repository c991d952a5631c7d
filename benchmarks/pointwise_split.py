"""pointwise-cython on batches the threads cannot share evenly by whole images: whole images
per thread (``_SPLIT = False``) against the split by channels (``_SPLIT = True``), each
pass called alone, alternated call by call in one process, wall-clock ms at tapegrad's
thread count (median and min, and the median and IQR of the per-call ratios).

    flock /work/wt/bench.lock python benchmarks/pointwise_split.py [--threads 2]
        [--repeats 41] [--shapes 1x64x64x32 3x64x128x16 ...]

Shapes are N x C_in x C_out x H (square planes, 1x1 kernel, stride 1). Remove OpenBLAS's
core-type pins first (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``), as on a machine
that does not set them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tapegrad as tg
from tapegrad.kernels.conv import pointwise_cy as pw

SHAPES = ["1x64x64x32", "1x512x128x7", "1x128x256x14", "3x64x128x16", "3x128x256x14",
          "5x128x256x14", "7x128x256x14", "3x512x128x7"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=41)
    ap.add_argument("--shapes", nargs="*", default=SHAPES)
    a = ap.parse_args()
    tg.set_num_threads(a.threads)
    print(f"threads {a.threads}, {a.repeats} alternated calls, wall ms")
    print("| case | pass | whole images ms (min) | split ms (min) | ratio (IQR) |")
    print("| --- | --- | ---: | ---: | ---: |")
    args = ((1, 1), (0, 0), (1, 1), 1)
    for s in a.shapes:
        n, c, o, h = (int(v) for v in s.split("x"))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((o, c, 1, 1)) * 0.05).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        gy = rng.standard_normal((n, o, h, h)).astype(np.float32)
        passes = {
            "forward": lambda x=x, w=w, b=b: pw.forward(x, w, b, *args),
            "backward (gx, gw, gb)": lambda gy=gy, x=x, w=w: pw.backward_with_bias(
                gy, x, w, *args, True, True
            ),
        }
        for name, f in passes.items():
            t: dict[bool, list[float]] = {False: [], True: []}
            for split in (False, True) * 5:  # warm-up: the thread team, caches, the BLAS
                pw._SPLIT = split
                f()
            for _ in range(a.repeats):
                for split in (False, True):
                    pw._SPLIT = split
                    t0 = time.perf_counter()
                    f()
                    t[split].append(1e3 * (time.perf_counter() - t0))
            whole, split_ = np.array(t[False]), np.array(t[True])
            r = split_ / whole
            print(
                f"| N={n} {c}->{o} {h}x{h} | {name} | {np.median(whole):.3f} ({whole.min():.3f})"
                f" | {np.median(split_):.3f} ({split_.min():.3f}) | {np.median(r):.2f}"
                f" ({np.percentile(r, 25):.2f}-{np.percentile(r, 75):.2f}) |",
                flush=True,
            )
        pw._SPLIT = None


if __name__ == "__main__":
    main()
