"""Memory-bound elementwise passes at 1 and 2 threads, by size: where the thread team pays.

The Cython variants of the flat passes (ReLU, the bias + ReLU and add + ReLU epilogues,
add) run on the calling thread below their family's ``SERIAL_BELOW`` elements and on
tapegrad's OpenMP team above it. This script times each pass at sizes around that
threshold, 1 and 2 threads alternated call by call, and prints the 2-thread / 1-thread
ratio (below 1: the team pays); NumPy's ``x + b`` (one thread either way) for comparison.

    python benchmarks/elementwise_threads.py [--repeats 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tapegrad
from tapegrad.kernels.activation import fused_cy as act
from tapegrad.kernels.fused import epilogue_cy as epi

SIZES = (1 << 16, 1 << 18, 1 << 19, 1 << 20, 1 << 21)


def _passes(n: int, rng: np.random.Generator) -> dict:
    x = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    _, mask = act.relu_forward(x)
    planes = x.reshape(64, -1, 64) if n % (64 * 64) == 0 else x.reshape(1, 1, n)
    bias = np.zeros(planes.shape[1], np.float32)
    return {
        "relu forward": lambda: act.relu_forward(x),
        "relu backward": lambda: act.relu_backward(b, mask),
        "bias+relu (in place)": lambda: epi.bias_relu_forward(planes, bias),
        "add+relu": lambda: epi.add_relu_forward(x, b),
        "add": lambda: epi.add_forward(x, b),
        "NumPy's x + b": lambda: x + b,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# median ms of {args.repeats} calls per thread count, alternated call by call")
    print("\n| pass | elements | 1 thread ms | 2 threads ms | 2t / 1t |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for n in SIZES:
        for name, fn in _passes(n, rng).items():
            ts: dict[int, list[float]] = {1: [], 2: []}
            for t in (1, 2):
                tapegrad.set_num_threads(t)
                fn()
            for _ in range(args.repeats):
                for t in (1, 2):
                    tapegrad.set_num_threads(t)
                    t0 = time.perf_counter()
                    fn()
                    ts[t].append(time.perf_counter() - t0)
            one, two = (1e3 * float(np.median(ts[t])) for t in (1, 2))
            print(f"| {name} | {n:,} | {one:.3f} | {two:.3f} | {two / one:.2f} |")


if __name__ == "__main__":
    main()
