"""tapegrad's transposed-convolution passes against PyTorch's, each pass alone.

For each case: the forward, the input gradient and the weight gradient, timed alone (median
of ``--repeats`` calls after warm-up), tapegrad's variant ``auto`` picks called directly and
PyTorch's ``conv_transpose2d`` / ``convolution_backward`` with one gradient asked for. One
process per framework per round, the rounds alternating which goes first; the table gives
the median of the rounds' medians. tapegrad's ``phase-cython`` backward is also timed with
its direct gradient kernels switched off (the unfold + GEMM backward it ran before them),
in the same process. float32, OpenBLAS's core-type pins removed from both environments.

    python benchmarks/conv_transpose_passes.py [--threads 2] [--rounds 3] [--repeats 9]
        [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _report import finish, uptime
from _timing import PASSES, median_ms, run_worker

# name, x shape, w shape, stride, padding, output_padding
CASES = [
    ("4x4 s2 p1 N=32 64->32 16->32", (32, 64, 16, 16), (64, 32, 4, 4), 2, 1, 0),
    ("3x3 s2 p1 op1 N=64 32->16 7->14 (autoencoder)", (64, 32, 7, 7), (32, 16, 3, 3), 2, 1, 1),
    ("3x3 s2 p1 op1 N=64 16->1 14->28 (autoencoder)", (64, 16, 14, 14), (16, 1, 3, 3), 2, 1, 1),
]


def _arrays(xs, ws, s, p, op):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) * 0.05).astype(np.float32)
    b = rng.standard_normal(ws[1]).astype(np.float32)
    ho = (xs[2] - 1) * s - 2 * p + ws[2] + op
    wo = (xs[3] - 1) * s - 2 * p + ws[3] + op
    gy = np.random.default_rng(1).standard_normal((xs[0], ws[1], ho, wo)).astype(np.float32)
    return x, w, b, gy


def _torch_case(torch, case, repeats: int) -> dict:
    _, xs, ws, s, p, op = case
    x, w, b, gy = (torch.tensor(a) for a in _arrays(xs, ws, s, p, op))
    f = torch.nn.functional.conv_transpose2d
    cb = torch.ops.aten.convolution_backward
    a = ([s, s], [p, p], [1, 1], True, [op, op], 1)
    return {
        "forward": median_ms(lambda: f(x, w, b, s, p, op), repeats),
        "input gradient": median_ms(lambda: cb(gy, x, w, None, *a, [True, False, False]), repeats),
        "weight gradient": median_ms(lambda: cb(gy, x, w, None, *a, [False, True, False]), repeats),
    }


def _worker_torch(threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    with torch.no_grad():
        return {case[0]: _torch_case(torch, case, repeats) for case in CASES}


def _tapegrad_case(case, repeats: int) -> dict:
    import tapegrad.kernels as K
    from tapegrad.kernels.conv_transpose import ConvTranspose2dCall, phase_cy

    _, xs, ws, s, p, op = case
    x, w, b, gy = _arrays(xs, ws, s, p, op)
    a = ((s, s), (p, p), (op, op), (1, 1), 1)
    variant = K.resolved_name("conv_transpose2d", ConvTranspose2dCall.of(x, w, *a))
    mod = K.get("conv_transpose2d", variant)
    row = {"variant": variant}
    for direct in (True, False):
        phase_cy._DIRECT_INPUT_GRAD = phase_cy._DIRECT_WEIGHT_GRAD = direct
        tag = "" if direct else " (unfold + GEMM)"
        row["input gradient" + tag] = median_ms(
            lambda: mod.backward(gy, x, w, *a, True, False), repeats
        )
        row["weight gradient" + tag] = median_ms(
            lambda: mod.backward(gy, x, w, *a, False, True), repeats
        )
    phase_cy._DIRECT_INPUT_GRAD = phase_cy._DIRECT_WEIGHT_GRAD = True
    row["forward"] = median_ms(lambda: mod.forward(x, w, b, *a), repeats)
    return row


def _worker_tapegrad(threads: int, repeats: int) -> dict:
    from tapegrad.kernels import threads as tthreads

    tthreads.set_num_threads(threads)
    return {case[0]: _tapegrad_case(case, repeats) for case in CASES}


def _spawn(role: str, threads: int, repeats: int) -> dict:
    return run_worker(
        __file__, "--worker", role, "--threads", str(threads), "--repeats", str(repeats)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default="")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = _worker_torch if args.worker == "torch" else _worker_tapegrad
        print(json.dumps(fn(args.threads, args.repeats)))
        return
    lines = [f"uptime at start: {uptime()}", ""]
    runs: dict[str, list[dict]] = {"tapegrad": [], "torch": []}
    for r in range(args.rounds):
        order = ["tapegrad", "torch"] if r % 2 == 0 else ["torch", "tapegrad"]
        for role in order:
            runs[role].append(_spawn(role, args.threads, args.repeats))
    lines.append(
        f"{args.rounds} rounds x {args.repeats} calls, each framework in its own process, "
        f"threads: {args.threads}, float32; ms = median of the rounds' medians"
    )
    lines.append("")
    lines.append(
        "| case | variant | pass | tapegrad ms | PyTorch ms | ratio | unfold + GEMM ms | ratio |"
    )
    lines.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")

    def med(role, name, key):
        vals = [run[name][key] for run in runs[role] if key in run[name]]
        return float(np.median(vals)) if vals else float("nan")

    for name, *_ in CASES:
        variant = runs["tapegrad"][0][name]["variant"]
        for ps in PASSES:
            ours, theirs = med("tapegrad", name, ps), med("torch", name, ps)
            before = med("tapegrad", name, ps + " (unfold + GEMM)")
            old = "- | -" if np.isnan(before) else f"{before:.2f} | {before / theirs:.2f}"
            lines.append(
                f"| {name} | {variant} | {ps} | {ours:.2f} | {theirs:.2f} | "
                f"{ours / theirs:.2f} | {old} |"
            )
    finish(lines, args.out)


if __name__ == "__main__":
    main()
