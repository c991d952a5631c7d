"""The tuned-result store: what autotune and ``bench --write-rules`` learned, per machine.

One folder, the user's cache (``$XDG_CACHE_HOME/tapegrad`` or ``~/.cache/tapegrad``), and
one machine key (CPU model, core count, numpy/numba/Cython/Python versions) naming its two
files, so a new machine or compiler starts afresh and nothing is written inside the
installed package:

- ``autotune-<key>.json``: autotune's winner per (op, call key), merged across processes,
  written atomically. Off with :func:`disk_cache(False) <disk_cache>` or
  ``TAPEGRAD_AUTOTUNE_CACHE=0``.
- ``rules-<key>.json``: the shape rules ``bench --write-rules`` generates (``TAPEGRAD_AUTO_RULES``
  names another file); ``auto`` reads it when autotune is off.

Entries are keyed by :func:`signature_key`: a declared op's record key names the op, the
record's version and every field (``conv2d/v1(x_shape=..., ...)``), and by the thread count
the winner was measured at: a winner timed at 1 thread (a busy machine's default) is not
reused at 2, where another variant may win. Generated rules record their thread count
(``machine.threads``) and are not used at another.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Hashable
from pathlib import Path

from ._env import getenv

_disk = {"on": os.environ.get("TAPEGRAD_AUTOTUNE_CACHE", "1") not in ("0", "", "off", "no")}
_disk_state: dict[str, object] = {"path": None, "winners": None}


def cache_dir() -> Path:
    """The user's cache directory for tapegrad: ``$XDG_CACHE_HOME/tapegrad`` or
    ``~/.cache/tapegrad`` (read from the environment at every call)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tapegrad"


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else ``platform``), read once per
    process: :func:`rules` rebuilds the machine key once a second while ``auto`` runs."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.cache
def _version(dist: str) -> str:
    # once per process and distribution: importlib.metadata scans sys.path for each call,
    # and the machine key (see rules) is rebuilt once a second during training
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # not installed, or no metadata: still a valid key
        return "none"


def machine_key() -> dict[str, str]:
    """What a cached winner depends on: CPU model, core count and compiler/library versions."""
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count() or 1),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "cython": _version("Cython"),
        "python": platform.python_version(),
    }


def machine_digest() -> str:
    """A short hash of :func:`machine_key`: the store's file names carry it."""
    key = json.dumps(machine_key(), sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def autotune_cache_path() -> Path:
    """The autotune winners' file for this machine key (it need not exist yet)."""
    return cache_dir() / f"autotune-{machine_digest()}.json"


def disk_cache(enabled: bool = True) -> None:
    """Switch the autotune disk cache on or off (``bench --no-cache`` switches it off)."""
    _disk["on"] = bool(enabled)


def disk_cache_enabled() -> bool:
    """Whether autotune winners are read from and written to the disk cache."""
    return _disk["on"]


def signature_key(signature: Hashable) -> str:
    """The text key of a call signature: a declared op's record gives its versioned
    :meth:`~tapegrad.kernels.calls.KernelCall.key` (``conv2d/v1(x_shape=..., ...)``), any
    other hashable its ``repr``."""
    key = getattr(signature, "key", None)
    return key() if callable(key) else repr(signature)


def _sig_key(op: str, signature: Hashable, threads: int) -> str:
    return f"{op}|{signature_key(signature)}|threads={int(threads)}"


def _disk_winners() -> dict[str, str]:
    path = autotune_cache_path()
    if _disk_state["path"] != path or _disk_state["winners"] is None:
        winners: dict[str, str] = {}
        try:
            data = json.loads(path.read_text())
            if data.get("key") == machine_key():
                winners = {str(k): str(v) for k, v in data.get("winners", {}).items()}
        except (OSError, ValueError, AttributeError):
            pass  # no cache yet, or a damaged one: re-time and rewrite
        _disk_state.update(path=path, winners=winners)
    return _disk_state["winners"]  # type: ignore[return-value]


def lookup(op: str, signature: Hashable, threads: int) -> str | None:
    """The autotune winner stored for this call at this thread count (None: none stored,
    or the store is off). The caller checks the name is still a usable variant."""
    if not _disk["on"]:
        return None
    return _disk_winners().get(_sig_key(op, signature, threads))


def store(op: str, signature: Hashable, name: str, threads: int) -> None:
    """Remember ``name`` as the autotune winner for this call, timed at ``threads`` threads
    (merged with what other processes stored; a read-only cache folder is not an error)."""
    if not _disk["on"]:
        return
    mine = dict(_disk_winners())
    _disk_state["path"] = None  # re-read before merging: another process may have written
    winners = {**_disk_winners(), **mine, _sig_key(op, signature, threads): name}
    path = autotune_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": machine_key(), "winners": winners}, indent=1))
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    except OSError:
        pass  # a read-only home must not break autotune: the process cache still works
    _disk_state.update(path=path, winners=winners)


def forget() -> None:
    """Re-read the winners' file on the next lookup."""
    _disk_state.update(path=None, winners=None)


def clear_autotune_cache() -> list[Path]:
    """Delete every autotune winners' file (of every machine key) and forget them.

    Returns the files removed.
    """
    forget()
    removed = []
    for path in cache_dir().glob("autotune-*.json"):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


# --- generated shape rules (written by ``bench --write-rules``) ------------------------------

_rules_state: dict[str, object] = {"path": None, "mtime": None, "rules": {}, "generation": 0}


def rules_path() -> Path:
    """The generated-rules file ``auto`` consults: ``rules-<machine key>.json`` in the
    cache folder (``TAPEGRAD_AUTO_RULES`` names another file)."""
    return _rules_file(os.environ.get("TAPEGRAD_AUTO_RULES"))


def _rules_file(env: str | None) -> Path:
    return Path(env) if env else cache_dir() / f"rules-{machine_digest()}.json"


def rules_generation() -> int:
    """A counter that moves whenever the generated rules change (the registry's memo of
    rule picks is valid for one generation)."""
    rules()
    return int(_rules_state["generation"])  # type: ignore[call-overload]


def _changed() -> None:
    _rules_state["generation"] = int(_rules_state["generation"]) + 1  # type: ignore[call-overload]


def rules() -> dict:
    """The generated rules per op (re-read when the file changes; checked once a second)."""
    env = getenv("TAPEGRAD_AUTO_RULES")
    now = time.monotonic()
    state = _rules_state
    # runs on every auto call without autotune: the variable's string, not a Path, and one
    # stat a second
    if state.get("env", 0) == env and now - state.get("checked", -1e9) < 1.0:
        return state["rules"]  # type: ignore[return-value]
    path = _rules_file(env)
    state.update(checked=now, env=env)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        if state["mtime"] is not None or state["path"] != path:
            _changed()
        state.update(path=path, mtime=None, rules={}, threads=None)
        return {}
    if state["path"] != path or state["mtime"] != mtime:
        try:
            doc = json.loads(path.read_text())
            loaded = doc.get("ops", {})
            threads = (doc.get("machine") or {}).get("threads")
        except (OSError, ValueError, AttributeError):
            loaded, threads = {}, None
        state.update(path=path, mtime=mtime, rules=loaded, threads=threads)
        _changed()
    return state["rules"]  # type: ignore[return-value]


def reload_rules() -> None:
    """Re-read the generated rules on the next call (``bench --write-rules`` calls it)."""
    _rules_state.update(path=None, mtime=None, rules={}, checked=-1e9, env=0)
    _changed()


def signature_size(signature: Hashable) -> float:
    """log2 of the element count of the arrays in a signature: the rules' distance measure.

    A declared op's record counts its ``*_shape`` fields; a plain tuple its tuple-of-int
    members.
    """
    size = getattr(signature, "size", None)
    if callable(size):
        return float(size())
    total = 0
    if isinstance(signature, tuple):
        for item in signature:
            if isinstance(item, tuple) and item and all(isinstance(d, int) for d in item):
                total += math.prod(item)
    return math.log2(total) if total > 0 else 0.0


def rules_threads() -> int | None:
    """The thread count the generated rules were measured at (None: not recorded)."""
    rules()
    n = _rules_state.get("threads")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) else None


def learned_order(op: str, signature: Hashable, threads: int | None = None) -> list[str]:
    """Preferred variants from the generated rules: the winner of this exact signature if it
    was benchmarked, else of the benchmarked case nearest in size, then the overall order.
    Nothing when the rules were measured at another thread count than ``threads``."""
    rule = rules().get(op)
    if not isinstance(rule, dict):
        return []
    measured = rules_threads()
    if threads is not None and measured is not None and measured != threads:
        return []
    order = list(rule.get("order", []))
    cases = rule.get("cases", [])
    key = signature_key(signature)
    best: str | None = None
    for case in cases:
        if case.get("signature") == key:
            best = case.get("winner")
            break
    if best is None and cases:
        size = signature_size(signature)
        near = min(cases, key=lambda c: abs(float(c.get("size", 0.0)) - size))
        best = near.get("winner")
    return [best, *(n for n in order if n != best)] if best else order
