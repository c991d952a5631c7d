"""resnet8's and vgg_small's 3x3 stride-1 layers (16 to 64 channels on 8x8 to 32x32 planes):
each pass of chvec-cython and of winograd-cython, this checkout's build and another
checkout's (``--before DIR``: that checkout's compiled ``kernels/conv/winograd_cy``, loaded
into the same process), alternated call by call, so a shared machine's changing speed falls
on all alike.

    python benchmarks/resnet8_3x3.py [--threads 1] [--repeats 9] [--before /path/to/checkout]
    python benchmarks/resnet8_3x3.py --steps [--threads 1] [--repeats 9]

Per pass the median ms of ``--repeats`` calls after two warm-up calls, the process CPU ms
in parentheses (at one thread: the time the call had a core). "fwd + bwd" is the forward
and the backward with both gradients, as the conv2d op runs them on these layers (they have
no bias). float32, padding 1, batch 64. ``--steps``: resnet8's and vgg_small's training
steps (batch 64) with ``auto``'s rule before and after winograd-cython's lead on these
layers (``tapegrad.kernels.conv._LANES_LEAD``; the rule's memo cleared at each switch),
alternated step by step.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os

import numpy as np
from _timing import alternated_times

# (name, N, C in, C out, image side)
LAYERS = [
    ("resnet8 16->16 32x32", 64, 16, 16, 32),
    ("resnet8 32->32 16x16", 64, 32, 32, 16),
    ("resnet8 64->64 8x8", 64, 64, 64, 8),
    ("vgg_small 32->64 16x16", 64, 32, 64, 16),
    ("vgg_small 64->64 16x16", 64, 64, 64, 16),
    ("128->128 8x8", 64, 128, 128, 8),
]
ARGS = ((1, 1), (1, 1), (1, 1), 1)
PASSES = ("forward", "input grad", "weight grad", "fwd + bwd")


def _load_build(checkout: str):
    """``winograd_cy`` compiled in ``checkout``, as a second module object."""
    (path,) = glob.glob(os.path.join(checkout, "kernels", "conv", "winograd_cy.*.so"))
    spec = importlib.util.spec_from_file_location("tapegrad.kernels.conv.winograd_cy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _passes(m, x, w, gy):
    def op():
        m.forward(x, w, None, *ARGS)
        return m.backward(gy, x, w, *ARGS, True, True)

    return {
        "forward": lambda: m.forward(x, w, None, *ARGS),
        "input grad": lambda: m.backward(gy, x, w, *ARGS, True, False),
        "weight grad": lambda: m.backward(gy, x, w, *ARGS, False, True),
        "fwd + bwd": op,
    }


def kernels(builds: dict, repeats: int) -> None:
    rng = np.random.default_rng(0)
    print("| layer | pass | " + " | ".join(f"{k} ms (CPU)" for k in builds) + " |")
    print("| --- | --- |" + " ---: |" * len(builds))
    for name, n, c, o, side in LAYERS:
        x = rng.standard_normal((n, c, side, side), dtype=np.float32)
        w = rng.standard_normal((o, c, 3, 3), dtype=np.float32) * 0.1
        gy = rng.standard_normal((n, o, side, side), dtype=np.float32)
        fns = {(k, p): f for k, m in builds.items() for p, f in _passes(m, x, w, gy).items()}
        t = alternated_times(fns, repeats)  # (wall ms, CPU ms) medians, alternated
        for p in PASSES:
            cells = [f"{t[(k, p)][0]:.2f} ({t[(k, p)][1]:.2f})" for k in builds]
            print(f"| {name} | {p} | " + " | ".join(cells) + " |", flush=True)


def steps(repeats: int) -> None:
    from _timing import rule_switch_steps

    from tapegrad.kernels import conv, registry

    def switch(on: bool) -> None:
        conv._LANES_LEAD = on
        registry._auto_memo.clear()  # the rule's per-shape memo

    rule_switch_steps(("resnet8", "vgg_small"), switch, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--before", help="checkout whose winograd_cy build to compare with")
    ap.add_argument("--steps", action="store_true", help="time training steps, not kernels")
    a = ap.parse_args()

    from tapegrad import kernels as K
    from tapegrad.kernels import threads as T

    T.set_num_threads(a.threads)
    print(f"threads {a.threads}, repeats {a.repeats}")
    if a.steps:
        steps(a.repeats)
        return
    builds = {"chvec-cython": K.get("conv2d", "chvec-cython")}
    if a.before:
        builds["winograd-cython before"] = _load_build(a.before)
    builds["winograd-cython"] = K.get("conv2d", "winograd-cython")
    kernels(builds, a.repeats)


if __name__ == "__main__":
    main()
