"""tapegrad's training step with PyTorch imported (and run) first, against tapegrad alone.

Notebooks and comparisons often ``import torch`` before ``import tapegrad``. For each zoo
model and kernel backend (``auto``, every op on its Numba variant, every op on its Cython
variant), rounds alternate a process that imports only tapegrad with one that imports
PyTorch and runs one PyTorch op first (``tapegrad.bench.steps --torch-first``); each
process reports its median step (one process per order and round times every model in
turn). Printed: the median over rounds and spread of both, and
their ratio (torch first / tapegrad alone; 1.0 means the order does not matter). The
processes run without the OpenBLAS pin, as ``train_vs_torch.py`` does.

    python benchmarks/import_order.py [--models lenet5] [--backends auto,numba,cython]
"""

from __future__ import annotations

import argparse
import os

from tapegrad.bench.steps import run_models, summarize

MODELS = "lenet5,vgg_small,mobilenet_small,resnet8,conv_autoencoder"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--backends", default="auto,numba,cython")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    print(
        f"batch 64, {args.threads} threads, {args.rounds} alternated rounds, median of "
        f"{args.steps} steps per process; load {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| model | kernels | tapegrad alone ms | spread | torch first ms | spread | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    models = args.models.split(",")
    for backend in args.backends.split(","):
        # per round, one process per order times every model in turn
        med = {m: {False: [], True: []} for m in models}
        for r in range(args.rounds):
            for first in (r % 2 == 1, r % 2 == 0):
                got = run_models(
                    "tapegrad", models, threads=args.threads, warmup=args.warmup,
                    steps=args.steps, torch_first=first, backend=backend,
                )  # fmt: skip
                for m in models:
                    med[m][first].append(got[m]["median_s"])
        for model in models:
            a, b = summarize(med[model][False]), summarize(med[model][True])
            print(
                f"| {model} | {backend} | {a['median_ms']:.1f} | {a['spread']:.0%} | "
                f"{b['median_ms']:.1f} | {b['spread']:.0%} | "
                f"{b['median_ms'] / a['median_ms']:.2f} |",
                flush=True,
            )
    print(f"\nload after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
