"""Tensor creation and the global random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from .tensor import Tensor

_rng = {"gen": np.random.default_rng(0), "seed": 0}


def manual_seed(seed: int) -> None:
    """Seed tapegrad's generator (initialisation, ``randn``/``rand``, dropout, shuffling)."""
    _rng["gen"] = np.random.default_rng(seed)
    _rng["seed"] = int(seed)
    from .ops.dropout import reset_rng  # the dropout stream: seed and call counter

    reset_rng(seed)


def generator() -> np.random.Generator:
    """The NumPy generator behind ``randn``, ``rand`` and weight initialisation (reseeded by
    :func:`manual_seed`).
    """
    return _rng["gen"]


def initial_seed() -> int:
    """The seed last passed to :func:`manual_seed` (0 at import)."""
    return _rng["seed"]


def _shape(shape: tuple) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new leaf tensor holding a copy of ``data``.

    Parameters
    ----------
    data : array-like or Tensor
        Numbers, nested lists or an ndarray (bool, int or float).
    requires_grad : bool, default False
        Record ops on it for ``backward`` (floating dtypes only).
    dtype : numpy dtype, optional
        Default: Python floats and lists of them give float32, an ndarray keeps float32 or
        float64, integers give int64.

    Raises
    ------
    TypeError
        If ``data`` is not numeric, or ``requires_grad`` is asked of a non-floating dtype.
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``.

    Parameters
    ----------
    *shape : int, or one tuple/list of ints
    dtype : numpy dtype, default float32
    requires_grad : bool, default False
    """
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``.

    Parameters
    ----------
    *shape : int, or one tuple/list of ints
    dtype : numpy dtype, default float32
    requires_grad : bool, default False
    """
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, requires_grad: bool = False, *, dtype: Any = None) -> Tensor:
    """Zeros with the shape of ``t`` and its dtype (or ``dtype`` when given)."""
    a = t.data if isinstance(t, Tensor) else np.asarray(t)
    return Tensor(np.zeros_like(a, dtype=dtype), requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad: bool = False, *, dtype: Any = None) -> Tensor:
    """Ones with the shape of ``t`` and its dtype (or ``dtype`` when given)."""
    a = t.data if isinstance(t, Tensor) else np.asarray(t)
    return Tensor(np.ones_like(a, dtype=dtype), requires_grad=requires_grad)


def randn(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from tapegrad's generator (seeded by :func:`manual_seed`).

    Parameters
    ----------
    *shape : int, or one tuple/list of ints
    dtype : numpy dtype, default float32
    requires_grad : bool, default False
    """
    data = _rng["gen"].standard_normal(_shape(shape)).astype(dtype)
    return Tensor(data, requires_grad=requires_grad)


def rand(*shape: Any, dtype: Any = np.float32, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from tapegrad's generator (seeded by :func:`manual_seed`).

    Parameters
    ----------
    *shape : int, or one tuple/list of ints
    dtype : numpy dtype, default float32
    requires_grad : bool, default False
    """
    data = _rng["gen"].random(_shape(shape)).astype(dtype)
    return Tensor(data, requires_grad=requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    """Evenly spaced values in [start, stop) (``arange(n)`` is 0 .. n-1), as ``torch.arange``.

    Parameters
    ----------
    start : number
        The first value, or the end when ``stop`` is None.
    stop : number, optional
    step : number, default 1
    dtype : numpy dtype, optional
        Default: int64 for integer arguments, float32 for floats (PyTorch's rule).
    """
    if stop is None:
        start, stop = 0, start
    if dtype is None and any(isinstance(v, (float, np.floating)) for v in (start, stop, step)):
        dtype = np.float32  # PyTorch's default floating dtype
    return Tensor(np.arange(start, stop, step, dtype=dtype))
