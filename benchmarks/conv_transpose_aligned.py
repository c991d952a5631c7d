"""phase-cython's transposed convolution per pass, before and after its direct kernels' arrays
were aligned to 64 bytes and the bias gradient summed in the gradient pass.

In one process, the two settings alternated call by call: "before" runs with
``phase_cy._ALIGN = False`` (weight tables, transposed images, partial sums and tile buffers
where NumPy puts them, 16 bytes past a cache line) and without ``backward_with_bias`` (the
op sums the bias gradient in its own pass over gy); "after" is the code as it is. Passes:
the forward, the input gradient alone, the weight gradient alone, both gradients, and the
op's forward + backward with bias (``F.conv_transpose2d`` then ``backward``). Wall and
process CPU ms medians and the min-max of the wall times; with ``--torch`` PyTorch's same
passes in its own process (``convolution_backward`` with the gradients asked for). float32,
OpenBLAS's core-type pins removed.

    python benchmarks/conv_transpose_aligned.py [--threads 1] [--repeats 15] [--torch]
        [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _report import finish, uptime
from _timing import alternated_samples, run_worker
from conv_transpose_passes import _arrays

# name, x shape, w shape, stride, padding, output_padding
CASES = [
    ("4x4 s2 p1 N=32 64->32 16->32", (32, 64, 16, 16), (64, 32, 4, 4), 2, 1, 0),
    ("3x3 s2 p1 op1 N=64 32->16 7->14 (autoencoder)", (64, 32, 7, 7), (32, 16, 3, 3), 2, 1, 1),
    ("3x3 s2 p1 op1 N=64 16->1 14->28 (autoencoder)", (64, 16, 14, 14), (16, 1, 3, 3), 2, 1, 1),
]
PASSES = ["forward", "input gradient", "weight gradient", "both gradients", "op fwd+bwd"]
NEED = {"input gradient": (True, False), "weight gradient": (False, True),
        "both gradients": (True, True)}  # fmt: skip


def _times(fns: dict, repeats: int) -> dict:
    """Per name: [wall ms median, CPU ms median, wall min, wall max]; names alternated."""
    wall, cpu = alternated_samples(fns, repeats)
    return {
        k: [float(np.median(wall[k])), float(np.median(cpu[k])), min(wall[k]), max(wall[k])]
        for k in fns
    }


def _worker_tapegrad(threads: int, repeats: int) -> dict:
    import tapegrad as tg
    import tapegrad.kernels as K
    import tapegrad.nn.functional as F
    from tapegrad.kernels.conv_transpose import phase_cy

    tg.set_num_threads(threads)
    fused = phase_cy.backward_with_bias

    def setting(after: bool) -> None:
        phase_cy._ALIGN = after
        phase_cy.backward_with_bias = fused if after else None

    out = {}
    with K.use(conv_transpose2d="phase-cython"):
        for name, xs, ws, s, p, op in CASES:
            x, w, b, gy = _arrays(xs, ws, s, p, op)
            a = ((s, s), (p, p), (op, op), (1, 1), 1)
            tx, tw, tb = (tg.Tensor(v, requires_grad=True) for v in (x, w, b))
            for ps in PASSES:

                def run(after, ps=ps, x=x, w=w, b=b, gy=gy, a=a, tx=tx, tw=tw, tb=tb, s=s,
                        p=p, op=op):  # fmt: skip
                    setting(after)
                    if ps == "forward":
                        return phase_cy.forward(x, w, b, *a)
                    if ps in NEED:
                        return phase_cy.backward(gy, x, w, *a, *NEED[ps])
                    y = F.conv_transpose2d(tx, tw, tb, s, p, op)
                    tx.grad = tw.grad = tb.grad = None
                    y.backward(gy)

                out[f"{name}|{ps}"] = _times(
                    {"before": lambda: run(False), "after": lambda: run(True)}, repeats
                )
    setting(True)
    return out


def _worker_torch(threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    cb = torch.ops.aten.convolution_backward
    f = torch.nn.functional.conv_transpose2d
    out = {}
    for name, xs, ws, s, p, op in CASES:
        x, w, b, gy = (torch.tensor(v) for v in _arrays(xs, ws, s, p, op))
        a = ([s, s], [p, p], [1, 1], True, [op, op], 1)
        tx, tw, tb = (v.clone().requires_grad_(True) for v in (x, w, b))
        for ps in PASSES:

            def run(ps=ps, x=x, w=w, b=b, gy=gy, a=a, tx=tx, tw=tw, tb=tb, s=s, p=p, op=op):
                if ps == "forward":
                    with torch.no_grad():
                        return f(x, w, b, s, p, op)
                if ps in NEED:
                    with torch.no_grad():
                        return cb(gy, x, w, None, *a, [*NEED[ps], False])
                tx.grad = tw.grad = tb.grad = None
                f(tx, tw, tb, s, p, op).backward(gy)

            out[f"{name}|{ps}"] = _times({"torch": run}, repeats)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = _worker_torch if args.worker == "torch" else _worker_tapegrad
        print(json.dumps(fn(args.threads, args.repeats)))
        return

    def spawn(role):
        return run_worker(__file__, "--worker", role, "--threads", str(args.threads),
                          "--repeats", str(args.repeats))  # fmt: skip

    lines = [f"uptime at start: {uptime()}", ""]
    ours = spawn("tapegrad")
    theirs = spawn("torch") if args.torch else {}
    lines.append(
        f"threads: {args.threads}, {args.repeats} calls per setting alternated, float32; "
        "wall ms median (min-max), process CPU ms median"
    )
    lines.append("")
    head = (
        "| case | pass | before wall (min-max) | CPU | after wall (min-max) | CPU | after/before |"
    )
    sep = "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    if theirs:
        head += " PyTorch wall (min-max) | CPU | after/PyTorch |"
        sep += " ---: | ---: | ---: |"
    lines += [head, sep]
    for key, r in ours.items():
        name, ps = key.split("|")
        d, f = r["before"], r["after"]
        row = (
            f"| {name} | {ps} | {d[0]:.2f} ({d[2]:.2f}-{d[3]:.2f}) | {d[1]:.2f} | "
            f"{f[0]:.2f} ({f[2]:.2f}-{f[3]:.2f}) | {f[1]:.2f} | {f[1] / d[1]:.2f} |"
        )
        if theirs:
            t = theirs[key]["torch"]
            row += f" {t[0]:.2f} ({t[2]:.2f}-{t[3]:.2f}) | {t[1]:.2f} | {f[0] / t[0]:.2f} |"
        lines.append(row)
    finish(lines, args.out)


if __name__ == "__main__":
    main()
