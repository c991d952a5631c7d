"""Batch norm + ReLU in training: one fused kernel pass each way against the unfused passes.

Two measurements, each alternating the two paths in one process so both see the same load:

- ``kernels``: each compiled ``batch_norm`` variant's ``bn_relu_forward_train`` +
  ``bn_relu_backward`` against ``bn_forward_train``, the ``bias_relu`` epilogue (same
  variant name), its masked backward and ``bn_backward``, on resnet8's three batch-norm
  shapes (batch 64); best of the calls per path.
- ``step``: a zoo model's whole training step with ``batch_norm_relu`` fused and with the
  fusion switched off (the record's ``fuses_relu`` answering False), median per path.

    python benchmarks/bn_relu_fusion.py [--threads 1] [--model resnet8] [--rounds 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _timing import call_times

import tapegrad as tg
import tapegrad.kernels as K
from tapegrad.bench.steps import tapegrad_step
from tapegrad.kernels.norm import BatchNormTrainCall

SHAPES = ((64, 16, 1024), (64, 32, 256), (64, 64, 64))  # resnet8's (N, C, H*W)


def _paths(mod, epi, x, gy):
    """The fused and the unfused forward + backward of ``mod`` (and epilogue ``epi``)."""
    w, b = np.ones(x.shape[1]), np.zeros(x.shape[1])

    def fused() -> None:
        _, m, s, _, mask = mod.bn_relu_forward_train(x, w, b, 1e-5, True)
        mod.bn_relu_backward(gy, mask, x, m, s, w, True)

    def unfused() -> None:
        y, m, s, _ = mod.bn_forward_train(x, w, b, 1e-5, True)
        mask = epi.bias_relu_forward(y, None)
        g, _ = epi.masked_backward(gy, mask, False)
        mod.bn_backward(g, x, m, s, w, True)

    return fused, unfused


def _kernels(rounds: int) -> None:
    rng = np.random.default_rng(0)
    print("| variant | N, C, HW | fused ms | unfused ms | fused / unfused |")
    print("| --- | --- | ---: | ---: | ---: |")
    for var in [v for v in K.variants("batch_norm") if v != "reference"]:
        mod, epi = K.get("batch_norm", var), K.get("bias_relu", var)
        for shape in SHAPES:
            x = rng.standard_normal(shape).astype(np.float32)
            gy = rng.standard_normal(shape).astype(np.float32)
            paths = _paths(mod, epi, x, gy)
            best = [float("inf"), float("inf")]
            for r in range(10 * rounds):
                t = time.perf_counter()
                paths[r % 2]()
                best[r % 2] = min(best[r % 2], time.perf_counter() - t)
            f, u = best[0] * 1e3, best[1] * 1e3
            print(f"| {var} | {shape} | {f:.3f} | {u:.3f} | {f / u:.2f} |")


def _step(model: str, rounds: int) -> None:
    step = tapegrad_step(model, 64)
    fuses = BatchNormTrainCall.fuses_relu

    def use(on: bool) -> None:
        BatchNormTrainCall.fuses_relu = staticmethod(fuses if on else (lambda mod: False))

    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for on in (True, False):
            use(on)
            for _ in range(3):
                step()
        for r in range(rounds):
            for on in (True, False) if r % 2 == 0 else (False, True):
                use(on)
                times[on].append(statistics.median(call_times(step, 5, warmup=0)))
    finally:
        BatchNormTrainCall.fuses_relu = staticmethod(fuses)
    f, u = (statistics.median(times[on]) * 1e3 for on in (True, False))
    print(f"\n{model} step: fused {f:.1f} ms, unfused {u:.1f} ms, fused / unfused {f / u:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    tg.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); load {os.getloadavg()[0]:.1f}\n")
    _kernels(args.rounds)
    _step(args.model, args.rounds)


if __name__ == "__main__":
    main()
