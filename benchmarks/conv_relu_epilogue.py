"""conv2d_relu on ``im2col-cython``: the bias + ReLU epilogue applied inside the threaded
forward (``forward_relu``) against the forward without bias followed by the
``fused-cython`` epilogue pass, and the backward that masks the output gradient and sums the
bias gradient as it copies each block (``backward_relu``) against the ``fused-cython``
masked pass followed by ``backward``; on conv_autoencoder's two encoder layers and lenet5's
second convolution (batch 64, float32; both gradients, as inside a network).

One process; the two variants and the thread counts alternate, 5 timed calls per turn,
until ``--seconds`` have passed. Prints a markdown table of medians and quartiles (ms).

    python benchmarks/conv_relu_epilogue.py [--seconds 40] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tapegrad
from tapegrad.kernels import threads

# (C, O, H, kernel, stride, padding, label)
LAYERS = (
    (1, 16, 28, 3, 2, 1, "64x1x28x28 -> 64x16x14x14 (3x3 s2 p1)"),
    (16, 32, 14, 3, 2, 1, "64x16x14x14 -> 64x32x7x7 (3x3 s2 p1)"),
    (6, 16, 14, 5, 1, 0, "64x6x14x14 -> 64x16x10x10 (5x5)"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    im = threads.import_extension("tapegrad.kernels.conv.im2col_cy")
    ep = threads.import_extension("tapegrad.kernels.fused.epilogue_cy")
    rng = np.random.default_rng(0)
    cases = []
    for c, o, h, k, s, p, label in LAYERS:
        x = rng.standard_normal((64, c, h, h)).astype(np.float32)
        w = rng.standard_normal((o, c, k, k)).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        geo = ((s, s), (p, p), (1, 1), 1)

        def apart(x=x, w=w, b=b, geo=geo):
            return ep.bias_relu_forward(im.forward(x, w, None, *geo), b)

        def fused(x=x, w=w, b=b, geo=geo):
            return im.forward_relu(x, w, b, *geo)

        y, mask = fused()
        gy = rng.standard_normal(y.shape).astype(np.float32)

        def apart_b(x=x, w=w, gy=gy, mask=mask, geo=geo):
            g, gb = ep.masked_backward(gy, mask, True)
            return im.backward(g, x, w, *geo, True, True), gb

        def fused_b(x=x, w=w, gy=gy, mask=mask, geo=geo):
            return im.backward_relu(gy, mask, x, w, *geo, True, True)

        cases.append((label + " forward", (("apart", apart), ("fused", fused))))
        cases.append((label + " backward", (("apart", apart_b), ("fused", fused_b))))
    counts = [int(t) for t in args.threads.split(",")]
    times: dict[tuple[str, int, str], list[float]] = {}
    t0 = time.time()
    while time.time() - t0 < args.seconds:
        for nt in counts:
            tapegrad.set_num_threads(nt)
            for label, fns in cases:
                for name, fn in fns:
                    fn()
                    for _ in range(5):
                        a = time.perf_counter()
                        fn()
                        times.setdefault((label, nt, name), []).append(time.perf_counter() - a)
    print("| layer (x -> y), pass | threads | epilogue apart ms | fused ms | saved |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, _ in cases:
        for nt in counts:
            row = []
            for name in ("apart", "fused"):
                v = np.array(times[(label, nt, name)]) * 1e3
                q1, med, q3 = np.percentile(v, [25, 50, 75])
                row.append((med, f"{med:.3f} ({q1:.3f}-{q3:.3f})"))
            saved = 1 - row[1][0] / row[0][0]
            print(f"| {label} | {nt} | {row[0][1]} | {row[1][1]} | {saved:.0%} |")
    print(f"\n{len(times[(cases[0][0], counts[0], 'apart')])} calls per cell")


if __name__ == "__main__":
    main()
