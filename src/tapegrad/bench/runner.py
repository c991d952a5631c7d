"""Timing: warm-up (first call and any JIT compile timed apart), median and spread of
repeated runs, agreement with ``reference`` on the first run of each case and variant.

For each case the ``reference`` variant runs once to give the expected output and
gradients (and the op's call signature, recorded through ``tapegrad.kernels.record``).
Then for each variant:

1. the checked first run: forward + backward once, timed as ``first_s`` (this is where
   Numba compiles or loads its cache and where autotune times its candidates), outputs
   compared with the reference: a fast wrong kernel shows as wrong, not as fast;
2. per direction (``forward``, ``backward``, ``both``): one more untimed warm-up, then
   ``repeat`` timed samples, taken round-robin over the variants of one thread team
   (``tapegrad.kernels.tune.team``: Cython, Numba, the rest) so that load from other
   processes falls on all of them alike, the teams one after the other (a kernel timed
   while another team's idle threads still spin would be billed for them), then
   PyTorch's, which runs in a process of its own at its own defaults (``torch_side``),
   with tapegrad's thread count. Each round starts one variant later than the last, so
   every variant follows every other of its team equally often: a slow kernel evicts the
   caches its successor then refills, and a fixed order would bill that to the same
   successor every round. A sample is one call, or with ``burst > 1`` the median of that
   many back-to-back calls (steadier for sub-millisecond kernels). ``backward`` times
   ``y.backward(gy)`` alone: its forward runs untimed before each sample.

``jit_s`` = ``first_s`` minus the steady forward + backward time: the one-off cost, never
mixed into the medians.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tapegrad.kernels.tune import teams

from .cases import DIRECTIONS, Case

AUTO = "auto"


@dataclass
class Options:
    """How a bench run times and checks: repeats, directions, PyTorch comparison, reference
    check, dtype, seed.
    """

    repeat: int = 5
    directions: tuple[str, ...] = DIRECTIONS
    compare_torch: bool = False
    check: bool = True
    dtype: Any = np.float32
    seed: int = 0
    progress: bool = True
    rtol: float = 1e-3  # max |variant - reference| relative to max |reference|
    burst: int = 1  # calls per sample; a sample is their median
    # bytes -> GB/s of a copy that size (machine.copy_gbps_at); None: the DRAM figure
    copy_at: Callable[[int], float] | None = None
    # PyTorch's process (torch_side.TorchProcess) when compare_torch; run() starts one
    torch_proc: Any = None


def variants_for(op: str, wanted: list[str] | None, autotune: bool = False) -> list[str]:
    """The variants to time for ``op``: ``wanted`` (those ``op`` has), else all available
    but ``reference``; ``auto`` is added when autotune is on."""
    import tapegrad.kernels as K

    have = K.variants(op)
    if wanted:
        names = [v for v in wanted if v in have or v == AUTO]
    else:
        names = [v for v in have if v != "reference"] or ["reference"]
        if autotune:
            names.append(AUTO)
    return names


def check_variant_names(ops: list[str], wanted: list[str] | None) -> None:
    """ValueError when a ``--variants`` name belongs to none of the selected ops."""
    import tapegrad.kernels as K

    if not wanted:
        return
    known = {AUTO}
    for op in ops:
        known.update(K.variants(op, include_unavailable=True))
    bad = [v for v in wanted if v not in known]
    if bad:
        raise ValueError(
            f"bench: unknown variant(s) {', '.join(bad)} for ops {', '.join(ops)}; "
            f"valid: {', '.join(sorted(known))}"
        )


def measure(run: Callable[[Any], Any], setup: Callable[[], Any] | None, repeat: int) -> list[float]:
    """``repeat`` timings of ``run(setup())``; ``setup`` is not timed."""
    times = []
    for _ in range(repeat):
        state = setup() if setup is not None else None
        t0 = time.perf_counter()
        run(state)
        times.append(time.perf_counter() - t0)
        del state
    return times


def _stats(times: list[float]) -> dict[str, float]:
    a = np.asarray(times)
    med = float(np.median(a))
    p25, p75 = (float(v) for v in np.percentile(a, [25, 75]))
    return {
        "median_s": med,
        "p25_s": p25,
        "p75_s": p75,
        "min_s": float(a.min()),
        "spread": (p75 - p25) / med if med > 0 else 0.0,  # interquartile range / median
    }


class _Harness:
    """Calls of one case in one framework: Tensors with and without grad, a fixed ``gy``."""

    def __init__(
        self,
        case: Case,
        arrays: dict,
        grad_names: tuple,
        gy: np.ndarray | None,
        torch_mode: bool = False,
    ) -> None:
        self.case, self.p, self.spec = case, case.p, case.spec
        self.torch = torch_mode
        if torch_mode:
            import torch

            self.plain = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
            self.leaf = {
                k: torch.from_numpy(v.copy()).requires_grad_(k in grad_names)
                for k, v in arrays.items()
            }
            self.gy = None if gy is None else torch.from_numpy(gy)
            self._nograd = torch.no_grad
            self._call = self.spec.torch_call
        else:
            import tapegrad as tg

            self.plain = {k: tg.Tensor(v) for k, v in arrays.items()}
            self.leaf = {
                k: tg.Tensor(v.copy(), requires_grad=k in grad_names) for k, v in arrays.items()
            }
            self.gy = gy
            self._nograd = tg.no_grad
            self._call = self.spec.call
        self.grad_names = grad_names

    def zero_grads(self) -> None:
        for k in self.grad_names:
            self.leaf[k].grad = None

    def forward(self, _: Any = None) -> Any:
        with self._nograd():
            return self._call(self.plain, self.p)

    def forward_grad(self) -> Any:
        self.zero_grads()
        return self._call(self.leaf, self.p)

    def backward(self, y: Any) -> None:
        y.backward(self.gy)

    def both(self, _: Any = None) -> Any:
        y = self.forward_grad()
        y.backward(self.gy)
        return y

    def grads(self) -> dict[str, np.ndarray]:
        out = {}
        for k in self.grad_names:
            g = self.leaf[k].grad
            if g is not None:
                out[k] = g.detach().numpy() if self.torch else g.numpy()
        return out

    def timings(self, direction: str, repeat: int, warm: bool = True) -> list[float]:
        """``repeat`` timed calls in ``direction``, after one untimed call if ``warm``."""
        if direction == "forward":
            if warm:
                self.forward()
            return measure(self.forward, None, repeat)
        if direction == "backward":
            if warm:
                self.backward(self.forward_grad())
            return measure(self.backward, self.forward_grad, repeat)
        if warm:
            self.both()
        return measure(self.both, self.zero_grads, repeat)


def _max_err(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return math.inf
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    return diff / max(scale, 1e-12) if np.isfinite(diff) else math.inf


def _seed(spec: Any, seed: int) -> None:
    if spec.seeded:
        import tapegrad as tg

        tg.manual_seed(seed)


def run_case(
    case: Case,
    variants: list[str],
    machine: dict,
    opt: Options,
    tick: Callable[[str], None] = lambda s: None,
) -> list[dict]:
    """Time every variant of one case; one result dict per (variant, direction)."""
    import tapegrad.kernels as K

    spec, p = case.spec, case.p
    copy_at = opt.copy_at
    rng = np.random.default_rng(opt.seed)
    arrays, grad_names = spec.build(p, rng, opt.dtype)
    directions = tuple(d for d in opt.directions if d in spec.directions(p))

    # the reference: expected outputs, the output gradient, the op's signature
    ref = _Harness(case, arrays, grad_names, None)
    with K.use(**{case.op: "reference"}), K.record() as calls:
        _seed(spec, opt.seed)
        y = ref.forward_grad()
    want_y = y.numpy().astype(np.float64)
    gy = rng.standard_normal(want_y.shape).astype(opt.dtype)
    want_g: dict[str, np.ndarray] = {}
    if opt.check and any(d != "forward" for d in directions):
        with K.use(**{case.op: "reference"}):
            y.backward(gy)
        want_g = {k: v.astype(np.float64) for k, v in ref.grads().items()}
    del y, ref
    sig = next((s for o, s in calls if o == case.op), None)

    base = {
        "op": case.op,
        "case": case.label,
        "params": case.to_json(),
        "signature": None if sig is None else K.registry.signature_key(sig),
        "size": None if sig is None else K.registry.signature_size(sig),
        "kind": spec.kind,
    }
    entries: list[tuple[str, _Harness, dict]] = []  # (variant, harness, row)
    results = []
    # one harness (the same input and leaf arrays) for every variant: separate copies
    # per variant made the variant whose arrays happened to sit better in memory up to
    # 10% faster on sub-millisecond memory-bound cases, whatever its kernel
    h = _Harness(case, arrays, grad_names, gy)
    for variant in variants:
        row0 = {**base, "variant": variant}
        try:
            with K.use(**{case.op: variant}):
                _seed(spec, opt.seed)
                needs_bwd = any(d != "forward" for d in directions)
                t0 = time.perf_counter()
                y = h.both() if needs_bwd else h.forward()
                first = time.perf_counter() - t0
                errs = [_max_err(y.numpy(), want_y)] if opt.check else []
                if want_g:
                    got = h.grads()
                    errs += [_max_err(got.get(k, np.zeros(0)), v) for k, v in want_g.items()]
                del y
                for d in directions:  # warm-up of each direction's own code path
                    h.timings(d, 0)
            max_err = max(errs) if errs else None
            # "chosen" is set per direction below: auto's pick differs for inference and
            # training calls
            entries.append((variant, h, {**row0, "first_s": first, "max_err": max_err}))
        except Exception as exc:  # a variant that cannot run this case: report, go on
            results.append({**row0, "direction": "-", "error": f"{type(exc).__name__}: {exc}"})
            tick(variant)
    th = None
    own_proc = None
    if opt.compare_torch:  # PyTorch times the same inputs in its own process
        from .torch_side import TorchProcess

        th = opt.torch_proc
        if th is None:
            th = own_proc = TorchProcess(machine.get("threads") or 1)
        th.setup(case, opt.seed, opt.dtype, want_y.shape)
        for d in directions:
            th.timings(d, 0)

    # Timed runs round-robin over the variants of one thread team (and torch): a burst of
    # load from other processes on the machine then lands on all of them, not on one,
    # keeping ratios fair. The teams take turns, not the samples (tune.team).
    times: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, str] = {}
    # The timed runs with Python's cyclic garbage collector off, as timeit runs: no
    # collection lands inside a sample, and none is forced before them (a full collection
    # walks every object of the process, which in a large one costs more than the timed
    # runs of a small case).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for d in directions:
            for group in teams(entries):
                for variant, h, _row in group:  # the other team's idle threads settle here
                    if variant not in errors:
                        with K.use(**{case.op: variant}):
                            h.timings(d, 0)
                for r in range(opt.repeat):
                    k = r % len(group)
                    for variant, h, _row in group[k:] + group[:k]:
                        if variant in errors:
                            continue
                        try:
                            with K.use(**{case.op: variant}):
                                burst = h.timings(d, opt.burst, warm=False)
                                times.setdefault((variant, d), []).append(float(np.median(burst)))
                        except Exception as exc:
                            errors[variant] = f"{type(exc).__name__}: {exc}"
            if th is not None:
                th.timings(d, 0)
                for _r in range(opt.repeat):
                    burst = th.timings(d, opt.burst, warm=False)
                    times.setdefault(("torch", d), []).append(float(np.median(burst)))
    finally:
        if gc_was_on:
            gc.enable()
    if th is not None:
        tick("torch")
    if own_proc is not None:
        own_proc.close()

    for variant, _h, row0 in entries:
        if variant in errors:
            results.append({**row0, "direction": "-", "error": errors[variant]})
            tick(variant)
            continue
        per_dir = {d: _stats(times[(variant, d)]) for d in directions}
        steady = (
            per_dir["both"]["median_s"]
            if "both" in per_dir
            else sum(st["median_s"] for st in per_dir.values())
        )
        max_err = row0["max_err"]
        for d, st in per_dir.items():
            flops, nbytes = spec.flops(p, d), spec.bytes(p, d)
            med = st["median_s"]
            gflops = flops / med / 1e9 if med > 0 else 0.0
            gbps = nbytes / med / 1e9 if med > 0 else 0.0
            if spec.kind == "flops":
                rate, unit, limit = gflops, "GFLOP/s", machine.get("gemm_gflops")
            else:
                # the copy of as many bytes as the case's largest array pass: same caches
                limit = copy_at(spec.bytes(p, "forward") // 2) if copy_at else None
                rate, unit = gbps, "GB/s"
                limit = limit or machine.get("copy_gbps")
            row = {
                **row0,
                "direction": d,
                # auto's pick for this direction: autotune tunes inference (forward) and
                # training (forward + backward) calls apart
                "chosen": (
                    K.resolved_name(case.op, sig, training=d != "forward")
                    if variant == AUTO
                    else variant
                ),
                **st,
                "repeats": opt.repeat,
                "samples_s": times[(variant, d)],  # in round order: pairs across variants
                "jit_s": max(0.0, row0["first_s"] - steady),
                "flops": flops,
                "bytes": nbytes,
                "intensity": flops / nbytes if nbytes else None,
                "gflops": gflops,
                "gbps": gbps,
                "rate": rate,
                "unit": unit,
                "limit": limit,
                "fraction": rate / limit if limit else None,
                "agree": None if max_err is None else bool(max_err <= opt.rtol),
            }
            if ("torch", d) in times:
                tt = float(np.median(times[("torch", d)]))
                row["torch_s"] = tt
                row["ratio"] = med / tt if tt > 0 else None
            results.append(row)
        tick(variant)
    return results


def run(
    cases: list[Case], variants: dict[str, list[str]], machine: dict, opt: Options
) -> list[dict]:
    """Time every case with its op's variants; a tqdm bar on stderr while it runs."""
    from tqdm import tqdm

    if opt.compare_torch and opt.torch_proc is None:
        from dataclasses import replace

        from .torch_side import TorchProcess

        with TorchProcess(machine.get("threads") or 1) as proc:
            return run(cases, variants, machine, replace(opt, torch_proc=proc))
    total = sum(len(variants[c.op]) + (1 if opt.compare_torch else 0) for c in cases)
    bar = tqdm(
        total=total,
        disable=not opt.progress,
        file=sys.stderr,
        unit="run",
        leave=False,
        dynamic_ncols=True,
    )
    results: list[dict] = []
    try:
        for case in cases:
            bar.set_description(f"{case.op} {case.label}")

            def tick(name: str) -> None:
                bar.set_postfix_str(name)
                bar.update(1)

            results += run_case(case, variants[case.op], machine, opt, tick)
    finally:
        bar.close()
    return results
