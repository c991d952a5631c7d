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

How ``auto`` picks, per call (the op's call record, :mod:`.calls`):
  - with :func:`autotune` on (or ``TAPEGRAD_AUTOTUNE=1``): the winner timed for this
    call (:mod:`.tune`), remembered for the process and in the tuned-result store
    (:mod:`.store`: the user's cache folder, one file per machine key).
  - otherwise the shape rule: the generated rules in the store (written by
    ``python -m tapegrad bench --write-rules``) when they know the op, then the family's
    hand-written rule (:func:`set_rule`). At more than one thread the rule's order passes
    through :func:`one_team_order`: a Cython variant goes before its Numba twin, so one
    process keeps one thread team (tapegrad's own OpenMP team, whose idle threads sleep)
    instead of two.

This module is selection only. Timing lives in :mod:`.tune`, the tuned results in
:mod:`.store`, call recording in :mod:`.record`; resolving a call changes no process-wide
setting (the thread counts and the allocator policy are applied by
:func:`tapegrad.kernels.init`, which the ops call before their first kernel).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from . import record as _record
from . import store as _store
from . import threads as _threads  # import_extension: loads a Cython variant
from . import tune as _tune
from ._env import getenv
from .calls import declared
from .record import record  # noqa: F401  (re-exported: registry.record)
from .store import (  # noqa: F401  (re-exported for callers of registry.*)
    autotune_cache_path,
    cache_dir,
    cpu_model,
    disk_cache,
    disk_cache_enabled,
    machine_key,
    reload_rules,
    rules_path,
    signature_key,
    signature_size,
)
from .store import clear_autotune_cache as _clear_store

AUTO = "auto"


class WritableInputs(ModuleType):
    """A Numba variant module whose kernel functions get read-only arrays as writable
    copies.

    Numba types a read-only array apart from a writable one, so an input that arrives
    read-only (a memory-mapped dataset, an array whose ``writeable`` flag was cleared)
    would compile, or load from the cache, a second specialisation of every kernel it
    reaches. The registry hands out Numba variants (``*-numba`` names registered by
    module path) through this wrapper: each function called with a read-only
    ``np.ndarray`` argument gets a writable copy of it instead (the kernels never write
    their inputs), so one specialisation per dtype and layout serves both. Every other
    attribute is the module's own.
    """

    def __init__(self, module: ModuleType) -> None:
        super().__init__(module.__name__, module.__doc__)
        self.__wrapped__ = module
        self.__file__ = getattr(module, "__file__", None)
        self._wrappers: dict[str, Callable] = {}

    def __getattr__(self, name: str) -> Any:
        # looked up in the module at every access (a function replaced there, as a test's
        # monkeypatch does, is the one called), its wrapper made once per function
        attr = getattr(self.__wrapped__, name)
        if not callable(attr) or isinstance(attr, (type, ModuleType)) or name[:2] == "__":
            return attr
        wrapper = self._wrappers.get(name)
        if wrapper is None or wrapper.__wrapped__ is not attr:
            wrapper = self._wrappers[name] = _writable_args(attr)
        return wrapper

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.__wrapped__!r}>"


def _writable(a: Any) -> Any:
    if type(a) is np.ndarray and not a.flags.writeable:
        return np.array(a)  # same layout, writable
    return a


def _writable_args(fn: Callable) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        for a in args:  # the common case: nothing read-only, nothing copied
            if type(a) is np.ndarray and not a.flags.writeable:
                args = tuple(map(_writable, args))
                break
        if kwargs:
            kwargs = {k: _writable(v) for k, v in kwargs.items()}
        return fn(*args, **kwargs)

    call.__name__ = getattr(fn, "__name__", "call")
    call.__doc__ = getattr(fn, "__doc__", None)
    call.__wrapped__ = fn
    return call


@dataclass
class _Variant:
    name: str
    module_path: str  # dotted path, imported on first use ("" when given as an object)
    _module: Any = None  # the module, or the object providing the kernel functions
    _error: str | None = None

    def load(self) -> ModuleType:
        if self._module is None and self._error is None:
            try:
                if self.module_path.endswith("_cy"):  # Cython: bind to tapegrad's OpenMP
                    self._module = _threads.import_extension(self.module_path)
                else:
                    self._module = importlib.import_module(self.module_path)
                    if self.name.endswith("-numba"):
                        self._module = WritableInputs(self._module)
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
    # auto rule: (call record) -> ordered candidate names; first available wins
    rule: Callable[[Hashable], list[str]] | None = None


_OPS: dict[str, _Op] = {}


class _Local(threading.local):
    # a class-level default: reading it in a thread that never entered use() finds it
    # without the cost of a missing attribute
    stack: list[dict[str, str]] | None = None


_local = _Local()
_autotune = {"on": os.environ.get("TAPEGRAD_AUTOTUNE", "") not in ("", "0")}
_tuned: dict[tuple, str] = {}
_env_cache: dict[str, str] | None = None


def register(op: str, variant: str, implementation: str | Any) -> None:
    """Register a variant of ``op``: ``bench``, ``auto``, ``use()`` and the tests find it
    as they find the built-in ones.

    Parameters
    ----------
    op : str
        The op name (``"conv2d"``; :func:`ops` lists them). A new name starts a new op.
    variant : str
        The variant's name (``"mine-numba"``); registering a name again replaces it.
    implementation : str, module or object
        A dotted module path (imported on first use, as the built-in families register),
        or a module or object providing the op's documented kernel functions (the
        family's ``__init__`` documents them: ``forward`` and ``backward`` for
        ``conv2d``).

    Raises
    ------
    TypeError
        ``implementation`` lacks one of the op's kernel functions.
    ValueError
        ``op`` or ``variant`` is not a non-empty string, or ``variant`` is ``auto``.
    """
    for what, value in (("op", op), ("variant", variant)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"register: {what} must be a non-empty string, got {value!r}")
    if variant == AUTO:
        raise ValueError("register: 'auto' is the selection policy, not a variant name")
    if isinstance(implementation, str):
        found = _Variant(variant, implementation)
    else:
        call = declared(op)
        needed = call.kernel_functions if call is not None else ()
        missing = [f for f in needed if not callable(getattr(implementation, f, None))]
        if missing:
            raise TypeError(
                f"register: {implementation!r} does not provide {', '.join(missing)}, "
                f"which every {op} variant implements"
            )
        found = _Variant(variant, "", implementation)
    _auto_memo.clear()
    entry = _OPS.setdefault(op, _Op(op))
    entry.variants[variant] = found


PLUGIN_GROUP = "tapegrad.kernels"
_plugins = {"loaded": False, "errors": {}}


def load_plugins() -> dict[str, str]:
    """Load the variants installed packages declare in the ``tapegrad.kernels``
    entry-point group (once per process; each entry point is a module or a callable that
    calls :func:`register`). Returns the entry points that failed, with the reason."""
    if _plugins["loaded"]:
        return dict(_plugins["errors"])  # type: ignore[arg-type]
    _plugins["loaded"] = True
    from importlib.metadata import entry_points

    errors: dict[str, str] = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            loaded = ep.load()
            if callable(loaded) and not isinstance(loaded, ModuleType):
                loaded()
        except Exception as exc:  # a broken plugin must not break tapegrad
            errors[ep.name] = f"{type(exc).__name__}: {exc}"
    _plugins["errors"] = errors
    return dict(errors)


def set_rule(op: str, rule: Callable[[Hashable], list[str]]) -> None:
    """Set the shape rule ``auto`` uses for ``op``: call record -> preferred variant names.

    The rule reads the op's record (:mod:`tapegrad.kernels.calls`) by field name.
    """
    _auto_memo.clear()
    _OPS.setdefault(op, _Op(op)).rule = rule


def ops() -> list[str]:
    """Names of all ops with registered kernels."""
    if not _plugins["loaded"]:
        load_plugins()
    return sorted(_OPS)


def _op(op: str) -> _Op:
    if not _plugins["loaded"]:
        load_plugins()
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
    raw = getenv("TAPEGRAD_KERNELS") or ""
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
    if _local.stack is None:
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
    """Whether ``auto`` times candidates per signature (:func:`autotune`, ``TAPEGRAD_AUTOTUNE``)."""
    return _autotune["on"]


def clear_tuning() -> None:
    """Forget the winners autotune measured in this process (the disk cache stays)."""
    _tuned.clear()


def clear_autotune_cache() -> list:
    """Delete every autotune winners' file and forget this process's winners.

    Returns the files removed.
    """
    _tuned.clear()
    return _clear_store()


def one_team_order(names: list[str]) -> list[str]:
    """``names`` with each ``<algorithm>-cython`` variant moved just before its
    ``<algorithm>-numba`` twin when the Numba one came first; other names keep their order.

    ``auto``'s order at more than one thread. The Cython variants run on tapegrad's own
    OpenMP team, whose idle threads sleep; Numba's parallel variants run on Numba's
    threading layer (by default on the system's OpenMP runtime, whose idle threads spin
    for a while after each parallel loop). Two teams on the same cores take turns spinning
    while the other works, and a step that uses both at 2 threads ran several times slower
    than at 1 (benchmarks/results/threads-policy.md). At one thread the family's own order
    stands.
    """
    out: list[str] = []
    for name in names:
        if name in out:
            continue
        if name.endswith("-numba"):
            twin = name[: -len("numba")] + "cython"
            if twin in names and twin not in out:
                out.append(twin)
        out.append(name)
    return out


def _auto_candidates(op: str, signature: Hashable) -> list[str]:
    entry = _op(op)
    learned = _store.learned_order(op, signature, _threads.get_num_threads())
    names = entry.rule(signature) if entry.rule else []
    names = [*learned, *(n for n in names if n not in learned)]
    fallback = [n for n in variants(op) if n != "reference"] + ["reference"]
    ordered = [n for n in names if n in entry.variants] + [n for n in fallback if n not in names]
    if _threads.get_num_threads() > 1:
        ordered = one_team_order(ordered)
    return [n for n in ordered if entry.variants[n].available()]


def resolve(
    op: str,
    signature: Hashable = (),
    trial: Callable[[ModuleType], object] | None = None,
    *,
    training: bool = False,
) -> ModuleType:
    """The module to run ``op`` with, for a call whose shapes give ``signature``.

    ``trial`` runs the op once with a given module; autotune uses it to time candidates.
    ``training``: the call is recorded for a backward and ``trial`` runs the backward too;
    autotune keeps its winners for training and inference calls apart, since the fastest
    forward is not always the fastest forward + backward.
    """
    if _record._local.recorders:
        _record.note(op, signature)
    # the common case, kept to a few dict lookups: no use() block, no TAPEGRAD_KERNELS
    if _local.stack or getenv("TAPEGRAD_KERNELS"):
        name = selected(op)
        if name != AUTO:
            return get(op, name)
    if _autotune["on"] and trial is not None:
        key = _tune_key(op, signature, training)
        name = _tuned.get(key)  # one hash of the signature per call: this runs every call
        if name is None:
            name = _stored(*key)
            if name is None:
                candidates = _auto_candidates(op, signature)
                name = _tune.time_candidates(candidates, lambda n: get(op, n), trial)
                _store.store(key[0], key[1], name, key[2])
            _tuned[key] = name
        return _OPS[op].variants[name].load()
    return _OPS[op].variants[_auto_pick(op, signature)].load()  # a name auto found usable


def _tune_key(op: str, signature: Hashable, training: bool) -> tuple[str, Hashable, int]:
    # the thread count too: a winner timed at 1 thread is not the winner at 2
    sig = (signature, "training") if training else signature
    return (op, sig, _threads.get_num_threads())


def _stored(op: str, signature: Hashable, threads: int) -> str | None:
    """The store's winner for this call at ``threads`` threads, if it names a variant
    usable here."""
    name = _store.lookup(op, signature, threads)
    entry = _OPS.get(op)
    if name is None or entry is None or name not in entry.variants:
        return None
    return name if entry.variants[name].available() else None


# auto's rule pick per (op, signature, thread count): the rule runs once per shape and
# thread count, not once per call
_auto_memo: dict[tuple, str] = {}
_memo_generation = [-1]


def _auto_pick(op: str, signature: Hashable) -> str:
    # notices a changed rules file (and clears the memo) at most once a second
    generation = _store.rules_generation()
    if generation != _memo_generation[0]:
        _auto_memo.clear()
        _memo_generation[0] = generation
    key = (op, signature, _threads.get_num_threads())
    name = _auto_memo.get(key)
    if name is None:
        name = _auto_memo[key] = _auto_candidates(op, signature)[0]
    return name


def resolved_name(op: str, signature: Hashable = (), *, training: bool = False) -> str:
    """The variant name ``resolve`` would pick now (without running autotune)."""
    name = selected(op)
    if name != AUTO:
        return name
    key = _tune_key(op, signature, training)
    if key in _tuned:
        return _tuned[key]
    if _autotune["on"]:
        cached = _stored(*key)
        if cached is not None:
            return cached
    return _auto_pick(op, signature)
