"""Share of the GEMM peak per convolution layer of the zoo models.

For each zoo model, ``python -m tapegrad bench --ops conv2d --shapes zoo:NAME`` times every
conv2d layer the model's forward pass calls (its default input, batch 64, float32), with
``auto``'s pick and with ``im2col-cython``, forward and forward + both gradients, in its own
process. The table gives each layer's median time, its GFLOP/s (direct-convolution FLOPs,
2 per multiply-add, so a Winograd layer can pass 100%) and that rate over the machine's
float32 GEMM rate (a large ``np.matmul``, measured by ``bench`` in the same process).
OpenBLAS's core-type pins (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``) are removed from
the environment, as in ``conv_targets.py``.

    python benchmarks/zoo_gemm_share.py [--threads 2] [--repeat 5] [--models a,b] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _report import finish, uptime
from _timing import user_env

MODELS = ["lenet5", "resnet8", "vgg_small", "mobilenet_small", "conv_autoencoder"]
VARIANTS = ["auto", "im2col-cython"]


def run_model(name: str, threads: int, repeat: int) -> dict:
    """The ``bench`` JSON of model ``name``'s conv2d layers (``auto`` and im2col-cython)."""
    env = user_env()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [
            sys.executable, "-m", "tapegrad", "bench", "--ops", "conv2d",
            "--shapes", f"zoo:{name}", "--variants", *VARIANTS,
            "--directions", "forward", "both", "--threads", str(threads),
            "--repeat", str(repeat), "--no-progress", "--no-check", "--json", out,
        ]  # fmt: skip
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        with open(out) as f:
            return json.load(f)


def table(name: str, data: dict) -> list[str]:
    """Markdown rows of one model: a row per layer, auto's and im2col's share per direction."""
    rows: dict[str, dict] = {}
    for r in data["results"]:
        if r.get("error") or r.get("direction") not in ("forward", "both"):
            continue
        key = r["case"]
        cell = rows.setdefault(key, {"chosen": {}, "cells": {}})
        if r["variant"] == "auto":
            cell["chosen"][r["direction"]] = r["chosen"]
        frac = r.get("fraction")
        share = f"{100 * frac:.0f}%" if frac is not None else "-"
        cell["cells"][(r["variant"], r["direction"])] = (
            f"{1e3 * r['median_s']:.2f} ms, {r['rate']:.0f} GFLOP/s = {share}"
        )
    lines = []
    for case, cell in rows.items():
        chosen = cell["chosen"].get("both") or cell["chosen"].get("forward", "")
        c = cell["cells"]
        lines.append(
            f"| {name} | {case} | {chosen} | {c.get(('auto', 'forward'), '-')} | "
            f"{c.get(('auto', 'both'), '-')} | {c.get(('im2col-cython', 'forward'), '-')} | "
            f"{c.get(('im2col-cython', 'both'), '-')} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    lines = [f"uptime at start: {uptime()}", ""]
    body, gemm = [], []
    for name in [m for m in args.models.split(",") if m]:
        data = run_model(name, args.threads, args.repeat)
        gemm.append(data["machine"].get("gemm_gflops", 0.0))
        body += table(name, data)
    lines.append(
        f"float32 GEMM rate per model's process ({args.threads} threads): "
        + ", ".join(f"{g:.0f}" for g in gemm)
        + f" GFLOP/s; bench median of {args.repeat} calls; batch 64, float32"
    )
    lines.append("")
    lines.append(
        "| model | layer | auto picked | auto forward | auto forward + backward "
        "| im2col-cython forward | im2col-cython forward + backward |"
    )
    lines.append("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    lines += body
    finish(lines, args.out)


if __name__ == "__main__":
    main()
