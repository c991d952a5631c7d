"""Per-call times of the normalisation kernels' variants, called directly (no op dispatch).

    python benchmarks/norm_per_call.py THREADS [DIR_WITH_OLD_MODULE]

Alternated rounds (best of 15 calls per variant and round, median over 7 rounds) of
``fused-cython``, ``fused-numba`` and, when a directory holding an older build of the Cython
module (``fused_cy_before``) is given, that build too: the before/after table of
benchmarks/results/norm-per-call.md. Run it under the shared benchmark lock.
"""

import importlib
import sys

import numpy as np
from _timing import call_times

from tapegrad.kernels import threads

nth = int(sys.argv[1])
threads.set_num_threads(nth)
mods = {}
if len(sys.argv) > 2:
    sys.path.insert(0, sys.argv[2])
    mods["cython before"] = threads.import_extension("fused_cy_before")
mods["cython after"] = threads.import_extension("tapegrad.kernels.norm.fused_cy")
mods["numba"] = importlib.import_module("tapegrad.kernels.norm.fused_numba")
rng = np.random.default_rng(0)


def cases():
    for shp in [(8, 64, 1024), (64, 16, 1024), (64, 32, 256), (64, 64, 64)]:
        x = rng.standard_normal(shp).astype(np.float32)
        gy = rng.standard_normal(shp).astype(np.float32)
        w = np.ones(shp[1])
        b = np.zeros(shp[1])
        lab = "batch_norm N{} C{} S{}".format(*shp)

        def fw(m, x=x, w=w, b=b):
            return m.bn_forward_train(x, w, b, 1e-5, True)

        def bw(m, x=x, gy=gy, w=w, b=b):
            st = fw(m)
            return lambda: m.bn_backward(gy, x, st[1], st[2], w, True)

        yield lab, fw, bw
    for shp in [(512, 1024), (64, 16384)]:
        x = rng.standard_normal(shp).astype(np.float32)
        gy = rng.standard_normal(shp).astype(np.float32)
        w = np.ones((1, shp[1]), np.float32)
        lab = "layer_norm rows {} x {}".format(*shp)

        def fw(m, x=x, w=w):
            return m.row_forward(x, w, w, 1e-5)

        def bw(m, x=x, gy=gy, w=w):
            st = fw(m)
            return lambda: m.row_backward(gy, x, st[1], st[2], w, True)

        yield lab, fw, bw


R, K = 7, 15
last = "cython before" if "cython before" in mods else "numba"
print("| case | pass | threads | " + " | ".join(f"{k} ms" for k in mods) + f" | after / {last} |")
print("| --- | --- | ---: | " + " | ".join("---:" for _ in mods) + " | ---: |")
for lab, fw, bw in cases():
    for pas in ("forward", "backward"):
        fns = {
            k: ((lambda m=m, fw=fw: fw(m)) if pas == "forward" else bw(m)) for k, m in mods.items()
        }
        for f in fns.values():
            for _ in range(3):
                f()
        ts = {k: [] for k in mods}
        for _ in range(R):  # alternated rounds, best-of-K inside each
            for k, f in fns.items():
                ts[k].append(1e3 * min(call_times(f, K, warmup=0)))
        med = {k: float(np.median(v)) for k, v in ts.items()}
        print(
            f"| {lab} | {pas} | {nth} | "
            + " | ".join(f"{med[k]:.3f}" for k in mods)
            + f" | {med['cython after'] / med[last]:.2f} |"
        )
