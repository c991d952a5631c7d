"""flat-cython's passes on strided layers with small outputs (7x7, 8x8) and the shapes around
them: a flat-cython build from another commit (``--before``) against this checkout's, the
two alternated call by call. At 1 thread the time is the process's CPU time
(``time.process_time``: time spent descheduled by other work on a shared machine does not
count); at more threads, wall time. Prints a markdown table: ms median (min, max) per layer
and pass, GFLOP/s, and now / before.

    python benchmarks/strided_small_outputs.py \
        --before path/to/flat_cy.cpython-311-x86_64-linux-gnu.so [--threads 1] [--repeats 9]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from _timing import PASSES, alternated_samples, call_times, kernel_passes, run_worker
from stride2_two_threads import _load_before

# (N, C, H=W, O, kernel, stride, padding)
LAYERS = [
    (16, 64, 15, 64, 5, 2, 1),
    (32, 16, 32, 32, 5, 2, 2),
    (16, 64, 16, 64, 5, 2, 2),
    (16, 64, 14, 64, 5, 2, 2),
    (16, 32, 28, 48, 5, 2, 2),
    (16, 96, 16, 128, 5, 2, 2),
    (16, 64, 21, 64, 5, 3, 2),
    (32, 64, 16, 64, 3, 2, 1),
    (64, 32, 16, 64, 3, 2, 1),
    (64, 16, 32, 32, 3, 2, 1),
    (64, 16, 14, 32, 3, 2, 1),
]


def _arrays(n, c, h, o, k, s, p):
    rng = np.random.default_rng(0)
    ho = (h + 2 * p - k) // s + 1
    x = rng.standard_normal((n, c, h, h), dtype=np.float32)
    w = rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1
    b = np.zeros(o, np.float32)
    gy = rng.standard_normal((n, o, ho, ho), dtype=np.float32)
    return x, w, b, gy


def _median_ms(fn, repeats, clock):
    return 1e3 * float(np.median(call_times(fn, repeats, clock=clock)))


def _worker(framework: str, threads: int, repeats: int, only: str) -> None:
    """Print (JSON) each layer's op forward + backward and kernel passes, ms median."""
    clock = time.process_time if threads == 1 else time.perf_counter
    out = {}
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        cb = torch.ops.aten.convolution_backward
    else:
        import tapegrad as tg
        import tapegrad.kernels as K
        import tapegrad.nn.functional as F
        from tapegrad.kernels.conv import Conv2dCall

        tg.set_num_threads(threads)
    for layer in LAYERS:
        n, c, h, o, k, s, p = layer
        if only not in str(layer):
            continue
        x, w, b, gy = _arrays(*layer)
        if framework == "torch":
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
            tgy = torch.tensor(gy)

            def op(tx=tx, tw=tw, tb=tb, tgy=tgy, s=s, p=p):
                tx.grad = tw.grad = tb.grad = None
                torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p).backward(tgy)

            xs, ws = torch.tensor(x), torch.tensor(w)
            common = ([o], [s, s], [p, p], [1, 1], False, [0, 0], 1)
            with torch.no_grad():
                passes = {
                    "forward": lambda xs=xs, ws=ws, s=s, p=p: torch.nn.functional.conv2d(
                        xs, ws, None, stride=s, padding=p
                    ),
                    "input gradient": lambda xs=xs, ws=ws, g=tgy, c=common: cb(
                        g, xs, ws, *c, [True, False, False]
                    ),
                    "weight gradient": lambda xs=xs, ws=ws, g=tgy, c=common: cb(
                        g, xs, ws, *c, [False, True, False]
                    ),
                }
                res = {key: _median_ms(f, repeats, clock) for key, f in passes.items()}
        else:
            tx, tw, tb = (tg.Tensor(a, requires_grad=True) for a in (x, w, b))

            def op(tx=tx, tw=tw, tb=tb, gy=gy, s=s, p=p):
                tx.grad = tw.grad = tb.grad = None
                F.conv2d(tx, tw, tb, stride=s, padding=p).backward(gy)

            args = ((s, s), (p, p), (1, 1), 1)
            name = K.resolved_name("conv2d", Conv2dCall(x.shape, w.shape, *args, "<f4"))
            mod = K.get("conv2d", name)
            passes = kernel_passes(mod, x, w, None, gy, args)
            res = {key: _median_ms(f, repeats, clock) for key, f in passes.items()}
            res["variant"] = name
        res["op"] = _median_ms(op, repeats, clock)
        out[str(layer)] = res
    print(json.dumps(out))


def _vs_torch(a) -> None:
    rounds = {"tapegrad": [], "torch": []}
    for r in range(a.rounds):
        order = ["tapegrad", "torch"] if r % 2 == 0 else ["torch", "tapegrad"]
        for fw in order:
            args = ["--worker", fw, "--threads", str(a.threads), "--repeats", str(a.repeats)]
            rounds[fw].append(run_worker(__file__, *args, "--only", a.only))
    clock = "CPU" if a.threads == 1 else "wall"
    print(f"{a.threads} thread(s), {clock} ms, median of {a.rounds} rounds' medians of "
          f"{a.repeats} calls, each framework in its own process, float32")  # fmt: skip
    print()
    print("| layer | variant | op fwd+bwd tapegrad / PyTorch = ratio | forward | input gradient "
          "| weight gradient |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for key in rounds["tapegrad"][0]:
        n, c, h, o, k, s, p = json.loads(key.replace("(", "[").replace(")", "]"))
        ho = (h + 2 * p - k) // s + 1
        name = f"N={n} {c}->{o} {h}x{h} {k}x{k} s{s} p{p} ({ho}x{ho} out)"
        cells = []
        for part in ("op", *PASSES):
            t = float(np.median([r[key][part] for r in rounds["tapegrad"]]))
            q = float(np.median([r[key][part] for r in rounds["torch"]]))
            cells.append(f"{t:.2f} / {q:.2f} = {t / q:.2f}")
        print(f"| {name} | {rounds['tapegrad'][0][key]['variant']} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--worker", choices=["tapegrad", "torch"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker, a.threads, a.repeats, a.only)
        return
    if a.torch:
        _vs_torch(a)
        return
    if not a.before:
        sys.exit("--before or --torch is required")
    from tapegrad import kernels as K
    from tapegrad.kernels import threads

    # this checkout's module first: it loads the OpenMP runtime the other one links to
    now = K.get("conv2d", "flat-cython")
    mods = {"before": _load_before(a.before), "now": now}
    threads.set_num_threads(a.threads)
    print(f"{a.threads} thread(s), {'CPU' if a.threads == 1 else 'wall'} ms, "
          f"median (min, max) of {a.repeats}, float32")  # fmt: skip
    print()
    print("| layer | pass | before ms | now ms | GFLOP/s before / now | now / before |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for n, c, h, o, k, s, p in LAYERS:
        ho = (h + 2 * p - k) // s + 1
        name = f"N={n} {c}->{o} {h}x{h} {k}x{k} s{s} p{p} ({ho}x{ho} out)"
        if a.only not in name:
            continue
        x, w, b, gy = _arrays(n, c, h, o, k, s, p)
        args = ((s, s), (p, p), (1, 1), 1)
        flops = 2 * n * o * ho * ho * c * k * k
        fns = {key: kernel_passes(m, x, w, b, gy, args) for key, m in mods.items()}
        for pname in PASSES:
            wall, cpu = alternated_samples({key: fns[key][pname] for key in mods}, a.repeats)
            ts = cpu if a.threads == 1 else wall
            med = {key: float(np.median(v)) for key, v in ts.items()}
            cells = [f"{med[key]:.2f} ({min(ts[key]):.2f}, {max(ts[key]):.2f})" for key in mods]
            gf = " / ".join(f"{flops / med[key] / 1e6:.0f}" for key in mods)
            ratio = med["now"] / med["before"]
            print(f"| {name} | {pname} | " + " | ".join(cells) + f" | {gf} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
