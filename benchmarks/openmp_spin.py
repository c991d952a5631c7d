"""tapegrad's OpenMP team sleeping at once against spinning briefly first, per layer.

Each round runs one process per setting, alternated: ``passive`` (``OMP_WAIT_POLICY=PASSIVE``
in the process's environment, the policy before: idle threads sleep at once) and ``default``
(tapegrad's own setting: idle threads spin ``threads.SPIN_COUNT`` rounds, then sleep). Each
process times forward + backward through the op (``auto``'s picks, the tape) of eight conv
layers at 2 threads (or ``--threads``), median of 25 steps after 3 warm-up ones. Printed: the
median over rounds and the spread (min-max) per setting, and default / passive.

    python benchmarks/openmp_spin.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from _timing import run_worker, user_env

LAYERS = {  # name: (function, x shape, weight shape, keyword arguments)
    "conv2d 5x5 s2 64->64 15x15": (
        "conv2d", (16, 64, 15, 15), (64, 64, 5, 5), {"stride": 2, "padding": 1},
    ),
    "conv2d 3x3 128->128 8x8": ("conv2d", (32, 128, 8, 8), (128, 128, 3, 3), {"padding": 1}),
    "conv2d 3x3 48->48 24x24": ("conv2d", (32, 48, 24, 24), (48, 48, 3, 3), {"padding": 1}),
    "conv2d 3x3 64->64 8x8": ("conv2d", (64, 64, 8, 8), (64, 64, 3, 3), {"padding": 1}),
    "conv_transpose2d 4x4 s2 128->64 8->16": (
        "conv_transpose2d", (16, 128, 8, 8), (128, 64, 4, 4), {"stride": 2, "padding": 1},
    ),
    "conv2d 1x1 256->64 8x8": ("conv2d", (32, 256, 8, 8), (64, 256, 1, 1), {}),
    "depthwise 3x3 512ch 4x4": (
        "conv2d", (64, 512, 4, 4), (512, 1, 3, 3), {"padding": 1, "groups": 512},
    ),
    "conv2d 3x3 64->64 32x32": ("conv2d", (32, 64, 32, 32), (64, 64, 3, 3), {"padding": 1}),
}  # fmt: skip


def _worker(threads: int) -> dict[str, float]:
    import time

    import numpy as np

    import tapegrad as tg
    import tapegrad.nn.functional as F

    tg.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out = {}
    for name, (fn_name, xs, ws, kw) in LAYERS.items():
        fn = getattr(F, fn_name)
        nb = ws[1] if fn_name == "conv_transpose2d" else ws[0]
        x, w, b = (
            tg.Tensor(rng.standard_normal(s, dtype=np.float32), requires_grad=True)
            for s in (xs, ws, (nb,))
        )
        gy = rng.standard_normal(fn(x, w, b, **kw).shape, dtype=np.float32)

        def step(fn=fn, x=x, w=w, b=b, kw=kw, gy=gy):
            y = fn(x, w, b, **kw)
            x.grad = w.grad = b.grad = None
            y.backward(gy)

        for _ in range(3):
            step()
        ts = []
        for _ in range(25):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        out[name] = 1e3 * float(np.median(ts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.threads)))
        return
    settings = {"passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "default": {}}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in settings}
    for _ in range(args.rounds):
        for name, extra in settings.items():
            env = user_env(**extra)
            for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
                if k not in extra:
                    env.pop(k, None)
            cmd = (sys.argv[0], "--worker", "--threads", str(args.threads))
            runs[name].append(run_worker(*cmd, env=env))
    print(f"{args.rounds} alternated rounds, {args.threads} threads: fwd+bwd ms, median (min-max)")
    print("| layer | passive | default (brief spin) | default / passive |")
    print("| --- | ---: | ---: | ---: |")
    for layer in LAYERS:
        cells, med = [], {}
        for name in settings:
            v = [r[layer] for r in runs[name]]
            med[name] = statistics.median(v)
            cells.append(f"{med[name]:.2f} ({min(v):.2f}-{max(v):.2f})")
        print(f"| {layer} | {' | '.join(cells)} | {med['default'] / med['passive']:.2f} |")


if __name__ == "__main__":
    main()
