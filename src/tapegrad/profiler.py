"""Where a training step's time goes: each op's forward and backward, and Python between them.

    import tapegrad as tg
    from tapegrad.profiler import profile

    with profile() as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    print(prof.table())

While the block runs, every op (each ``tapegrad.Function`` call) is timed in its forward
and in its backward, with the kernel variant it ran (what ``auto`` chose, or what
``kernels.use`` forced). The table lists the ops in tape order: forward ms, backward ms,
their share of the block's wall time and the variant. Below it: the sum over ops, the
wall time, and the rest, "Python between kernels" (optimizer, tensor bookkeeping, the
tape walk, argument checks). ``dispatch`` is the time inside ``Function.apply`` around the
forward (building the tape node, the output Tensor), per op on average.

From the command line, ``python -m tapegrad profile MODEL`` profiles training steps of a
zoo model (batch 64, SGD with momentum, after warm-up steps) and prints each op's median
over ``--steps`` of them (default 5; :func:`median_profile` does the same in code);
``--compare torch`` adds PyTorch's own profiler view (``torch.profiler``) of the same
network, run in a process of its own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import autograd


@dataclass
class OpRecord:
    """One op of the profiled block: its name, output shape, variant(s), times (seconds)."""

    index: int
    name: str
    shape: tuple[int, ...]
    variant: str
    forward_s: float
    apply_s: float = 0.0  # the whole Function.apply call, forward included
    backward_s: float = 0.0
    hook_s: float = 0.0  # the profiler's own work around the forward (left out of the totals)


@dataclass
class Profile:
    """Per-op timings of one ``profile()`` block; :meth:`table` formats them."""

    ops: list[OpRecord] = field(default_factory=list)
    wall_s: float = 0.0
    steps: int = 1  # profiled blocks this one summarises (see :func:`median_profile`)
    _by_ctx: dict[int, OpRecord] = field(default_factory=dict)

    # --- hooks called by autograd ---------------------------------------------------------
    def forward(self, cls: type, ctx: Any, raw: list, kwargs: dict) -> Any:
        """Run and time ``cls.forward`` (autograd calls this inside a ``profile()`` block)."""
        import tapegrad.kernels as K

        h0 = time.perf_counter()
        with K.record() as calls:
            t0 = time.perf_counter()
            out = cls.forward(ctx, *raw, **kwargs)
            dt = time.perf_counter() - t0
        training = bool(ctx.needs_input_grad) and any(ctx.needs_input_grad)
        names = [K.resolved_name(op, sig, training=training) for op, sig in calls]
        variant = ",".join(dict.fromkeys(f"{op}:{n}" for (op, _), n in zip(calls, names)))
        rec = OpRecord(len(self.ops), cls.__name__, tuple(getattr(out, "shape", ())), variant, dt)
        self.ops.append(rec)
        self._by_ctx[id(ctx)] = rec
        rec.hook_s = time.perf_counter() - h0 - dt  # the profiler's own bookkeeping
        return out

    def backward(self, node: Any, g: Any) -> Any:
        """Run and time one tape node's backward (autograd calls this in the block)."""
        t0 = time.perf_counter()
        out = node.fn.backward(node.ctx, g)
        dt = time.perf_counter() - t0
        rec = self._by_ctx.get(id(node.ctx))
        if rec is None:  # an op recorded before the block started
            rec = OpRecord(len(self.ops), node.fn.__name__, (), "", 0.0)
            self.ops.append(rec)
            self._by_ctx[id(node.ctx)] = rec
        rec.backward_s += dt
        return out

    # --- results --------------------------------------------------------------------------
    @property
    def kernel_s(self) -> float:
        """Seconds inside op forwards and backwards."""
        return sum(r.forward_s + r.backward_s for r in self.ops)

    @property
    def overhead_s(self) -> float:
        """Seconds the profiler itself spent (variant look-ups, records)."""
        return sum(r.hook_s for r in self.ops)

    @property
    def python_s(self) -> float:
        """Seconds of the block outside any op's forward or backward (and the profiler)."""
        return max(0.0, self.wall_s - self.kernel_s - self.overhead_s)

    def table(self, top: int | None = None) -> str:
        """The per-op table (tape order; ``top``: only the slowest ``top`` ops) and totals."""
        wall = max(self.wall_s - self.overhead_s, 1e-12)
        rows = self.ops
        if top is not None:
            keep = set(
                id(r)
                for r in sorted(rows, key=lambda r: r.forward_s + r.backward_s, reverse=True)[:top]
            )
            rows = [r for r in rows if id(r) in keep]
        head = (
            f"{'#':>3}  {'op':<22} {'output':<18} {'fwd ms':>8} {'bwd ms':>8} {'share':>6}  variant"
        )
        lines = [head, "-" * len(head)]
        for r in rows:
            share = (r.forward_s + r.backward_s) / wall
            shape = "x".join(map(str, r.shape)) or "-"
            lines.append(
                f"{r.index:>3}  {r.name[:22]:<22} {shape[:18]:<18} {1e3 * r.forward_s:8.3f} "
                f"{1e3 * r.backward_s:8.3f} {share:6.1%}  {r.variant or '-'}"
            )
        fwd = sum(r.forward_s for r in self.ops)
        bwd = sum(r.backward_s for r in self.ops)
        n = max(1, len(self.ops))
        dispatch = sum(max(0.0, r.apply_s - r.forward_s - r.hook_s) for r in self.ops) / n
        lines += [
            "",
            *(
                [f"median of {self.steps} profiled steps, op by op (the totals below too)"]
                if self.steps > 1
                else []
            ),
            f"ops: {len(self.ops)}; forward {1e3 * fwd:.2f} ms, backward {1e3 * bwd:.2f} ms "
            f"({self.kernel_s / wall:.0%} of the block)",
            f"Python between kernels: {1e3 * self.python_s:.2f} ms ({self.python_s / wall:.0%}); "
            f"dispatch around each forward: {1e6 * dispatch:.1f} us per op",
            f"wall time of the block: {1e3 * self.wall_s:.2f} ms, of which the profiler's own "
            f"bookkeeping {1e3 * self.overhead_s:.2f} ms (left out above)",
        ]
        return "\n".join(lines)


def median_profile(profiles: Sequence[Profile]) -> Profile:
    """One :class:`Profile` of the per-op medians of several profiles of the same block.

    Each time (an op's forward, backward, dispatch and bookkeeping, and the wall time) is the
    median over the profiles, which steadies a table on a busy machine: one profiled step
    moves single rows by 10-30%. The profiles must list the same ops in the same order (a
    training step run again), as ``tapegrad profile --steps N`` does.

    Raises
    ------
    ValueError
        If ``profiles`` is empty or two profiles list different ops (the message names the
        first position where they differ).
    """
    if not profiles:
        raise ValueError("median_profile: profiles is empty")
    first = profiles[0]
    for k, prof in enumerate(profiles[1:], start=1):
        names = [(r.name, r.shape) for r in prof.ops]
        ref = [(r.name, r.shape) for r in first.ops]
        if names != ref:
            at = next(
                (i for i, (a, b) in enumerate(zip(ref, names)) if a != b), min(len(ref), len(names))
            )
            raise ValueError(
                f"median_profile: profile {k} lists {len(names)} ops and profile 0 {len(ref)}; "
                f"they differ at op {at}"
            )

    def med(values: list[float]) -> float:
        return float(np.median(values)) if values else 0.0

    out = Profile(wall_s=med([p.wall_s for p in profiles]), steps=len(profiles))
    for i, rec in enumerate(first.ops):
        rows = [p.ops[i] for p in profiles]
        out.ops.append(
            OpRecord(
                rec.index,
                rec.name,
                rec.shape,
                rec.variant,
                med([r.forward_s for r in rows]),
                apply_s=med([r.apply_s for r in rows]),
                backward_s=med([r.backward_s for r in rows]),
                hook_s=med([r.hook_s for r in rows]),
            )
        )
    return out


class _Hook:
    """Adapter installed in autograd: times forwards/backwards into a Profile."""

    def __init__(self, prof: Profile) -> None:
        self.prof = prof

    def forward(self, cls: type, ctx: Any, raw: list, kwargs: dict) -> Any:
        return self.prof.forward(cls, ctx, raw, kwargs)

    def backward(self, node: Any, g: Any) -> Any:
        return self.prof.backward(node, g)


@contextmanager
def profile() -> Iterator[Profile]:
    """Time every op run inside the block (forward and backward) and the block's wall time.

    Yields a :class:`Profile`; print ``prof.table()`` after the block. Blocks do not nest.

    Raises
    ------
    RuntimeError
        If another ``profile()`` block is already running.
    """
    if autograd._profile_hook[0] is not None:
        raise RuntimeError("profile: a profile() block is already running")
    prof = Profile()
    orig_apply = autograd.Function.apply.__func__  # type: ignore[attr-defined]

    def timed_apply(cls, *args, **kwargs):
        n = len(prof.ops)
        t0 = time.perf_counter()
        out = orig_apply(cls, *args, **kwargs)
        if len(prof.ops) > n:
            rec = prof.ops[n]
            rec.apply_s = time.perf_counter() - t0
        return out

    autograd._profile_hook[0] = _Hook(prof)
    autograd.Function.apply = classmethod(timed_apply)  # type: ignore[method-assign]
    t0 = time.perf_counter()
    try:
        yield prof
    finally:
        prof.wall_s = time.perf_counter() - t0
        autograd.Function.apply = classmethod(orig_apply)  # type: ignore[method-assign]
        autograd._profile_hook[0] = None


# --- command line ---------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``tapegrad profile``."""
    p.add_argument("model", help="a zoo model (tapegrad info --list)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="default: tapegrad's default")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (JIT, caches)")
    p.add_argument("--top", type=int, default=None, help="show only the slowest N ops")
    p.add_argument(
        "--steps",
        type=int,
        default=5,
        help="profiled steps; the table shows each op's median over them (default 5)",
    )
    p.add_argument("--compare", choices=["torch"], default=None)


def _step_fn(name: str, batch: int):
    from tapegrad.bench.steps import tapegrad_step

    return tapegrad_step(name, batch)


_TORCH_CODE = """
import sys, time
import torch
from tapegrad.bench.steps import torch_step
name, batch, threads, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
step = torch_step(name, batch)
for _ in range(warmup):
    step()
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    t0 = time.perf_counter()
    step()
    wall = time.perf_counter() - t0
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
print(f"PyTorch step under its profiler: {1e3 * wall:.2f} ms ({threads} threads)")
"""


def main(args: argparse.Namespace) -> int:
    """``tapegrad profile``: one training step's per-op table (and PyTorch's with
    ``--compare torch``). Returns the exit status."""
    import tapegrad as tg
    from tapegrad import zoo

    if args.model not in zoo.MODELS:
        print(
            f"tapegrad profile: unknown model {args.model!r}; choose from {zoo.available()}",
            file=sys.stderr,
        )
        return 2
    if (
        args.batch < 1
        or args.steps < 1
        or args.warmup < 0
        or (args.threads is not None and args.threads < 1)
    ):
        print(
            "tapegrad profile: --batch, --steps and --threads must be >= 1, --warmup >= 0",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        tg.set_num_threads(args.threads)
    step = _step_fn(args.model, args.batch)
    for _ in range(args.warmup):
        step()
    runs = []
    for _ in range(args.steps):
        with profile() as one:
            step()
        runs.append(one)
    prof = median_profile(runs)
    threads = tg.get_num_threads()
    what = "one training step" if args.steps == 1 else f"median of {args.steps} training steps"
    print(f"tapegrad {args.model}, batch {args.batch}, {threads} threads: {what}")
    print(prof.table(args.top))
    if args.compare == "torch":
        print(f"\nPyTorch {args.model} (its own process, {threads} threads):", flush=True)
        code = _TORCH_CODE
        argv = [args.model, str(args.batch), str(threads), str(max(1, args.warmup))]
        res = subprocess.run([sys.executable, "-c", code, *argv], check=False)
        if res.returncode != 0:
            print("tapegrad profile: the PyTorch run failed (is torch installed?)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="tapegrad profile")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
