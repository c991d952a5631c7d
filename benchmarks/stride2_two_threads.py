"""Strided conv2d layers per pass at 1 and 2 threads: flat-cython against im2col-cython (and,
with ``--before``, flat-cython built from another commit), alternated call by call.

The layers: resnet8's stride-2 3x3 layers (16->32 on 32x32, 32->64 on 16x16),
a 16->32 3x3 on 28x28, the 5x5 stride-2 32->48 layer of the convolution targets,
conv_autoencoder's 16->32 3x3 on 14x14 (7x7 outputs) and a 32->32 3x3 on 16x16. Per
layer, thread count and variant: the forward, the input gradient and the weight gradient
each alone, median ms of ``--repeats`` calls [quartiles], GFLOP/s
and its share of ``np.matmul``'s float32 2048^3 rate at that thread count (measured at the
start). float32. Then conv2d_relu's forward on the 16->32 layers: the forward and the
``bias_relu`` epilogue apart, against the variants' ``forward_relu``.

    python benchmarks/stride2_two_threads.py [--repeats 15] [--threads 1,2]
        [--before path/to/flat_cy.cpython-311-x86_64-linux-gnu.so] [--out FILE]

``--before`` loads a flat-cython extension built from another commit (copied out of that
checkout's ``kernels/conv``) beside this checkout's, for before/after rows in one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
from _report import finish, uptime
from _timing import PASSES, kernel_passes

# (name, N, C in, C out, image side, kernel, padding), stride 2
LAYERS = [
    ("resnet8 3x3 s2 N=64 16->32 32x32", 64, 16, 32, 32, 3, 1),
    ("resnet8 3x3 s2 N=64 32->64 16x16", 64, 32, 64, 16, 3, 1),
    ("conv2d 3x3 s2 N=64 16->32 28x28 (conv_autoencoder channels)", 64, 16, 32, 28, 3, 1),
    ("conv2d 5x5 s2 N=16 32->48 28x28", 16, 32, 48, 28, 5, 2),
    ("conv_autoencoder 3x3 s2 N=64 16->32 14x14", 64, 16, 32, 14, 3, 1),
    ("conv2d 3x3 s2 N=64 32->32 16x16", 64, 32, 32, 16, 3, 1),
]


def _load_before(path: str):
    """The flat-cython module built from another commit, loaded under the package's name
    (its relative imports resolve in this checkout) without replacing this one's."""
    spec = importlib.util.spec_from_file_location("tapegrad.kernels.conv.flat_cy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _gemm(repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        ts.append(time.perf_counter() - t0)
    return 2 * 2048**3 / float(np.median(ts)) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--before", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    from tapegrad import kernels as K
    from tapegrad.kernels import threads

    # this checkout's module first: it loads the OpenMP runtime the other one links to
    now = K.get("conv2d", "flat-cython")
    mods = {"flat-cython before": _load_before(a.before)} if a.before else {}
    mods["flat-cython"] = now
    mods["im2col-cython"] = K.get("conv2d", "im2col-cython")
    counts = [int(t) for t in a.threads.split(",")]
    peaks = {}
    for nt in counts:
        threads.set_num_threads(nt)
        peaks[nt] = _gemm()
    lines = [
        f"uptime at start: {uptime()}",
        "float32 np.matmul 2048^3: "
        + ", ".join(f"{peaks[nt]:.0f} GFLOP/s at {nt} thread(s)" for nt in counts),
        f"{a.repeats} calls per pass and variant, alternated; ms median [quartiles], "
        "GFLOP/s = share of that GEMM rate",
        "",
        "| layer | threads | variant | forward | input gradient | weight gradient | sum ms |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    rng = np.random.default_rng(0)
    for name, n, c, o, side, k, p in LAYERS:
        x = rng.standard_normal((n, c, side, side), dtype=np.float32)
        w = rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1
        b = np.zeros(o, np.float32)
        args = ((2, 2), (p, p), (1, 1), 1)
        ho = (side + 2 * p - k) // 2 + 1
        gy = rng.standard_normal((n, o, ho, ho), dtype=np.float32)
        flops = 2 * n * o * ho * ho * c * k * k
        for nt in counts:
            threads.set_num_threads(nt)
            fns = {}
            for v, m in mods.items():
                for ps, f in kernel_passes(m, x, w, b, gy, args).items():
                    fns[(v, ps)] = f
            ts = {key: [] for key in fns}
            for f in fns.values():
                f()
                f()
            for _ in range(a.repeats):
                for key, f in fns.items():
                    t0 = time.perf_counter()
                    f()
                    ts[key].append(1e3 * (time.perf_counter() - t0))
            for v in mods:
                cells, total = [], 0.0
                for ps in PASSES:
                    q1, med, q3 = np.percentile(ts[(v, ps)], [25, 50, 75])
                    total += med
                    rate = flops / med / 1e6
                    cells.append(
                        f"{med:.2f} [{q1:.2f}-{q3:.2f}] {rate:.0f} = {rate / peaks[nt]:.0%}"
                    )
                lines.append(f"| {name} | {nt} | {v} | " + " | ".join(cells) + f" | {total:.2f} |")
    lines += ["", *_relu_rows(a.repeats, counts)]
    finish(lines, a.out)


def _relu_rows(repeats: int, counts: list[int]) -> list[str]:
    """conv2d_relu's forward on the 16->32 layers (the conv_autoencoder's encoder runs it):
    flat-cython's forward then the ``bias_relu`` epilogue as a separate pass, against
    flat-cython's and im2col-cython's ``forward_relu`` (bias and ReLU applied as the rows
    are copied out), alternated; ms median [quartiles]."""
    from tapegrad import kernels as K
    from tapegrad.kernels import threads
    from tapegrad.kernels.fused import BiasReluCall

    flat, im2col = K.get("conv2d", "flat-cython"), K.get("conv2d", "im2col-cython")
    rng = np.random.default_rng(0)
    rows = [
        "conv2d_relu forward (with bias), ms median [quartiles]:",
        "",
        "| layer | threads | flat-cython + epilogue | flat-cython forward_relu "
        "| im2col-cython forward_relu |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, n, c, o, side, k, p in LAYERS:
        if (c, o, k) != (16, 32, 3):
            continue
        x = rng.standard_normal((n, c, side, side), dtype=np.float32)
        w = rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1
        b = rng.standard_normal(o).astype(np.float32)
        args = ((2, 2), (p, p), (1, 1), 1)
        call = BiasReluCall.of(flat.forward(x, w, None, *args), b)
        epi = K.get("bias_relu", K.resolved_name("bias_relu", call))

        def apart(x=x, w=w, b=b, args=args, call=call, epi=epi) -> None:
            call.forward(epi, flat.forward(x, w, None, *args), b)

        fns = {
            "apart": apart,
            "flat": lambda x=x, w=w, b=b, args=args: flat.forward_relu(x, w, b, *args),
            "im2col": lambda x=x, w=w, b=b, args=args: im2col.forward_relu(x, w, b, *args),
        }
        for nt in counts:
            threads.set_num_threads(nt)
            ts = {key: [] for key in fns}
            for f in fns.values():
                f()
                f()
            for _ in range(repeats):
                for key, f in fns.items():
                    t0 = time.perf_counter()
                    f()
                    ts[key].append(1e3 * (time.perf_counter() - t0))
            cells = []
            for key in fns:
                q1, med, q3 = np.percentile(ts[key], [25, 50, 75])
                cells.append(f"{med:.2f} [{q1:.2f}-{q3:.2f}]")
            rows.append(f"| {name} | {nt} | " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    main()
