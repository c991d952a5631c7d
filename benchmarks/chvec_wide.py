"""conv2d's ``auto`` rule on wider stride-1 3x3 and 5x5 layers: the rule before (Winograd,
im2col or blocked first) against the rule now (chvec-cython first, see
``tapegrad.kernels.conv._chvec_wide_leads``), in one process, alternated call by call.

Kernel level: for each layer, the variant the rule before puts first and chvec-cython, each
timed forward + input gradient + weight gradient, median of ``--repeats`` rounds (wall and
process CPU time, which other processes on a shared machine disturb less). Step level
(``--steps``): each zoo model's training step (batch 64) with the wide tier switched off and
on between steps (the rule's per-shape memo cleared at each switch). float32, ``--threads``
threads.

    python benchmarks/chvec_wide.py [--threads 1] [--repeats 9] [--steps]
"""

from __future__ import annotations

import numpy as np
from _timing import alternated_times, kernels_or_steps_main, rule_switch_steps

# (N, C in, C out, image side, kernel, padding), stride 1
LAYERS = [
    (64, 32, 32, 32, 3, 1),  # vgg_small's 32x32 layer
    (64, 32, 64, 16, 3, 1),  # vgg_small's 16x16 32->64
    (64, 64, 64, 16, 3, 1),  # vgg_small's 16x16 64->64
    (64, 32, 32, 16, 3, 1),  # resnet8's 16x16 layer
    (64, 64, 64, 8, 3, 1),  # resnet8's 8x8 layer
    (32, 64, 64, 32, 3, 1),  # the convolution targets' 3x3 case
    (64, 16, 32, 32, 3, 1),
    (32, 32, 48, 28, 3, 1),
    (32, 32, 24, 28, 3, 1),
    (32, 16, 32, 28, 5, 2),
    (64, 32, 64, 14, 5, 2),
    (8, 64, 64, 16, 3, 1),
    (64, 128, 128, 8, 3, 1),  # 128 channels: the rule keeps winograd-cython
]
MODELS = ("lenet5", "vgg_small", "mobilenet_small", "resnet8", "conv_autoencoder")


def _wide(on: bool) -> None:
    from tapegrad.kernels import conv, registry

    conv._CHVEC_WIDE_MIN_OUT = 16 if on else 1 << 30
    registry._auto_memo.clear()


def _passes(mod, x, w, b, gy, args):
    """The forward and both gradients of ``mod`` on these arrays, as one call."""

    def run() -> None:
        mod.forward(x, w, b, *args)
        mod.backward(gy, x, w, *args, True, True)

    return run


def kernels(repeats: int) -> None:
    from tapegrad import kernels as K
    from tapegrad.kernels.conv import Conv2dCall

    rng = np.random.default_rng(0)
    print("| layer | before: variant | before ms (CPU) | chvec-cython ms (CPU) | ratio (CPU) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for n, c, o, side, k, p in LAYERS:
        x = rng.standard_normal((n, c, side, side), dtype=np.float32)
        w = rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1
        b = np.zeros(o, np.float32)
        args = ((1, 1), (p, p), (1, 1), 1)
        out = side + 2 * p - k + 1
        gy = rng.standard_normal((n, o, out, out), dtype=np.float32)
        _wide(False)
        before = K.resolved_name("conv2d", Conv2dCall.of(x, w, *args))
        _wide(True)

        mods = {"before": K.get("conv2d", before), "chvec": K.get("conv2d", "chvec-cython")}
        arrays = (x, w, b, gy, args)
        t = alternated_times({k_: _passes(m, *arrays) for k_, m in mods.items()}, repeats)
        a, z = t["before"], t["chvec"]
        print(f"| {n}x{c}->{o} {side}x{side} {k}x{k} | {before} | {a[0]:.2f} ({a[1]:.2f}) | "
              f"{z[0]:.2f} ({z[1]:.2f}) | {z[0] / a[0]:.2f} ({z[1] / a[1]:.2f}) |")  # fmt: skip


def steps(repeats: int) -> None:
    rule_switch_steps(MODELS, _wide, repeats)


def main() -> None:
    kernels_or_steps_main(__doc__, kernels, steps, repeats=9)


if __name__ == "__main__":
    main()
