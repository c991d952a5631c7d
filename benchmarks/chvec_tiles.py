"""chvec-cython's three passes (forward, input gradient, weight gradient) per layer, timed
alone, and the backward as training runs it (both gradients; with the bias gradient as the
conv2d op gets it): ms and GFLOP/s (2 x MACs per pass), optionally against another
checkout's build of the same module (``--before DIR``: that checkout's compiled
``kernels/conv/chvec_cy``), loaded into the same process and alternated call by call, so
that a shared machine's changing speed falls on both alike.

    python benchmarks/chvec_tiles.py [--threads 1] [--repeats 15] [--before /path/to/checkout]
    python benchmarks/chvec_tiles.py --before /path/to/checkout --steps [resnet8 vgg_small]

``--steps``: zoo models' training steps (batch 64, ``auto``'s choices) instead, the two
builds switched in before alternate steps.

Per pass the median of ``--repeats`` calls after two warm-up calls, the spread (min-max) in
brackets and the median process CPU time in parentheses (at one thread: the time the call
had a core, which other processes on a shared machine disturb less); float32, 3x3, padding
1, stride 1. A float32 GEMM (1024 x 1024 x 1024 through NumPy's BLAS at the same thread
count) is timed in the same rounds, as the machine's limit at that moment; "% GEMM" is each
pass's rate as a share of it.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import time

import numpy as np

# (name, N, C in, C out, image side)
LAYERS = [
    ("resnet8 16->16 32x32", 64, 16, 16, 32),
    ("resnet8 32->32 16x16", 64, 32, 32, 16),
    ("resnet8 64->64 8x8", 64, 64, 64, 8),
    ("vgg_small 32->32 32x32", 64, 32, 32, 32),
    ("vgg_small 32->64 16x16", 64, 32, 64, 16),
    ("vgg_small 64->64 16x16", 64, 64, 64, 16),
    ("targets 64->64 32x32 N=32", 32, 64, 64, 32),
]
PASSES = ("forward", "input grad", "weight grad", "both grads", "both + bias")
MULT = {"both grads": 2, "both + bias": 2}  # passes' MACs in forward passes (else 1)
ARGS = ((1, 1), (1, 1), (1, 1), 1)
GEMM = 1024  # the machine's limit: float32 GEMM of this size at the same thread count


def _passes(m, x, w, b, gy):
    """(pass name, call) for the three passes of conv2d module ``m``."""
    return [
        ("forward", lambda: m.forward(x, w, b, *ARGS)),
        ("input grad", lambda: m.backward(gy, x, w, *ARGS, True, False)),
        ("weight grad", lambda: m.backward(gy, x, w, *ARGS, False, True)),
        ("both grads", lambda: m.backward(gy, x, w, *ARGS, True, True)),
        ("both + bias", lambda: _with_bias(m, x, w, gy)),
    ]


def _with_bias(m, x, w, gy):
    """The three gradients as the conv2d op asks for them: the variant's
    ``backward_with_bias`` where it has one, the op's own bias sum where it returns None
    or has none (a build from before it)."""
    from tapegrad.ops.conv import channel_sum

    fused = getattr(m, "backward_with_bias", None)
    if fused is not None:
        gx, gw, gb = fused(gy, x, w, *ARGS, True, True)
    else:
        (gx, gw), gb = m.backward(gy, x, w, *ARGS, True, True), None
    return gx, gw, (channel_sum(gy) if gb is None else gb)


def _load_build(checkout: str):
    """``chvec_cy`` compiled in ``checkout``, as a second module object (its relative imports
    resolve to this checkout's package, which it only uses for helpers)."""
    (path,) = glob.glob(os.path.join(checkout, "kernels", "conv", "chvec_cy.*.so"))
    spec = importlib.util.spec_from_file_location("tapegrad.kernels.conv.chvec_cy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Switch:
    """Stands in for the registered chvec-cython module: every attribute is the ``current``
    build's, so ``auto``'s dispatch runs whichever build is switched on."""

    def __init__(self, builds: dict) -> None:
        self.builds, self.current = builds, next(iter(builds))

    def __getattr__(self, name: str):
        return getattr(self.builds[self.current], name)


def steps(builds: dict, models: list[str], repeats: int) -> None:
    """Training steps (batch 64) of zoo ``models`` with each build of chvec-cython switched
    in before alternate steps: medians of wall ms and process CPU ms."""
    from tapegrad.bench.steps import tapegrad_step
    from tapegrad.kernels import registry

    variant = registry._op("conv2d").variants["chvec-cython"]
    switch = _Switch(builds)
    saved, variant._module = variant._module, switch
    try:
        print("| model | " + " | ".join(f"{k} ms (CPU)" for k in builds) + " | ratio (CPU) |")
        print("| --- |" + " ---: |" * (len(builds) + 1))
        for model in models:
            step = tapegrad_step(model, 64)
            wall = {k: [] for k in builds}
            cpu = {k: [] for k in builds}
            for k in builds:
                switch.current = k
                step()
                step()
            for _ in range(repeats):
                for k in builds:
                    switch.current = k
                    t0, c0 = time.perf_counter(), time.process_time()
                    step()
                    wall[k].append(1e3 * (time.perf_counter() - t0))
                    cpu[k].append(1e3 * (time.process_time() - c0))
            w = [float(np.median(wall[k])) for k in builds]
            c = [float(np.median(cpu[k])) for k in builds]
            cells = " | ".join(f"{a:.1f} ({b:.1f})" for a, b in zip(w, c, strict=True))
            print(f"| {model} | {cells} | {w[-1] / w[0]:.2f} ({c[-1] / c[0]:.2f}) |", flush=True)
    finally:
        variant._module = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--before", help="checkout whose chvec_cy build to compare with")
    ap.add_argument("--only", default="", help="layers whose name has this")
    ap.add_argument("--steps", nargs="*", metavar="MODEL",
                    help="time these zoo models' training steps (resnet8 vgg_small)")  # fmt: skip
    a = ap.parse_args()

    from tapegrad import kernels as K
    from tapegrad.kernels import threads as T

    T.set_num_threads(a.threads)
    builds = {"now": K.get("conv2d", "chvec-cython")}
    if a.before:
        builds = {"before": _load_build(a.before), **builds}
    if a.steps is not None:
        steps(builds, a.steps or ["resnet8", "vgg_small"], a.repeats)
        return
    rng = np.random.default_rng(0)
    a_ = rng.standard_normal((GEMM, GEMM), dtype=np.float32)
    head = " | ".join(f"{k} ms [min-max] (CPU ms) | {k} GFLOP/s (% GEMM)" for k in builds)
    print(f"| layer | pass | {head} |" + (" ratio |" if a.before else "") + " GEMM GFLOP/s |")
    print("| --- | --- |" + " ---: | ---: |" * len(builds) + (" ---: |" if a.before else "")
          + " ---: |")  # fmt: skip
    for name, n, c, o, side in LAYERS:
        if a.only not in name:
            continue
        x = rng.standard_normal((n, c, side, side), dtype=np.float32)
        w = rng.standard_normal((o, c, 3, 3), dtype=np.float32) * 0.1
        b = np.zeros(o, np.float32)
        gy = rng.standard_normal((n, o, side, side), dtype=np.float32)
        flop = 2 * n * c * o * side * side * 9
        fns = {(k, p): f for k, m in builds.items() for p, f in _passes(m, x, w, b, gy)}
        fns[("gemm", "")] = lambda: a_ @ a_
        ts = {key: [] for key in fns}
        cpu = {key: [] for key in fns}
        for f in fns.values():
            f()
            f()
        for _ in range(a.repeats):
            for key, f in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                ts[key].append(1e3 * (time.perf_counter() - t0))
                cpu[key].append(1e3 * (time.process_time() - c0))
        gemm = 2 * GEMM**3 / float(np.median(ts[("gemm", "")])) / 1e6
        for p in PASSES:
            cells, meds = [], []
            for k in builds:
                v = ts[(k, p)]
                med = float(np.median(v))
                meds.append(med)
                rate = MULT.get(p, 1) * flop / med / 1e6
                cells.append(f"{med:.2f} [{min(v):.2f}-{max(v):.2f}] ({np.median(cpu[(k, p)]):.2f})"
                             f" | {rate:.0f} ({100 * rate / gemm:.0f}%)")  # fmt: skip
            ratio = f" {meds[-1] / meds[0]:.2f} |" if a.before else ""
            print(f"| {name} | {p} | " + " | ".join(cells) + f" |{ratio} {gemm:.0f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
