"""What the benchmark scripts share when they time: the seconds of repeated calls after
untimed warm-up ones, and running a worker process (one framework alone, at its own
defaults) in a user's environment and reading the JSON it prints.

A user's environment: OpenBLAS's core-type pins (``OPENBLAS_CORETYPE``,
``OPENBLAS_L2_SIZE``, which some machines set) removed, as on a machine that does not set
them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

# tapegrad.bench.steps.PIN_VARS, not imported from there: this module is imported by the
# PyTorch workers too, which must not load tapegrad
PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def call_times(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds (by ``clock``) of each of ``repeats`` calls of ``fn``, after ``warmup``
    untimed calls (compilation, first-touch of buffers, the thread team's start)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return ts


def alternated_samples(
    fns: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(wall ms, CPU ms) of every call per name, the names alternated call by call after
    two warm-up calls each."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            wall[k].append(1e3 * (time.perf_counter() - t0))
            cpu[k].append(1e3 * (time.process_time() - c0))
    return wall, cpu


def alternated_times(
    fns: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, float]]:
    """(wall ms, CPU ms) medians per name, the names alternated call by call."""
    wall, cpu = alternated_samples(fns, repeats)
    return {k: (float(np.median(wall[k])), float(np.median(cpu[k]))) for k in fns}


def rule_switch_steps(
    models: tuple[str, ...], switch: Callable[[bool], None], repeats: int
) -> None:
    """Print each zoo model's training step (batch 64) with ``switch(False)`` (the rule
    before) and ``switch(True)`` (the rule now) applied before alternate steps: a table of
    both medians, wall ms and process CPU ms in brackets, and their ratios. Leaves the rule
    switched on."""
    from tapegrad.bench.steps import tapegrad_step

    print("| model | rule before ms (CPU) | rule now ms (CPU) | ratio (CPU) |")
    print("| --- | ---: | ---: | ---: |")
    for model in models:
        step = tapegrad_step(model, 64)

        def with_rule(on: bool, step=step) -> Callable[[], None]:
            def run() -> None:
                switch(on)
                step()

            return run

        t = alternated_times({"before": with_rule(False), "now": with_rule(True)}, repeats)
        switch(True)
        b, a = t["before"], t["now"]
        print(f"| {model} | {b[0]:.1f} ({b[1]:.1f}) | {a[0]:.1f} ({a[1]:.1f}) | "
              f"{a[0] / b[0]:.2f} ({a[1] / b[1]:.2f}) |")  # fmt: skip


def kernels_or_steps_main(
    doc: str,
    kernels: Callable[[int], None],
    steps: Callable[[int], None],
    repeats: int,
) -> None:
    """The command line of a script that times a rule's kernels (default) or, with
    ``--steps``, the training steps it changes: ``--threads`` and ``--repeats``."""
    import argparse

    import tapegrad as tg

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--steps", action="store_true", help="time training steps, not kernels")
    a = ap.parse_args()
    tg.set_num_threads(a.threads)
    print(f"threads {a.threads}, repeats {a.repeats}")
    steps(a.repeats) if a.steps else kernels(a.repeats)


def median_s(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    return float(np.median(call_times(fn, repeats, warmup)))


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    return 1e3 * median_s(fn, repeats, warmup)


PASSES = ("forward", "input gradient", "weight gradient")


def kernel_passes(mod, x, w, b, gy, args: tuple) -> dict[str, Callable[[], object]]:
    """A convolution-family kernel module's passes, each alone, keyed as in ``PASSES``: its
    forward, and its backward asked for the input gradient only or the weight gradient only
    (``args`` are the call's arguments after x, weight and bias)."""
    return {
        "forward": lambda: mod.forward(x, w, b, *args),
        "input gradient": lambda: mod.backward(gy, x, w, *args, True, False),
        "weight gradient": lambda: mod.backward(gy, x, w, *args, False, True),
    }


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment without OpenBLAS's core-type pins, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PINS}
    env.update(extra)
    return env


def run_worker(*args: str, env: dict[str, str] | None = None, timeout: float | None = None) -> dict:
    """Run ``python *args`` (a script and its arguments, or ``-c`` and code) in ``env``
    (``user_env()`` if None) and return the JSON object on the last line of its output; a
    failing worker raises with its stderr, one running past ``timeout`` seconds too."""
    cmd = [sys.executable, *args]
    env = user_env() if env is None else env
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} ... failed ({res.returncode}):\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])
