"""Top-level tensor functions with PyTorch's names: ``tapegrad.cat``, ``stack``, ``where``,
``clamp``, ``maximum``, ``flip``, ``gather``, ``from_numpy``, ``full``, ``linspace``, ...

Each accepts Tensors (and, where PyTorch does, numbers or arrays), records on the tape and
raises a ValueError/TypeError naming the function and the argument for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .ops import shape as _shape
from .ops import tensor_ops as T
from .tensor import Tensor

__all__ = [
    "abs",
    "argmax",
    "argmin",
    "cat",
    "chunk",
    "clamp",
    "clip",
    "concat",
    "expand_copy",
    "eye",
    "flatten",
    "flip",
    "from_numpy",
    "full",
    "full_like",
    "gather",
    "index_select",
    "linspace",
    "max",
    "maximum",
    "min",
    "minimum",
    "numel",
    "pow",
    "repeat_interleave",
    "roll",
    "scatter_add",
    "split",
    "stack",
    "tile",
    "where",
]


def _tensors(fn: str, tensors: Any) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, Sequence):
        raise TypeError(
            f"{fn}: tensors must be a sequence of Tensors, got {type(tensors).__name__}"
        )
    if not tensors:
        raise ValueError(f"{fn}: tensors must not be empty")
    out = []
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: tensors[{i}] is a {type(t).__name__}, not a Tensor")
        out.append(t)
    dtypes = {t.dtype for t in out}
    if len(dtypes) > 1:
        raise TypeError(f"{fn}: tensors have different dtypes {sorted(map(str, dtypes))}")
    return out


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension ``dim``; every other extent must match."""
    ts = _tensors("cat", tensors)
    nd = ts[0].ndim
    if nd == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated")
    d = T.norm_dim("cat", dim, nd)
    for i, t in enumerate(ts):
        if t.ndim != nd or t.shape[:d] + t.shape[d + 1 :] != ts[0].shape[:d] + ts[0].shape[d + 1 :]:
            raise ValueError(
                f"cat: tensors[{i}] has shape {t.shape}, which does not match {ts[0].shape} "
                f"outside dimension {d}"
            )
    return _shape.Concat.apply(*ts, axis=d)


concat = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join same-shaped tensors along a new dimension ``dim``."""
    ts = _tensors("stack", tensors)
    for i, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise ValueError(
                f"stack: tensors[{i}] has shape {t.shape}, tensors[0] has {ts[0].shape}"
            )
    d = T.norm_dim("stack", dim, ts[0].ndim + 1)
    return T.Stack.apply(*ts, axis=d)


def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """See :meth:`Tensor.split`."""
    return _t("split", tensor).split(split_size_or_sections, dim)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """See :meth:`Tensor.chunk`."""
    return _t("chunk", input).chunk(chunks, dim)


def _t(fn: str, x: Any, name: str = "input") -> Tensor:
    if isinstance(x, Tensor):
        return x
    raise TypeError(f"{fn}: {name} must be a Tensor, got {type(x).__name__}")


def _operand(x: Any, like: Tensor) -> Any:
    if isinstance(x, Tensor):
        return x
    return Tensor._from_op(np.asarray(x, dtype=like.dtype if like.dtype.kind == "f" else None))


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """Elements of ``input`` where ``condition`` holds, else of ``other`` (broadcast).

    ``input`` and ``other`` may be numbers; the gradient goes to whichever was picked.
    """
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    like = input if isinstance(input, Tensor) else other if isinstance(other, Tensor) else None
    if like is None:
        like = Tensor(np.asarray(input))
    a, b = _operand(input, like), _operand(other, like)
    if a.dtype != b.dtype:
        raise TypeError(f"where: input and other have different dtypes {a.dtype} and {b.dtype}")
    return T.Where.apply(cond, a, b)


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """See :meth:`Tensor.clamp`."""
    return _t("clamp", input).clamp(min, max)


clip = clamp


def _minmax(fn: str, op: str, input: Any, other: Any) -> Tensor:
    a = _t(fn, input)
    b = _operand(other, a)
    if a.dtype != b.dtype:
        raise TypeError(f"{fn}: input and other have different dtypes {a.dtype} and {b.dtype}")
    return T.MinMax.apply(a, b, op=op)


def maximum(input: Tensor, other: Any) -> Tensor:
    """Elementwise maximum; ties split the gradient evenly and NaN propagates (PyTorch)."""
    return _minmax("maximum", "max", input, other)


def minimum(input: Tensor, other: Any) -> Tensor:
    """Elementwise minimum; ties split the gradient evenly and NaN propagates (PyTorch)."""
    return _minmax("minimum", "min", input, other)


def max(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """``max(t)`` (all elements) or ``max(t, dim)`` -> ``(values, indices)``; ``max(a, b)``
    with a tensor second argument is :func:`maximum`."""
    if isinstance(dim, Tensor):
        return maximum(input, dim)
    return _t("max", input).max(dim, keepdim) if dim is not None else _t("max", input).max()


def min(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """``min(t)`` or ``min(t, dim)`` -> ``(values, indices)``; ``min(a, b)`` is :func:`minimum`."""
    if isinstance(dim, Tensor):
        return minimum(input, dim)
    return _t("min", input).min(dim, keepdim) if dim is not None else _t("min", input).min()


def argmax(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """See :meth:`Tensor.argmax`."""
    return _t("argmax", input).argmax(dim, keepdim)


def argmin(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """See :meth:`Tensor.argmin`."""
    return _t("argmin", input).argmin(dim, keepdim)


def abs(input: Tensor) -> Tensor:
    """Elementwise absolute value (gradient ``sign(x)``, 0 at 0)."""
    return _t("abs", input).abs()


def pow(input: Any, exponent: Any) -> Tensor:
    """``input ** exponent``; either may be a tensor (both get gradients)."""
    if isinstance(input, Tensor):
        return input**exponent
    if isinstance(exponent, Tensor):
        return exponent.__rpow__(input)
    raise TypeError("pow: input or exponent must be a Tensor")


def flip(input: Tensor, dims: Any) -> Tensor:
    """See :meth:`Tensor.flip`."""
    return _t("flip", input).flip(dims)


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    """See :meth:`Tensor.roll`."""
    return _t("roll", input).roll(shifts, dims)


def gather(input: Tensor, dim: int, index: Any) -> Tensor:
    """See :meth:`Tensor.gather`."""
    return _t("gather", input).gather(dim, index)


def scatter_add(input: Tensor, dim: int, index: Any, src: Any) -> Tensor:
    """See :meth:`Tensor.scatter_add`."""
    return _t("scatter_add", input).scatter_add(dim, index, src)


def index_select(input: Tensor, dim: int, index: Any) -> Tensor:
    """See :meth:`Tensor.index_select`."""
    return _t("index_select", input).index_select(dim, index)


def tile(input: Tensor, dims: Any) -> Tensor:
    """See :meth:`Tensor.tile`."""
    return _t("tile", input).tile(dims)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """See :meth:`Tensor.flatten`."""
    return _t("flatten", input).flatten(start_dim, end_dim)


def numel(input: Tensor) -> int:
    """The number of elements."""
    return _t("numel", input).numel()


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``ndarray`` (any numeric dtype, kept as it is)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(ndarray).__name__}")
    if ndarray.dtype.kind not in "biuf":
        raise TypeError(f"from_numpy: unsupported dtype {ndarray.dtype}")
    return Tensor._from_op(ndarray)


def _dtype(dtype: Any, default: Any) -> np.dtype:
    return np.dtype(default if dtype is None else dtype)


def full(size: Any, fill_value: Any, *, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value`` (float32 for a float value,
    int64 for an int, bool for a bool, unless ``dtype`` says otherwise)."""
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    if dtype is None:
        dtype = (
            np.bool_
            if isinstance(fill_value, bool)
            else np.int64
            if isinstance(fill_value, (int, np.integer))
            else np.float32
        )
    return Tensor(np.full(shape, fill_value, dtype=dtype), requires_grad=requires_grad)


def full_like(input: Tensor, fill_value: Any, *, dtype: Any = None) -> Tensor:
    """A tensor of ``input``'s shape (and dtype, unless given) filled with ``fill_value``."""
    x = _t("full_like", input)
    return Tensor(np.full(x.shape, fill_value, dtype=_dtype(dtype, x.dtype)))


def linspace(start: float, end: float, steps: int, *, dtype: Any = None) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive (float32)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    return Tensor(np.linspace(start, end, int(steps)).astype(_dtype(dtype, np.float32)))


def eye(n: int, m: int | None = None, *, dtype: Any = None) -> Tensor:
    """The ``n`` x ``m`` identity matrix (float32)."""
    for name, v in (("n", n), ("m", n if m is None else m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"eye: {name} must be a non-negative int, got {v!r}")
    return Tensor(np.eye(n, m, dtype=_dtype(dtype, np.float32)))


def expand_copy(input: Tensor, *sizes: Any) -> Tensor:
    """See :meth:`Tensor.expand` (always a copy in tapegrad)."""
    return _t("expand_copy", input).expand(*sizes)


def repeat_interleave(input: Tensor, repeats: int, dim: int | None = None) -> Tensor:
    """Each element repeated ``repeats`` times along ``dim`` (flattened when None)."""
    x = _t("repeat_interleave", input)
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 0:
        raise ValueError(f"repeat_interleave: repeats must be a non-negative int, got {repeats!r}")
    if dim is None:
        x, dim = x.reshape(-1), 0
    d = T.norm_dim("repeat_interleave", dim, x.ndim)
    idx = np.repeat(np.arange(x.shape[d]), int(repeats))
    return x.index_select(d, idx)
