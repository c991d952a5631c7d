"""The tape: every op run under grad appends a record; ``backward`` replays it in reverse.

A record (:class:`Node`) holds the op's :class:`Function`, its context (saved arrays)
and its inputs. Records are numbered in the order they were made -- their position on
the tape -- and ``backward`` runs the records that lead to the output in descending
order of that number. The tape keeps no global list: a record lives as long as the
tensors that came out of it, so a graph that is no longer referenced is freed.

Imports: this module sits below ``tapegrad.ops`` (each op subclasses :class:`Function`)
and ``tapegrad.tensor`` (whose methods call the ops), and imports neither at import time.
The one link upward is the tape's output: :meth:`Function.apply` wraps each op's result in
a Tensor, whose class it looks up once (:func:`_tensor_class`); the gradient functions
below import what they need (Tensor, the ``Cast`` op) inside the function.
"""

from __future__ import annotations

import functools
import itertools
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

import tapegrad.kernels as K
from tapegrad.kernels.fused import AddCall, same_shape_floats

if TYPE_CHECKING:
    from .tensor import Tensor


class _State(threading.local):
    # class-level defaults: every op reads these, and a thread that never set one finds
    # it here instead of paying for a missing attribute
    grad: bool | None = True
    anomaly = False
    tracer: Callable[..., None] | None = None


_state = _State()
_counter = itertools.count()


def is_grad_enabled() -> bool:
    """Whether ops are recorded in this thread now (False inside ``no_grad()`` and
    ``inference_mode()``)."""
    return bool(getattr(_state, "grad", True))


def is_inference_mode_enabled() -> bool:
    """Whether this thread is inside ``inference_mode()`` now."""
    return getattr(_state, "grad", True) is None


def _set_grad(flag: bool) -> Any:
    old = getattr(_state, "grad", True)
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


class set_grad_enabled(_GradMode):
    """Switch recording on or off, as PyTorch's ``set_grad_enabled``.

    Called as a function (``set_grad_enabled(False)``) it sets the mode for this thread at
    once; used as ``with set_grad_enabled(mode):`` the previous mode comes back on exit;
    ``@set_grad_enabled(mode)`` runs the decorated function in that mode.

    Parameters
    ----------
    mode : bool
        True records ops (the default state), False records nothing.

    Raises
    ------
    TypeError
        If ``mode`` is not a bool.
    """

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"set_grad_enabled: mode must be a bool, got {type(mode).__name__}")
        super().__init__(bool(mode))
        self._prev.append(_set_grad(self.enabled))  # takes effect now, as a function call

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        if self._prev:
            _set_grad(self._prev.pop())

    def __call__(self, fn: Callable) -> Callable:
        # as a decorator: undo the switch made at construction, switch inside calls only
        if self._prev:
            _set_grad(self._prev.pop())
        return super().__call__(fn)


class _InferenceMode(_GradMode):
    """Context manager and decorator of :func:`inference_mode`."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._prev: list = []

    def __enter__(self) -> None:
        old = getattr(_state, "grad", True)
        self._prev.append(old)
        if self.enabled:
            _state.grad = None  # None: off, and op outputs are marked as inference tensors
        elif old is None:
            _state.grad = True

    def __exit__(self, *exc: object) -> None:
        _state.grad = self._prev.pop()

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _InferenceMode(self.enabled):
                return fn(*args, **kwargs)

        return wrapper


def inference_mode(mode: bool = True) -> _InferenceMode:
    """No tape inside, as ``no_grad``, and op outputs made inside are *inference tensors*:
    ``with inference_mode():`` or ``@inference_mode()``.

    Semantics (simpler than PyTorch's): an inference tensor (``t.is_inference()`` is True)
    never requires grad; ``t.requires_grad_()`` on it raises a RuntimeError. Used in a
    recorded op later, it is a constant (as a detached tensor): no gradient flows into it.
    ``inference_mode(False)`` inside it switches recording back on.

    Parameters
    ----------
    mode : bool, default True
        False makes the block an ordinary (recording) one.
    """
    return _InferenceMode(bool(mode))


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

    __slots__ = ("saved", "needs_input_grad", "pending", "__dict__")

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.saved: tuple | None = ()
        self.needs_input_grad = needs_input_grad
        self.pending: tuple | None = None  # set by the tape around backward: pending_grad

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
        self.where = _caller() if _state.anomaly else ""
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

    An op that takes arguments a caller can get wrong declares ``check``, a staticmethod
    that :meth:`apply` runs on the arrays and options before ``forward``, whoever calls it
    (``tapegrad.nn.functional``, a Tensor method or ``SomeFunction.apply`` directly): the
    one place the op's arguments are validated (as Chainer's ``check_type_forward``). It
    takes the arguments ``apply`` was given (arrays where Tensors were passed), raises
    ``ValueError``/``TypeError`` naming the function, the argument and the shapes, and
    returns the tuple of positional arguments ``forward`` runs with (arguments
    normalised: ``stride=2`` -> ``(2, 2)``, derived sizes added). The Tensor arguments keep
    their positions, so the gradients ``backward`` returns line up with them.
    """

    #: ``check(*arrays_and_options, **options) -> tuple``: see the class docstring; None
    #: for an op whose forward accepts whatever NumPy accepts.
    check: ClassVar[Callable[..., tuple] | None] = None

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
        Tensor = _TENSOR[0] or _tensor_class()
        state = _state
        mode = state.grad  # True, False, or None in inference_mode
        # one pass over the arguments: the Tensors (None elsewhere), the arrays forward
        # takes, and which Tensors require grad (the inputs of the tape record)
        tensors: list[Any] = []
        raw: list[Any] = []
        inputs: list[Any] = []
        grad_in = False
        for a in args:
            if isinstance(a, Tensor):
                tensors.append(a)
                raw.append(a.data)
                if a.requires_grad:
                    inputs.append(a)
                    grad_in = True
                else:
                    inputs.append(None)
            else:
                tensors.append(None)
                raw.append(a)
                inputs.append(None)
        record = bool(mode) and grad_in
        needs = tuple([t is not None for t in inputs]) if record else ()
        check = cls.check
        if check is not None:
            raw = check(*raw, **kwargs)
            kwargs = _NO_KWARGS
        ctx = Context(needs)
        hook = _profile_hook[0]
        out = (
            cls.forward(ctx, *raw, **kwargs)
            if hook is None
            else hook.forward(cls, ctx, raw, kwargs)
        )
        if state.anomaly:
            _check_finite(out, "forward", None, cls.__name__)
        result = Tensor._from_op(out)
        if record:
            result.requires_grad = True
            node = result._node = Node(cls, ctx, inputs)
            if ctx.saved:
                node.versions = _saved_versions(ctx)
            for t in inputs:
                if t is not None and t._node is not None:
                    # an in-place op on t later rebinds it: this record must keep its value
                    cons = t.__dict__.get("_consumers")
                    if cons is None:
                        t._consumers = [weakref.ref(node)]
                    else:
                        cons.append(weakref.ref(node))
        elif mode is None:
            result._inference = True
        tracer = state.tracer
        if tracer is not None:
            if check is not None:  # the arguments forward ran with, Tensors in their places
                args = tuple(t if t is not None else a for t, a in zip(tensors, raw))
                args += tuple(raw[len(tensors) :])
            tracer(cls, args, kwargs, result)
        return result


_NO_KWARGS: dict[str, Any] = {}
_TENSOR: list[Any] = [None]


def _tensor_class() -> type[Tensor]:
    """tapegrad.tensor.Tensor, imported on the first op (tensor.py imports the ops, which
    import this module, so it cannot be imported at the top)."""
    from .tensor import Tensor

    _TENSOR[0] = Tensor
    return Tensor


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


def backward(
    root: Tensor, grad: np.ndarray, retain_graph: bool = False, create_graph: bool = False
) -> None:
    """Replay the tape from ``root`` in reverse, accumulating into leaf ``.grad``.

    With ``create_graph`` the backward itself is recorded (see :func:`grad`), and the
    leaves' ``.grad`` are Tensors with a record, so they can be differentiated again.
    """
    if create_graph:
        _run([root], [grad], retain_graph, True, None)
        return
    if root._node is None:
        _accumulate_leaf(root, grad)
        return
    grads: dict[int, np.ndarray] = {id(root._node): grad}
    owned_keys: set[int] = set()  # nodes whose pending gradient only this walk holds
    for node in _reachable(root._node):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if _HOOKS[0] and node in _node_hooks:
            g = _run_node_hooks(node, g, False)
        if node.freed:
            node.ctx.saved_arrays  # noqa: B018  (raises the RuntimeError)
        if node.versions:
            _check_versions(node)
        ctx = node.ctx
        ctx.pending = _pending(node, grads, owned_keys)
        hook = _profile_hook[0]
        try:
            in_grads = node.fn.backward(ctx, g) if hook is None else hook.backward(node, g)
        finally:
            ctx.pending = None  # only for this call: never seen by a later walk
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        owned = [isinstance(ig, (Fresh, Summed)) for ig in in_grads]
        summed = [isinstance(ig, Summed) for ig in in_grads]
        in_grads = [ig.array if isinstance(ig, (Fresh, Summed)) else ig for ig in in_grads]
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
                if summed[i]:  # the backward added the pending gradient itself
                    grads[key] = ig
                    owned_keys.add(key)
                elif key in grads:
                    grads[key] = _sum_into(grads[key], key in owned_keys, ig, own)
                    owned_keys.add(key)
                else:
                    grads[key] = ig
                    if own:
                        owned_keys.add(key)
        if not retain_graph:
            node.free()


def _pending(node: Node, grads: dict, owned_keys: set) -> tuple | None:
    """For each input of ``node``: the gradient already waiting for it (from the tensor's
    other uses) when it has the input's shape and dtype, else None; None when no input
    has one. See :func:`pending_grad`."""
    out = None
    for i, t in enumerate(node.inputs):
        if t is None or t._node is None:
            continue
        key = id(t._node)
        g0 = grads.get(key)
        if isinstance(g0, np.ndarray) and g0.shape == t.data.shape and g0.dtype == t.data.dtype:
            if out is None:
                out = [None] * len(node.inputs)
            out[i] = (g0, key in owned_keys and g0.flags.writeable)
    return None if out is None else tuple(out)


def pending_grad(ctx: Context, i: int, writable: bool = False) -> np.ndarray | None:
    """Inside ``backward``: the gradient the tape already holds for input ``i`` (the sum
    of its other uses' gradients), or None.

    A backward that adds it into its own gradient for input ``i`` while it writes that
    gradient, and returns ``Summed(result)`` for the input, saves the tape a separate
    pass over both arrays (a residual block's skip, a tensor read by two convolutions).
    It may only read the pending array, unless it asked for ``writable=True``: then the
    array is one only the tape holds (a gradient a backward marked :class:`Fresh`, or an
    earlier sum), which the backward may add into in place and return. None when there
    is no such array, outside ``Tensor.backward`` (``tapegrad.grad``, graph building),
    and for leaves.
    """
    pend = ctx.pending
    if pend is None or i >= len(pend) or pend[i] is None:
        return None
    g0, owned = pend[i]
    return g0 if owned or not writable else None


class Summed:
    """A backward's gradient for one input that already includes the gradient the tape
    held for it (:func:`pending_grad`): the tape replaces its pending gradient with it
    instead of adding the two. The array is the tape's to keep (like :class:`Fresh`):
    either newly allocated or the writable pending array itself."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


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
    hooks = t.__dict__.get("_hooks")
    if hooks:
        g2 = _call_hooks(hooks, g, False)
        if g2 is not g:
            g, owned = g2, False
    if t._grad is None:
        if owned and g.dtype == t.data.dtype and g.flags.writeable:
            t._grad = g  # a fresh array only this tape held: no copy needed
        else:
            t._grad = np.array(g, dtype=t.data.dtype, copy=True)
    else:
        t._grad = _sum(t._grad, g)


def _sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` of two gradients of one tensor: operands of one shape and float dtype on
    the ``add`` kernels (the thread team past their serial threshold), others NumPy's."""
    if same_shape_floats(a, b):
        K.init()  # idempotent: the thread count and allocator policy, as ops apply them
        call = AddCall.of(a)
        return call.forward(K.resolve(call.op, call, None, training=False), a, b)
    return a + b


def _sum_into(a: np.ndarray, a_owned: bool, b: np.ndarray, b_owned: bool) -> np.ndarray:
    """``a + b`` of two gradients of one tensor, added in place into an operand the tape
    owns (a gradient a backward marked :class:`Fresh`, or an earlier sum) when both have
    one shape and float dtype: no fresh array whose first touch page-faults. The same
    bits as :func:`_sum` (each element one IEEE addition, which commutes)."""
    if (a_owned or b_owned) and same_shape_floats(a, b):
        out = a if a_owned else b
        if out.flags.writeable:
            return np.add(a, b, out=out)
    return _sum(a, b)


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


# --- hooks on tensors --------------------------------------------------------------------
# Hooks of non-leaf tensors live on their records (looked up only once any was registered,
# so a backward without hooks pays one list read per record); a leaf's live on the tensor.
_node_hooks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HOOKS = [False]
_hook_ids = itertools.count()


class RemovableHandle:
    """What ``register_hook`` (and a module's ``register_*_hook``) return: ``remove()``
    unregisters the hook; removing twice is harmless. Also a context manager that removes
    the hook on exit."""

    def __init__(self, store: dict, key: int) -> None:
        self._store = weakref.ref(store) if _weakrefable(store) else (lambda: store)
        self.id = key

    def remove(self) -> None:
        """Unregister the hook (nothing happens if it is already gone)."""
        store = self._store()
        if store is not None:
            store.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class _HookDict(dict):
    """An ordered dict of hooks that a weak reference can point at."""

    __slots__ = ("retain", "__weakref__")


def _weakrefable(obj: object) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _tensor_hooks(t: Tensor) -> _HookDict:
    """The hook store of ``t``: on the tensor for a leaf, on its record otherwise."""
    if t._node is None:
        hooks = t.__dict__.get("_hooks")
        if hooks is None:
            hooks = t.__dict__["_hooks"] = _HookDict()
            hooks.retain = None
        return hooks
    hooks = _node_hooks.get(t._node)
    if hooks is None:
        hooks = _node_hooks[t._node] = _HookDict()
        hooks.retain = None
        _HOOKS[0] = True
    return hooks


def register_hook(t: Tensor, fn: Callable) -> RemovableHandle:
    """Register ``fn(grad) -> Tensor | None`` on ``t`` (see ``Tensor.register_hook``)."""
    if not callable(fn):
        raise TypeError(f"register_hook: hook must be callable, got {type(fn).__name__}")
    if not t.requires_grad:
        raise RuntimeError(
            "register_hook: cannot register a hook on a tensor that does not require grad"
        )
    hooks = _tensor_hooks(t)
    key = next(_hook_ids)
    hooks[key] = fn
    return RemovableHandle(hooks, key)


def retain_grad(t: Tensor) -> None:
    """Keep the gradient of non-leaf ``t`` in its ``.grad`` (see ``Tensor.retain_grad``)."""
    if not t.requires_grad:
        raise RuntimeError(
            "retain_grad: cannot retain the grad of a tensor that does not require grad"
        )
    if t._node is None:
        return  # a leaf keeps its gradient anyway
    hooks = _tensor_hooks(t)
    hooks.retain = weakref.ref(t)
    t._retains_grad = True


def _as_hook_value(v: Any, like: Any, graph: bool) -> Any:
    from .tensor import Tensor

    if graph:
        return v if isinstance(v, Tensor) else Tensor._from_op(np.asarray(v, dtype=like.dtype))
    arr = v.data if isinstance(v, Tensor) else np.asarray(v, dtype=like.dtype)
    if arr.shape != like.shape:
        raise RuntimeError(
            f"hook: the gradient a hook returned has shape {arr.shape}, expected {like.shape}"
        )
    return arr


def _call_hooks(hooks: _HookDict, g: Any, graph: bool) -> Any:
    """Run the hooks in registration order; each may return a replacement gradient."""
    from .tensor import Tensor

    for fn in list(hooks.values()):
        arg = g if graph else Tensor._from_op(g)
        r = fn(arg)
        if r is not None:
            g = _as_hook_value(r, g, graph)
    return g


def _run_node_hooks(node: Node, g: Any, graph: bool) -> Any:
    """Hooks of the tensor ``node`` made, then its retained gradient (after the hooks)."""
    hooks = _node_hooks.get(node)
    if hooks is None:
        return g
    if hooks:
        g = _call_hooks(hooks, g, graph)
    ref = hooks.retain
    t = ref() if ref is not None else None
    if t is not None:
        data = g.data if graph else g
        t._grad = np.array(data, copy=True) if t._grad is None else t._grad + data
        if graph:
            with enable_grad():
                t._grad_t = _own(g) if t.__dict__.get("_grad_t") is None else t._grad_t + g
            t._grad = t._grad_t.data
    return g


# --- the general engine: several roots, captured inputs, recorded backward -------------------


class DoubleBackwardError(RuntimeError):
    """Raised when ``create_graph=True`` meets an op whose backward is not recorded (it has
    no ``backward_graph``); the message names the op."""

    pass


def _no_double_backward(node: Node) -> DoubleBackwardError:
    return DoubleBackwardError(
        f"{node.fn.__name__}: this op has no double backward: its backward cannot be "
        f"recorded, so create_graph=True (higher-order gradients, gradient penalties, "
        f"Hessian-vector products) cannot go through it (tape record #{node.seq}); "
        f"see CONTRIBUTING.md, 'Double backward'"
    )


def _graph_rule(fn: type[Function]) -> Callable | None:
    """``fn.backward_graph``, unless ``fn`` (or a class between) overrides ``backward``
    below the class that defined the rule: an inherited rule would not match its backward."""
    for cls in fn.__mro__:
        d = cls.__dict__
        if "backward_graph" in d:
            return fn.backward_graph  # type: ignore[attr-defined]
        if "backward" in d:
            return None
    return None


def _unbroadcast_t(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """:func:`_unbroadcast` with recorded ops."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (gs, s) in enumerate(zip(g.shape, shape)) if s == 1 and gs != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if g.shape != shape else g


def _reachable_many(roots: list[Node]) -> list[Node]:
    seen: dict[int, Node] = {}
    stack = list(roots)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        for t in node.inputs:
            if t is not None and t._node is not None:
                stack.append(t._node)
    return sorted(seen.values(), key=lambda n: n.seq, reverse=True)


def _run(
    roots: list[Tensor],
    seeds: list[Any],
    retain_graph: bool,
    create_graph: bool,
    inputs: list[Tensor] | None,
) -> list[Any] | None:
    """Backward from several roots. ``inputs`` None: accumulate into the leaves' ``.grad``.
    Otherwise return the gradient reaching each of ``inputs`` (None where none does) and
    leave every ``.grad`` alone; only the records between the roots and the inputs run.
    With ``create_graph`` gradients are Tensors and each record's ``backward_graph`` runs
    with recording on."""
    from .tensor import Tensor

    graph = create_graph
    if graph:
        seeds = [s if isinstance(s, Tensor) else Tensor._from_op(s) for s in seeds]
    leaf_at: dict[int, list[int]] = {}
    node_at: dict[int, list[int]] = {}
    if inputs is not None:
        for i, t in enumerate(inputs):
            (leaf_at if t._node is None else node_at).setdefault(
                id(t) if t._node is None else id(t._node), []
            ).append(i)
    captured: list[Any] = [None] * (len(inputs) if inputs is not None else 0)

    def take(where: list[int], g: Any) -> None:
        for i in where:
            captured[i] = g if captured[i] is None else captured[i] + g

    def to_leaf(t: Tensor, g: Any) -> None:
        if inputs is None:
            if graph:
                _accumulate_leaf_graph(t, g)
            else:
                _accumulate_leaf(t, g)
        elif id(t) in leaf_at:
            hooks = t.__dict__.get("_hooks")
            take(leaf_at[id(t)], _call_hooks(hooks, g, graph) if hooks else g)

    grads: dict[int, Any] = {}
    root_nodes = []
    for r, s in zip(roots, seeds):
        if r._node is None:
            to_leaf(r, s)
        else:
            key = id(r._node)
            grads[key] = grads[key] + s if key in grads else s
            root_nodes.append(r._node)
    nodes = _reachable_many(root_nodes)
    needed: set[int] | None = None
    if inputs is not None:
        needed = set()
        for node in reversed(nodes):  # inputs before the records that use them
            if node.freed:
                needed.add(id(node))  # reaching it raises the "second time" error
                continue
            for t in node.inputs:
                if t is None:
                    continue
                if t._node is None:
                    hit = id(t) in leaf_at
                else:
                    hit = id(t._node) in node_at or id(t._node) in needed
                if hit:
                    needed.add(id(node))
                    break
    enabled = enable_grad() if graph else no_grad()
    for node in nodes:
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if _HOOKS[0] and node in _node_hooks:
            g = _run_node_hooks(node, g, graph)
        if id(node) in node_at:
            take(node_at[id(node)], g)
        if needed is not None and id(node) not in needed:
            continue
        if node.freed:
            node.ctx.saved_arrays  # noqa: B018  (raises the RuntimeError)
        if node.versions:
            _check_versions(node)
        if graph:
            bg = _graph_rule(node.fn)
            if bg is None:
                raise _no_double_backward(node)
            with enabled:
                in_grads = bg(node.ctx, g, node.inputs)
        else:
            with enabled:
                in_grads = node.fn.backward(node.ctx, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for i, t in enumerate(node.inputs[: len(in_grads)]):
            ig = in_grads[i]
            if t is None or ig is None:
                continue
            if isinstance(ig, Fresh):
                ig = ig.array
            if graph:
                if not isinstance(ig, Tensor):
                    ig = Tensor._from_op(np.asarray(ig))
                with enabled:
                    if ig.dtype != t.data.dtype:
                        from .ops.tensor_ops import Cast

                        ig = Cast.apply(ig, dtype=t.data.dtype)
                    ig = _unbroadcast_t(ig, t.data.shape)
            else:
                if _anomaly_on():
                    _check_finite(ig, "backward", node, node.fn.__name__)
                ig = _unbroadcast(np.asarray(ig, dtype=t.data.dtype), t.data.shape)
            if t._node is None:
                to_leaf(t, ig)
            else:
                key = id(t._node)
                if key in grads:
                    if graph:
                        with enabled:
                            grads[key] = grads[key] + ig
                    else:
                        grads[key] = grads[key] + ig
                else:
                    grads[key] = ig
        if not retain_graph:
            node.free()
    return captured if inputs is not None else None


def _accumulate_leaf_graph(t: Tensor, g: Tensor, run_hooks: bool = True) -> None:
    """Leaf accumulation under ``create_graph``: ``.grad`` becomes a Tensor with a record."""
    hooks = t.__dict__.get("_hooks") if run_hooks else None
    if hooks:
        g = _call_hooks(hooks, g, True)
    old = t.__dict__.get("_grad_t")
    if t._grad is not None:
        if old is None or old.data is not t._grad:
            from .tensor import Tensor

            old = Tensor._from_op(t._grad)
        with enable_grad():
            g = old + g
    elif g.dtype != t.data.dtype:
        from .ops.tensor_ops import Cast

        with enable_grad():
            g = Cast.apply(g, dtype=t.data.dtype)
    else:
        g = _own(g)
    t._grad_t = g
    t._grad = g.data


def _own(g: Tensor) -> Tensor:
    """A recorded copy of ``g``: a gradient kept in ``.grad`` must not share its array with
    another tensor's (the same array reaches both inputs of an add, and optimisers and
    clipping change ``.grad`` in place)."""
    with enable_grad():
        return g.clone()


def _seq_of(x: Any, what: str) -> list:
    from .tensor import Tensor

    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    raise TypeError(
        f"grad: {what} must be a Tensor or a sequence of Tensors, got {type(x).__name__}"
    )


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool | None = None,
    materialize_grads: bool = False,
) -> tuple[Tensor | None, ...]:
    """The gradients of ``outputs`` with respect to ``inputs``, as PyTorch's
    ``torch.autograd.grad``; no ``.grad`` of any tensor changes.

    Parameters
    ----------
    outputs : Tensor or sequence of Tensor
        What is differentiated; each must require grad.
    inputs : Tensor or sequence of Tensor
        With respect to what (leaves or intermediate tensors); each must require grad.
    grad_outputs : Tensor, array or sequence of them (None entries allowed), optional
        The vector of the vector-Jacobian product, one per output, of its shape; None
        stands for ones and is allowed only for one-element outputs.
    retain_graph : bool, optional
        Keep the tape's saved arrays for another backward; defaults to ``create_graph``.
    create_graph : bool, default False
        Record the backward itself, so the returned gradients can be differentiated again
        (gradient penalties, Hessian-vector products). Each op on the way needs a double
        backward; one without raises :class:`DoubleBackwardError` naming it.
    allow_unused : bool, default False
        An input the outputs do not depend on gets None instead of an error.
    materialize_grads : bool, default False
        Zeros instead of None for unused inputs (implies ``allow_unused``).

    Returns
    -------
    tuple of Tensor or None
        One gradient per input, of its shape and dtype.

    Raises
    ------
    RuntimeError
        If an output or input does not require grad, an input was not used (without
        ``allow_unused``), or a non-scalar output has no ``grad_outputs`` entry.
    ValueError
        If a ``grad_outputs`` entry's shape differs from its output's.
    """
    from .tensor import Tensor

    outs = _seq_of(outputs, "outputs")
    ins = _seq_of(inputs, "inputs")
    if allow_unused is None:
        allow_unused = materialize_grads
    if not ins:
        raise RuntimeError("grad: inputs must hold at least one Tensor")
    for i, t in enumerate(outs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(
                f"grad: element {i} of outputs does not require grad and has no record"
            )
    for i, t in enumerate(ins):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: element {i} of inputs is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(f"grad: element {i} of inputs does not require grad")
    if grad_outputs is None:
        gos: list = [None] * len(outs)
    else:
        gos = (
            _seq_of(grad_outputs, "grad_outputs")
            if not isinstance(grad_outputs, np.ndarray)
            else [grad_outputs]
        )
        if len(gos) != len(outs):
            raise ValueError(f"grad: grad_outputs has {len(gos)} entries for {len(outs)} outputs")
    seeds = []
    for i, (o, go) in enumerate(zip(outs, gos)):
        if go is None:
            if o.data.size != 1:
                raise RuntimeError(
                    f"grad: grad can be implicitly created only for one-element outputs; "
                    f"output {i} has shape {o.shape}: give its grad_outputs entry"
                )
            seeds.append(np.ones_like(o.data))
            continue
        if isinstance(go, Tensor):
            if go.shape != o.shape:
                raise ValueError(f"grad: grad_outputs[{i}] has shape {go.shape}, output {o.shape}")
            seeds.append(go if create_graph else go.data.astype(o.data.dtype, copy=False))
        else:
            arr = np.asarray(go, dtype=o.data.dtype)
            if arr.shape != o.shape:
                raise ValueError(f"grad: grad_outputs[{i}] has shape {arr.shape}, output {o.shape}")
            seeds.append(arr)
    retain = create_graph if retain_graph is None else retain_graph
    got = _run(outs, seeds, bool(retain), bool(create_graph), ins)
    result: list[Tensor | None] = []
    for i, (t, g) in enumerate(zip(ins, got)):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: element {i} of inputs (shape {t.shape}) was not used in the graph "
                    f"of the outputs; pass allow_unused=True if this is expected"
                )
            result.append(Tensor._from_op(np.zeros_like(t.data)) if materialize_grads else None)
        elif isinstance(g, Tensor):
            result.append(g)
        else:
            result.append(Tensor._from_op(np.array(g, dtype=t.data.dtype, copy=True)))
    return tuple(result)


def gradgradcheck(*args: Any, **kwargs: Any) -> bool:
    """Second-order gradient check; see :func:`tapegrad.gradcheck.gradgradcheck`."""
    from .gradcheck import gradgradcheck as ggc

    return ggc(*args, **kwargs)


# --- helpers for double backward rules -------------------------------------------------------


def graph_input(inputs: list, i: int, saved: Any) -> Any:
    """For a ``backward_graph``: input ``i`` as the Tensor on the tape when it requires grad
    (so the recorded backward depends on it), else the saved array (a constant)."""
    t = inputs[i] if i < len(inputs) else None
    return saved if t is None else t


class _LinearMap(Function):
    """``fwd(fctx, v)`` as an op, for a backward that is linear in the gradient with
    constants from the op's context ``fctx``; its own backward is ``tr`` (the transposed
    map), so the pair is differentiable to any order."""

    @staticmethod
    def forward(ctx: Context, v: Any, fwd: Any = None, tr: Any = None, fctx: Any = None) -> Any:
        fctx.saved_arrays  # noqa: B018  (raises if the op's record was freed)
        ctx.fwd, ctx.tr, ctx.fctx = fwd, tr, fctx
        return _first(fwd(fctx, v))

    @staticmethod
    def backward(ctx: Context, gg: Any) -> Any:
        ctx.fctx.saved_arrays  # noqa: B018  (raises if the op's record was freed)
        return _first(ctx.tr(ctx.fctx, gg))

    @staticmethod
    def backward_graph(ctx: Context, gg: Any, inputs: list) -> Any:
        return _LinearMap.apply(gg, fwd=ctx.tr, tr=ctx.fwd, fctx=ctx.fctx)


def _first(r: Any) -> Any:
    if isinstance(r, tuple):
        r = r[0]
    return r.array if isinstance(r, Fresh) else r


def linear_backward_graph(backward: Callable, transpose: Callable | None = None) -> staticmethod:
    """The ``backward_graph`` of an op with one differentiable input whose backward is
    linear in the gradient and reads only constants from ``ctx`` (masks, indices, shapes):
    shape ops, pooling, ReLU, dropout. ``transpose(ctx, v)`` applies the transposed map
    (for such ops: the op's forward map on ``v``); None when the backward is its own
    transpose (a mask or a permutation that is its own inverse).

    Use in the class body, after ``backward``:
    ``backward_graph = linear_backward_graph(backward, _transpose)``.
    """
    fwd = backward.__func__ if isinstance(backward, staticmethod) else backward
    tr = fwd if transpose is None else transpose
    tr = tr.__func__ if isinstance(tr, staticmethod) else tr

    def backward_graph(ctx: Context, g: Any, inputs: list) -> Any:
        return _LinearMap.apply(g, fwd=fwd, tr=tr, fctx=ctx)

    return staticmethod(backward_graph)


def composite_backward_graph(graph: Callable) -> staticmethod:
    """The ``backward_graph`` of an op that can also be written with recorded tapegrad ops
    (an activation whose kernel fuses ``exp``, ``tanh``, ``where`` ...): ``graph(ctx,
    inputs)`` recomputes the op's output from ``inputs`` (Tensors where they require grad,
    else None: take those from ``ctx``, see :func:`graph_input`), and the recorded backward
    is the vector-Jacobian product through that composition, so it differentiates to any
    order. The first-order backward stays the op's own (one fused kernel pass).

    Use in the class body: ``backward_graph = composite_backward_graph(_graph)``.
    """

    def backward_graph(ctx: Context, g: Any, inputs: list) -> Any:
        wrt = [t for t in inputs if t is not None]
        with enable_grad():
            out = graph(ctx, inputs)
        got = iter(grad(out, wrt, grad_outputs=g, create_graph=True, allow_unused=True))
        return tuple(None if t is None else next(got) for t in inputs)

    return staticmethod(backward_graph)
