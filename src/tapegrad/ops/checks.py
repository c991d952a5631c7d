"""Argument checks shared by the ops: run before any kernel, fail with a clear message.

Every message starts with the public function's name, then names the argument and
the offending value or shapes.
"""

from __future__ import annotations

from typing import NoReturn

import numpy as np

FLOATS = (np.float32, np.float64)


def fail(fn: str, msg: str, exc: type[Exception] = ValueError) -> NoReturn:
    raise exc(f"{fn}: {msg}")


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def is_float(a: np.ndarray) -> bool:
    """Whether ``a`` is float32 or float64."""
    d = a.dtype
    return d is _F32 or d is _F64 or d in FLOATS


def check_float(fn: str, **arrays: np.ndarray | None) -> None:
    """Each given array must be float32 or float64, and all of one dtype."""
    # the common call (native float32 or float64 arrays of one dtype) passes on identity
    # tests of the dtype; anything else takes the full check below, which alone raises
    dt = None
    for a in arrays.values():
        if a is not None:
            d = a.dtype
            if (d is not _F32 and d is not _F64) or (dt is not None and d is not dt):
                break
            dt = d
    else:
        return
    dtypes = {}
    for name, a in arrays.items():
        if a is None:
            continue
        if a.dtype not in FLOATS:
            fail(
                fn, f"{name} must be float32 or float64, got {a.dtype} (shape {a.shape})", TypeError
            )
        dtypes[name] = a.dtype
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        fail(fn, f"arguments must share one dtype, got {listing}", TypeError)


def check_ndim(fn: str, name: str, a: np.ndarray, ndims: tuple[int, ...], layout: str) -> None:
    if a.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        fail(fn, f"{name} must be {want} {layout}, got shape {a.shape}")


INT_MAX = 2**31 - 1  # the compiled kernels take sizes, strides and paddings as C ints


def int_tuple(fn: str, name: str, v, n: int, minimum: int) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints, each >= ``minimum`` and <= ``INT_MAX``."""
    # the common calls (a plain int, a tuple of plain ints in range) return at once: this
    # runs several times on every conv and pooling call
    if type(v) is int and minimum <= v <= INT_MAX:
        return (v,) * n
    if type(v) is tuple and len(v) == n:
        for x in v:
            if type(x) is not int or not minimum <= x <= INT_MAX:
                break
        else:
            return v
    vals = (v,) * n if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    try:
        vals = tuple(vals)
    except TypeError:
        fail(fn, f"{name} must be an int or a tuple of {n} ints, got {v!r}", TypeError)
    if len(vals) != n or not all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in vals
    ):
        fail(fn, f"{name} must be an int or a tuple of {n} ints, got {v!r}", TypeError)
    if any(x < minimum for x in vals):
        rule = "positive" if minimum == 1 else "non-negative"
        fail(fn, f"{name} must be {rule}, got {v!r}")
    if any(x > INT_MAX for x in vals):
        fail(fn, f"{name} must be at most {INT_MAX}, got {v!r}")
    return tuple(int(x) for x in vals)


def positive_int(fn: str, name: str, v, minimum: int = 1) -> int:
    """A layer's size argument: an int (not bool) >= ``minimum``."""
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        fail(fn, f"{name} must be an int, got {v!r}", TypeError)
    if v < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        fail(fn, f"{name} must be {rule}, got {v!r}")
    return int(v)


def contiguous(a: np.ndarray | None) -> np.ndarray | None:
    """C-contiguous copy only when needed (kernels index raw memory)."""
    return None if a is None else np.ascontiguousarray(a)
