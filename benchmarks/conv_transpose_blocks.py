"""conv_autoencoder's transposed convolutions on phase-cython: image blocks in the forward's
GEMMs and the ReLU mask inside the backward's kernels, each against its absence, alternated
call by call in one process.

Variants (both phase-cython, the same build):

- ``one image``: the forward's GEMMs one image at a time (``_block_images`` forced to 1),
  and conv_transpose2d_relu's backward as a masked copy of the output gradient (the
  ``bias_relu`` epilogue's backward) followed by ``backward`` (``backward_relu`` off);
- ``blocks``: as shipped (``_block_images``' blocks, ``backward_relu``).

Rows: the decoder's 32->16 layer (forward with ReLU; backward with the mask), its 16->1 layer,
and the whole training step (forward, MSE, backward, SGD with momentum; batch 64). Medians
of ``--repeats`` alternated calls, CPU time of the calling thread at 1 thread (less moved by
other processes on a shared machine), wall time otherwise.

    python benchmarks/conv_transpose_blocks.py [--threads 1] [--repeats 31]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=31)
    args = ap.parse_args()

    import tapegrad as tg
    from tapegrad.bench.steps import tapegrad_step
    from tapegrad.kernels.conv_transpose import phase_cy
    from tapegrad.kernels.fused import epilogue_cy, epilogue_numba

    tg.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    blocks, fused = phase_cy._block_images, phase_cy.backward_relu
    # the bias_relu variant auto runs (at 2+ threads the Cython twin: registry.one_team_order)
    epilogue = epilogue_numba if args.threads == 1 else epilogue_cy

    def use(variant: str) -> None:
        one = variant == "one image"
        phase_cy._block_images = (lambda n, *a: 1) if one else blocks
        phase_cy.backward_relu = None if one else fused

    rng = np.random.default_rng(0)
    conv = ((2, 2), (1, 1), (1, 1), (1, 1), 1)
    x = rng.standard_normal((64, 32, 7, 7)).astype(np.float32)
    w = (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    x2 = rng.standard_normal((64, 16, 14, 14)).astype(np.float32)
    w2 = (rng.standard_normal((16, 1, 3, 3)) * 0.1).astype(np.float32)
    y, mask = phase_cy.forward_relu(x, w, b, *conv)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gy2 = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)

    def relu_backward() -> None:
        out = phase_cy.backward_relu and phase_cy.backward_relu(gy, mask, x, w, *conv, True, True)
        if out is None:
            g, _ = epilogue.masked_backward(gy, mask, True)
            phase_cy.backward(g, x, w, *conv, True, True)

    cases = {
        "32->16 7x7 forward + ReLU": lambda: phase_cy.forward_relu(x, w, b, *conv),
        "32->16 7x7 backward through the ReLU": relu_backward,
        "16->1 14x14 forward": lambda: phase_cy.forward(x2, w2, None, *conv),
        "16->1 14x14 backward": lambda: phase_cy.backward(gy2, x2, w2, *conv, True, True),
        "conv_autoencoder training step": tapegrad_step("conv_autoencoder", 64),
    }
    variants = ("one image", "blocks")
    print(f"threads {args.threads}; load {os.getloadavg()[0]:.1f}; {args.repeats} alternated "
          f"calls each; {'CPU' if args.threads == 1 else 'wall'} time, ms")  # fmt: skip
    print()
    print("| case | one image ms | spread | blocks ms | spread | blocks / one image |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, fn in cases.items():
        times: dict[str, list[float]] = {v: [] for v in variants}
        for v in variants:
            use(v)
            fn()
            fn()
        for r in range(args.repeats):
            for v in variants if r % 2 == 0 else variants[::-1]:
                use(v)
                t0 = clock()
                fn()
                times[v].append(clock() - t0)
        med = {v: statistics.median(t) for v, t in times.items()}
        spread = {v: (max(t) - min(t)) / med[v] for v, t in times.items()}
        print(
            f"| {name} | {med['one image'] * 1e3:.3f} | {spread['one image']:.0%} "
            f"| {med['blocks'] * 1e3:.3f} | {spread['blocks']:.0%} "
            f"| {med['blocks'] / med['one image']:.2f} |"
        )
    use("blocks")


if __name__ == "__main__":
    main()
