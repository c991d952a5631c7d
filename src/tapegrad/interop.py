"""Interoperation with NumPy and PyTorch: DLPack tensors and ``torch.nn`` models.

``tapegrad.from_dlpack(obj)`` wraps any DLPack producer on the CPU (a NumPy array, a
PyTorch tensor, ...) as a Tensor sharing its memory; ``Tensor.__dlpack__`` goes the other
way (``torch.from_dlpack(t)``, ``np.from_dlpack(t)``).

``tapegrad.from_torch(module)`` rebuilds a ``torch.nn`` model from supported layers as the
equivalent tapegrad model, weights and buffers copied, state-dict keys unchanged.
``Sequential`` containers map to ``nn.Sequential``; any other module is traced with
``torch.fx`` and its forward replayed with tapegrad ops, so module trees with their own
``forward`` (residual additions, ``x.mean((2, 3))``, ``torch.cat``, ``x.view(x.size(0),
-1)``) convert as well.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from . import nn
from .nn import functional as F
from .ops.shape import Concat
from .tensor import Tensor

__all__ = ["ConversionError", "from_dlpack", "from_torch"]


def from_dlpack(obj: Any) -> Tensor:
    """A Tensor sharing the memory of a DLPack producer on the CPU (no copy).

    Parameters
    ----------
    obj : object with ``__dlpack__`` and ``__dlpack_device__``
        E.g. a NumPy array or a (detached) PyTorch CPU tensor.

    Returns
    -------
    Tensor
        Not requiring grad; writes through either side are seen by the other. The dtype
        is kept as it is (tapegrad's ops compute in float32 and float64).

    Raises
    ------
    TypeError
        ``obj`` is no DLPack producer, lives on another device, or cannot be exported
        (a PyTorch tensor that requires grad: pass ``t.detach()``).
    """
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(
            f"from_dlpack: {type(obj).__name__} is not a DLPack producer "
            "(it has no __dlpack__/__dlpack_device__)"
        )
    device = obj.__dlpack_device__()
    if int(device[0]) != 1:
        raise TypeError(
            f"from_dlpack: tapegrad tensors live on the CPU (DLPack device type 1), got a "
            f"{type(obj).__name__} on device {tuple(device)}"
        )
    try:
        arr = np.from_dlpack(obj)
    except (RuntimeError, BufferError, TypeError) as e:
        raise TypeError(f"from_dlpack: cannot take {type(obj).__name__}: {e}") from None
    return Tensor._from_op(arr)


class ConversionError(TypeError):
    """A ``torch.nn`` layer or forward op that has no tapegrad equivalent here."""


# --- leaves ---------------------------------------------------------------------------------


def _copy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _load(dst: nn.Module, src: Any) -> nn.Module:
    """Copy src's parameters and buffers (by name) into dst."""
    for name, p in src.named_parameters(recurse=False):
        getattr(dst, name).data = _copy(p).astype(getattr(dst, name).dtype, copy=False)
    for name, b in src.named_buffers(recurse=False):
        own = getattr(dst, name, None)
        if isinstance(own, Tensor):
            own.data = _copy(b).astype(own.dtype, copy=False)
    return dst


class Softmax(nn.Module):
    """``torch.nn.Softmax(dim)``'s counterpart: softmax along ``dim``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x):
        """Softmax of x along ``dim``."""
        return F.softmax(x, dim=self.dim)


class LogSoftmax(Softmax):
    """``torch.nn.LogSoftmax(dim)``'s counterpart."""

    def forward(self, x):
        """Log-softmax of x along ``dim``."""
        return F.log_softmax(x, dim=self.dim)


def _zeros_padding(m: Any, path: str) -> None:
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise ConversionError(
            f"from_torch: {path} ({type(m).__name__}) uses padding_mode={m.padding_mode!r}; "
            "only 'zeros' is supported"
        )


def _leaf_converters(tn: Any) -> dict[type, Callable[[Any, str], nn.Module]]:
    def conv(m: Any, path: str) -> nn.Module:
        _zeros_padding(m, path)
        cls = nn.Conv2d if isinstance(m, tn.Conv2d) else nn.Conv1d
        pad = m.padding if isinstance(m.padding, str) else tuple(m.padding)
        out = cls(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), pad,
                  tuple(m.dilation), m.groups, m.bias is not None)  # fmt: skip
        return _load(out, m)

    def conv_t(m: Any, path: str) -> nn.Module:
        _zeros_padding(m, path)
        cls = nn.ConvTranspose2d if isinstance(m, tn.ConvTranspose2d) else nn.ConvTranspose1d
        out = cls(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                  tuple(m.padding), tuple(m.output_padding), m.groups, m.bias is not None,
                  tuple(m.dilation))  # fmt: skip
        return _load(out, m)

    def linear(m: Any, path: str) -> nn.Module:
        return _load(nn.Linear(m.in_features, m.out_features, m.bias is not None), m)

    def batch_norm(m: Any, path: str) -> nn.Module:
        cls = nn.BatchNorm2d if isinstance(m, tn.BatchNorm2d) else nn.BatchNorm1d
        out = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        return _load(out, m)

    def layer_norm(m: Any, path: str) -> nn.Module:
        has_bias = getattr(m, "bias", None) is not None or not m.elementwise_affine
        out = nn.LayerNorm(tuple(m.normalized_shape), m.eps, m.elementwise_affine, has_bias)
        return _load(out, m)

    def group_norm(m: Any, path: str) -> nn.Module:
        return _load(nn.GroupNorm(m.num_groups, m.num_channels, m.eps, m.affine), m)

    def max_pool(m: Any, path: str) -> nn.Module:
        if m.return_indices:
            raise ConversionError(f"from_torch: {path} (MaxPool2d) returns indices")
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)

    def avg_pool(m: Any, path: str) -> nn.Module:
        if m.divisor_override is not None:
            raise ConversionError(f"from_torch: {path} (AvgPool2d) has a divisor_override")
        return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad)

    return {
        tn.Conv2d: conv,
        tn.Conv1d: conv,
        tn.ConvTranspose2d: conv_t,
        tn.ConvTranspose1d: conv_t,
        tn.Linear: linear,
        tn.BatchNorm2d: batch_norm,
        tn.BatchNorm1d: batch_norm,
        tn.LayerNorm: layer_norm,
        tn.GroupNorm: group_norm,
        tn.MaxPool2d: max_pool,
        tn.AvgPool2d: avg_pool,
        tn.AdaptiveAvgPool2d: lambda m, p: nn.AdaptiveAvgPool2d(m.output_size),
        tn.ReLU: lambda m, p: nn.ReLU(),
        tn.Sigmoid: lambda m, p: nn.Sigmoid(),
        tn.Tanh: lambda m, p: nn.Tanh(),
        tn.Identity: lambda m, p: nn.Identity(),
        tn.Flatten: lambda m, p: nn.Flatten(m.start_dim, m.end_dim),
        tn.Dropout: lambda m, p: nn.Dropout(m.p),
        tn.Dropout2d: lambda m, p: nn.Dropout2d(m.p),
        tn.Softmax: lambda m, p: Softmax(-1 if m.dim is None else m.dim),
        tn.LogSoftmax: lambda m, p: LogSoftmax(-1 if m.dim is None else m.dim),
    }


# --- forwards traced with torch.fx ----------------------------------------------------------


def _dim_kw(kwargs: dict) -> dict:
    out = dict(kwargs)
    if "dim" in out:
        out["axis"] = out.pop("dim")
    if "keepdim" in out:
        out["keepdims"] = out.pop("keepdim")
    return out


def _reduce(name: str) -> Callable:
    def f(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        kw = _dim_kw(kwargs)
        if args:
            kw["axis"] = args[0]
        if len(args) > 1:
            kw["keepdims"] = args[1]
        axis = kw.get("axis")
        if isinstance(axis, list):
            kw["axis"] = tuple(axis)
        return getattr(x, name)(**kw)

    return f


def _softmax(log: bool) -> Callable:
    def f(x: Tensor, dim: int | None = None, *args: Any, **kwargs: Any) -> Tensor:
        d = -1 if dim is None else dim
        return F.log_softmax(x, dim=d) if log else F.softmax(x, dim=d)

    return f


def _cat(tensors: Any, dim: int = 0, **kwargs: Any) -> Tensor:
    return Concat.apply(*tensors, axis=kwargs.get("axis", dim))


def _flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return x.flatten(start_dim, end_dim)


def _view(x: Tensor, *shape: Any) -> Tensor:
    return x.reshape(*shape)


def _size(x: Tensor, dim: int | None = None) -> Any:
    return tuple(x.shape) if dim is None else x.shape[dim]


def _dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return F.dropout(x, p, training)


def _functions(torch: Any) -> dict[Any, Callable]:
    tf = torch.nn.functional
    return {
        operator.add: operator.add,
        operator.sub: operator.sub,
        operator.mul: operator.mul,
        operator.truediv: operator.truediv,
        operator.neg: operator.neg,
        operator.matmul: operator.matmul,
        operator.getitem: operator.getitem,
        getattr: getattr,
        torch.add: operator.add,
        torch.sub: operator.sub,
        torch.mul: operator.mul,
        torch.matmul: operator.matmul,
        torch.relu: F.relu,
        tf.relu: lambda x, inplace=False: F.relu(x),
        torch.sigmoid: F.sigmoid,
        tf.sigmoid: F.sigmoid,
        torch.tanh: F.tanh,
        tf.tanh: F.tanh,
        torch.flatten: _flatten,
        torch.cat: _cat,
        torch.mean: _reduce("mean"),
        torch.sum: _reduce("sum"),
        tf.softmax: _softmax(False),
        tf.log_softmax: _softmax(True),
        torch.softmax: _softmax(False),
        torch.log_softmax: _softmax(True),
        tf.dropout: _dropout,
        tf.adaptive_avg_pool2d: F.adaptive_avg_pool2d,
        tf.max_pool2d: F.max_pool2d,
        tf.avg_pool2d: F.avg_pool2d,
    }


_METHODS: dict[str, Callable] = {
    "mean": _reduce("mean"),
    "sum": _reduce("sum"),
    "flatten": _flatten,
    "view": _view,
    "reshape": _view,
    "relu": lambda x: x.relu(),
    "sigmoid": lambda x: x.sigmoid(),
    "tanh": lambda x: x.tanh(),
    "exp": lambda x: x.exp(),
    "softmax": _softmax(False),
    "log_softmax": _softmax(True),
    "size": _size,
    "contiguous": lambda x: x,
    "permute": lambda x, *dims: x.permute(*dims),
    "transpose": lambda x, a, b: x.transpose(a, b),
    "unsqueeze": lambda x, d: x.unsqueeze(d),
    "squeeze": lambda x, d=None: x.squeeze(d),
    "add": operator.add,
    "mul": operator.mul,
}


class TracedModule(nn.Module):
    """A converted ``torch.nn`` module with its own forward: the forward's ``torch.fx``
    graph replayed with tapegrad ops; submodules converted under their own names."""

    def __init__(self, steps: list[tuple], path: str, source: str) -> None:
        super().__init__()
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_source", source)

    def forward(self, *inputs: Any) -> Any:
        """Replay the traced graph on ``inputs`` (the torch module's forward arguments)."""
        env: dict[str, Any] = {}
        it = iter(inputs)

        def val(a: Any) -> Any:
            if isinstance(a, _Ref):
                return env[a.name]
            if isinstance(a, (tuple, list)):
                return type(a)(val(v) for v in a)
            if isinstance(a, dict):
                return {k: val(v) for k, v in a.items()}
            return a

        for op, name, target, args, kwargs in self._steps:
            if op == "placeholder":
                env[name] = next(it)
            elif op == "output":
                return val(args[0])
            elif op == "get_attr":
                env[name] = _resolve(self, target)
            elif op == "call_module":
                env[name] = _resolve(self, target)(*val(args), **val(kwargs))
            else:  # call_function / call_method with the mapped tapegrad callable
                env[name] = target(*val(args), **val(kwargs))
        return None

    def extra_repr(self) -> str:
        """The torch class the forward was traced from."""
        return f"traced from {self._source}"


class _Ref:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _resolve(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def from_torch(module: Any) -> nn.Module:
    """The tapegrad model equivalent to a ``torch.nn`` model, with its weights.

    Parameters
    ----------
    module : torch.nn.Module
        Built from supported layers: Conv1d/2d, ConvTranspose1d/2d, Linear,
        BatchNorm1d/2d, LayerNorm, GroupNorm, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
        ReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Identity, Flatten, Dropout, Dropout2d,
        Sequential, and modules whose ``forward`` combines these with arithmetic,
        ``torch.cat``, ``flatten``/``view``/``reshape``, ``mean``/``sum``, softmax and
        the activations (traced with ``torch.fx``).

    Returns
    -------
    nn.Module
        Parameters and buffers copied (not shared), same state-dict keys, same
        train/eval mode.

    Raises
    ------
    ConversionError
        A layer or forward op without a tapegrad equivalent; the message names it and
        where it sits (``features.3``).
    ImportError
        PyTorch is not installed.
    """
    try:
        import torch
        import torch.fx
    except ImportError as exc:
        raise ImportError("from_torch needs PyTorch: pip install torch (CPU build)") from exc
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    leaves = _leaf_converters(torch.nn)
    functions = _functions(torch)
    out = _convert(module, "", torch, leaves, functions)
    out.train(module.training)
    return out


def _convert(m: Any, path: str, torch: Any, leaves: dict, functions: dict) -> nn.Module:
    where = path or "<model>"
    kind = type(m)
    if kind in leaves:
        return leaves[kind](m, where)
    if kind is torch.nn.Sequential:
        return nn.Sequential(
            *(
                _convert(c, f"{path}.{n}" if path else n, torch, leaves, functions)
                for n, c in m.named_children()
            )
        )
    if kind in (torch.nn.ModuleList, torch.nn.ModuleDict):
        holder = nn.Module()  # indexed by a parent's forward: children under their names
        for n, c in m.named_children():
            setattr(holder, n, _convert(c, f"{path}.{n}" if path else n, torch, leaves, functions))
        return holder
    if isinstance(m, tuple(leaves)) or type(m).forward is torch.nn.Module.forward:
        raise ConversionError(
            f"from_torch: {where} is a {kind.__module__}.{kind.__name__}, which has no "
            f"tapegrad equivalent; supported layers: "
            f"{', '.join(sorted(c.__name__ for c in leaves))}, Sequential"
        )
    if kind.__module__.startswith("torch.nn"):
        raise ConversionError(
            f"from_torch: {where} is a torch.nn.{kind.__name__}, which has no tapegrad "
            f"equivalent; supported layers: {', '.join(sorted(c.__name__ for c in leaves))}"
        )

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, mod: Any, qualname: str) -> bool:
            return mod is not m  # every submodule is converted on its own

    try:
        graph = _Tracer().trace(m)
    except Exception as e:  # fx raises many kinds on data-dependent Python
        raise ConversionError(
            f"from_torch: cannot trace the forward of {where} ({kind.__name__}) with torch.fx: {e}"
        ) from None
    steps: list[tuple] = []
    subs: dict[str, nn.Module] = {}

    def refs(a: Any) -> Any:
        if isinstance(a, torch.fx.Node):
            return _Ref(a.name)
        if isinstance(a, (tuple, list)):
            return type(a)(refs(v) for v in a)
        if isinstance(a, dict):
            return {k: refs(v) for k, v in a.items()}
        if isinstance(a, torch.Tensor):
            return Tensor(_copy(a))
        return a

    params: dict[str, Any] = {}
    for node in graph.nodes:
        target = node.target
        args, kwargs = refs(node.args), refs(node.kwargs)
        if node.op == "call_module":
            top = target.split(".")[0]
            if top not in subs:
                child = getattr(m, top)
                subs[top] = _convert(
                    child, f"{path}.{top}" if path else top, torch, leaves, functions
                )
        elif node.op == "get_attr":
            params[target] = _resolve(m, target)
        elif node.op == "call_function":
            fn = functions.get(target)
            if fn is None:
                name = getattr(target, "__qualname__", repr(target))
                mod = getattr(target, "__module__", None) or "torch"
                if mod.startswith("torch._") or name.startswith("_VariableFunctions"):
                    mod, name = "torch", getattr(target, "__name__", name)
                raise ConversionError(
                    f"from_torch: the forward of {where} ({kind.__name__}) calls "
                    f"{mod}.{name}, which has no tapegrad equivalent here"
                )
            target = fn
        elif node.op == "call_method":
            fn = _METHODS.get(target)
            if fn is None:
                raise ConversionError(
                    f"from_torch: the forward of {where} ({kind.__name__}) calls the tensor "
                    f"method .{target}(), which has no tapegrad equivalent here"
                )
            target = fn
        steps.append((node.op, node.name, target, args, kwargs))
    out = TracedModule(steps, where, kind.__name__)
    # submodules in the torch module's registration order: state-dict keys keep its order
    for name, _ in m.named_children():
        if name in subs:
            setattr(out, name, subs[name])
        else:  # registered but unused by forward: kept for its weights
            setattr(out, name, _convert(getattr(m, name), f"{path}.{name}" if path else name,
                                        torch, leaves, functions))  # fmt: skip
    for target, value in params.items():
        if "." in target:
            continue  # a submodule's own tensor, converted with it
        if isinstance(value, torch.nn.Parameter):
            setattr(out, target, nn.Parameter(_copy(value)))
        else:
            out.register_buffer(target, Tensor(_copy(value)))
    return out
