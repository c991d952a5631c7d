"""flat-cython's passes on strided layers with small outputs (7x7, 8x8) and the shapes around
them: a flat-cython build from another commit (``--before``) against this checkout's, the
two alternated call by call. At 1 thread the time is the process's CPU time
(``time.process_time``: time spent descheduled by other work on a shared machine does not
count); at more threads, wall time. Prints a markdown table: ms median (min, max) per layer
and pass, GFLOP/s, and now / before.

    python benchmarks/strided_small_outputs.py \
        --before path/to/flat_cy.cpython-311-x86_64-linux-gnu.so [--threads 1] [--repeats 9]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _timing import PASSES, kernel_passes
from stride2_two_threads import _load_before

# (N, C, H=W, O, kernel, stride, padding)
LAYERS = [
    (16, 64, 15, 64, 5, 2, 1),
    (32, 16, 32, 32, 5, 2, 2),
    (16, 64, 16, 64, 5, 2, 2),
    (16, 64, 14, 64, 5, 2, 2),
    (16, 32, 28, 48, 5, 2, 2),
    (16, 96, 16, 128, 5, 2, 2),
    (16, 64, 21, 64, 5, 3, 2),
    (32, 64, 16, 64, 3, 2, 1),
    (64, 32, 16, 64, 3, 2, 1),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    from tapegrad import kernels as K
    from tapegrad.kernels import threads

    # this checkout's module first: it loads the OpenMP runtime the other one links to
    now = K.get("conv2d", "flat-cython")
    mods = {"before": _load_before(a.before), "now": now}
    threads.set_num_threads(a.threads)
    clock = time.process_time if a.threads == 1 else time.perf_counter
    print(f"{a.threads} thread(s), {'CPU' if a.threads == 1 else 'wall'} ms, "
          f"median (min, max) of {a.repeats}, float32")  # fmt: skip
    print()
    print("| layer | pass | before ms | now ms | GFLOP/s before / now | now / before |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for n, c, h, o, k, s, p in LAYERS:
        ho = (h + 2 * p - k) // s + 1
        name = f"N={n} {c}->{o} {h}x{h} {k}x{k} s{s} p{p} ({ho}x{ho} out)"
        if a.only not in name:
            continue
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1
        b = np.zeros(o, np.float32)
        args = ((s, s), (p, p), (1, 1), 1)
        gy = rng.standard_normal((n, o, ho, ho), dtype=np.float32)
        flops = 2 * n * o * ho * ho * c * k * k
        fns = {key: kernel_passes(m, x, w, b, gy, args) for key, m in mods.items()}
        for pname in PASSES:
            ts = {key: [] for key in mods}
            for key in mods:
                fns[key][pname]()
                fns[key][pname]()
            for _ in range(a.repeats):
                for key in mods:
                    t0 = clock()
                    fns[key][pname]()
                    ts[key].append(1e3 * (clock() - t0))
            med = {key: float(np.median(v)) for key, v in ts.items()}
            cells = [f"{med[key]:.2f} ({min(ts[key]):.2f}, {max(ts[key]):.2f})" for key in mods]
            gf = " / ".join(f"{flops / med[key] / 1e6:.0f}" for key in mods)
            ratio = med["now"] / med["before"]
            print(f"| {name} | {pname} | " + " | ".join(cells) + f" | {gf} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
