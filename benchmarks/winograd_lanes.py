"""winograd-cython's channel-lane F(2x2, 3x3) paths against the paths they replace, per pass,
alternated call by call in one process.

Layers: 3x3, stride 1, padding 1, float32, 8x8 to 64x64 outputs with 32 to 256 channels.
Forward (with bias): the channel-lane path (``winograd2_threads``), the vector F(4x4, 3x3)
path and chvec-cython's direct forward; weight gradient: the channel-lane path
(``winograd2_wgrad_threads``) and the path ``backward`` took before on that call (chvec-cython's
direct weight gradient, or F(2x2, 3x3) through BLAS from 128 channels). Each path is forced by
patching winograd-cython's thresholds for the call. Median wall ms and process CPU ms over
``--repeats`` rounds, and each path's float32 error (max |error| over the float64
reference's standard deviation, unit-variance inputs).

    python benchmarks/winograd_lanes.py [--threads 1] [--repeats 11]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from _timing import alternated_times

LAYERS = [  # (N, C, O, side)
    (32, 64, 64, 32), (64, 32, 32, 32), (32, 48, 48, 24), (64, 64, 64, 16), (64, 32, 64, 16),
    (32, 128, 128, 8), (64, 64, 64, 8), (16, 32, 32, 64), (16, 128, 128, 32), (32, 32, 32, 28),
    (8, 64, 64, 48), (32, 256, 256, 16), (8, 64, 64, 64),
]  # fmt: skip


def _patched(mod, fn: Callable[[], object], **values) -> Callable[[], object]:
    def run():
        old = {k: getattr(mod, k) for k in values}
        for k, v in values.items():
            setattr(mod, k, v)
        try:
            return fn()
        finally:
            for k, v in old.items():
                setattr(mod, k, v)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=11)
    args = ap.parse_args()

    import tapegrad as tg
    import tapegrad.kernels as K

    tg.set_num_threads(args.threads)
    print(f"float32, {args.threads} thread(s), median of {args.repeats} alternated calls: "
          "wall ms (CPU ms) [float32 error / output std]")  # fmt: skip
    print(
        "| layer | pass | channel lanes | F(4x4) vector | chvec direct (forward) / before "
        "(weight gradient) | lanes / best other (CPU) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for layer in LAYERS:
        for row in _layer_rows(K, layer, args.repeats, rng):
            print(row)


def _layer_rows(K, layer: tuple[int, int, int, int], repeats: int, rng) -> list[str]:
    """The table rows (forward, weight gradient) of one layer (N, C, O, side)."""
    wino = K.get("conv2d", "winograd-cython")
    chvec = K.get("conv2d", "chvec-cython")
    ref = K.get("conv2d", "reference")
    big = 1 << 30
    n, c, o, side = layer
    x = rng.standard_normal((n, c, side, side), dtype=np.float32)
    w = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    gy = rng.standard_normal((n, o, side, side), dtype=np.float32)
    a = ((1, 1), (1, 1), (1, 1), 1)
    x64, w64, b64, g64 = (v.astype(np.float64) for v in (x, w, b, gy))

    def fwd():
        return wino.forward(x, w, b, *a)

    def gw():
        return wino.backward(gy, x, w, *a, False, True)[1]

    passes = {
        "forward": (
            {
                "lanes": _patched(wino, fwd, _LANES_MAX_SIDE=big, _LANES_ALL_BATCHES_SIDE=big),
                "f4": _patched(wino, fwd, _LANES_MAX_SIDE=0),
                "chvec": lambda: chvec.forward(x, w, b, *a),
            },
            ref.forward(x64, w64, b64, *a),
        ),
        "weight gradient": (
            {
                "lanes": _patched(wino, gw, _WGRAD_LANES_ALL_BATCHES_SIDE=big),
                "before": _patched(wino, gw, _LANES_MIN_CHANNELS=big),
            },
            ref.backward(g64, x64, w64, *a, False, True)[1],
        ),
    }
    rows = []
    for name, (fns, want) in passes.items():
        err = {k: float(np.abs(f() - want).max() / want.std()) for k, f in fns.items()}
        t = alternated_times(fns, repeats)
        cell = {k: f"{t[k][0]:.2f} ({t[k][1]:.2f}) [{err[k]:.0e}]" for k in fns}
        cols = [cell["lanes"], cell.get("f4", ""), cell.get("chvec", cell.get("before"))]
        ratio = t["lanes"][1] / min(t[k][1] for k in fns if k != "lanes")
        rows.append(f"| N={n} {c}->{o} {side}x{side} | {name} | {' | '.join(cols)} | {ratio:.2f} |")
    return rows


if __name__ == "__main__":
    main()
