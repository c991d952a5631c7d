"""The tape: every op run under grad appends a record; ``backward`` replays it in reverse.

A record (:class:`Node`) holds the op's :class:`Function`, its context (saved arrays)
and its inputs. Records are numbered in the order they were made -- their position on
the tape -- and ``backward`` runs the records that lead to the output in descending
order of that number. The tape keeps no global list: a record lives as long as the
tensors that came out of it, so a graph that is no longer referenced is freed.
"""

from __future__ import annotations

import functools
import itertools
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .tensor import Tensor

_state = threading.local()
_counter = itertools.count()


def is_grad_enabled() -> bool:
    """Whether ops are recorded in this thread now (False inside ``no_grad()``)."""
    return getattr(_state, "grad", True)


def _set_grad(flag: bool) -> bool:
    old = is_grad_enabled()
    _state.grad = flag
    return old


class _GradMode:
    """Context manager and decorator that switches recording off (or on)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._prev: list[bool] = []

    def __enter__(self) -> None:
        self._prev.append(_set_grad(self.enabled))

    def __exit__(self, *exc: object) -> None:
        _set_grad(self._prev.pop())

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _GradMode(self.enabled):
                return fn(*args, **kwargs)

        return wrapper


def no_grad() -> _GradMode:
    """Nothing is recorded inside: ``with no_grad():`` or ``@no_grad()``."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Recording on inside, even within ``no_grad()``: ``with enable_grad():`` or
    ``@enable_grad()``.
    """
    return _GradMode(True)


@contextmanager
def trace_ops(callback: Callable[..., None]) -> Iterator[None]:
    """Call ``callback(fn, args, kwargs, result)`` after every op's forward in this thread.

    ``fn`` is the :class:`Function` class, ``args`` and ``kwargs`` what ``apply`` was given
    (Tensors, arrays and options), ``result`` the output Tensor (with its tape record when
    one was made). ONNX export reads the ops of one forward this way.
    """
    old = getattr(_state, "tracer", None)
    _state.tracer = callback
    try:
        yield
    finally:
        _state.tracer = old


# --- anomaly detection -------------------------------------------------------------


def _anomaly_on() -> bool:
    return getattr(_state, "anomaly", False)


@contextmanager
def detect_anomaly() -> Iterator[None]:
    """Raise at the first op whose forward or backward makes a NaN or Inf."""
    old = _anomaly_on()
    _state.anomaly = True
    try:
        yield
    finally:
        _state.anomaly = old


class AnomalyError(RuntimeError):
    """Raised inside :func:`detect_anomaly` by the first op whose forward or backward makes a
    NaN or Inf.
    """

    pass


def _check_finite(arr: Any, what: str, node: Node | None, fn_name: str) -> None:
    if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "Inf"
        if node is not None:
            where = f" (tape record #{node.seq}, recorded at {node.where})"
        else:
            # the op's record was not made yet: report the position it would have taken
            where = f" (tape position #{next(_counter)}, called at {_caller()})"
        raise AnomalyError(f"{fn_name}: {what} produced {bad}{where}")


# --- Function and its context ---------------------------------------------------------


class Context:
    """What a Function's forward leaves for its backward."""

    __slots__ = ("saved", "needs_input_grad", "__dict__")

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.saved: tuple | None = ()
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays for the backward (read them back with :attr:`saved_arrays`)."""
        self.saved = arrays

    @property
    def saved_arrays(self) -> tuple:
        """The arrays given to :meth:`save_for_backward`, in order.

        Raises
        ------
        RuntimeError
            If a previous ``backward()`` freed them (backward through the graph a second time
            without ``retain_graph=True``).
        """
        if self.saved is None:
            raise RuntimeError(
                "backward through the graph a second time: its saved buffers were freed "
                "by the first backward(); pass retain_graph=True to the first call"
            )
        return self.saved


class Node:
    """One record on the tape."""

    __slots__ = ("fn", "ctx", "inputs", "seq", "where", "freed", "versions", "__weakref__")

    def __init__(self, fn: type[Function], ctx: Context, inputs: list[Tensor | None]) -> None:
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.seq = next(_counter)
        self.where = _caller() if _anomaly_on() else ""
        self.freed = False
        self.versions: tuple = ()

    def free(self) -> None:
        # drop the saved arrays and the input tensors: a spent record must not keep the
        # activations alive while the loss it led to is still referenced
        """Drop the saved arrays and input references of a spent record."""
        self.ctx.saved = None
        self.ctx.__dict__.clear()
        self.inputs = [None] * len(self.inputs)
        self.freed = True


def _caller() -> str:
    """File and line of the innermost frame outside tapegrad (the user's call)."""
    import os

    from . import kernels

    own = tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in (__file__, kernels.__file__))
    for frame in reversed(traceback.extract_stack()):
        if not os.path.abspath(frame.filename).startswith(own):
            return f"{frame.filename}:{frame.lineno}"
    return "?"


# tapegrad.profiler's recorder while a profile() block runs (else None): it times each
# op's forward and backward
_profile_hook: list[Any] = [None]


class Function:
    """An op: ``forward(ctx, *arrays, **kw) -> array`` and ``backward(ctx, grad) -> grads``.

    ``forward`` receives NumPy arrays where the caller passed Tensors; ``backward`` returns
    one gradient (or None) per positional argument of ``forward``. ``ctx.needs_input_grad``
    says which are wanted, so a backward can skip work.
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        """Compute the op on NumPy arrays (where the caller passed Tensors) and return an array.

        Subclasses implement it as a ``@staticmethod``; ``ctx`` is the :class:`Context` shared
        with :meth:`backward`.
        """
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> Any:
        """Given the gradient of the output (an array of its shape), return one gradient (or None)
        per positional argument of :meth:`forward`, each of that argument's shape.

        Subclasses implement it as a ``@staticmethod``; ``ctx.needs_input_grad`` says which
        gradients are wanted.
        """
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run the op: forward on the arrays, and a record on the tape when grad is enabled and
        some Tensor argument requires grad.

        Returns
        -------
        Tensor
            The output; it requires grad exactly when a record was made.
        """
        from .tensor import Tensor

        tensors = [a if isinstance(a, Tensor) else None for a in args]
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        record = is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
        needs = tuple(t is not None and t.requires_grad for t in tensors) if record else ()
        ctx = Context(needs)
        hook = _profile_hook[0]
        out = (
            cls.forward(ctx, *raw, **kwargs)
            if hook is None
            else hook.forward(cls, ctx, raw, kwargs)
        )
        if _anomaly_on():
            _check_finite(out, "forward", None, cls.__name__)
        result = Tensor._from_op(out)
        if record:
            result.requires_grad = True
            result._node = Node(
                cls, ctx, [t if t is not None and t.requires_grad else None for t in tensors]
            )
            result._node.versions = _saved_versions(ctx)
        tracer = getattr(_state, "tracer", None)
        if tracer is not None:
            tracer(cls, args, kwargs, result)
        return result


# --- backward --------------------------------------------------------------------------


def _reachable(root: Node) -> list[Node]:
    seen: dict[int, Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        for t in node.inputs:
            if t is not None and t._node is not None:
                stack.append(t._node)
    return sorted(seen.values(), key=lambda n: n.seq, reverse=True)


def backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Replay the tape from ``root`` in reverse, accumulating into leaf ``.grad``."""
    if root._node is None:
        _accumulate_leaf(root, grad)
        return
    grads: dict[int, np.ndarray] = {id(root._node): grad}
    for node in _reachable(root._node):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node.freed:
            node.ctx.saved_arrays  # noqa: B018  (raises the RuntimeError)
        if node.versions:
            _check_versions(node)
        hook = _profile_hook[0]
        in_grads = node.fn.backward(node.ctx, g) if hook is None else hook.backward(node, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        owned = [isinstance(ig, Fresh) for ig in in_grads]
        in_grads = [ig.array if isinstance(ig, Fresh) else ig for ig in in_grads]
        if _anomaly_on():
            for ig in in_grads:
                _check_finite(ig, "backward", node, node.fn.__name__)
        for i, t in enumerate(node.inputs[: len(in_grads)]):
            ig = in_grads[i]
            if t is None or ig is None:
                continue
            made = np.asarray(ig, dtype=t.data.dtype)
            made = _unbroadcast(made, t.data.shape)
            # a dtype conversion or a sum over broadcast axes made a new array: ours too
            own = owned[i] or (made is not ig and not np.may_share_memory(made, ig))
            ig = made
            if t._node is None:
                _accumulate_leaf(t, ig, owned=own)
            else:
                key = id(t._node)
                grads[key] = grads[key] + ig if key in grads else ig
        if not retain_graph:
            node.free()


class Fresh:
    """A gradient a backward has just allocated and holds nowhere else, so the tape may
    hand it to a leaf's ``.grad`` without a copy: ``return Fresh(gw)`` (or ``fresh(gw)``).

    Ownership is stated by the code that made the array, never guessed: an unmarked
    gradient (the incoming ``grad`` passed through, a saved array, one array returned for
    two inputs) is copied before a leaf keeps it.
    """

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def fresh(array: np.ndarray | None) -> Fresh | None:
    """Mark ``array`` as a fresh gradient (see :class:`Fresh`); None stays None."""
    return None if array is None else Fresh(array)


def _accumulate_leaf(t: Tensor, g: np.ndarray, owned: bool = False) -> None:
    """Add ``g`` to leaf ``t``'s gradient; a first gradient is kept as is only when the
    backward that made it said it owns it (:class:`Fresh`), else copied."""
    if t._grad is None:
        if owned and g.dtype == t.data.dtype and g.flags.writeable:
            t._grad = g  # a fresh array only this tape held: no copy needed
        else:
            t._grad = np.array(g, dtype=t.data.dtype, copy=True)
    else:
        t._grad = t._grad + g


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes NumPy broadcasting added or stretched to reach its shape."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


# --- version counters: in-place changes of arrays saved for backward ----------------------
# Counted per memory block (the root of a view chain); an op records the counts of the
# arrays it saved, and backward compares them before using the saved arrays.
_VERSIONS: dict[int, int] = {}


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def bump_version(arr: np.ndarray) -> None:
    """Record an in-place change of ``arr``'s memory (Tensor's in-place methods call it)."""
    key = id(_root(arr))
    _VERSIONS[key] = _VERSIONS.get(key, 0) + 1


def version(arr: np.ndarray) -> int:
    """How many in-place changes ``arr``'s memory has seen."""
    return _VERSIONS.get(id(_root(arr)), 0)


def _saved_versions(ctx: Context) -> tuple:
    out = []
    for i, a in enumerate(ctx.saved or ()):
        if isinstance(a, np.ndarray):
            key = id(_root(a))
            out.append((i, key, _VERSIONS.get(key, 0)))
    return tuple(out)


def _check_versions(node: Node) -> None:
    for i, key, v in node.versions:
        now = _VERSIONS.get(key, 0)
        if now != v:
            raise RuntimeError(
                f"backward: a tensor saved by {node.fn.__name__} (record {node.seq} on the "
                f"tape, saved input {i}) was modified in place after it was saved (version "
                f"{v}, now {now}); compute it out of place, or clone it before the change"
            )
