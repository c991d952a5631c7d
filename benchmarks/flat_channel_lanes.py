"""flat-cython's kernel passes on the strided layers, alternated call by call: a flat-cython
build from another commit (``--before``), this checkout's, and im2col-cython. At 1 thread the
time is the process's CPU time (``time.process_time``: time spent descheduled by other work
on a shared machine does not count); at more threads, wall time. Prints a markdown table:
ms median (min) and GFLOP/s per layer, thread count and pass, and now / before.

    python benchmarks/flat_channel_lanes.py \
        --before path/to/flat_cy.cpython-311-x86_64-linux-gnu.so \
        [--repeats 25] [--threads 1,2] [--only NAME]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _timing import PASSES, kernel_passes
from stride2_two_threads import LAYERS, _load_before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    from tapegrad import kernels as K
    from tapegrad.kernels import threads

    # this checkout's module first: it loads the OpenMP runtime the other one links to
    now = K.get("conv2d", "flat-cython")
    mods = {"flat before": _load_before(a.before), "flat now": now}
    mods["im2col"] = K.get("conv2d", "im2col-cython")
    print("| layer | threads | pass | " + " | ".join(mods) + " | now / before |")
    print("| --- | ---: | --- | " + " | ".join("---:" for _ in mods) + " | ---: |")
    rng = np.random.default_rng(0)
    for nt in [int(t) for t in a.threads.split(",")]:
        threads.set_num_threads(nt)
        clock = time.process_time if nt == 1 else time.perf_counter
        for name, n, c, o, side, k, p in LAYERS:
            if a.only not in name:
                continue
            x = rng.standard_normal((n, c, side, side), dtype=np.float32)
            w = rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1
            b = np.zeros(o, np.float32)
            args = ((2, 2), (p, p), (1, 1), 1)
            ho = (side + 2 * p - k) // 2 + 1
            gy = rng.standard_normal((n, o, ho, ho), dtype=np.float32)
            flops = 2 * n * o * ho * ho * c * k * k
            fns = {key: kernel_passes(m, x, w, b, gy, args) for key, m in mods.items()}
            for pname in PASSES:
                ts = {key: [] for key in mods}
                for key in mods:
                    fns[key][pname]()
                for _ in range(a.repeats):
                    for key in mods:
                        t0 = clock()
                        fns[key][pname]()
                        ts[key].append(1e3 * (clock() - t0))
                med = {key: float(np.median(v)) for key, v in ts.items()}
                cells = [
                    f"{med[key]:.2f} ({min(ts[key]):.2f}) {flops / med[key] / 1e6:.0f}"
                    for key in mods
                ]
                ratio = med["flat now"] / med["flat before"]
                print(f"| {name} | {nt} | {pname} | " + " | ".join(cells) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
