"""One full training step (forward, backward, SGD-momentum update), tapegrad vs PyTorch.

Each zoo model and the same network written with ``torch.nn`` (weights copied across so
both start equal) train on a batch of 64 random images with 2 threads each
(``tapegrad.set_num_threads(2)``, ``torch.set_num_threads(2)``). After ``--warmup`` steps
(Numba JIT and first-touch allocation; the first step's excess is reported as JIT time)
the steps are timed ``--repeats`` times, the two frameworks interleaved so both see the
same machine load. Reported: median step time, images/s and the ratio of tapegrad's
median step time to PyTorch's (lower is better).

    python benchmarks/train_vs_torch.py [--models lenet5,vgg_small] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import optim, zoo
from tapegrad.zoo_torch import torch_model

# the targets of issue 5: tapegrad step time / PyTorch step time
TARGETS = {"lenet5": 1.0, "vgg_small": 1.0, "mobilenet_small": 0.5, "conv_autoencoder": 1.0}


def _torch_step(torch, model, opt, x, y, recon):
    opt.zero_grad()
    out = model(x)
    loss = (
        torch.nn.functional.mse_loss(out, x) if recon else torch.nn.functional.cross_entropy(out, y)
    )
    loss.backward()
    opt.step()


def _tg_step(model, opt, x, y, recon):
    opt.zero_grad()
    out = model(x)
    loss = F.mse_loss(out, x) if recon else F.cross_entropy(out, y)
    loss.backward()
    opt.step()


def bench(name: str, batch: int, warmup: int, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    tg.set_num_threads(threads)
    side = zoo.DEFAULT_INPUT[name]
    tg.manual_seed(0)
    ours = zoo.get_model(name)
    width = getattr(ours, "width", None)
    kwargs = {"input_size": side}
    defaults = {"vgg_small": 32, "mobilenet_small": 32, "resnet8": 16, "conv_autoencoder": 16}
    if name in defaults:
        kwargs["width"] = width or defaults[name]
    theirs = torch_model(name, **kwargs)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    recon = name == "conv_autoencoder"
    rng = np.random.default_rng(0)
    xn = rng.random((batch, 1, side, side)).astype(np.float32)
    yn = rng.integers(0, 10, batch)
    x, y = tg.Tensor(xn), yn
    tx, ty = torch.tensor(xn), torch.tensor(yn)
    opt = optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    ours.train()
    theirs.train()
    t0 = time.perf_counter()
    _tg_step(ours, opt, x, y, recon)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        _tg_step(ours, opt, x, y, recon)
        _torch_step(torch, theirs, topt, tx, ty, recon)
    ts, tt = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _tg_step(ours, opt, x, y, recon)
        ts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _torch_step(torch, theirs, topt, tx, ty, recon)
        tt.append(time.perf_counter() - t0)
    a, b = statistics.median(ts), statistics.median(tt)
    return {
        "model": name,
        "tapegrad_ms": 1e3 * a,
        "torch_ms": 1e3 * b,
        "tapegrad_img_s": batch / a,
        "torch_img_s": batch / b,
        "ratio": a / b,
        "first_step_excess_s": max(first - a, 0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,vgg_small,mobilenet_small,conv_autoencoder,resnet8")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(
        f"batch {args.batch}, {args.threads} threads each, median of {args.repeats} steps "
        f"after {args.warmup} warm-up steps"
    )
    print()
    print(
        "| model | tapegrad ms/step | torch ms/step | tapegrad img/s | torch img/s | "
        "ratio (tg/torch) | target | first-step JIT+alloc s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        r = bench(name, args.batch, args.warmup, args.repeats, args.threads)
        target = TARGETS.get(name)
        print(
            f"| {name} | {r['tapegrad_ms']:.1f} | {r['torch_ms']:.1f} | "
            f"{r['tapegrad_img_s']:.0f} | {r['torch_img_s']:.0f} | {r['ratio']:.2f} | "
            f"{f'<= {target:.1f}' if target else '-'} | {r['first_step_excess_s']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
