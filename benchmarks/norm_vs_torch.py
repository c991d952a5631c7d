"""Normalisation and dropout against PyTorch (N=64, C=64, 32x32, float32), each framework
in its own process.

    python benchmarks/norm_vs_torch.py [--threads 2] [--rounds 5] [--repeats 30] [--no-jit]

One process per framework runs every case (warm-up, then ``--repeats`` timed calls,
median); the processes alternate over ``--rounds`` rounds (tapegrad first in even rounds,
PyTorch first in odd ones), each at its own defaults except the thread count. Per case the
table gives the median of the rounds' medians of each tapegrad variant and of PyTorch, the
spread of the round medians (min-max), the ratio to PyTorch (lower is better), the bytes
the case has to move divided by the time (GB/s) and how far that is from the machine's
copy bandwidth (``np.copyto`` of the same array size, measured in its own process; "x
copy" = copy GB/s / case GB/s, 1.0 = as fast as a copy). A second table times the kernels
alone (tapegrad's process, no tape and no checks); a last one gives the first-call (JIT
compile) time of every Numba kernel in a fresh process with an empty Numba cache.
OpenBLAS's core-type pins (``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``) are removed from
every worker's environment, as on a user's machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
from _timing import call_times, run_worker, user_env

SHAPE = (64, 64, 32, 32)
MB = SHAPE[0] * SHAPE[1] * SHAPE[2] * SHAPE[3] * 4  # bytes of one float32 array

# bytes each case must move at least (arrays read + written, float32, uint8 mask)
CASES = {
    "batch_norm train fwd+bwd": (5 * MB, 0.5),  # fwd: x -> y; bwd: gy, x -> gx
    "batch_norm eval fwd": (2 * MB, 0.5),  # x -> y
    "dropout fwd+bwd": (MB * 18 // 4, 0.1),  # x -> y, mask; gy, mask -> gx
    "layer_norm (C,H,W) fwd+bwd": (5 * MB, 0.7),
}


def times(fn, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """(median, min) seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    ts = call_times(fn, repeats, warmup)
    return float(np.median(ts)), float(np.min(ts))


def copy_bandwidth(repeats: int) -> float:
    src = np.random.default_rng(0).random(MB // 4, dtype=np.float32)
    dst = np.empty_like(src)
    t, _ = times(lambda: np.copyto(dst, src), repeats)
    return 2 * MB / t / 1e9


def norm_tensors():
    """The tapegrad side's arrays of the norm cases (float32, ``SHAPE``): the input x and
    its output gradient, the per-channel weight and bias with the running mean and
    variance, and layer norm's weight and bias over (C, H, W)."""
    import tapegrad as tg

    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal(SHAPE, dtype=np.float32), requires_grad=True)
    g = rng.standard_normal(SHAPE, dtype=np.float32)
    c = SHAPE[1]
    w = tg.Tensor(np.ones(c, np.float32), requires_grad=True)
    b = tg.Tensor(np.zeros(c, np.float32), requires_grad=True)
    rm, rv = tg.Tensor(np.zeros(c, np.float32)), tg.Tensor(np.ones(c, np.float32))
    lw = tg.Tensor(np.ones(SHAPE[1:], np.float32), requires_grad=True)
    lb = tg.Tensor(np.zeros(SHAPE[1:], np.float32), requires_grad=True)
    return x, g, w, b, rm, rv, lw, lb


def tapegrad_cases(threads: int):
    import tapegrad as tg
    import tapegrad.kernels as K
    import tapegrad.nn.functional as F

    tg.set_num_threads(threads)
    x, g, w, b, rm, rv, lw, lb = norm_tensors()

    def bn_train():
        F.batch_norm(x, rm, rv, w, b, training=True).backward(g)

    def bn_eval():
        with tg.no_grad():
            F.batch_norm(x, rm, rv, w, b, training=False)

    def drop():
        F.dropout(x, 0.5).backward(g)

    def ln():
        F.layer_norm(x, SHAPE[1:], lw, lb).backward(g)

    fns = {
        "batch_norm train fwd+bwd": ("batch_norm", bn_train),
        "batch_norm eval fwd": ("batch_norm", bn_eval),
        "dropout fwd+bwd": ("dropout", drop),
        "layer_norm (C,H,W) fwd+bwd": ("layer_norm", ln),
    }
    out = {}
    for case, (op, fn) in fns.items():
        for v in K.variants(op):
            if v == "reference":
                continue

            def run(fn=fn, op=op, v=v):
                with K.use(**{op: v}):
                    fn()
                x.grad = w.grad = b.grad = lw.grad = lb.grad = None

            out[(case, v)] = run
    return out


def kernel_cases():
    """The same cases on the kernels alone (arrays in, arrays out: no tape, no checks)."""
    import tapegrad.kernels as K

    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    g = rng.standard_normal(SHAPE, dtype=np.float32)
    n, c = SHAPE[:2]
    x3, g3 = x.reshape(n, c, -1), g.reshape(n, c, -1)
    x2, g2 = x.reshape(n, -1), g.reshape(n, -1)
    w, b = np.ones(c), np.zeros(c)
    lw = np.ones((1, x2.shape[1]), np.float32)
    out = {}
    for v in K.variants("batch_norm"):
        if v == "reference":
            continue
        m = K.get("batch_norm", v)

        def bn_train(m=m):
            _, mean, inv, _ = m.bn_forward_train(x3, w, b, 1e-5, True)
            m.bn_backward(g3, x3, mean, inv, w, True)

        def ln(m=m):
            _, mean, inv = m.row_forward(x2, lw, lw, 1e-5)
            m.row_backward(g2, x2, mean, inv, lw, True)

        out[("batch_norm train fwd+bwd", v)] = bn_train
        out[("batch_norm eval fwd", v)] = lambda m=m: m.bn_forward_eval(x3, w, b)
        out[("layer_norm (C,H,W) fwd+bwd", v)] = ln
    for v in K.variants("dropout"):
        if v == "reference":
            continue
        m = K.get("dropout", v)

        def drop(m=m):
            _, keep = m.forward(x, 1, 2, 0.5, 2.0)
            m.backward(g, keep, 2.0)

        out[("dropout fwd+bwd", v)] = drop
    return out


def torch_cases(threads: int):
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal(SHAPE, dtype=np.float32), requires_grad=True)
    g = torch.tensor(rng.standard_normal(SHAPE, dtype=np.float32))
    c = SHAPE[1]
    w = torch.ones(c, requires_grad=True)
    b = torch.zeros(c, requires_grad=True)
    rm, rv = torch.zeros(c), torch.ones(c)
    lw = torch.ones(SHAPE[1:], requires_grad=True)
    lb = torch.zeros(SHAPE[1:], requires_grad=True)
    tf = torch.nn.functional

    def clear():
        x.grad = w.grad = b.grad = lw.grad = lb.grad = None

    def bn_train():
        tf.batch_norm(x, rm, rv, w, b, training=True).backward(g)
        clear()

    def bn_eval():
        with torch.no_grad():
            tf.batch_norm(x, rm, rv, w, b, training=False)

    def drop():
        tf.dropout(x, 0.5, True).backward(g)
        clear()

    def ln():
        tf.layer_norm(x, SHAPE[1:], lw, lb).backward(g)
        clear()

    return {
        "batch_norm train fwd+bwd": bn_train,
        "batch_norm eval fwd": bn_eval,
        "dropout fwd+bwd": drop,
        "layer_norm (C,H,W) fwd+bwd": ln,
    }


_JIT_SNIPPET = r"""
import json, time, numpy as np
import tapegrad as tg, tapegrad.kernels as K
tg.set_num_threads(%(threads)d)
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 4, 6, 6), dtype=np.float32)
w, b = np.ones(4), np.zeros(4)
out = {}
def t(name, fn):
    t0 = time.perf_counter(); fn(); out[name] = time.perf_counter() - t0
N = K.get("batch_norm", "fused-numba")
x3 = x.reshape(8, 4, 36)
t("bn_forward_train", lambda: N.bn_forward_train(x3, w, b, 1e-5, True))
y, m, s, v = N.bn_forward_train(x3, w, b, 1e-5, True)
t("bn_backward", lambda: N.bn_backward(x3, x3, m, s, w, True))
t("bn_forward_eval", lambda: N.bn_forward_eval(x3, w, b))
x2 = x.reshape(8, -1)
lw = np.ones((1, x2.shape[1]), np.float32)
t("row_forward", lambda: N.row_forward(x2, lw, lw, 1e-5))
y, m, s = N.row_forward(x2, lw, lw, 1e-5)
t("row_backward", lambda: N.row_backward(x2, x2, m, s, lw, True))
D = K.get("dropout", "philox-numba")
t("dropout forward", lambda: D.forward(x, 0, 0, 0.5, 2.0))
y, keep = D.forward(x, 0, 0, 0.5, 2.0)
t("dropout backward", lambda: D.backward(x, keep, 2.0))
t("dropout2d forward", lambda: D.channel_forward(x.reshape(32, 36), 0, 0, 0.5, 2.0))
t("gaussian forward", lambda: D.gaussian_forward(x, 0, 0, 0.5))
print(json.dumps(out))
"""


def jit_times(threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as cache:
        env = user_env(NUMBA_CACHE_DIR=cache)
        return run_worker("-c", _JIT_SNIPPET % {"threads": threads}, env=env)


def _worker(role: str, threads: int, repeats: int) -> dict:
    """Run one side's cases in this process: {case or "case|variant": median ms}."""
    if role == "copy":
        return {"copy_gbs": copy_bandwidth(repeats)}
    if role == "torch":
        fns = {(case, "torch"): fn for case, fn in torch_cases(threads).items()}
    elif role == "kernels":
        import tapegrad as tg

        tg.set_num_threads(threads)
        fns = {(case, f"{v} (kernel)"): fn for (case, v), fn in kernel_cases().items()}
    else:
        fns = tapegrad_cases(threads)
    return {f"{case}|{v}": 1e3 * times(fn, repeats)[0] for (case, v), fn in fns.items()}


def _spawn(role: str, threads: int, repeats: int) -> dict:
    return run_worker(
        __file__, "--worker", role, "--threads", str(threads), "--repeats", str(repeats)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-jit", action="store_true", help="skip the cold-JIT table")
    ap.add_argument("--worker", choices=["tapegrad", "torch", "kernels", "copy"])
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.threads, args.repeats)))
        return

    import importlib.util

    roles = ["tapegrad", "kernels"]
    if importlib.util.find_spec("torch") is not None:
        roles.append("torch")
    runs: dict[str, list[float]] = {}
    copies = [_spawn("copy", args.threads, args.repeats)["copy_gbs"]]
    for r in range(args.rounds):
        for role in roles if r % 2 == 0 else roles[::-1]:
            for key, ms in _spawn(role, args.threads, args.repeats).items():
                runs.setdefault(key, []).append(ms)
    copies.append(_spawn("copy", args.threads, args.repeats)["copy_gbs"])
    copy_gbs = float(np.mean(copies))
    print(
        f"shape {SHAPE} float32, {args.threads} threads each, each framework in its own "
        f"process; {args.rounds} alternated rounds of {args.repeats} calls after warm-up; "
        f"np.copyto of {MB / 1e6:.1f} MB: {copies[0]:.1f} / {copies[1]:.1f} GB/s (start / "
        f"end); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print()
    med = {k: float(np.median(v)) for k, v in runs.items()}
    torch_ms = {k.split("|")[0]: v for k, v in med.items() if k.endswith("|torch")}
    print(
        "| case | impl | ms (median) | spread of rounds | ratio to torch | target | GB/s | x copy |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    kernel_keys = {k for k in runs if k.endswith(" (kernel)")}
    for case, (nbytes, target) in CASES.items():
        keys = [k for k in runs if k.split("|")[0] == case and k not in kernel_keys]
        keys.sort(key=lambda k: k.endswith("|torch"))
        for key in keys:
            v = key.split("|")[1]
            t = med[key]
            gbs = nbytes / t / 1e6
            ratio = f"{t / torch_ms[case]:.2f}" if case in torch_ms else "-"
            goal = "" if v == "torch" else f"<= {target}"
            print(
                f"| {case} | {v} | {t:.2f} | {min(runs[key]):.2f}-{max(runs[key]):.2f} | "
                f"{ratio} | {goal} | {gbs:.1f} | {copy_gbs / gbs:.2f} |"
            )
    print()
    print("Kernels alone (no tape, no argument checks, no gradient accumulation):")
    print()
    print("| case | kernel | ms (median) | spread of rounds | ratio to torch op | GB/s | x copy |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for key in sorted(kernel_keys):
        case, v = key.split("|")
        v = v.removesuffix(" (kernel)")
        t = med[key]
        gbs = CASES[case][0] / t / 1e6
        ratio = f"{t / torch_ms[case]:.2f}" if case in torch_ms else "-"
        print(
            f"| {case} | {v} | {t:.2f} | {min(runs[key]):.2f}-{max(runs[key]):.2f} | {ratio} "
            f"| {gbs:.1f} | {copy_gbs / gbs:.2f} |"
        )
    if not args.no_jit:
        print()
        print("Numba first call, empty cache (compile time), small inputs:")
        print("| kernel | s |")
        print("| --- | ---: |")
        for k, v in jit_times(args.threads).items():
            print(f"| {k} | {v:.2f} |")


if __name__ == "__main__":
    main()
