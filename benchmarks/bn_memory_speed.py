"""Training-mode batch norm + ReLU kernels against the memory bound.

For each of resnet8's batch-norm shapes (batch 64, x float32 (N, C, H*W)): the median ms
of ``np.copyto`` of x (the memory-speed yardstick: one read and one write of x), and of
each compiled variant's ``bn_relu_forward_train`` and ``bn_relu_backward``; the calls of
all variants and the copy alternate one by one, so all see the same load. Spread: the
25th-75th percentile in brackets.

    python benchmarks/bn_memory_speed.py [--threads 1] [--repeats 31]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tapegrad as tg
from tapegrad.kernels.norm import fused_cy, fused_numba

SHAPES = ((64, 16, 1024), (64, 32, 256), (64, 64, 64))  # resnet8's (N, C, H*W)
VARIANTS = {"fused-numba": fused_numba, "fused-cython": fused_cy}


def _calls(x: np.ndarray, gy: np.ndarray) -> dict[str, object]:
    w = 1 + 0.1 * np.random.default_rng(1).standard_normal(x.shape[1])
    b = 0.1 * np.random.default_rng(2).standard_normal(x.shape[1])
    dst = np.empty_like(x)
    calls: dict[str, object] = {"copy": lambda: np.copyto(dst, x)}
    for name, mod in VARIANTS.items():
        _, m, s, _, mask = mod.bn_relu_forward_train(x, w, b, 1e-5, True)
        calls[f"{name} fwd"] = lambda mod=mod: mod.bn_relu_forward_train(x, w, b, 1e-5, True)
        calls[f"{name} bwd"] = lambda mod=mod, m=m, s=s, mask=mask: mod.bn_relu_backward(
            gy, mask, x, m, s, w, True
        )
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--block", type=int, default=4)
    args = ap.parse_args()
    tg.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        f"threads {args.threads}, {args.repeats} rounds of blocks of {args.block} calls,"
        " ms median [p25-p75]"
    )
    print("| shape (N,C,S) | call | ms | x copy |")
    print("| --- | --- | ---: | ---: |")
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        gy = rng.standard_normal(shape).astype(np.float32)
        calls = _calls(x, gy)
        times: dict[str, list[float]] = {k: [] for k in calls}
        for f in calls.values():
            f()
            f()
        for _ in range(args.repeats):
            for k, f in calls.items():
                f()
                for _ in range(args.block - 1):
                    t0 = time.perf_counter()
                    f()
                    times[k].append(1e3 * (time.perf_counter() - t0))
        copy = float(np.median(times["copy"]))
        for k, ts in times.items():
            med = float(np.median(ts))
            lo, hi = np.percentile(ts, [25, 75])
            print(f"| {shape} | {k} | {med:.3f} [{lo:.3f}-{hi:.3f}] | {med / copy:.2f} |")


if __name__ == "__main__":
    main()
