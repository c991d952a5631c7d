"""winograd-cython's F(4x4, 3x3) float32 path in vector registers against its BLAS path
(before) and chvec-cython, per pass and layer, alternated call by call in one process.

Layers: 3x3, stride 1, padding 1, float32 (the headline 32x32 64->64 layer of batch 32 and
the zoo's 3x3 layers of batch 64). Passes: forward (with bias), input gradient, weight
gradient. "before" is winograd-cython with the vector-register path switched off (its
F(4x4, 3x3) through 36 BLAS calls per block on outputs from 24x24 and 48 channels,
F(2x2, 3x3) below, im2col-cython's weight gradient below 128 channels). For each pass:
median wall ms (process CPU ms) over ``--repeats`` rounds, effective GFLOP/s (direct
convolution FLOPs, 2 per multiply-add, over the wall time), and for the forward and input
gradient on the new path the share of the GEMM rate: F(4x4, 3x3)'s multiplications (36 per
4x4 tile and channel pair) per second over a large float32 ``np.matmul``'s rate at the same
thread count (measured here first). Then the float32 error of the new path (max |error|
over the float64 reference's RMS, unit-variance inputs) forward and input gradient.

With ``--steps``: vgg_small's and resnet8's training steps (batch 64) with the ``auto``
rule's winograd-cython F(4x4, 3x3) lead switched off and on between steps (the rule's
per-shape memo cleared at each switch), median over ``--repeats`` steps each.

    python benchmarks/winograd_f4.py [--threads 1] [--repeats 7] [--only 32] [--steps]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _timing import alternated_times

# (N, C in, C out, side): output side = input side (padding 1)
LAYERS = [
    (32, 64, 64, 32),  # the conv targets' headline layer
    (64, 32, 32, 32),  # vgg_small's 32x32 32->32
    (64, 64, 64, 16),  # vgg_small's 16x16 64->64
    (64, 32, 64, 16),  # vgg_small's 16x16 32->64
    (64, 32, 32, 16),  # resnet8's 16x16 32->32
    (64, 16, 16, 32),  # resnet8's 32x32 16->16
    (64, 64, 64, 8),  # resnet8's 8x8 64->64
    (32, 48, 48, 20),  # other shapes between 16x16 and 32x32, 32 to 48 channels
    (32, 40, 40, 24),
    (64, 32, 32, 24),
    (32, 32, 64, 24),
    (16, 32, 32, 28),
]


def _gemm_rate(repeats: int = 5) -> float:
    """GFLOP/s of a large float32 np.matmul (the machine's GEMM rate here)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, a, out=out)
        ts.append(time.perf_counter() - t0)
    return 2 * 2048**3 / float(np.median(ts)) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", type=int, default=None, help="keep layers of this side")
    ap.add_argument("--steps", action="store_true", help="time training steps, not kernels")
    a = ap.parse_args()

    from tapegrad.kernels import registry, threads

    threads.set_num_threads(a.threads)
    if a.steps:
        from _timing import rule_switch_steps

        from tapegrad.kernels import conv

        limits = (conv._WINOGRAD_F4_MIN_CHANNELS, conv._WINOGRAD_F4_MID_MIN_CHANNELS)

        def f4_lead(on: bool) -> None:
            lo, mid = limits if on else (1 << 30, 1 << 30)
            conv._WINOGRAD_F4_MIN_CHANNELS, conv._WINOGRAD_F4_MID_MIN_CHANNELS = lo, mid
            registry._auto_memo.clear()

        print(f"threads {a.threads}, repeats {a.repeats}")
        rule_switch_steps(("vgg_small", "resnet8"), f4_lead, a.repeats)
        return
    wg = registry.get("conv2d", "winograd-cython")
    chvec = registry.get("conv2d", "chvec-cython")
    fast = wg._fast4

    def before(m):
        def run(f):
            wg._fast4 = lambda dtype: False
            try:
                return f(m)
            finally:
                wg._fast4 = fast

        return run

    rate = _gemm_rate()
    print(f"threads {a.threads}; np.matmul 2048^3 float32: {rate:.0f} GFLOP/s")
    print()
    print(
        "| N C O side | pass | before ms (CPU) | after ms (CPU) | chvec-cython ms (CPU) "
        "| after / before | after / chvec | GFLOP/s before, after | share of GEMM rate |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    args = ((1, 1), (1, 1), (1, 1), 1)
    rng = np.random.default_rng(0)
    for n, c, o, s in LAYERS:
        if a.only is not None and s != a.only:
            continue
        x = rng.standard_normal((n, c, s, s), dtype=np.float32)
        w = 0.1 * rng.standard_normal((o, c, 3, 3), dtype=np.float32)
        b = rng.standard_normal(o, dtype=np.float32)
        gy = rng.standard_normal((n, o, s, s), dtype=np.float32)
        passes = {
            "forward": lambda m, x=x, w=w, b=b: m.forward(x, w, b, *args),
            "input gradient": lambda m, x=x, w=w, gy=gy: m.backward(gy, x, w, *args, True, False),
            "weight gradient": lambda m, x=x, w=w, gy=gy: m.backward(gy, x, w, *args, False, True),
        }
        flop = 2 * n * o * s * s * c * 9
        tiles = n * (-(-s // 4)) ** 2
        f4_flop = 2 * 36 * tiles * c * o
        for name, p in passes.items():
            fns = {
                "before": lambda p=p: before(wg)(p),
                "after": lambda p=p: p(wg),
                "chvec": lambda p=p: p(chvec),
            }
            t = alternated_times(fns, a.repeats)
            bw, aw, cw = t["before"], t["after"], t["chvec"]
            share = "-"
            if name != "weight gradient" and wg._uses_f4(c, o, s, s, fast(np.dtype("float32"))):
                share = f"{f4_flop / (aw[0] * 1e-3) / 1e9 / rate:.2f}"
            print(f"| {n} {c} {o} {s} | {name} | {bw[0]:.2f} ({bw[1]:.2f}) | {aw[0]:.2f} "
                  f"({aw[1]:.2f}) | {cw[0]:.2f} ({cw[1]:.2f}) | {aw[0] / bw[0]:.2f} | "
                  f"{aw[0] / cw[0]:.2f} | {flop / bw[0] / 1e6:.0f}, {flop / aw[0] / 1e6:.0f} "
                  f"| {share} |", flush=True)  # fmt: skip

    ref = registry.get("conv2d", "reference")
    print()
    print("float32 error (max |y - y64| / RMS(y64)), unit-variance inputs, N=2, 32x32:")
    for c in (16, 64, 256):
        x = rng.standard_normal((2, c, 32, 32))
        w = rng.standard_normal((64, c, 3, 3))
        gy = rng.standard_normal((2, 64, 32, 32))
        want = ref.forward(x, w, None, *args)
        got = wg.forward(x.astype(np.float32), w.astype(np.float32), None, *args)
        want_gx = ref.backward(gy, x, w, *args, True, False)[0]
        gx = wg.backward(gy.astype(np.float32), x.astype(np.float32), w.astype(np.float32),
                         *args, True, False)[0]  # fmt: skip
        ef = np.max(np.abs(got - want)) / np.sqrt(np.mean(want**2))
        eg = np.max(np.abs(gx - want_gx)) / np.sqrt(np.mean(want_gx**2))
        print(f"- C={c} -> 64: forward {ef:.1e}, input gradient {eg:.1e}")


if __name__ == "__main__":
    main()
