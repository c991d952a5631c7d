"""winograd-cython's channel-lane paths on small planes: the transforms in Cython and several
images per strip, against the NumPy transforms and one image per strip they replaced.

Each layer runs forward (with bias) and backward through ``conv2d`` with ``winograd-cython``,
the two settings alternated call by call in one process. The earlier behaviour is rebuilt
here from NumPy (the weight transform as a (16, 9) x (9, C O) product on a taps-first copy,
the input gradient's on a turned and transposed copy, the weight gradient's chunks summed and
turned back by a (9, 16) product and a strided transpose) and by capping the forward's strips
at one image. Median ms per pass: process CPU at 1 thread, wall clock at more.

    python benchmarks/winograd_lanes_groups.py [--threads 1] [--repeats 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

LAYERS = [  # (N, C, O, side)
    (32, 256, 256, 4), (32, 128, 128, 8), (64, 64, 64, 8), (128, 32, 32, 8), (16, 96, 96, 14),
    (64, 32, 64, 16), (64, 64, 64, 16), (32, 48, 48, 24), (64, 32, 32, 32), (32, 64, 64, 32),
    (1, 64, 64, 32),
]  # fmt: skip


def _earlier(W, cblas):
    """The NumPy transforms and one-image strips, as functions to patch into winograd_cy."""

    def weight_transform(w, op, flip=False):
        if flip:
            w = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        o, c = w.shape[:2]
        wk = np.zeros((3, 3, c, op), dtype=w.dtype)
        wk[..., :o] = w.transpose(2, 3, 1, 0)
        with cblas.single_threaded():
            return (W._GG.T.astype(w.dtype) @ wk.reshape(9, c * op)).reshape(16, c, op)

    def untransform(du, gw, nt):
        o, c = gw.shape[:2]
        total = du[0]
        for i in range(1, du.shape[0]):
            total += du[i]
        with cblas.single_threaded():
            g = W._GG.astype(gw.dtype) @ total[:, :c, :o].reshape(16, c * o)
        gw[...] = g.reshape(3, 3, c, o).transpose(3, 2, 0, 1)

    strip = W._lanes_strip

    def one_image(*args):
        rows, group = strip(*args)
        return (rows // group, 1) if group > 1 else (rows, group)

    return weight_transform, one_image, untransform


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    import tapegrad as tg
    import tapegrad.kernels as K
    import tapegrad.nn.functional as F
    from tapegrad.kernels import cblas

    W = K.get("conv2d", "winograd-cython")
    K.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    now = (W._weight_transform_lanes, W._lanes_strip, W.weight_untransform_lanes)
    settings = {"before": _earlier(W, cblas), "now": now}
    unit = "process CPU" if args.threads == 1 else "wall"
    print(f"{args.threads} thread(s), median {unit} ms of {args.repeats} alternated calls")
    print("| layer | fwd before | fwd now | ratio | bwd before | bwd now | ratio | total ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    try:
        for n, c, o, side in LAYERS:
            x = rng.standard_normal((n, c, side, side)).astype(np.float32)
            w = (rng.standard_normal((o, c, 3, 3)) * 0.05).astype(np.float32)
            b = rng.standard_normal(o).astype(np.float32)
            gy = rng.standard_normal((n, o, side, side)).astype(np.float32)
            times = {k: ([], []) for k in settings}
            with K.use(conv2d="winograd-cython"):
                for r in range(args.repeats + 2):
                    for k in settings if r % 2 else reversed(list(settings)):
                        W._weight_transform_lanes, W._lanes_strip = settings[k][:2]
                        W.weight_untransform_lanes = settings[k][2]
                        tx, tw = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
                        tb = tg.Tensor(b, requires_grad=True)
                        t0 = clock()
                        y = F.conv2d(tx, tw, tb, padding=1)
                        t1 = clock()
                        y.backward(tg.Tensor(gy))
                        t2 = clock()
                        if r >= 2:
                            times[k][0].append(t1 - t0)
                            times[k][1].append(t2 - t1)
            (fb, bb), (fn, bn) = [
                (float(np.median(f)) * 1e3, float(np.median(g)) * 1e3) for f, g in times.values()
            ]
            print(
                f"| N={n} {c}->{o} {side}x{side} | {fb:.2f} | {fn:.2f} | {fn / fb:.2f} | "
                f"{bb:.2f} | {bn:.2f} | {bn / bb:.2f} | {(fn + bn) / (fb + bb):.2f} |",
                flush=True,
            )
    finally:
        W._weight_transform_lanes, W._lanes_strip, W.weight_untransform_lanes = now


if __name__ == "__main__":
    main()
