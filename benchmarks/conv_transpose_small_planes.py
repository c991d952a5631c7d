"""phase-cython's transposed convolution before and after the session-16 rules: batched GEMMs
on small planes, images shared among tasks when there are fewer than threads, the direct
gradients from 16 input channels and up to 4096 output channels x taps.

In one process, the two settings alternated call by call: "before" sets
``phase_cy._BATCHED = _SPLIT_IMAGES = False``, ``_DIRECT_MAX_REDUCTION = 1024`` and
``_DIRECT_HALF_IN = 24`` (main's rules before this change); "after" is the code as it is.
Passes: the forward and both gradients with the bias (``backward_with_bias``). Medians and
min-p90 of process CPU ms (``--threads 1``) or wall ms (more threads: run it under the
bench lock). float32, OpenBLAS's core-type pins removed.

    python benchmarks/conv_transpose_small_planes.py [--threads 1] [--repeats 21]
        [--only TEXT]
"""

from __future__ import annotations

import argparse
import os
import time

for _pin in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_pin, None)  # before NumPy loads OpenBLAS: a user's machine's kernels

import numpy as np  # noqa: E402

# name, x shape, w shape, stride, padding, output_padding
CASES = [
    ("4x4 s2 p1 N=8 256->128 4->8", (8, 256, 4, 4), (256, 128, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=8 512->256 2->4", (8, 512, 2, 2), (512, 256, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=16 128->64 8->16", (16, 128, 8, 8), (128, 64, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=16 128->128 8->16", (16, 128, 8, 8), (128, 128, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=1 64->32 16->32", (1, 64, 16, 16), (64, 32, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=64 16->8 32->64", (64, 16, 32, 32), (16, 8, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=32 16->16 16->32", (32, 16, 16, 16), (16, 16, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=32 64->32 16->32", (32, 64, 16, 16), (64, 32, 4, 4), 2, 1, 0),
    ("4x4 s2 p1 N=32 32->16 32->64", (32, 32, 32, 32), (32, 16, 4, 4), 2, 1, 0),
    ("3x3 s2 p1 op1 N=16 48->24 12->24", (16, 48, 12, 12), (48, 24, 3, 3), 2, 1, 1),
    ("3x3 s2 p1 op1 N=32 64->32 16->32", (32, 64, 16, 16), (64, 32, 3, 3), 2, 1, 1),
    ("3x3 s2 p1 op1 N=32 16->8 28->56", (32, 16, 28, 28), (16, 8, 3, 3), 2, 1, 1),
    ("3x3 s2 p1 op1 N=64 32->16 7->14 (autoencoder)", (64, 32, 7, 7), (32, 16, 3, 3), 2, 1, 1),
]


def _setting(mod, after: bool):
    def apply():
        mod._BATCHED = mod._SPLIT_IMAGES = after
        mod._DIRECT_MAX_REDUCTION = 4096 if after else 1024
        mod._DIRECT_HALF_IN = 16 if after else 24

    return apply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--only", default="")
    args = ap.parse_args()

    import tapegrad as tg
    from tapegrad.kernels.conv_transpose import phase_cy as mod

    tg.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    settings = {"before": _setting(mod, False), "after": _setting(mod, True)}
    print(f"{args.threads} thread(s), {'CPU' if args.threads == 1 else 'wall'} ms, median "
          f"[min-p90] of {args.repeats}, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| layer | pass | before ms | after ms | after/before |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, xs, ws, s, p, op in CASES:
        if args.only and args.only not in name:
            continue
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) * 0.05).astype(np.float32)
        b = rng.standard_normal(ws[1]).astype(np.float32)
        a = ((s, s), (p, p), (op, op), (1, 1), 1)
        y = mod.forward(x, w, b, *a)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        passes = {
            "forward": lambda x=x, w=w, b=b, a=a: mod.forward(x, w, b, *a),
            "both gradients": lambda gy=gy, x=x, w=w, a=a: mod.backward_with_bias(
                gy, x, w, *a, True, True
            ),
        }
        for pname, fn in passes.items():
            ts = {k: [] for k in settings}
            for apply in settings.values():
                apply()
                fn()
                fn()
            for _ in range(args.repeats):
                for k, apply in settings.items():
                    apply()
                    t0 = clock()
                    fn()
                    ts[k].append(1e3 * (clock() - t0))
            cells = []
            for k in settings:
                v = sorted(ts[k])
                cells.append((v[len(v) // 2], v[0], v[int(0.9 * len(v)) - 1]))
            ratio = cells[1][0] / cells[0][0]
            print(f"| {name} | {pname} | " + " | ".join(
                f"{m:.3f} [{lo:.2f}-{hi:.2f}]" for m, lo, hi in cells) + f" | {ratio:.2f} |",
                flush=True)  # fmt: skip
    settings["after"]()


if __name__ == "__main__":
    main()
