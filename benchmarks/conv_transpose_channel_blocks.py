"""phase-cython's transposed-convolution forward with 33 to 128 output channels: the wide
direct tiles in blocks of 32 output channels (``_DIRECT_BLOCKS``) against the phase GEMMs,
switched call by call in one process. At 1 thread the time is the process's CPU time (time
spent descheduled by other work on a shared machine does not count); at more threads, wall
time. Prints one line per layer: median ms of each and blocks / GEMMs. The layers past the
rule's limits (16x16 and larger inputs, a half-empty last block) run the blocks forced on.

    python benchmarks/conv_transpose_channel_blocks.py [--threads 1] [--repeats 9]
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import alternated_samples

# (N, C, H=W, O, kernel, output_padding), stride 2, padding 1
LAYERS = [
    (16, 128, 8, 64, 4, 0),
    (32, 128, 8, 64, 4, 0),
    (16, 64, 8, 64, 4, 0),
    (16, 256, 4, 128, 4, 0),
    (16, 128, 7, 64, 3, 1),
    (32, 64, 16, 64, 4, 0),
    (32, 64, 16, 48, 4, 0),
    (32, 128, 16, 64, 3, 1),
    (32, 64, 32, 64, 4, 0),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    import tapegrad as tg
    from tapegrad.kernels.conv_transpose import phase_cy as P

    tg.set_num_threads(a.threads)
    print(f"{a.threads} thread(s), {'CPU' if a.threads == 1 else 'wall'} ms, median of "
          f"{a.repeats}, float32")  # fmt: skip
    saved = (P._DIRECT_BLOCKS_MAX_PIXELS, P._DIRECT_WIDE_MIN_OUT)
    P._DIRECT_BLOCKS_MAX_PIXELS, P._DIRECT_WIDE_MIN_OUT = 1 << 30, 1  # blocks on every layer
    rng = np.random.default_rng(0)
    for n, c, h, o, k, op in LAYERS:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((c, o, k, k)) * 0.05).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        args = ((2, 2), (1, 1), (op, op), (1, 1), 1)

        def run(flag, x=x, w=w, b=b, args=args):
            P._DIRECT_BLOCKS = flag
            P.forward(x, w, b, *args)

        wall, cpu = alternated_samples({f: lambda f=f: run(f) for f in (True, False)}, a.repeats)
        ts = cpu if a.threads == 1 else wall
        on, off = (float(np.median(ts[f])) for f in (True, False))
        print(f"N={n} {c}->{o} {h}x{h} {k}x{k} op{op}: GEMM phases {off:.2f}, blocks {on:.2f}, "
              f"blocks / GEMMs {on / off:.2f}")  # fmt: skip
    P._DIRECT_BLOCKS = True
    P._DIRECT_BLOCKS_MAX_PIXELS, P._DIRECT_WIDE_MIN_OUT = saved


if __name__ == "__main__":
    main()
