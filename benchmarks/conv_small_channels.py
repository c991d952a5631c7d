"""The zoo's small-channel, strided and 1x1 conv2d layers: each candidate variant's forward,
input gradient and weight gradient, in one process, rounds alternating the variants.

For every layer of resnet8 (batch 64, 32x32, width 16) and lenet5 (batch 64, 28x28), and
the convolution targets' 16-channel, 5x5 stride-2 and 1x1 cases, the variants ``auto``
picks now and the ones it picked before (im2col-cython, winograd-cython) are timed on the
same arrays: each round times every variant (median of ``--repeats`` calls per part),
the variants' order turning from round to round; the table gives the median over rounds
and each part's ratio to the best of the earlier picks. float32, ``--threads`` threads.
Same-process ratios between tapegrad's own variants: the comparison with PyTorch is
``conv_targets.py`` (each framework in its own process).

    python benchmarks/conv_small_channels.py [--rounds 5] [--repeats 5] [--threads 2]
        [--best] [--only TEXT] [--out FILE.md]
"""

from __future__ import annotations

import argparse

import numpy as np
from _report import finish, uptime
from _timing import PASSES, call_times, kernel_passes

# name: (x shape, w shape, stride, padding)
LAYERS = {
    "resnet8 conv1 1->16 3x3 32x32": ((64, 1, 32, 32), (16, 1, 3, 3), 1, 1),
    "resnet8 16->16 3x3 32x32": ((64, 16, 32, 32), (16, 16, 3, 3), 1, 1),
    "resnet8 16->32 3x3 s2 32x32": ((64, 16, 32, 32), (32, 16, 3, 3), 2, 1),
    "resnet8 32->32 3x3 16x16": ((64, 32, 16, 16), (32, 32, 3, 3), 1, 1),
    "resnet8 16->32 1x1 s2 32x32": ((64, 16, 32, 32), (32, 16, 1, 1), 2, 0),
    "resnet8 32->64 3x3 s2 16x16": ((64, 32, 16, 16), (64, 32, 3, 3), 2, 1),
    "resnet8 64->64 3x3 8x8": ((64, 64, 8, 8), (64, 64, 3, 3), 1, 1),
    "resnet8 32->64 1x1 s2 16x16": ((64, 32, 16, 16), (64, 32, 1, 1), 2, 0),
    "lenet5 1->6 5x5 pad 2 28x28": ((64, 1, 28, 28), (6, 1, 5, 5), 1, 2),
    "lenet5 6->16 5x5 14x14": ((64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    "target 5x5 s2 N16 32->48 28x28": ((16, 32, 28, 28), (48, 32, 5, 5), 2, 2),
    "target 1x1 N32 64->128 16x16": ((32, 64, 16, 16), (128, 64, 1, 1), 1, 0),
}
BEFORE = ["im2col-cython", "winograd-cython"]
NEW = ["blocked-cython", "pointwise-cython", "flat-cython", "chvec-cython"]


_STAT = np.median  # --best: np.min, the figure a loaded machine disturbs least


def _parts(m, x, w, gy, args: tuple, repeats: int) -> tuple[float, float, float]:
    """Median (or best, ``--best``) ms of the forward, the input gradient alone and the
    weight gradient alone, each after one untimed call."""
    runs = kernel_passes(m, x, w, None, gy, args)
    return tuple(1e3 * float(_STAT(call_times(runs[p], repeats, warmup=1))) for p in PASSES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    ap.add_argument("--best", action="store_true", help="best instead of median times")
    ap.add_argument("--only", default="", help="layers whose name has this")
    args = ap.parse_args()
    global _STAT
    if args.best:
        _STAT = np.min

    import tapegrad as tg
    import tapegrad.kernels as K
    from tapegrad.kernels.conv import Conv2dCall

    tg.set_num_threads(args.threads)
    lines = [f"uptime at start: {uptime()}", ""]
    lines.append(
        f"float32, {args.threads} threads, one process; {_STAT.__name__} over {args.rounds} "
        f"rounds of the {_STAT.__name__} of {args.repeats} calls; ratio = time / best of "
        f"{', '.join(BEFORE)}"
    )
    lines.append("")
    lines.append("| layer | variant | forward ms | input grad | weight grad | total | ratio |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, (xs, ws, s, p) in LAYERS.items():
        if args.only not in name:
            continue
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) * 0.1).astype(np.float32)
        st, pd, dl = (s, s), (p, p), (1, 1)
        call = Conv2dCall.of(x, w, st, pd, dl, 1)
        auto = K.resolved_name("conv2d", call)
        names = [v for v in [*BEFORE, *NEW] if v in K.variants("conv2d")]
        mods = {v: K.get("conv2d", v) for v in names}
        gy = rng.standard_normal(mods[names[0]].forward(x, w, None, st, pd, dl, 1).shape)
        gy = gy.astype(np.float32)
        times: dict[str, list[tuple[float, float, float]]] = {v: [] for v in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for v in order:
                times[v].append(_parts(mods[v], x, w, gy, (st, pd, dl, 1), args.repeats))
        med = {v: _STAT(np.array(t), axis=0) for v, t in times.items()}
        best_before = min(float(med[v].sum()) for v in BEFORE if v in med)
        for v in names:
            f, gx, gw = med[v]
            tag = f"**{v}** (auto)" if v == auto else v
            lines.append(
                f"| {name} | {tag} | {f:.2f} | {gx:.2f} | {gw:.2f} | {f + gx + gw:.2f} "
                f"| {(f + gx + gw) / best_before:.2f} |"
            )
    finish(lines, args.out)


if __name__ == "__main__":
    main()
