"""Eval-mode latency (batch 1) and throughput (batch 64) of every zoo model, four runners.

Runners: ``tapegrad`` (the model's eval forward under ``no_grad``), ``tapegrad-opt``
(:func:`tapegrad.inference.optimize`), ``tapegrad-nofuse`` and ``tapegrad-fold``
(``optimize(model, fold=False, fuse=False)``: the traced ops replayed with no tape, and the
same with batch norm folded; ``tapegrad-serial``: ``tapegrad-opt`` with every step on the
calling thread (``serial_macs`` huge); not in the default set: ``--runners`` to see what
folding, fusion and threads each buy), ``torch`` (the ``zoo_torch`` twin with the same
weights, ``torch.inference_mode()``) and ``onnxruntime`` (the file ``tapegrad.onnx.export``
writes, CPU provider, default graph optimisations). Every measurement runs in its own
process with the same thread count for every runner (``--threads``, default 2:
``tapegrad.set_num_threads``, ``torch.set_num_threads`` + one inter-op thread, ORT's
intra-op threads), each at its own defaults otherwise. Rounds alternate the runners (the
order rotates each round) so all see the same machine load; reported are medians over all
rounds' calls and the 10th-90th percentile spread.

    python benchmarks/inference_latency.py [--models lenet5,resnet8] [--rounds 3]

Writes ``benchmarks/results/inference-latency.{json,md}`` (with ``uptime`` before and
after: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np
from _report import uptime
from _timing import call_times, run_worker

RUNNERS = ("tapegrad", "tapegrad-opt", "torch", "onnxruntime")
RESULTS = Path(__file__).resolve().parent / "results"


# --- worker (one runner, one model, one process) --------------------------------------------


def _worker(args: argparse.Namespace) -> None:
    import tapegrad as tg
    from tapegrad import zoo

    name, runner, threads = args.model, args.runner, args.threads
    side = zoo.DEFAULT_INPUT[name]
    if runner.startswith("tapegrad"):
        tg.set_num_threads(threads)
        model = zoo.get_model(name, in_channels=1, input_size=side)
        model.load_state_dict(tg.load(args.weights))
        model.eval()
        if runner in ("tapegrad-opt", "tapegrad-nofuse", "tapegrad-fold", "tapegrad-serial"):
            from tapegrad.inference import optimize

            fold = runner != "tapegrad-nofuse"
            fuse = runner in ("tapegrad-opt", "tapegrad-serial")
            serial = 2**62 if runner == "tapegrad-serial" else None
            fwd = optimize(model, fold=fold, fuse=fuse, serial_macs=serial)
        else:

            def fwd(x):
                with tg.no_grad():
                    return model(tg.Tensor._from_op(x))

    elif runner == "torch":
        import torch
        from safetensors.torch import load_file

        from tapegrad.zoo_torch import torch_model

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        width = {"vgg_small": 32, "mobilenet_small": 32, "resnet8": 16, "conv_autoencoder": 16}
        extra = {"width": width[name]} if name in width else {}
        tmodel = torch_model(name, 1, 10, side, **extra).eval()
        tmodel.load_state_dict(load_file(args.weights))

        def fwd(x):
            with torch.inference_mode():
                return tmodel(torch.from_numpy(x))

    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(args.onnx, opts, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name

        def fwd(x):
            return sess.run(None, {in_name: x})

    rng = np.random.default_rng(0)
    out = {}
    for batch, warmup, calls in ((1, args.warmup, args.calls), (64, 2, args.calls_64)):
        x = rng.standard_normal((batch, 1, side, side)).astype(np.float32)
        out[str(batch)] = call_times(lambda x=x: fwd(x), calls, warmup)
        if hasattr(fwd, "plan"):  # the optimised runners: what each plan runs
            plan = fwd.plan(x)
            out[f"plan{batch}"] = {
                "threaded": bool(plan.threaded),
                "kernels": sorted(set(plan.kernels.values())),
            }
    print(json.dumps(out))


# --- driver ----------------------------------------------------------------------------------


def _prepare(name: str, tmp: Path) -> tuple[str, str]:
    """Seeded weights (batch-norm statistics moved off 0/1 as after training), saved for
    every runner, and the exported ONNX file."""
    import tapegrad as tg
    from tapegrad import nn, zoo
    from tapegrad.onnx import export

    tg.manual_seed(0)
    side = zoo.DEFAULT_INPUT[name]
    model = zoo.get_model(name, in_channels=1, input_size=side)
    rng = np.random.default_rng(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data[...] = rng.normal(0, 0.3, m.num_features)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, m.num_features)
    weights = tmp / f"{name}.safetensors"
    tg.save(dict(model.state_dict()), weights)
    onnx_path = tmp / f"{name}.onnx"
    export(model, np.zeros((1, 1, side, side), np.float32), onnx_path)
    return str(weights), str(onnx_path)


def _run(runner: str, name: str, weights: str, onnx_path: str, a: argparse.Namespace) -> dict:
    return run_worker(
        __file__, "--worker", "--runner", runner, "--model", name,
        "--weights", weights, "--onnx", onnx_path, "--threads", str(a.threads),
        "--calls", str(a.calls), "--calls-64", str(a.calls_64), "--warmup", str(a.warmup),
        env=dict(os.environ), timeout=1800,
    )  # fmt: skip


def _summary(times: list[float]) -> dict:
    q = np.percentile(times, [10, 50, 90])
    return {"median_ms": 1e3 * q[1], "p10_ms": 1e3 * q[0], "p90_ms": 1e3 * q[2], "n": len(times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=None, help="comma-separated zoo models (default all)")
    p.add_argument("--runners", default=",".join(RUNNERS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=40, help="timed batch-1 calls per process")
    p.add_argument("--calls-64", type=int, default=6, help="timed batch-64 calls per process")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out", default=str(RESULTS / "inference-latency"))
    # worker mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--runner", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--onnx", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        _worker(a)
        return

    from tapegrad import zoo

    models = a.models.split(",") if a.models else zoo.available()
    runners = a.runners.split(",")
    meta = {
        "uptime_before": uptime(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": a.threads,
        "rounds": a.rounds,
        "python": platform.python_version(),
    }
    times: dict = {m: {r: {"1": [], "64": []} for r in runners} for m in models}
    plans: dict = {m: {r: [] for r in runners} for m in models}
    with tempfile.TemporaryDirectory() as td:
        files = {m: _prepare(m, Path(td)) for m in models}
        for rnd in range(a.rounds):
            for m in models:
                order = runners[rnd % len(runners) :] + runners[: rnd % len(runners)]
                for r in order:
                    got = _run(r, m, *files[m], a)
                    for b in ("1", "64"):
                        times[m][r][b].extend(got[b])
                    if "plan1" in got:
                        plans[m][r].append({"1": got["plan1"], "64": got["plan64"]})
                    print(f"round {rnd + 1} {m:16s} {r:13s} batch-1 median "
                          f"{1e3 * statistics.median(got['1']):8.3f} ms", flush=True)  # fmt: skip
    meta["uptime_after"] = uptime()
    result = {
        "meta": meta,
        "results": {
            m: {
                r: {
                    "batch1_latency": _summary(times[m][r]["1"]),
                    "batch64": _summary(times[m][r]["64"]),
                    "batch64_images_per_s": 64 / statistics.median(times[m][r]["64"]),
                    "plans": plans[m][r],
                }
                for r in runners
            }
            for m in models
        },
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Inference latency and throughput",
        "",
        f"{a.threads} threads per runner, each runner in its own process, {a.rounds} "
        f"alternated rounds; {a.calls} batch-1 and {a.calls_64} batch-64 timed calls per "
        "process. Latency: median (p10-p90) in ms. Throughput: images/s at batch 64 "
        "(median call).",
        "",
        f"- uptime before: `{meta['uptime_before']}`",
        f"- uptime after: `{meta['uptime_after']}`",
        "",
        "| model | runner | batch-1 latency ms | batch-64 images/s |",
        "|---|---|---|---|",
    ]
    for m in models:
        for r in runners:
            s = result["results"][m][r]
            lat = s["batch1_latency"]
            lines.append(
                f"| {m} | {r} | {lat['median_ms']:.3f} ({lat['p10_ms']:.3f}-{lat['p90_ms']:.3f})"
                f" | {s['batch64_images_per_s']:.0f} |"
            )
    plan_lines = []
    for m in models:
        for r in runners:
            for i, pl in enumerate(result["results"][m][r]["plans"]):
                if not (pl["1"]["kernels"] or pl["64"]["kernels"]):
                    continue  # the replays without fused steps
                desc = "; ".join(
                    f"batch {b}: {'threaded' if pl[b]['threaded'] else 'serial'} plan, "
                    + (", ".join(pl[b]["kernels"]) or "no conv")
                    for b in ("1", "64")
                )
                plan_lines.append(f"- {m} {r} (round {i + 1}): {desc}")
    if plan_lines:
        lines += ["", "Plans the optimised runners kept (conv kernels used):", "", *plan_lines]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
