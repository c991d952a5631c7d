"""Tensor: a NumPy array plus what autograd needs (``requires_grad``, ``grad``, its record)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import autograd
from ._torch_methods import TensorSize, TorchMethods
from .ops import activation, reduce, shape
from .ops import elementwise as ew

_FLOATS = (np.float32, np.float64)


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.array(data, dtype=dtype)
    arr = np.array(data)
    if arr.dtype.kind in "OUSVMm":
        raise TypeError(
            f"Tensor: data must be numeric (bool, int or float), got {arr.dtype} "
            f"from {type(data).__name__}"
        )
    if arr.dtype.kind == "f":
        # Python floats and lists give float32; an ndarray keeps float32/float64
        if not isinstance(data, np.ndarray) or arr.dtype not in _FLOATS:
            arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64, copy=False)
    return arr


class Tensor(TorchMethods):
    """An n-dimensional array that records the ops applied to it when it requires grad."""

    __array_priority__ = 100  # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"Tensor: only floating tensors can require grad, got dtype {self.data.dtype}"
            )
        self.requires_grad = requires_grad
        self._grad: np.ndarray | None = None
        self._node: autograd.Node | None = None
        self.name: str | None = None

    @classmethod
    def _from_op(cls, arr: np.ndarray) -> Tensor:
        t = cls.__new__(cls)
        t.data = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        t.requires_grad = False
        t._grad = None
        t._node = None
        t.name = None
        return t

    # --- attributes ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The shape, a tuple of ints (as ``numpy.ndarray.shape``)."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype: float32 (the default for floats), float64, int64 or bool."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> TensorSize:
        """The number of elements, an int as NumPy's ``.size``; it can also be called as in
        PyTorch: ``size()`` is the shape tuple, ``size(dim)`` one extent."""
        return TensorSize(self.data.shape)

    @property
    def T(self) -> Tensor:
        """The tensor with its dimensions reversed (a recorded ``permute``)."""
        return self.permute(*reversed(range(self.ndim)))

    @property
    def grad(self) -> Tensor | None:
        """The gradient accumulated by ``backward()``, a Tensor of this tensor's shape and dtype,
        or None before any backward (and after ``zero_grad``). Assigning an array-like or None
        sets or clears it.
        """
        if self._node is not None and not self.__dict__.get("_retains_grad"):
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during backward(). If you indeed want "
                "the .grad field to be populated for a non-leaf Tensor, use .retain_grad() on "
                "the non-leaf Tensor. If you access the non-leaf Tensor by mistake, make sure "
                "you access the leaf Tensor instead.",
                UserWarning,
                stacklevel=2,
            )
        g = self._grad
        if g is None:
            return None
        gt = self.__dict__.get("_grad_t")
        if gt is not None and gt.data is g:
            return gt  # made under create_graph=True: it has a record
        return Tensor._from_op(g)

    @grad.setter
    def grad(self, value: Any) -> None:
        """Set (converted to this tensor's dtype) or clear (None) the accumulated gradient."""
        self._grad = None if value is None else _as_array(value, self.data.dtype)

    @property
    def grad_data(self) -> np.ndarray | None:
        """The accumulated gradient as the NumPy array itself (no copy, no Tensor), or None:
        the accessor for optimisers, gradient clipping and data-parallel code.

        Assigning stores an ndarray of this tensor's shape and dtype as it is (no copy: the
        caller hands it over), or None to clear. A ValueError names a wrong shape, a
        TypeError a wrong type or dtype.
        """
        return self._grad

    @grad_data.setter
    def grad_data(self, value: np.ndarray | None) -> None:
        if value is not None:
            if not isinstance(value, np.ndarray) or value.dtype != self.data.dtype:
                got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise TypeError(
                    f"grad_data: expected an ndarray of dtype {self.data.dtype}, got {got}"
                )
            if value.shape != self.data.shape:
                raise ValueError(f"grad_data: expected shape {self.data.shape}, got {value.shape}")
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        """True for a non-leaf tensor after :meth:`retain_grad` (its ``.grad`` is kept)."""
        return self._node is not None and bool(self.__dict__.get("_retains_grad"))

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` during ``backward()`` (a leaf
        keeps it anyway). It is the gradient after this tensor's hooks ran.

        Raises
        ------
        RuntimeError
            If the tensor does not require grad.
        """
        autograd.retain_grad(self)

    def register_hook(self, hook: Any) -> autograd.RemovableHandle:
        """Call ``hook(grad)`` with this tensor's gradient whenever one is computed
        (``backward()``, ``autograd.grad``); a returned Tensor replaces the gradient (None
        keeps it). Hooks run in registration order; for a leaf before the gradient is added
        to ``.grad``.

        Parameters
        ----------
        hook : callable
            ``hook(grad: Tensor) -> Tensor | None``; ``grad`` has this tensor's shape.

        Returns
        -------
        RemovableHandle
            ``handle.remove()`` unregisters the hook.

        Raises
        ------
        RuntimeError
            If the tensor does not require grad.
        TypeError
            If ``hook`` is not callable.
        """
        return autograd.register_hook(self, hook)

    def is_inference(self) -> bool:
        """True for a tensor an op made inside ``tapegrad.inference_mode()``."""
        return bool(self.__dict__.get("_inference"))

    @property
    def is_leaf(self) -> bool:
        """True if no recorded op made this tensor (created by the user, or under ``no_grad``)."""
        return self._node is None

    def numpy(self) -> np.ndarray:
        """The underlying NumPy array (no copy: writing to it changes the tensor).

        Returns
        -------
        numpy.ndarray
            The data, of this tensor's shape and dtype.
        """
        return self.data

    def item(self) -> float | int:
        """The value of a one-element tensor as a Python number.

        Raises
        ------
        ValueError
            If the tensor has more or fewer than one element.
        """
        if self.data.size != 1:
            raise ValueError(f"item: tensor has {self.data.size} elements, not 1")
        return self.data.reshape(()).item()

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the tape (``requires_grad=False``)."""
        return Tensor._from_op(self.data)

    def clone(self) -> Tensor:
        """A copy of the data; recorded (gradients flow back to this tensor) when it
        requires grad."""
        return ew.Mul.apply(self, 1) if self.requires_grad else Tensor._from_op(self.data.copy())

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Set ``requires_grad`` in place and return this tensor.

        Parameters
        ----------
        flag : bool, default True
            Whether ops on this tensor are recorded for ``backward``.
        """
        if flag and self.__dict__.get("_inference"):
            raise RuntimeError(
                "requires_grad_: an inference tensor (made inside inference_mode()) cannot "
                "require grad; clone it outside inference_mode first"
            )
        self.requires_grad = flag
        return self

    def backward(
        self,
        grad: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """Replay the tape in reverse from this tensor into every leaf's ``grad``.

        Parameters
        ----------
        grad : Tensor or array, optional
            The gradient of this tensor (its shape); omitted only for one element (ones).
        retain_graph : bool, optional
            Keep the saved arrays for another backward; defaults to ``create_graph``.
        create_graph : bool, default False
            Record the backward, so the leaves' ``.grad`` can be differentiated again.
        inputs : Tensor or sequence of Tensor, optional
            Accumulate only into these tensors' ``.grad`` (leaves, or non-leaves, which
            then retain their gradient).

        Raises
        ------
        RuntimeError
            If this tensor does not require grad, or ``grad`` is omitted for a tensor of
            more than one element.
        """
        if retain_graph is None:
            retain_graph = create_graph
        if not self.requires_grad:
            raise RuntimeError("backward: tensor does not require grad and has no record")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be omitted only for a scalar, "
                    f"this tensor has shape {self.shape}"
                )
            g = np.ones_like(self.data)
        else:
            raw = grad.data if isinstance(grad, Tensor) else grad
            flags = getattr(raw, "flags", None)
            if (
                type(raw) is np.ndarray
                and raw.dtype == self.data.dtype
                and flags.c_contiguous
                and flags.writeable
            ):
                # used as is, not copied: backward functions only read their incoming
                # gradient, and a leaf that would keep this array copies it (it has outside
                # references, see autograd._sole_owner)
                g = raw
            else:
                g = _as_array(grad, self.data.dtype)
            if g.shape != self.shape:
                raise ValueError(f"backward: grad has shape {g.shape}, tensor {self.shape}")
        if inputs is not None:
            if create_graph and isinstance(grad, Tensor):
                g = grad
            ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            got = autograd.grad(
                self,
                ins,
                grad_outputs=[g],
                retain_graph=retain_graph,
                create_graph=create_graph,
                allow_unused=True,
            )
            for t, gi in zip(ins, got):
                if gi is None:
                    continue
                if create_graph:
                    autograd._accumulate_leaf_graph(t, gi, run_hooks=False)
                else:
                    t._grad = gi.data if t._grad is None else t._grad + gi.data
                    if t._node is not None:
                        t._retains_grad = True
            return
        if create_graph and isinstance(grad, Tensor):
            g = grad  # a recorded seed: its own graph joins the recorded backward
        autograd.backward(self, g, retain_graph=bool(retain_graph), create_graph=create_graph)

    def __repr__(self) -> str:
        body = np.array2string(self.data, precision=4, separator=", ", threshold=20)
        extra = ", requires_grad=True" if self.requires_grad else ""
        dt = "" if self.dtype == np.float32 else f", dtype={self.dtype}"
        return f"tensor({body}{dt}{extra})"

    def __len__(self) -> int:
        return len(self.data)

    def __getstate__(self) -> dict:
        # the weak references to the records that used this tensor stay in this process
        state = self.__dict__.copy()
        state.pop("_consumers", None)
        return state

    def _python_scalar(self, fn: str) -> Any:
        if self.data.size != 1:
            raise ValueError(
                f"{fn}: only a one-element tensor converts to a Python scalar, got shape "
                f"{self.data.shape}"
            )
        return self.data.reshape(()).item()

    def __float__(self) -> float:
        """``float(t)`` of a one-element tensor (ValueError otherwise), as PyTorch."""
        return float(self._python_scalar("float"))

    def __int__(self) -> int:
        """``int(t)`` of a one-element tensor (truncated; ValueError otherwise), as PyTorch."""
        return int(self._python_scalar("int"))

    def __bool__(self) -> bool:
        """``bool(t)`` (``if t:``) of a one-element tensor; more elements are ambiguous: a
        ValueError, as PyTorch (not the truth of ``len(t)``)."""
        if self.data.size != 1:
            raise ValueError(
                f"bool: the truth value of a tensor of shape {self.data.shape} is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.data.reshape(()).item())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def __dlpack__(self, **kwargs: Any) -> Any:
        """A DLPack capsule of this tensor's array (no copy): ``torch.from_dlpack(t)`` and
        ``np.from_dlpack(t)`` share its memory. Keywords (``stream``, ``max_version``,
        ``dl_device``, ``copy``) are NumPy's; the tape does not follow the data across."""
        return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(1, 0)``: DLPack's CPU device."""
        return self.data.__dlpack_device__()

    # --- arithmetic ---------------------------------------------------------------------
    def __add__(self, o: Any) -> Tensor:
        return ew.Add.apply(self, _wrap(o, self))

    def __radd__(self, o: Any) -> Tensor:
        return ew.Add.apply(_wrap(o, self), self)

    def __sub__(self, o: Any) -> Tensor:
        return ew.Sub.apply(self, _wrap(o, self))

    def __rsub__(self, o: Any) -> Tensor:
        return ew.Sub.apply(_wrap(o, self), self)

    def __mul__(self, o: Any) -> Tensor:
        return ew.Mul.apply(self, _wrap(o, self))

    def __rmul__(self, o: Any) -> Tensor:
        return ew.Mul.apply(_wrap(o, self), self)

    def __truediv__(self, o: Any) -> Tensor:
        return ew.Div.apply(self, _wrap(o, self))

    def __rtruediv__(self, o: Any) -> Tensor:
        return ew.Div.apply(_wrap(o, self), self)

    def __pow__(self, o: Any) -> Tensor:
        return ew.Pow.apply(self, _wrap(o, self))

    def __rpow__(self, o: Any) -> Tensor:
        return ew.Pow.apply(_wrap(o, self), self)

    def __matmul__(self, o: Any) -> Tensor:
        from .ops.linalg import MatMul

        return MatMul.apply(self, _wrap(o, self))

    def __rmatmul__(self, o: Any) -> Tensor:
        from .ops.linalg import MatMul

        return MatMul.apply(_wrap(o, self), self)

    def __neg__(self) -> Tensor:
        return ew.Neg.apply(self)

    # comparisons give plain (non-differentiable) boolean tensors
    def __eq__(self, o: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self.data == _raw(o))

    def __ne__(self, o: Any) -> Tensor:  # type: ignore[override]
        return Tensor(self.data != _raw(o))

    def __lt__(self, o: Any) -> Tensor:
        return Tensor(self.data < _raw(o))

    def __le__(self, o: Any) -> Tensor:
        return Tensor(self.data <= _raw(o))

    def __gt__(self, o: Any) -> Tensor:
        return Tensor(self.data > _raw(o))

    def __ge__(self, o: Any) -> Tensor:
        return Tensor(self.data >= _raw(o))

    __hash__ = object.__hash__

    # --- elementwise functions ----------------------------------------------------------
    def exp(self) -> Tensor:
        """Elementwise ``e**x``, recorded; same shape and dtype."""
        return ew.Exp.apply(self)

    def log(self) -> Tensor:
        """Elementwise natural logarithm, recorded; same shape and dtype (``-inf`` at 0,
        NaN below)."""
        return ew.Log.apply(self)

    def tanh(self) -> Tensor:
        """Elementwise hyperbolic tangent, recorded; same shape and dtype."""
        return ew.Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        """Elementwise ``1 / (1 + exp(-x))``, recorded; same shape and dtype."""
        return ew.Sigmoid.apply(self)

    def relu(self) -> Tensor:
        """Elementwise ``max(x, 0)`` through the ``relu`` kernel variants, recorded; same
        shape and dtype."""
        return activation.ReLU.apply(self)

    def abs(self) -> Tensor:
        """Elementwise absolute value, recorded (gradient ``sign(x)``, 0 at 0)."""
        return ew.Abs.apply(self)

    def sqrt(self) -> Tensor:
        """Elementwise square root, recorded; same shape and dtype."""
        return ew.Sqrt.apply(self)

    def softmax(self, axis: int = -1, *, dim: int | None = None) -> Tensor:
        """Softmax along ``axis``, recorded: ``exp(x) / exp(x).sum(axis)``, computed stably.

        Parameters
        ----------
        axis : int, default -1
            The dimension that sums to 1.
        """
        return activation.Softmax.apply(self, axis=axis if dim is None else dim)

    def log_softmax(self, axis: int = -1, *, dim: int | None = None) -> Tensor:
        """Log of the softmax along ``axis``, recorded; stabler than ``softmax().log()``.

        Parameters
        ----------
        axis : int, default -1
            The dimension normalised over.
        """
        return activation.LogSoftmax.apply(self, axis=axis if dim is None else dim)

    # --- reductions ---------------------------------------------------------------------
    def sum(
        self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: Any = None
    ) -> Tensor:
        """Sum over ``axis`` (all elements when None), recorded.

        Parameters
        ----------
        axis : int, tuple of int or None, default None
            The dimensions to reduce.
        keepdims : bool, default False
            Keep reduced dimensions with size 1.
        """
        axis, keepdims = _torch_axis(axis, keepdims, dim, keepdim)
        return reduce.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(
        self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: Any = None
    ) -> Tensor:
        """Mean over ``axis`` (all elements when None), recorded.

        Parameters
        ----------
        axis : int, tuple of int or None, default None
            The dimensions to reduce.
        keepdims : bool, default False
            Keep reduced dimensions with size 1.
        """
        axis, keepdims = _torch_axis(axis, keepdims, dim, keepdim)
        return reduce.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(
        self, dim: Any = None, keepdim: bool = False, *, axis: Any = None, keepdims: Any = None
    ) -> Any:
        """``max()`` over all elements, or PyTorch's ``max(dim, keepdim=False)`` giving
        ``(values, indices)`` (the gradient goes to the first maximum); with NumPy's
        ``axis``/``keepdims`` keywords a tensor of maxima over ``axis``, the gradient split
        evenly between ties.
        """
        if dim is None or axis is not None or keepdims is not None:
            ax = axis if axis is not None else dim
            keep = bool(keepdims) if keepdims is not None else bool(keepdim)
            return reduce.Max.apply(self, axis=ax, keepdims=keep)
        return self._reduce_arg("max", dim, keepdim)

    def var(self, axis: Any = None, keepdims: bool = False, unbiased: bool = False) -> Tensor:
        """Variance over ``axis`` (all elements when None), built from recorded ops.

        Parameters
        ----------
        axis : int, tuple of int or None, default None
            The dimensions to reduce.
        keepdims : bool, default False
            Keep reduced dimensions with size 1.
        unbiased : bool, default False
            Divide by ``n - 1`` instead of ``n``.
        """
        mu = self.mean(axis=axis, keepdims=True)
        sq = ((self - mu) ** 2).sum(axis=axis, keepdims=keepdims)
        n = self.size // max(sq.size, 1)
        return sq / (n - 1 if unbiased else n)

    def argmax(self, dim: Any = None, keepdim: bool = False, *, axis: Any = None) -> Tensor:
        """Index (int64, not recorded) of the first maximum along ``dim`` (``axis``), or of
        the flattened tensor when None; ``keepdim`` keeps the reduced dimension."""
        return self._arg("argmax", dim if axis is None else axis, keepdim)

    # --- shape --------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        """The same elements in a new shape, recorded; ``view`` is the same method.

        Parameters
        ----------
        *shape : int, or one tuple/list of ints
            The new shape; one entry may be -1 (inferred).

        Raises
        ------
        ValueError
            If the element counts differ, naming both shapes.
        """
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return shape_op_reshape(self, shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dimensions ``start_dim`` to ``end_dim`` (inclusive) into one, recorded.

        Parameters
        ----------
        start_dim : int, default 0
        end_dim : int, default -1

        Raises
        ------
        ValueError
            If a dimension is out of range or ``start_dim`` comes after ``end_dim``.
        """
        nd = max(self.ndim, 1)
        for name, d in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not -nd <= d < nd:
                raise ValueError(f"flatten: {name}={d} is out of range for shape {self.shape}")
        s, e = start_dim % nd, end_dim % nd
        if s > e:
            raise ValueError(
                f"flatten: start_dim={start_dim} comes after end_dim={end_dim} "
                f"for shape {self.shape}"
            )
        new = self.shape[:s] + (int(np.prod(self.shape[s : e + 1])),) + self.shape[e + 1 :]
        return shape_op_reshape(self, new)

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the dimensions, recorded: ``x.permute(0, 2, 3, 1)`` turns NCHW into NHWC.

        Parameters
        ----------
        *dims : int, or one tuple/list of ints
            A permutation of ``range(ndim)`` (negative indices allowed).

        Raises
        ------
        ValueError
            If ``dims`` is not a permutation of the tensor's dimensions.
        """
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if sorted(d % self.ndim for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation for shape {self.shape}")
        return shape.Permute.apply(self, tuple(d % self.ndim for d in dims))

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        """Swap dimensions ``dim0`` and ``dim1`` (default: the last two), recorded."""
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return shape.Permute.apply(self, tuple(dims))

    def squeeze(self, axis: int | None = None) -> Tensor:
        """Remove dimensions of size 1 (all of them, or only ``axis`` when given and of size 1),
        recorded.
        """
        if axis is None:
            new = tuple(s for s in self.shape if s != 1)
        else:
            if self.shape[axis] != 1:
                return self
            new = self.shape[: axis % self.ndim] + self.shape[axis % self.ndim + 1 :]
        return shape_op_reshape(self, new)

    def unsqueeze(self, axis: int) -> Tensor:
        """Insert a dimension of size 1 at ``axis`` (negative counts from the end), recorded."""
        a = axis if axis >= 0 else self.ndim + 1 + axis
        return shape_op_reshape(self, self.shape[:a] + (1,) + self.shape[a:])

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return shape.GetItem.apply(self, index)


def shape_op_reshape(t: Tensor, new_shape: tuple) -> Tensor:
    """Reshape ``t`` to ``new_shape`` (recorded); errors name both shapes.

    Raises
    ------
    ValueError, TypeError
        If ``t`` cannot take ``new_shape``.
    """
    try:
        return shape.Reshape.apply(t, tuple(new_shape))
    except (ValueError, TypeError) as exc:
        raise type(exc)(
            f"reshape: cannot reshape a tensor of shape {t.shape} ({t.size} elements) "
            f"into {tuple(new_shape)}"
        ) from None


def _raw(o: Any) -> Any:
    return o.data if isinstance(o, Tensor) else o


def _wrap(o: Any, like: Tensor) -> Any:
    """Python numbers and arrays join ``like``'s dtype instead of promoting it."""
    if isinstance(o, Tensor):
        return o
    if isinstance(o, (int, float, bool, np.number)):
        return np.asarray(o, dtype=like.dtype if like.dtype.kind == "f" else None)
    return np.asarray(o)


def _torch_axis(axis: Any, keepdims: bool, dim: Any, keepdim: Any) -> tuple[Any, bool]:
    """PyTorch's ``dim``/``keepdim`` keywords beside NumPy's ``axis``/``keepdims``."""
    if dim is not None:
        if axis is not None:
            raise TypeError("reduction: give axis or dim, not both")
        axis = dim
    return axis, bool(keepdims if keepdim is None else keepdim)
