"""winograd-cython's channel-lane paths on batches smaller than the thread team: the rule
before (above 16x16 outputs only with an image per thread, else F(4x4, 3x3) splitting one
image's tiles between the threads and chvec-cython's direct weight gradient) against now
(the channel-lane paths on any batch), forward + backward through ``conv2d`` at 2 threads,
alternated call by call in one process; median wall ms and the interquartile range of the
per-pair ratios.

    python benchmarks/winograd_lanes_batch1.py
"""

import time

import numpy as np

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

W = K.get("conv2d", "winograd-cython")
K.set_num_threads(2)
new_ul, new_wl = W._uses_lanes, W._wgrad_lanes


def fits(n, ho, wo):
    return max(ho, wo) <= 16 or n >= K.get_num_threads()


def old_ul(c, o, ho, wo, n):
    return new_ul(c, o, ho, wo, n) and fits(n, ho, wo)


def old_wl(c, o, ho, wo, n):
    return new_wl(c, o, ho, wo, n) and fits(n, ho, wo)


rng = np.random.default_rng(0)
for n, c, o, s in [
    (1, 64, 64, 32),
    (1, 32, 32, 32),
    (1, 64, 64, 28),
    (1, 128, 128, 32),
    (1, 64, 64, 24),
    (1, 32, 64, 32),
]:
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)
    w = (rng.standard_normal((o, c, 3, 3)) * 0.05).astype(np.float32)
    b = np.zeros(o, np.float32)
    gy = rng.standard_normal((n, o, s, s)).astype(np.float32)
    modes = {"before": (old_ul, old_wl), "now": (new_ul, new_wl)}
    ts = {m: [] for m in modes}
    with K.use(conv2d="winograd-cython"):
        for r in range(45):
            for m in modes if r % 2 else list(modes)[::-1]:
                W._uses_lanes, W._wgrad_lanes = modes[m]
                tx = tg.Tensor(x, requires_grad=True)
                tw = tg.Tensor(w, requires_grad=True)
                tb = tg.Tensor(b, requires_grad=True)
                t0 = time.perf_counter()
                y = F.conv2d(tx, tw, tb, padding=1)
                y.backward(tg.Tensor(gy))
                t1 = time.perf_counter()
                if r >= 5:
                    ts[m].append(t1 - t0)
    W._uses_lanes, W._wgrad_lanes = new_ul, new_wl
    a, bb = np.median(ts["before"]) * 1e3, np.median(ts["now"]) * 1e3
    q = np.percentile(np.array(ts["now"]) / np.array(ts["before"]), [25, 75])
    print(
        f"| N={n} {c}->{o} {s}x{s} | {a:.3f} | {bb:.3f} | {bb / a:.2f} ({q[0]:.2f}-{q[1]:.2f}) |",
        flush=True,
    )
