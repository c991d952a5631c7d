"""PyTorch's Tensor vocabulary beyond the core (mixed into :class:`tapegrad.Tensor`):
comparisons as methods, casts on the tape, ``size()``/``numel()``, joining and indexing ops,
min/max along a dim, and in-place updates guarded by version counters."""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING, Any

import numpy as np

from . import autograd
from .ops import tensor_ops as T

if TYPE_CHECKING:
    from .tensor import Tensor

MinMaxResult = namedtuple("MinMaxResult", ["values", "indices"])
_FLOAT_KINDS = "f"


class TensorSize(int):
    """``Tensor.size``: the element count (an int, as NumPy's ``.size``) that can also be
    called as PyTorch's ``size()`` (the shape tuple) or ``size(dim)`` (one extent)."""

    def __new__(cls, shape: tuple[int, ...]) -> TensorSize:
        obj = super().__new__(cls, int(np.prod(shape, dtype=np.int64)))
        obj._shape = tuple(shape)
        return obj

    def __call__(self, dim: int | None = None) -> Any:
        if dim is None:
            return self._shape
        return self._shape[T.norm_dim("size", dim, len(self._shape))]


def _tensor(x: Any) -> Tensor:
    from .tensor import Tensor

    return x if isinstance(x, Tensor) else Tensor(x)


def _raw(x: Any) -> Any:
    from .tensor import Tensor

    return x.data if isinstance(x, Tensor) else x


def _dims(args: tuple) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


class TorchMethods:
    """Methods with PyTorch's names and semantics; see each docstring."""

    data: np.ndarray

    # --- sizes and comparisons ---------------------------------------------------------------
    def numel(self) -> int:
        """The number of elements."""
        return int(self.data.size)

    def dim(self) -> int:
        """The number of dimensions (``ndim``)."""
        return self.data.ndim

    def eq(self, other: Any) -> Tensor:
        """Elementwise ``==`` as a bool tensor (not differentiable)."""
        return self == other

    def ne(self, other: Any) -> Tensor:
        """Elementwise ``!=`` as a bool tensor."""
        return self != other

    def lt(self, other: Any) -> Tensor:
        """Elementwise ``<`` as a bool tensor."""
        return self < other

    def le(self, other: Any) -> Tensor:
        """Elementwise ``<=`` as a bool tensor."""
        return self <= other

    def gt(self, other: Any) -> Tensor:
        """Elementwise ``>`` as a bool tensor."""
        return self > other

    def ge(self, other: Any) -> Tensor:
        """Elementwise ``>=`` as a bool tensor."""
        return self >= other

    def equal(self, other: Any) -> bool:
        """True if ``other`` has this shape and the same elements."""
        o = _raw(other)
        return bool(np.shape(o) == self.data.shape and np.array_equal(self.data, o))

    def __abs__(self) -> Tensor:
        return self.abs()

    # --- casts ---------------------------------------------------------------------------------
    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other)``.

        tapegrad runs on the CPU: ``"cpu"`` is accepted, any other device is a ValueError.
        A float-to-float cast stays on the tape; the same dtype returns this tensor.
        """
        from .device import _parse_to

        dtype = _parse_to("Tensor.to", args, kwargs)
        if dtype is None or (dtype == self.data.dtype and not kwargs.get("copy")):
            return self  # type: ignore[return-value]
        return self.astype(dtype)

    def astype(self, dtype: Any) -> Tensor:
        """A cast: float to float is differentiable (the gradient is cast back); a cast to an
        integer or bool type gives a tensor that does not require grad."""
        from .tensor import Tensor

        dt = np.dtype(dtype)
        if self.requires_grad and dt.kind in _FLOAT_KINDS and self.data.dtype.kind in "f":
            return T.Cast.apply(self, dtype=dt)
        return Tensor._from_op(self.data.astype(dt))

    def type_as(self, other: Any) -> Tensor:
        """Cast to ``other``'s dtype."""
        return self.astype(_raw(other).dtype)

    def float(self) -> Tensor:
        """Cast to float32 (on the tape)."""
        return self.astype(np.float32)

    def double(self) -> Tensor:
        """Cast to float64 (on the tape)."""
        return self.astype(np.float64)

    def long(self) -> Tensor:
        """Cast to int64 (not differentiable)."""
        return self.astype(np.int64)

    def int(self) -> Tensor:
        """Cast to int32 (not differentiable)."""
        return self.astype(np.int32)

    def bool(self) -> Tensor:
        """Cast to bool (not differentiable)."""
        return self.astype(np.bool_)

    def cpu(self) -> Tensor:
        """This tensor (tapegrad runs on the CPU)."""
        return self  # type: ignore[return-value]

    # --- shapes -----------------------------------------------------------------------------
    def view_as(self, other: Any) -> Tensor:
        """Reshape to ``other``'s shape."""
        return self.reshape(tuple(np.shape(_raw(other))))

    reshape_as = view_as

    def expand(self, *sizes: Any) -> Tensor:
        """Broadcast to ``sizes`` (``-1`` keeps a dimension); new dimensions go in front."""
        sizes = _dims(sizes)
        nd = self.data.ndim
        if len(sizes) < nd:
            raise ValueError(
                f"expand: sizes {sizes} have fewer dimensions than the tensor {self.data.shape}"
            )
        lead = len(sizes) - nd
        shape = []
        for i, s in enumerate(sizes):
            if s == -1:
                if i < lead:
                    raise ValueError(f"expand: -1 is not allowed for a new leading dimension {i}")
                s = self.data.shape[i - lead]
            old = self.data.shape[i - lead] if i >= lead else 1
            if old != 1 and old != s:
                raise ValueError(
                    f"expand: the size of dimension {i} ({old}) must be 1 or {s} to expand "
                    f"{self.data.shape} to {tuple(sizes)}"
                )
            shape.append(int(s))
        return T.Expand.apply(self, shape=tuple(shape))

    def expand_as(self, other: Any) -> Tensor:
        """Broadcast to ``other``'s shape."""
        return self.expand(tuple(np.shape(_raw(other))))

    def repeat(self, *sizes: Any) -> Tensor:
        """Tile: ``sizes`` (at least as many as dimensions) copies along each dimension."""
        reps = _dims(sizes)
        if len(reps) < self.data.ndim:
            raise ValueError(
                f"repeat: give at least {self.data.ndim} repeats for shape {self.data.shape}, "
                f"got {reps}"
            )
        if any((not isinstance(r, (int, np.integer))) or r < 0 for r in reps):
            raise ValueError(f"repeat: repeats must be non-negative ints, got {reps}")
        return T.Repeat.apply(self, reps=tuple(int(r) for r in reps))

    def tile(self, *dims: Any) -> Tensor:
        """Like :meth:`repeat`, with missing leading repeats taken as 1."""
        reps = _dims(dims)
        reps = (1,) * (self.data.ndim - len(reps)) + tuple(reps)
        return self.repeat(*reps)

    def flip(self, *dims: Any) -> Tensor:
        """Reverse the order along ``dims``."""
        d = tuple(T.norm_dim("flip", x, self.data.ndim) for x in _dims(dims))
        if len(set(d)) != len(d):
            raise ValueError(f"flip: dims {dims} repeat a dimension")
        return T.Flip.apply(self, dims=d)

    def roll(self, shifts: Any, dims: Any = None) -> Tensor:
        """Rotate elements by ``shifts`` along ``dims`` (flattened when ``dims`` is None)."""
        if dims is None:
            if not isinstance(shifts, (int, np.integer)):
                raise ValueError("roll: without dims, shifts must be one int")
            flat = T.Roll.apply(self.reshape(-1), shifts=int(shifts), dims=0)
            return flat.reshape(self.data.shape)
        s = (shifts,) if isinstance(shifts, (int, np.integer)) else tuple(shifts)
        d = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
        if len(s) != len(d):
            raise ValueError(f"roll: shifts {shifts} and dims {dims} differ in length")
        d = tuple(T.norm_dim("roll", x, self.data.ndim) for x in d)
        return T.Roll.apply(self, shifts=tuple(int(x) for x in s), dims=d)

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or pieces of
        the given sizes (which must add up to the dimension)."""
        d = T.norm_dim("split", dim, self.data.ndim)
        n = self.data.shape[d]
        if isinstance(split_size_or_sections, (int, np.integer)):
            size = int(split_size_or_sections)
            if size < 1 and n:
                raise ValueError(f"split: split_size must be >= 1, got {size}")
            sizes = [min(size, n - i) for i in range(0, n, max(size, 1))] or [0]
        else:
            sizes = [int(s) for s in split_size_or_sections]
            if sum(sizes) != n or min(sizes, default=0) < 0:
                raise ValueError(
                    f"split: sections {sizes} must be non-negative and add up to {n} "
                    f"(dimension {d} of {self.data.shape})"
                )
        out, start = [], 0
        for s in sizes:
            idx = (slice(None),) * d + (slice(start, start + s),)
            out.append(self[idx])
            start += s
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """Split into ``chunks`` pieces of ``ceil(n / chunks)`` (fewer if n is small)."""
        if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
            raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
        d = T.norm_dim("chunk", dim, self.data.ndim)
        n = self.data.shape[d]
        return self.split(max(-(-n // int(chunks)), 1), d)

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        """The slices along ``dim``, each without that dimension."""
        d = T.norm_dim("unbind", dim, self.data.ndim)
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.data.shape[d]))

    # --- selection -----------------------------------------------------------------------------
    def gather(self, dim: int, index: Any) -> Tensor:
        """``out[i][j] = self[index[i][j]][j]`` along ``dim``."""
        d = T.norm_dim("gather", dim, self.data.ndim)
        return T.Gather.apply(self, np.asarray(_raw(index)), dim=d)

    def scatter_add(self, dim: int, index: Any, src: Any) -> Tensor:
        """A copy with ``src`` added at ``index`` along ``dim`` (repeated indices add up)."""
        d = T.norm_dim("scatter_add", dim, self.data.ndim)
        return T.ScatterAdd.apply(self, np.asarray(_raw(index)), _tensor(src), dim=d)

    def index_select(self, dim: int, index: Any) -> Tensor:
        """The entries at integer ``index`` (1-d) along ``dim``."""
        d = T.norm_dim("index_select", dim, self.data.ndim)
        return T.IndexSelect.apply(self, np.asarray(_raw(index)), dim=d)

    def where(self, condition: Any, other: Any) -> Tensor:
        """``self`` where ``condition`` else ``other``."""
        from .tensor_functions import where

        return where(condition, self, other)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:
        """Clip into ``[min, max]`` (either may be None); the gradient passes inside."""
        if min is None and max is None:
            raise ValueError("clamp: give min, max or both")
        lo = None if min is None else np.asarray(_raw(min), dtype=self.data.dtype)
        hi = None if max is None else np.asarray(_raw(max), dtype=self.data.dtype)
        return T.Clamp.apply(self, lo, hi)

    clip = clamp

    def maximum(self, other: Any) -> Tensor:
        """Elementwise maximum (ties split the gradient)."""
        from .tensor_functions import maximum

        return maximum(self, other)

    def minimum(self, other: Any) -> Tensor:
        """Elementwise minimum (ties split the gradient)."""
        from .tensor_functions import minimum

        return minimum(self, other)

    def pow(self, exponent: Any) -> Tensor:
        """``self ** exponent``; a tensor exponent gets its gradient too."""
        return self**exponent

    def _reduce_arg(self, op: str, dim: Any, keepdim: bool) -> Any:
        d = T.norm_dim(op, dim, self.data.ndim)
        if self.data.ndim == 0:
            from .tensor import Tensor

            return MinMaxResult(self, Tensor(np.array(0)))
        vals = T.ReduceArg.apply(self, axis=d, keepdim=bool(keepdim), op=op)
        from .tensor import Tensor

        idx = np.argmax(self.data, axis=d) if op == "max" else np.argmin(self.data, axis=d)
        if self.data.dtype.kind == "f":
            nan = np.isnan(self.data)
            if nan.any():
                idx = np.where(nan.any(axis=d), np.argmax(nan, axis=d), idx)
        if keepdim:
            idx = np.expand_dims(idx, d)
        return MinMaxResult(vals, Tensor(np.asarray(idx, dtype=np.int64)))

    def min(
        self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None
    ) -> Any:
        """``min()`` over all elements, or ``min(dim)`` -> ``(values, indices)``; with the
        NumPy-style ``axis``/``keepdims`` a tensor of minima."""
        return (
            -((-self).max(dim, keepdim, axis=axis, keepdims=keepdims))
            if (dim is None or axis is not None or keepdims is not None)
            else self._reduce_arg("min", dim, keepdim)
        )

    def argmin(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Index of the first minimum (over the flattened tensor when ``dim`` is None)."""
        return self._arg("argmin", dim, keepdim)

    def _arg(self, fn: str, dim: Any, keepdim: bool) -> Tensor:
        from .tensor import Tensor

        f = np.argmax if fn == "argmax" else np.argmin
        if dim is None:
            out = np.asarray(f(self.data))
            if keepdim:
                out = out.reshape((1,) * self.data.ndim)
            return Tensor(out.astype(np.int64))
        d = T.norm_dim(fn, dim, self.data.ndim)
        out = f(self.data, axis=d)
        if keepdim:
            out = np.expand_dims(out, d)
        return Tensor(np.asarray(out, dtype=np.int64))

    # --- in-place updates --------------------------------------------------------------------
    def _check_inplace(self, fn: str) -> bool:
        """True if the update must be recorded on the tape (self is part of a graph)."""
        if not autograd.is_grad_enabled() or not self.requires_grad:
            return False
        if self._node is None:
            raise RuntimeError(
                f"{fn}: a leaf tensor that requires grad cannot be modified in place (it would "
                "change what the graph already used); use torch-style `with tg.no_grad():` "
                "for updates such as initialisation, or an out-of-place op"
            )
        return True

    def _shadow(self) -> Tensor:
        """A new Tensor object holding this one's data and record (the value before an
        in-place op rebinds this object to the op's result)."""
        from .tensor import Tensor

        t = Tensor._from_op(self.data)
        t._node, t.requires_grad = self._node, self.requires_grad
        return t

    def _rebind(self, out: Tensor) -> Tensor:
        # records that already took this tensor as an input keep its value before the
        # update: they get a shadow holding the old data and record
        shadow = None
        for ref in self.__dict__.pop("_consumers", ()):
            node = ref()
            if node is None or node.freed:
                continue
            for i, t in enumerate(node.inputs):
                if t is self:
                    if shadow is None:
                        shadow = self._shadow()
                    node.inputs[i] = shadow
        self.data, self._node = out.data, out._node
        self.requires_grad = out.requires_grad
        autograd.bump_version(self.data)
        return self  # type: ignore[return-value]

    def _inplace(self, fn: str, value: np.ndarray) -> Tensor:
        if self.data.shape != np.shape(value):
            try:
                value = np.broadcast_to(value, self.data.shape)
            except ValueError:
                raise ValueError(
                    f"{fn}: the result of shape {np.shape(value)} does not fit the tensor "
                    f"{self.data.shape} being updated in place"
                ) from None
        self.data[...] = value
        autograd.bump_version(self.data)
        return self  # type: ignore[return-value]

    def __setitem__(self, index: Any, value: Any) -> None:
        from .tensor import Tensor

        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        v = value if isinstance(value, Tensor) else np.asarray(value, dtype=self.data.dtype)
        if self._check_inplace("setitem") or (
            isinstance(v, Tensor) and v.requires_grad and autograd.is_grad_enabled()
        ):
            if self.requires_grad and self._node is None:
                self._check_inplace("setitem")
            self._rebind(T.SetItem.apply(self._shadow(), v, index=index))
            return
        try:
            self.data[index] = _raw(v)
        except (IndexError, ValueError) as e:
            raise type(e)(
                f"setitem: {e} (tensor of shape {self.data.shape}, value of shape "
                f"{np.shape(_raw(v))})"
            ) from None
        autograd.bump_version(self.data)

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        """In place ``self += alpha * other``."""
        o = other * alpha if alpha != 1 else other
        if self._check_inplace("add_"):
            return self._rebind(self._shadow() + o)
        return self._inplace("add_", self.data + np.asarray(_raw(o), dtype=self.data.dtype))

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        """In place ``self -= alpha * other``."""
        return self.add_(other, -alpha)

    def mul_(self, other: Any) -> Tensor:
        """In place ``self *= other``."""
        if self._check_inplace("mul_"):
            return self._rebind(self._shadow() * other)
        return self._inplace("mul_", self.data * np.asarray(_raw(other), dtype=self.data.dtype))

    def div_(self, other: Any) -> Tensor:
        """In place ``self /= other``."""
        if self._check_inplace("div_"):
            return self._rebind(self._shadow() / other)
        return self._inplace("div_", self.data / np.asarray(_raw(other), dtype=self.data.dtype))

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:
        """In place :meth:`clamp`."""
        out = self._shadow().clamp(min, max) if self._check_inplace("clamp_") else None
        if out is not None:
            return self._rebind(out)
        with autograd.no_grad():
            return self._inplace("clamp_", self.clamp(min, max).data)

    def zero_(self) -> Tensor:
        """In place: every element becomes 0."""
        return self.fill_(0)

    def fill_(self, value: Any) -> Tensor:
        """In place: every element becomes ``value``."""
        if self._check_inplace("fill_"):
            return self._rebind(self._shadow() * 0 + value)
        return self._inplace("fill_", np.asarray(_raw(value), dtype=self.data.dtype))

    def copy_(self, src: Any) -> Tensor:
        """In place: copy ``src`` (broadcast to this shape) into this tensor."""
        if self._check_inplace("copy_"):
            return self._rebind(self._shadow() * 0 + src)
        return self._inplace("copy_", np.asarray(_raw(src), dtype=self.data.dtype))
