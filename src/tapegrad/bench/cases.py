"""The case table: for each op, how to build inputs for a shape, what the work is, how to
call it (tapegrad through the registry, and PyTorch's equivalent).

A case is an op name plus a parameter dict (``N``, ``C``, ``H``, ``W``, kernel, ...). Each
:class:`OpSpec` knows, for its op:

- ``build(p, rng, dtype)``: the input arrays (name -> ndarray) and which of them get gradients;
- ``call(T, p)``: the tapegrad call on Tensors (``tapegrad.nn.functional``), run inside
  ``tapegrad.kernels.use(op=variant)`` by the runner;
- ``torch_call(T, p)``: the same computation in PyTorch;
- ``flops(p, direction)`` and ``bytes(p, direction)``: the exact FLOP count (convolutions:
  multiply and add counted separately, bias adds included) and the bytes that must move
  (each input read once, each output written once: the memory-bound lower bound);
- ``from_signature(call)``: the parameters of a recorded call (``tapegrad.kernels.record``
  gives the op's call record; its ``bench_params()`` reads it by field name), which is how
  the zoo presets learn a model's layer shapes.

An op's cases are listed only when the op is registered (``tapegrad.kernels.ops()``), so
the table can name ops before their kernels land.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tapegrad.kernels import examples as ex

DIRECTIONS = ex.DIRECTIONS
F32 = ex.F32  # bytes per float32 element


@dataclass(frozen=True)
class Case:
    """One benchmark case: an op and its shape parameters (hashable, JSON-able)."""

    op: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, op: str, **params: Any) -> Case:
        """A case of ``op`` from keyword parameters (lists become tuples, keys sorted)."""
        frozen = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        return cls(op, tuple(sorted(frozen.items())))

    @property
    def p(self) -> dict[str, Any]:
        """The parameters as a dict."""
        return dict(self.params)

    @property
    def spec(self) -> OpSpec:
        """The :class:`OpSpec` of this case's op."""
        return SPECS[self.op]

    @property
    def label(self) -> str:
        """The case's column text in the table (``N4 64>64 32x32 k3x3 s1 p1``)."""
        return self.spec.label(self.p)

    def to_json(self) -> dict[str, Any]:
        """The case as a JSON-able dict: ``op`` plus its parameters."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}
        return {"op": self.op, **params}


@dataclass
class OpSpec:
    """How to benchmark one registry op (see the module docstring)."""

    op: str
    kind: str  # "flops" (rate in GFLOP/s vs the GEMM peak) or "bytes" (GB/s vs copy bandwidth)
    label: Callable[[dict], str]
    build: Callable[[dict, np.random.Generator, Any], tuple[dict[str, np.ndarray], tuple[str, ...]]]
    call: Callable[[dict, dict], Any]
    torch_call: Callable[[dict, dict], Any]
    flops: Callable[[dict, str], int]
    bytes: Callable[[dict, str], int]
    standard: list[dict] = field(default_factory=list)
    # the case parameters of a recorded call: its record's own (see tapegrad.kernels.calls)
    from_signature: Callable[[Any], dict | None] = lambda call: call.bench_params()
    directions: Callable[[dict], tuple[str, ...]] = lambda p: DIRECTIONS
    seeded: bool = False  # the op draws random numbers: seed before each checked run
    quick_scale: int = 8  # --quick divides the batch size of the standard cases by this

    def cases(self, preset: str = "standard") -> list[Case]:
        """The op's standard cases; ``preset="quick"`` divides their batch by ``quick_scale``."""
        out = []
        for p in self.standard:
            q = dict(p)
            if preset == "quick":
                q["N"] = max(1, q["N"] // self.quick_scale)
            out.append(Case.make(self.op, **q))
        return out


# --- the table ---------------------------------------------------------------------------
# Every op whose call record declares ``bench`` (a kernels.examples.BenchCase, in its
# family's ``kernels/<family>/__init__.py``) gets its spec from there; a new family needs
# no line here.

_NCHW = {"N": 64, "C": 64, "H": 32, "W": 32}

# short names accepted by ``--ops``, from the bench cases
ALIASES: dict[str, str] = {}


def _record_call(bench: Any) -> Callable[[dict, dict], Any]:
    def call(T: dict, p: dict):
        import tapegrad.nn.functional as F

        return bench.call(F, T, p)

    return call


def _record_torch(bench: Any) -> Callable[[dict, dict], Any]:
    def call(T: dict, p: dict):
        import torch.nn.functional as tF

        return (bench.torch_call or bench.call)(tF, T, p)

    return call


def spec_of_record(op: str, bench: Any) -> OpSpec:
    """The :class:`OpSpec` of an op from its record's ``bench`` declaration
    (``tapegrad.kernels.examples.BenchCase``)."""
    return OpSpec(
        op,
        bench.kind,
        bench.label,
        bench.build,
        _record_call(bench),
        _record_torch(bench),
        bench.flops,
        bench.bytes,
        standard=[dict(p) for p in bench.standard],
        directions=bench.directions or (lambda p: DIRECTIONS),
        seeded=bench.seeded,
        quick_scale=bench.quick_scale,
    )


def _record_specs() -> dict[str, OpSpec]:
    import tapegrad.kernels as K

    benches = {op: rec.bench for op, rec in K.declarations().items() if rec.bench is not None}
    for op, bench in benches.items():
        ALIASES.update((alias, op) for alias in bench.aliases)
    return {op: spec_of_record(op, bench) for op, bench in benches.items()}


SPECS: dict[str, OpSpec] = _record_specs()


# --- declared elementwise ops: one spec each, derived from the op's call record ------------
# (a record with ``elementwise = True``, kernels/<family>/__init__.py): input x (N, C, H, W),
# the call ``F.<functional>(x, **arguments)`` and PyTorch's function of the same name, one
# read and one write each way plus the input read again by the backward. A new family of
# such ops needs no line here.

_SHAPE_KEYS = ("N", "C", "H", "W")


def _args(p: dict) -> dict:
    return {k: v for k, v in p.items() if k not in _SHAPE_KEYS}


def _elementwise_label(p: dict) -> str:
    extra = "".join(f" {k}={v}" for k, v in sorted(_args(p).items()))
    return f"N{p['N']} C{p['C']} {p['H']}x{p['W']}{extra}"


def _elementwise_call(name: str) -> Callable[[dict, dict], Any]:
    def call(T: dict, p: dict):
        import tapegrad.nn.functional as F

        return getattr(F, name)(T["x"], **_args(p))

    return call


def _elementwise_torch(name: str) -> Callable[[dict, dict], Any]:
    def call(T: dict, p: dict):
        import torch.nn.functional as tF

        return getattr(tF, name)(T["x"], **_args(p))

    return call


def _declared_specs() -> list[OpSpec]:
    import tapegrad.kernels as K

    return [
        OpSpec(
            op, "bytes", _elementwise_label, ex.x_input, _elementwise_call(rec.functional),
            _elementwise_torch(rec.functional), ex.one_per_element, ex.one_pass_bytes,
            standard=[dict(_NCHW)],
        )
        for op, rec in sorted(K.declarations().items())
        if getattr(rec, "elementwise", False) and op not in SPECS
    ]  # fmt: skip


SPECS.update((s.op, s) for s in _declared_specs())


def registered_ops() -> list[str]:
    """Ops that have both kernels in the registry and an entry in the case table."""
    import tapegrad.kernels as K

    return [op for op in SPECS if op in K.ops()]


def resolve_ops(names: list[str] | None) -> list[str]:
    """Canonical op names for ``--ops``; ValueError lists the valid names."""
    valid = registered_ops()
    if not names:
        return valid
    out = []
    for raw in names:
        op = ALIASES.get(raw, raw)
        if op not in valid:
            raise ValueError(
                f"bench: unknown or unregistered op {raw!r}; valid: {', '.join(valid)}"
            )
        if op not in out:
            out.append(op)
    return out


def preset_cases(preset: str, ops: list[str]) -> list[Case]:
    """Cases of a named preset: ``standard``, ``quick`` or ``zoo:NAME``."""
    if preset in ("standard", "quick"):
        return [c for op in ops for c in SPECS[op].cases(preset)]
    if preset.startswith("zoo:"):
        return zoo_cases(preset[4:], ops)
    raise ValueError(f"bench: unknown preset {preset!r}; valid: standard, quick, zoo:NAME")


def cases_from_signatures(calls: list[tuple[str, Any]], ops: list[str]) -> list[Case]:
    """Cases for recorded ``(op, signature)`` calls, in order, duplicates dropped."""
    out: list[Case] = []
    for op, sig in calls:
        if op not in ops or op not in SPECS:
            continue
        try:
            p = SPECS[op].from_signature(sig)
        except (AttributeError, TypeError, ValueError, IndexError):
            p = None  # not a declared op's record (a plain tuple): skip the layer
        if p is None:
            continue
        case = Case.make(op, **p)
        if case not in out:
            out.append(case)
    return out


def zoo_cases(name: str, ops: list[str], batch: int = 64) -> list[Case]:
    """The layer shapes of zoo model ``name`` at its default input, batch ``batch``.

    The model runs one forward pass under ``tapegrad.kernels.record()``; every kernel
    call it makes becomes a case.
    """
    import inspect

    import tapegrad as tg
    import tapegrad.kernels as K
    from tapegrad import zoo

    names = zoo.available() if hasattr(zoo, "available") else sorted(zoo.MODELS)
    if name not in names:
        raise ValueError(f"bench: unknown zoo model {name!r}; valid: {', '.join(names)}")
    builder = zoo.MODELS[name]
    params = inspect.signature(builder).parameters
    c_in = params["in_channels"].default if "in_channels" in params else 1
    side = getattr(zoo, "DEFAULT_INPUT", {}).get(name, 28)
    if isinstance(side, tuple):  # (channels, side)
        c_in, side = side
    model = zoo.get_model(name)
    x = tg.Tensor(np.zeros((batch, c_in, side, side), dtype=np.float32))
    tuning = K.autotune_enabled()
    K.autotune(False)  # only the shapes are wanted here: no tuning on zeros
    try:
        with K.record() as calls, tg.no_grad():
            model(x)
    finally:
        K.autotune(tuning)
    return cases_from_signatures(calls, ops)


def file_cases(path: str | Path, ops: list[str]) -> list[Case]:
    """Cases from a JSON file: a list of ``{"op": ..., <params>}`` objects."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = data.get("cases", [])
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "op" not in item:
            raise ValueError(f"bench: {path}: entry {i} must be an object with an 'op' key")
        op = ALIASES.get(item["op"], item["op"])
        if op not in SPECS:
            raise ValueError(f"bench: {path}: entry {i}: unknown op {item['op']!r}")
        if op in ops:
            out.append(Case.make(op, **{k: v for k, v in item.items() if k != "op"}))
    return out
