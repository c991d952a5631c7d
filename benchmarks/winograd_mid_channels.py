"""conv2d's ``auto`` rule on 16x16 outputs with 32 channels: the rule before (im2col-cython
first) against the rule now (winograd-cython first when the input has at least as many
channels as the output), in one process, alternated call by call.

Kernel level: for each layer, winograd-cython and im2col-cython's forward, input gradient
and weight gradient, each pass timed for both variants in turn, median of ``--repeats``
rounds (wall and process CPU time, which other processes on a shared machine disturb
less). Step level (``--steps``): resnet8's and vgg_small's training step (batch 64), the
rule's 16x16 tier switched off and on between steps (the rule's per-shape memo cleared at
each switch), median over ``--repeats`` steps each. float32, ``--threads`` threads.

    python benchmarks/winograd_mid_channels.py [--threads 1] [--repeats 15] [--steps]
"""

from __future__ import annotations

import numpy as np
from _timing import alternated_times, kernels_or_steps_main, rule_switch_steps

# (N, C in, C out, output side): 3x3, stride 1, padding 1
LAYERS = [
    (64, 32, 32, 16),  # resnet8's 16x16 layer
    (64, 64, 32, 16),
    (64, 32, 64, 16),  # vgg_small's 16x16 32->64 layer: im2col-cython stays first
    (32, 32, 32, 16),
    (64, 32, 32, 12),  # below the tier's 256 pixels: im2col-cython stays first
]


def _row(case: str, part: str, a, b) -> str:
    """A table row: the two (wall, CPU) pairs and their ratios."""
    return (f"| {case} | {part} | {a[0]:.2f} ({a[1]:.2f}) | {b[0]:.2f} ({b[1]:.2f}) | "
            f"{a[0] / b[0]:.2f} ({a[1] / b[1]:.2f}) |")  # fmt: skip


def kernels(repeats: int) -> None:
    from tapegrad.kernels import registry

    mods = {v: registry.get("conv2d", v) for v in ("winograd-cython", "im2col-cython")}
    args = ((1, 1), (1, 1), (1, 1), 1)
    rng = np.random.default_rng(0)
    print("| N C O H | pass | winograd-cython ms (CPU) | im2col-cython ms (CPU) | ratio (CPU) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for n, c, o, h in LAYERS:
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = 0.1 * rng.standard_normal((o, c, 3, 3), dtype=np.float32)
        gy = rng.standard_normal((n, o, h, h), dtype=np.float32)
        passes = {
            "forward": lambda m, x=x, w=w: m.forward(x, w, None, *args),
            "input gradient": lambda m, x=x, w=w, gy=gy: m.backward(gy, x, w, *args, True, False),
            "weight gradient": lambda m, x=x, w=w, gy=gy: m.backward(gy, x, w, *args, False, True),
        }
        total = {v: [0.0, 0.0] for v in mods}
        for name, p in passes.items():
            t = alternated_times({v: (lambda m=m, p=p: p(m)) for v, m in mods.items()}, repeats)
            wi, im = t["winograd-cython"], t["im2col-cython"]
            for v, tv in t.items():
                total[v] = [total[v][0] + tv[0], total[v][1] + tv[1]]
            print(_row(f"{n} {c} {o} {h}", name, wi, im))
        wi, im = total["winograd-cython"], total["im2col-cython"]
        print(_row(f"{n} {c} {o} {h}", "all three", wi, im))


def _mid_tier(on: bool) -> None:
    from tapegrad.kernels import conv, registry

    conv._WINOGRAD_MID_MIN_CHANNELS = 32 if on else 1 << 30
    registry._auto_memo.clear()


def steps(repeats: int) -> None:
    rule_switch_steps(("resnet8", "vgg_small"), _mid_tier, repeats)


def main() -> None:
    kernels_or_steps_main(__doc__, kernels, steps, repeats=15)


if __name__ == "__main__":
    main()
