"""direct-cython's depthwise passes against a build from another commit, alternated call by
call on the same arrays: the forward (with bias), the input gradient alone, the weight
gradient alone and the backward with all three gradients (``backward_with_bias``, plus the
op's ``channel_sum`` when a build leaves the bias gradient to the op). At 1 thread the time
is the calling thread's CPU time (time descheduled by other work on a shared machine does not
count) and the figure the minimum; at more threads, wall time and the median. Each figure
comes with its multiple of the copy time of the bytes the pass reads and writes (x and y, gy
and x; the backward: gy and x read, gx written) at ``np.copyto``'s rate on 64 MB arrays,
measured in the same loop. Prints a markdown table.

    python benchmarks/depthwise_memory_speed.py \
        --before path/to/direct_cy.cpython-311-x86_64-linux-gnu.so [--threads 1] [--repeats 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

CASES = [
    ("3x3 N=32 128ch 32x32 pad 1", (32, 128, 32, 32), 3, 1, 1),
    ("3x3 s2 N=32 256ch 16x16 pad 1", (32, 256, 16, 16), 3, 2, 1),
    ("5x5 N=32 128ch 32x32 pad 2", (32, 128, 32, 32), 5, 1, 2),
    ("5x5 s2 N=32 256ch 16x16 pad 2", (32, 256, 16, 16), 5, 2, 2),
    ("mobilenet dw1 3x3 N=64 32ch 32x32", (64, 32, 32, 32), 3, 1, 1),
    ("mobilenet dw2 3x3 s2 N=64 64ch 32x32", (64, 64, 32, 32), 3, 2, 1),
    ("mobilenet dw3 3x3 N=64 128ch 16x16", (64, 128, 16, 16), 3, 1, 1),
    ("mobilenet dw4 3x3 s2 N=64 128ch 16x16", (64, 128, 16, 16), 3, 2, 1),
]
PASSES = ("forward", "input grad", "weight grad", "backward (gx, gw, gb)")


def _load_before(path: str):
    """The direct-cython module built from another commit, loaded beside this checkout's
    (its relative imports resolve in this checkout)."""
    spec = importlib.util.spec_from_file_location(
        "tapegrad.kernels.depthwise_before.direct_cy", path
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _passes(mod, x, w, b, gy, args):
    from tapegrad.ops.conv import channel_sum

    def backward():
        gb = mod.backward_with_bias(gy, x, w, *args, True, True)[2]
        if gb is None:
            channel_sum(gy)

    return {
        "forward": lambda: mod.forward(x, w, b, *args),
        "input grad": lambda: mod.backward(gy, x, w, *args, True, False),
        "weight grad": lambda: mod.backward(gy, x, w, *args, False, True),
        "backward (gx, gw, gb)": backward,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    import tapegrad as tg
    from tapegrad.kernels.depthwise import direct_cy as now

    before = _load_before(a.before)
    tg.set_num_threads(a.threads)
    clock = time.thread_time if a.threads == 1 else time.perf_counter
    agg = min if a.threads == 1 else np.median
    rng = np.random.default_rng(0)
    src = rng.standard_normal(16 << 20).astype(np.float32)
    dst = np.empty_like(src)
    head = " | ".join(f"{p} before | {p} now" for p in PASSES)
    print(f"| case | copy GB/s | {head} |")
    print("| --- | ---: | " + " | ".join("---: | ---:" for _ in PASSES) + " |")
    for name, shape, k, s, p in CASES:
        n, c, h, _ = shape
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal((c, 1, k, k)) * 0.05).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        ho = (h + 2 * p - k) // s + 1
        gy = rng.standard_normal((n, c, ho, ho)).astype(np.float32)
        args = ((s, s), (p, p), (1, 1), c)
        fns = {"before": _passes(before, x, w, b, gy, args), "now": _passes(now, x, w, b, gy, args)}
        calls = {(p_, key): fns[key][p_] for p_ in PASSES for key in fns}
        calls["copy"] = lambda: np.copyto(dst, src)
        ts = {key: [] for key in calls}
        for f in calls.values():
            f()
            f()
        for _ in range(a.repeats):
            for key, f in calls.items():
                t0 = clock()
                f()
                ts[key].append(1e3 * (clock() - t0))
        rate = 2 * src.nbytes / min(ts["copy"]) * 1e3
        one = (x.nbytes + gy.nbytes) / rate * 1e3
        whole = (2 * x.nbytes + gy.nbytes) / rate * 1e3
        cells = []
        for p_ in PASSES:
            ref = whole if p_.startswith("backward") else one
            for key in fns:
                v = float(agg(ts[(p_, key)]))
                cells.append(f"{v:.2f} ({v / ref:.1f}x)")
        print(f"| {name} | {rate / 1e9:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
