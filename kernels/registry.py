"""The kernel registry: op name -> {variant name -> module}.

A variant is a module that implements an op family's kernel interface (arrays in,
arrays out). Variants are registered by dotted module path and imported on first use,
so ``import tapegrad`` compiles and imports nothing heavy.

Variant names are ``<algorithm>-<backend>`` (``im2col-numba``, ``direct-cython``) plus
``reference`` (plain NumPy, the ground truth) for every op. The name ``auto`` is a
policy, not a module: a shape rule, or with :func:`autotune` a timing per signature.

Selection, highest priority first:
  1. ``with tapegrad.kernels.use(conv2d="im2col-cython"):`` (innermost block wins)
  2. ``TAPEGRAD_KERNELS="conv2d=im2col-numba,max_pool2d=reference"``
  3. ``auto``
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType

AUTO = "auto"


@dataclass
class _Variant:
    name: str
    module_path: str
    needs: str | None = None  # top-level package it needs ("numba"), checked cheaply
    _module: ModuleType | None = None
    _error: str | None = None

    def load(self) -> ModuleType:
        if self._module is None and self._error is None:
            try:
                self._module = importlib.import_module(self.module_path)
            except ImportError as exc:
                self._error = f"{type(exc).__name__}: {exc}"
        if self._module is None:
            raise RuntimeError(f"kernel variant {self.name!r} is unavailable: {self._error}")
        return self._module

    def available(self) -> bool:
        try:
            self.load()
        except RuntimeError:
            return False
        return True


@dataclass
class _Op:
    name: str
    variants: dict[str, _Variant] = field(default_factory=dict)
    # auto rule: (signature) -> ordered candidate names; first available wins
    rule: Callable[[tuple], list[str]] | None = None


_OPS: dict[str, _Op] = {}
_local = threading.local()
_autotune = {"on": os.environ.get("TAPEGRAD_AUTOTUNE", "") not in ("", "0")}
_tuned: dict[tuple, str] = {}
_env_cache: dict[str, str] | None = None


def register(op: str, variant: str, module_path: str) -> None:
    """Register ``module_path`` as ``variant`` of ``op`` (imported lazily)."""
    entry = _OPS.setdefault(op, _Op(op))
    entry.variants[variant] = _Variant(variant, module_path)


def set_rule(op: str, rule: Callable[[tuple], list[str]]) -> None:
    """Set the shape rule ``auto`` uses for ``op``: signature -> preferred variant names."""
    _OPS.setdefault(op, _Op(op)).rule = rule


def ops() -> list[str]:
    """Names of all ops with registered kernels."""
    return sorted(_OPS)


def _op(op: str) -> _Op:
    try:
        return _OPS[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}; ops with kernels: {', '.join(ops())}") from None


def variants(op: str, *, include_unavailable: bool = False) -> list[str]:
    """Variant names of ``op`` usable on this machine (``reference`` first)."""
    entry = _op(op)
    names = [n for n, v in entry.variants.items() if include_unavailable or v.available()]
    return sorted(names, key=lambda n: (n != "reference", n))


def unavailable(op: str) -> dict[str, str]:
    """Variants of ``op`` that cannot load here, with the reason."""
    out = {}
    for n, v in _op(op).variants.items():
        if not v.available():
            out[n] = v._error or "unknown error"
    return out


def get(op: str, variant: str) -> ModuleType:
    """The module implementing ``variant`` of ``op``; ValueError lists valid names."""
    entry = _op(op)
    if variant not in entry.variants:
        valid = ", ".join([AUTO, *variants(op, include_unavailable=True)])
        raise ValueError(f"unknown variant {variant!r} for op {op!r}; valid: {valid}")
    return entry.variants[variant].load()


def _check_choice(op: str, variant: str) -> None:
    if variant != AUTO:
        get(op, variant)  # raises ValueError/RuntimeError with the valid names


def _env_choices() -> dict[str, str]:
    global _env_cache
    raw = os.environ.get("TAPEGRAD_KERNELS", "")
    if _env_cache is None or _env_cache.get("\0raw") != raw:
        parsed: dict[str, str] = {"\0raw": raw}
        for item in filter(None, (s.strip() for s in raw.split(","))):
            if "=" not in item:
                raise ValueError(f"TAPEGRAD_KERNELS: expected op=variant, got {item!r}")
            k, v = (s.strip() for s in item.split("=", 1))
            _check_choice(k, v)
            parsed[k] = v
        _env_cache = parsed
    return _env_cache


def _stack() -> list[dict[str, str]]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


@contextmanager
def use(**choices: str) -> Iterator[None]:
    """Select variants for a block: ``with use(conv2d="im2col-cython"): ...``.

    Names are checked on entry: an unknown op or variant raises ValueError.
    """
    for op, variant in choices.items():
        _check_choice(op, variant)
    _stack().append(choices)
    try:
        yield
    finally:
        _stack().pop()


def selected(op: str) -> str:
    """The variant name currently selected for ``op`` (may be ``auto``)."""
    for frame in reversed(_stack()):
        if op in frame:
            return frame[op]
    return _env_choices().get(op, AUTO)


def autotune(enabled: bool = True) -> None:
    """Let ``auto`` time every candidate once per shape signature and keep the fastest."""
    _autotune["on"] = bool(enabled)


def autotune_enabled() -> bool:
    return _autotune["on"]


def clear_tuning() -> None:
    """Forget the winners autotune measured in this process."""
    _tuned.clear()


def _auto_candidates(op: str, signature: tuple) -> list[str]:
    entry = _op(op)
    names = entry.rule(signature) if entry.rule else []
    fallback = [n for n in variants(op) if n != "reference"] + ["reference"]
    ordered = [n for n in names if n in entry.variants] + [n for n in fallback if n not in names]
    return [n for n in ordered if entry.variants[n].available()]


def resolve(
    op: str,
    signature: Hashable = (),
    trial: Callable[[ModuleType], object] | None = None,
) -> ModuleType:
    """The module to run ``op`` with, for a call whose shapes give ``signature``.

    ``trial`` runs the op once with a given module; autotune uses it to time candidates.
    """
    name = selected(op)
    if name != AUTO:
        return get(op, name)
    if _autotune["on"] and trial is not None:
        key = (op, signature)
        if key not in _tuned:
            _tuned[key] = _time_candidates(op, signature, trial)
        return get(op, _tuned[key])
    return get(op, _auto_candidates(op, signature)[0])


def _time_candidates(op: str, signature: tuple, trial: Callable[[ModuleType], object]) -> str:
    best, best_t = "reference", float("inf")
    for name in _auto_candidates(op, signature):
        if name == "reference":
            continue
        mod = get(op, name)
        trial(mod)  # warm-up, includes any JIT compilation
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            trial(mod)
            times.append(time.perf_counter() - t0)
        t = sorted(times)[1]
        if t < best_t:
            best, best_t = name, t
    return best


def resolved_name(op: str, signature: Hashable = ()) -> str:
    """The variant name ``resolve`` would pick now (without running autotune)."""
    name = selected(op)
    if name != AUTO:
        return name
    if (op, signature) in _tuned:
        return _tuned[(op, signature)]
    return _auto_candidates(op, signature)[0]
