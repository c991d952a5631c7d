"""Training-step timing, one framework per process, as a user would measure it.

``python -m tapegrad.bench.steps --side {tapegrad,torch} --model NAME`` runs one zoo model
(or its ``torch.nn`` twin) for a few warm-up steps and then times ``--steps`` training
steps (forward, loss, backward, SGD with momentum; batch 64 of random images), and prints
one JSON line: the step times, the thread count and the BLAS library that ran
(threadpoolctl's ``internal_api`` and ``architecture``). Each framework runs at its own
defaults except the thread count (``--threads``), so nothing one framework sets up changes
the other. :func:`run_rounds` starts these processes alternately and collects them;
``benchmarks/train_vs_torch.py`` and ``benchmarks/import_order.py`` print the tables.

``--torch-first`` (tapegrad side): import PyTorch and run one PyTorch op before importing
tapegrad, as a notebook that uses both does. ``--backend numba`` / ``cython`` forces every
op to that backend's variant instead of ``auto``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: environment variables that pin OpenBLAS to one kernel family on some machines; the
#: benchmark processes run without them unless asked (``keep_pin``), as on a user's machine
PIN_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_WIDTH = {"vgg_small": 32, "mobilenet_small": 32, "resnet8": 16, "conv_autoencoder": 16}


def _blas() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    return [
        {k: d.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
        for d in threadpool_info()
        if d.get("user_api") == "blas"
    ]


def _force_backend(backend: str) -> None:
    import tapegrad.kernels as K

    choices = {}
    for op in K.ops():
        names = [v for v in K.variants(op) if v.endswith("-" + backend)]
        names.sort(key=lambda v: not v.startswith(("im2col", "col2im")))
        if names:
            choices[op] = names[0]
    os.environ["TAPEGRAD_KERNELS"] = ",".join(f"{k}={v}" for k, v in choices.items())


def _time(step, warmup: int, steps: int) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return first, out


def _batch(model: str, batch: int):
    """The seeded input batch of zoo ``model``: images (batch, 1, side, side) uniform in
    [0, 1), class labels, and whether the model reconstructs its input (as NumPy arrays)."""
    import numpy as np

    from tapegrad import zoo

    side = zoo.DEFAULT_INPUT[model]
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, side, side)).astype(np.float32)
    return x, rng.integers(0, 10, batch), zoo.task_of(model) == "reconstruction"


def _sgd_step(net: Any, opt: Any, x: Any, y: Any, recon: bool, F: Any) -> Callable[[], None]:
    """One training step of ``net`` with optimiser ``opt`` through functional module ``F``
    (either framework's): mean-squared reconstruction error or cross-entropy."""

    def step() -> None:
        opt.zero_grad()
        out = net(x)
        loss = F.mse_loss(out, x) if recon else F.cross_entropy(out, y)
        loss.backward()
        opt.step()

    return step


def tapegrad_step(model: str, batch: int) -> Callable[[], None]:
    """A tapegrad training step of zoo ``model`` (seeded weights and batch, SGD with
    momentum 0.9): what ``tapegrad_steps`` and ``tapegrad profile`` time."""
    import tapegrad as tg
    import tapegrad.nn.functional as F
    from tapegrad import optim, zoo

    tg.manual_seed(0)
    net = zoo.get_model(model)
    x, y, recon = _batch(model, batch)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    return _sgd_step(net, opt, tg.Tensor(x), y, recon, F)


def torch_step(model: str, batch: int) -> Callable[[], None]:
    """The same training step for the ``torch.nn`` twin of zoo ``model``."""
    import torch

    from tapegrad import zoo
    from tapegrad.zoo_torch import torch_model

    torch.manual_seed(0)
    side = zoo.DEFAULT_INPUT[model]
    kwargs: dict[str, Any] = {"input_size": side}
    if model in _WIDTH:
        kwargs["width"] = _WIDTH[model]
    net = torch_model(model, **kwargs)
    x, y, recon = _batch(model, batch)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    return _sgd_step(net, opt, torch.tensor(x), torch.tensor(y), recon, torch.nn.functional)


def tapegrad_steps(
    model: str,
    *,
    threads: int,
    batch: int = 64,
    warmup: int = 3,
    steps: int = 20,
    torch_first: bool = False,
    backend: str = "auto",
) -> dict[str, Any]:
    """Time ``steps`` tapegrad training steps of zoo ``model`` in this process."""
    if torch_first:
        import torch

        torch.set_num_threads(threads)
        a = torch.randn(64, 3, 16, 16)
        torch.nn.functional.conv2d(a, torch.randn(8, 3, 3, 3)).sum()
    import tapegrad as tg

    if backend != "auto":
        _force_backend(backend)
    tg.set_num_threads(threads)
    first, ts = _time(tapegrad_step(model, batch), warmup, steps)
    return {"side": "tapegrad", "first_s": first, "steps_s": ts, "threads": threads}


def torch_steps(
    model: str, *, threads: int, batch: int = 64, warmup: int = 3, steps: int = 20
) -> dict[str, Any]:
    """Time ``steps`` PyTorch training steps of zoo ``model``'s ``torch.nn`` twin."""
    import torch

    torch.set_num_threads(threads)
    first, ts = _time(torch_step(model, batch), warmup, steps)
    return {"side": "torch", "first_s": first, "steps_s": ts, "threads": threads}


def worker_env(*, keep_pin: bool = False) -> dict[str, str]:
    """The environment of a benchmark process: this one's, less the OpenBLAS pin."""
    env = dict(os.environ)
    if not keep_pin:
        for k in PIN_VARS:
            env.pop(k, None)
    return env


def run_one(
    side: str,
    model: str,
    *,
    threads: int,
    batch: int = 64,
    warmup: int = 3,
    steps: int = 20,
    torch_first: bool = False,
    backend: str = "auto",
    keep_pin: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one worker process and return its JSON result (with ``median_s`` added)."""
    cmd = [sys.executable, "-m", "tapegrad.bench.steps", "--side", side, "--model", model]
    cmd += ["--threads", str(threads), "--batch", str(batch)]
    cmd += ["--warmup", str(warmup), "--steps", str(steps), "--backend", backend]
    if torch_first:
        cmd.append("--torch-first")
    env = worker_env(keep_pin=keep_pin)
    env.update(extra_env or {})
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(cmd)} failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["median_s"] = statistics.median(res["steps_s"])
    return res


def run_models(
    side: str,
    models: list[str],
    *,
    threads: int,
    batch: int = 64,
    warmup: int = 3,
    steps: int = 20,
    torch_first: bool = False,
    backend: str = "auto",
    keep_pin: bool = False,
) -> dict[str, dict[str, Any]]:
    """Like :func:`run_one`, but one worker process times every model in ``models`` in turn
    (each with its own warm-up); returns model -> result (with ``median_s``)."""
    cmd = [sys.executable, "-m", "tapegrad.bench.steps", "--side", side]
    cmd += ["--model", ",".join(models), "--threads", str(threads), "--batch", str(batch)]
    cmd += ["--warmup", str(warmup), "--steps", str(steps), "--backend", backend]
    if torch_first:
        cmd.append("--torch-first")
    out = subprocess.run(
        cmd, env=worker_env(keep_pin=keep_pin), capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(cmd)} failed:\n{out.stderr}")
    results = {}
    for line in out.stdout.strip().splitlines():
        if line.startswith("{"):
            res = json.loads(line)
            res["median_s"] = statistics.median(res["steps_s"])
            results[res["model"]] = res
    return results


def summarize(medians: list[float]) -> dict[str, float]:
    """Median of the per-round medians and their spread (max - min) relative to it."""
    m = statistics.median(medians)
    return {"median_ms": 1e3 * m, "spread": (max(medians) - min(medians)) / m, "n": len(medians)}


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: time one side's steps and print them as one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=["tapegrad", "torch"], required=True)
    ap.add_argument("--model", required=True, help="a zoo model, or several comma-separated")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--torch-first", action="store_true")
    ap.add_argument("--backend", choices=["auto", "numba", "cython"], default="auto")
    a = ap.parse_args(argv)
    for model in a.model.split(","):  # several models: one JSON line each, in turn
        if a.side == "torch":
            res = torch_steps(
                model, threads=a.threads, batch=a.batch, warmup=a.warmup, steps=a.steps
            )
        else:
            res = tapegrad_steps(
                model,
                threads=a.threads,
                batch=a.batch,
                warmup=a.warmup,
                steps=a.steps,
                torch_first=a.torch_first and model == a.model.split(",")[0],
                backend=a.backend,
            )
        res["model"] = model
        res["blas"] = _blas()
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
