"""The 1x1 stride-1 convolution's GEMMs: one stacked ``matmul`` over the batch against one
2-D GEMM per image, forward + backward, on mobilenet_small's pointwise shapes (batch 64).

Both forms run in this process with tapegrad's thread count (``--threads``), in
alternated rounds (each round starts with the other form), warmed up first; the table
gives the median and the spread (min..max) of each in ms.

    python benchmarks/pointwise_gemm.py [--threads 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tapegrad as tg
from tapegrad.kernels.blas import matmul

# (C, O, H) of mobilenet_small's pointwise layers at width 32, 32x32 input
SHAPES = [(32, 64, 32), (64, 128, 16), (128, 128, 16), (128, 256, 8), (256, 256, 4)]


def stacked(x, w2, gy):
    n, c, p = x.shape
    y = matmul(w2, x)  # forward: one stacked matmul
    gx = matmul(w2.T, gy)
    gw = matmul(gy, x.transpose(0, 2, 1)).sum(axis=0)
    return y, gx, gw


def per_image(x, w2, gy):
    n, c, p = x.shape
    o = w2.shape[0]
    y = np.empty((n, o, p), x.dtype)
    gx = np.empty_like(x)
    gw = np.zeros((o, c), x.dtype)
    part = np.empty((o, c), x.dtype)
    wt = w2.T
    for i in range(n):
        matmul(w2, x[i], out=y[i])
        matmul(wt, gy[i], out=gx[i])
        gw += matmul(gy[i], x[i].T, out=part)
    return y, gx, gw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    tg.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    print(f"threads {a.threads}, batch {a.batch}, {a.rounds} alternated rounds, ms")
    print("| C->O, HxW | stacked median (min..max) | per-image median (min..max) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for c, o, h in SHAPES:
        p = h * h
        x = rng.standard_normal((a.batch, c, p), dtype=np.float32)
        gy = rng.standard_normal((a.batch, o, p), dtype=np.float32)
        w2 = rng.standard_normal((o, c), dtype=np.float32)
        ref = stacked(x, w2, gy)
        got = per_image(x, w2, gy)
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-2)
        fns = {"stacked": stacked, "per-image": per_image}
        times = {k: [] for k in fns}
        for _ in range(2):
            for f in fns.values():
                f(x, w2, gy)
        for r in range(a.rounds):
            order = list(fns) if r % 2 == 0 else list(fns)[::-1]
            for k in order:
                t0 = time.perf_counter()
                fns[k](x, w2, gy)
                times[k].append((time.perf_counter() - t0) * 1e3)
        s, q = (np.array(times[k]) for k in fns)
        print(
            f"| {c}->{o}, {h}x{h} | {np.median(s):.2f} ({s.min():.2f}..{s.max():.2f}) "
            f"| {np.median(q):.2f} ({q.min():.2f}..{q.max():.2f}) "
            f"| {np.median(q) / np.median(s):.2f} |"
        )


if __name__ == "__main__":
    main()
