"""phase-cython's transposed-convolution forward for 8 to 16 output channels: the phase
GEMMs (before) against the direct register tiles (``_direct_grad_cy.forward_direct``, now),
in one process, alternated call by call.

Kernel level: for each layer, the forward and the ReLU-fused forward (``forward_relu``)
with ``phase_cy._DIRECT_FORWARD`` off and on, median of ``--repeats`` rounds (wall ms and
process CPU ms, which other processes on a shared machine disturb less), the quartiles of
the wall times and GFLOP/s at the median (2 FLOPs per multiply-add). Step level
(``--steps``): conv_autoencoder's training step (batch 64) with the direct forward off and
on between steps. float32, ``--threads`` threads.

    python benchmarks/conv_transpose_direct_forward.py [--threads 1] [--repeats 41] [--steps]
"""

from __future__ import annotations

import time

import numpy as np
from _timing import kernels_or_steps_main, rule_switch_steps

# (name, x shape, w shape, stride, padding, output_padding)
LAYERS = [
    ("conv_autoencoder 32->16 7->14 3x3 s2 p1 op1", (64, 32, 7, 7), (32, 16, 3, 3), 2, 1, 1),
    ("one image 32->16 7->14", (1, 32, 7, 7), (32, 16, 3, 3), 2, 1, 1),
    ("N=64 32->12 7->14 3x3 s2 p1 op1", (64, 32, 7, 7), (32, 12, 3, 3), 2, 1, 1),
    ("N=32 64->16 16->32 4x4 s2 p1", (32, 64, 16, 16), (64, 16, 4, 4), 2, 1, 0),
    ("N=64 16->8 14->28 3x3 s2 p1 op1", (64, 16, 14, 14), (16, 8, 3, 3), 2, 1, 1),
]


def _direct(on: bool) -> None:
    from tapegrad.kernels.conv_transpose import phase_cy

    phase_cy._DIRECT_FORWARD = on


def _times(fns: dict, repeats: int) -> dict:
    """Per name: wall ms list and CPU ms list, the names alternated call by call (each
    name's switch applied before its call)."""
    out = {k: ([], []) for k in fns}
    for switch, fn in fns.values():
        switch()
        fn()
        fn()
    for _ in range(repeats):
        for k, (switch, fn) in fns.items():
            switch()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            out[k][0].append(1e3 * (time.perf_counter() - t0))
            out[k][1].append(1e3 * (time.process_time() - c0))
    _direct(True)
    return out


def kernels(repeats: int) -> None:
    from tapegrad.kernels.conv_transpose import phase_cy

    print("| layer | pass | GEMMs ms [q25-q75] (CPU) | direct ms [q25-q75] (CPU) | ratio "
          "(CPU) | GFLOP/s GEMMs / direct |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, xs, ws, s, p, op in LAYERS:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal(ws) * 0.05).astype(np.float32)
        b = rng.standard_normal(ws[1]).astype(np.float32)
        args = ((s, s), (p, p), (op, op), (1, 1), 1)
        flop = 2.0 * np.prod(xs) * ws[1] * ws[2] * ws[3]
        for label, fn in (("forward", phase_cy.forward), ("forward + ReLU", phase_cy.forward_relu)):

            def run(fn=fn, x=x, w=w, b=b, args=args):
                fn(x, w, b, *args)

            t = _times({"gemm": (lambda: _direct(False), run),
                        "direct": (lambda: _direct(True), run)}, repeats)  # fmt: skip
            cells = []
            for k in ("gemm", "direct"):
                wall, cpu = t[k]
                q = np.percentile(wall, [25, 50, 75])
                cells.append((q[1], np.median(cpu), f"{q[1]:.3f} [{q[0]:.3f}-{q[2]:.3f}] "
                              f"({np.median(cpu):.3f})"))  # fmt: skip
            (gw, gc, gs), (dw, dc, ds) = cells
            print(f"| {name} | {label} | {gs} | {ds} | {dw / gw:.2f} ({dc / gc:.2f}) | "
                  f"{flop / gw / 1e6:.0f} / {flop / dw / 1e6:.0f} |")  # fmt: skip


def steps(repeats: int) -> None:
    rule_switch_steps(("conv_autoencoder",), _direct, repeats)


if __name__ == "__main__":
    kernels_or_steps_main(__doc__, kernels, steps, 41)
