"""One full training step (forward, loss, backward, SGD-momentum update), tapegrad vs PyTorch,
each framework in its own process at its own defaults; only the thread count is made equal.

For each model and round, one process times tapegrad's steps and another times the same
network written with ``torch.nn`` (``tapegrad.bench.steps``); the two alternate, and the
one that starts flips from round to round, so both see the same machine load. Each
process warms up (Numba compilation, first-touch allocation), then times ``--steps``
steps and keeps their median. Reported per side: the median over rounds of those medians
and their spread ((max - min) / median), the ratio tapegrad / PyTorch (lower is better),
and which BLAS kernels ran (threadpoolctl's ``internal_api``/``architecture``).

The processes run without ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (some machines set
them to pin OpenBLAS to one kernel family), as on a user's machine; ``--keep-pin`` keeps
them. Print ``uptime`` beside the table: on a shared machine the load moves every number.

    python benchmarks/train_vs_torch.py [--models lenet5,resnet8] [--threads 1,2] [--rounds 5]
        [--one-process]   (per round, one process per framework runs every model in turn)
"""

from __future__ import annotations

import argparse
import os

from tapegrad.bench.steps import run_models, run_one, summarize

MODELS = "lenet5,vgg_small,mobilenet_small,resnet8,conv_autoencoder"
TARGET = 0.8  # tapegrad step time / PyTorch step time


def _blas(res: dict) -> str:
    libs = {f"{b['internal_api']} {b['architecture']}" for b in res.get("blas", [])}
    return ", ".join(sorted(libs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--keep-pin", action="store_true", help="keep OPENBLAS_CORETYPE/L2_SIZE")
    ap.add_argument(
        "--one-process",
        action="store_true",
        help="per round, one process per framework times every model in turn",
    )
    args = ap.parse_args()
    print(
        f"batch {args.batch}; {args.rounds} alternated rounds of one process per framework; "
        f"median of {args.steps} steps per process after {args.warmup} warm-up steps; "
        f"OpenBLAS pin {'kept' if args.keep_pin else 'unset'}; load {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| model | threads | tapegrad ms | spread | PyTorch ms | spread | tapegrad / PyTorch "
        "| target | BLAS (tapegrad; PyTorch) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    models = args.models.split(",")
    for threads in [int(t) for t in args.threads.split(",")]:
        pooled: dict[str, dict[str, list[dict]]] = {}
        if args.one_process:  # every model in one process per framework and round
            pooled = {m: {"tapegrad": [], "torch": []} for m in models}
            for r in range(args.rounds):
                order = ["tapegrad", "torch"] if r % 2 == 0 else ["torch", "tapegrad"]
                for side in order:
                    got = run_models(
                        side, models, threads=threads, batch=args.batch, warmup=args.warmup,
                        steps=args.steps, keep_pin=args.keep_pin,
                    )  # fmt: skip
                    for m in models:
                        pooled[m][side].append(got[m])
        for model in models:
            med: dict[str, list[float]] = {"tapegrad": [], "torch": []}
            blas: dict[str, str] = {}
            for r in range(args.rounds):
                order = ["tapegrad", "torch"] if r % 2 == 0 else ["torch", "tapegrad"]
                for side in order:
                    if pooled:
                        res = pooled[model][side][r]
                    else:
                        res = run_one(
                            side, model, threads=threads, batch=args.batch, warmup=args.warmup,
                            steps=args.steps, keep_pin=args.keep_pin,
                        )  # fmt: skip
                    med[side].append(res["median_s"])
                    blas[side] = _blas(res)
            a, b = summarize(med["tapegrad"]), summarize(med["torch"])
            ratio = a["median_ms"] / b["median_ms"]
            print(
                f"| {model} | {threads} | {a['median_ms']:.1f} | {a['spread']:.0%} | "
                f"{b['median_ms']:.1f} | {b['spread']:.0%} | {ratio:.2f} | <= {TARGET} | "
                f"{blas['tapegrad']}; {blas['torch']} |",
                flush=True,
            )
    print(f"\nload after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
