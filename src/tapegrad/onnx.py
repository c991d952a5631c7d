"""ONNX export: ``tapegrad.onnx.export(model, example_input, "model.onnx")``.

The model runs one forward in eval mode on ``example_input`` while every op it applies is
read off the tape (:func:`tapegrad.autograd.trace_ops`); each op becomes one or a few ONNX
nodes, parameters and buffers become initializers named by their state-dict keys. Dropout
is the identity in eval mode and leaves no node. With ``dynamic_batch=True`` (the default)
the first axis of the input and of everything computed from it is a symbolic ``batch``
dimension, so the file runs at any batch size.

Needs the ``onnx`` package (``pip install tapegrad[onnx]``, which also installs
``onnxruntime`` to run the file). An op with no ONNX form raises :class:`ExportError`
naming the op and the module it was called in.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .autograd import trace_ops
from .ops import activation, conv, conv_transpose, linalg, norm, pool, reduce, shape, upsample
from .ops import elementwise as ew
from .ops.pool import pool_out_size
from .tensor import Tensor

__all__ = ["ExportError", "MIN_OPSET", "MAX_OPSET", "export", "exportable_ops", "register"]

MIN_OPSET = 17  # LayerNormalization
MAX_OPSET = 21


class ExportError(ValueError):
    """The model uses an op (or an op option) that has no ONNX form here."""


# --- records of one forward -----------------------------------------------------------------


@dataclass
class Record:
    """One op of the traced forward: its Function, bound arguments and output."""

    fn: type
    params: dict[str, Any]
    out: Tensor
    where: str
    index: int
    args: tuple = ()
    kwargs: dict[str, Any] | None = None

    def inputs(self) -> list[Tensor]:
        """The Tensor arguments of the op, in argument order (tensors inside lists included)."""
        found: list[Tensor] = []
        for v in self.params.values():
            if isinstance(v, Tensor):
                found.append(v)
            elif isinstance(v, (tuple, list)):
                found.extend(t for t in v if isinstance(t, Tensor))
        return found

    def describe(self) -> str:
        """``module.Function (op #i) in file:line``: how errors name this op."""
        return f"{self.fn.__module__}.{self.fn.__name__} (op #{self.index}) in {self.where}"


_EXPORTERS: dict[type, Callable[[_Builder, Record], tuple[str, int | None]]] = {}


def register(*fns: type) -> Callable:
    """Decorator: ``@register(MyFunction)`` on ``exporter(builder, record) -> (name, batch_axis)``
    adds an ONNX form for a :class:`~tapegrad.autograd.Function` of one's own."""

    def deco(f: Callable) -> Callable:
        for fn in fns:
            _EXPORTERS[fn] = f
        return f

    return deco


def exportable_ops() -> list[str]:
    """The names of the Functions that have an ONNX form."""
    return sorted(fn.__name__ for fn in _EXPORTERS)


def _bind(fn: type, args: tuple, kwargs: dict) -> dict[str, Any]:
    sig = inspect.signature(fn.forward)
    bound = sig.bind(None, *args, **kwargs)
    bound.apply_defaults()
    params = dict(bound.arguments)
    params.pop(next(iter(sig.parameters)))  # ctx
    return params


# --- graph builder --------------------------------------------------------------------------


class _Builder:
    """ONNX nodes, initializers and value names as the records are converted."""

    def __init__(self, onnx_mod: Any, opset: int, dtype: np.dtype, names: dict[int, str]) -> None:
        self.onnx = onnx_mod
        self.helper = onnx_mod.helper
        self.opset = opset
        self.dtype = dtype
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.value_names: dict[int, str] = {}
        self.batch_axis: dict[str, int | None] = {}
        self.param_names = names  # id(tensor) -> state-dict key
        self._const_ids: dict[int, str] = {}
        self._used: set[str] = set()
        self.record: Record | None = None

    # names
    def fresh(self, hint: str) -> str:
        name, k = hint, 1
        while name in self._used:
            name, k = f"{hint}_{k}", k + 1
        self._used.add(name)
        return name

    def const(self, arr: Any, hint: str = "const", dtype: Any = None) -> str:
        a = np.asarray(arr, dtype=dtype)
        if dtype is None and a.dtype.kind == "f":
            a = a.astype(self.dtype)
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(a), name))
        self.batch_axis[name] = None
        return name

    def ints(self, values: Sequence[int], hint: str = "shape") -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), hint, np.int64)

    def value(self, obj: Any) -> str:
        """The ONNX name of a traced tensor, a parameter/buffer, or a constant."""
        if isinstance(obj, Tensor):
            key = id(obj)
            if key in self.value_names:
                return self.value_names[key]
            if key not in self._const_ids:
                hint = self.param_names.get(key) or obj.name or "const"
                self._const_ids[key] = self.const(obj.data, hint)
            return self._const_ids[key]
        return self.const(obj)

    def axis_of(self, obj: Any) -> int | None:
        if isinstance(obj, Tensor):
            return self.batch_axis.get(self.value_names.get(id(obj), ""), None)
        return None

    def add(self, op: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any) -> str:
        assert self.record is not None
        outs = [self.fresh(f"{op.lower()}_{len(self.nodes)}") for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(
            self.helper.make_node(
                op, list(inputs), outs, name=f"{self.record.where}/{op}_{len(self.nodes)}", **attrs
            )
        )
        return outs[0]

    def fail(self, why: str) -> None:
        assert self.record is not None
        raise ExportError(f"onnx.export: cannot export {self.record.describe()}: {why}")


def _same_axis(g: _Builder, r: Record) -> int | None:
    """The batch axis of an op whose output keeps its first tensor input's axes."""
    for t in r.inputs():
        ax = g.axis_of(t)
        if ax is not None:
            return ax + (r.out.ndim - t.ndim)
    return None


# --- converters -----------------------------------------------------------------------------


@register(conv.Conv2d, conv.DepthwiseConv2d)
def _conv(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    w = p["w"]
    ins = [g.value(p["x"]), g.value(w)] + ([g.value(p["b"])] if p["b"] is not None else [])
    y = g.add(
        "Conv",
        ins,
        kernel_shape=list(w.shape[2:]),
        strides=list(p["stride"]),
        pads=list(p["padding"]) * 2,
        dilations=list(p["dilation"]),
        group=int(p["groups"]),
    )
    return y, g.axis_of(p["x"])


@register(conv_transpose.ConvTranspose2d)
def _conv_transpose(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    w = p["w"]
    ins = [g.value(p["x"]), g.value(w)] + ([g.value(p["b"])] if p["b"] is not None else [])
    y = g.add(
        "ConvTranspose",
        ins,
        kernel_shape=list(w.shape[2:]),
        strides=list(p["stride"]),
        pads=list(p["padding"]) * 2,
        output_padding=list(p["output_padding"]),
        dilations=list(p["dilation"]),
        group=int(p["groups"]),
    )
    return y, g.axis_of(p["x"])


def _pool_pads(x: Tensor, kernel, stride, padding, dilation, out_hw) -> tuple[list[int], bool]:
    """ONNX pads (begin..., end...) reproducing tapegrad's output size; ceil_mode as extra
    trailing padding (ONNX's ceil_mode rule for the last window differs)."""
    ends = []
    ceil = False
    for n, k, s, p, d, o in zip(x.shape[2:], kernel, stride, padding, dilation, out_hw):
        floor = pool_out_size(n, k, s, p, d, False)
        extra = 0
        if o != floor:
            ceil = True
            extra = max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
        ends.append(p + extra)
    return list(padding) + ends, ceil


@register(pool.MaxPool2d)
def _max_pool(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    x = p["x"]
    pads, _ = _pool_pads(x, p["kernel"], p["stride"], p["padding"], p["dilation"], p["out_hw"])
    y = g.add(
        "MaxPool",
        [g.value(x)],
        kernel_shape=list(p["kernel"]),
        strides=list(p["stride"]),
        pads=pads,
        dilations=list(p["dilation"]),
    )
    return y, g.axis_of(x)


@register(pool.AvgPool2d)
def _avg_pool(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    x = p["x"]
    kernel, stride, padding = p["kernel"], p["stride"], p["padding"]
    floor = tuple(
        pool_out_size(n, k, s, q, 1, False)
        for n, k, s, q in zip(x.shape[2:], kernel, stride, padding)
    )
    y = g.add(
        "AveragePool",
        [g.value(x)],
        kernel_shape=list(kernel),
        strides=list(stride),
        pads=list(padding) * 2,
        count_include_pad=int(bool(p["count_include_pad"])),
        ceil_mode=int(tuple(p["out_hw"]) != floor),
    )
    return y, g.axis_of(x)


@register(pool.AdaptiveAvgPool2d)
def _adaptive_avg_pool(g: _Builder, r: Record) -> tuple[str, int | None]:
    x, (oh, ow) = r.params["x"], r.params["out_hw"]
    h, w = x.shape[2:]
    if (oh, ow) == (1, 1):
        return g.add("GlobalAveragePool", [g.value(x)]), g.axis_of(x)
    if h % oh or w % ow:
        g.fail(
            f"adaptive average pooling from {h}x{w} to {oh}x{ow} has windows of unequal "
            "size (ONNX has it only as an even average pool: the input size must be a "
            "multiple of the output size)"
        )
    k = [h // oh, w // ow]
    return g.add("AveragePool", [g.value(x)], kernel_shape=k, strides=k), g.axis_of(x)


@register(upsample.Upsample)
def _upsample(g: _Builder, r: Record) -> tuple[str, int | None]:
    """Resize: nearest as ``asymmetric`` + ``floor`` (source ``floor(i * s)``), bilinear as
    ``align_corners`` or ``half_pixel``; the given scale factors when the op used them,
    else the output size (its batch and channel axes read from the input's shape)."""
    p = r.params
    x, scales = p["x"], p["scales"]
    if p["mode"] == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}
        attrs["nearest_mode"] = "floor"
    else:
        ctm = "align_corners" if p["align_corners"] else "half_pixel"
        attrs = {"mode": "linear", "coordinate_transformation_mode": ctm}
    spatial = list(r.out.shape[2:])
    if scales is not None:
        sc = [1.0, 1.0, *scales][-x.ndim :]  # 3-D input: the op added H = 1
        factors = g.const(np.asarray(sc, np.float32), "scales", np.float32)
        return g.add("Resize", [g.value(x), "", factors], **attrs), g.axis_of(x)
    head = g.add("Slice", [g.add("Shape", [g.value(x)]), g.ints([0]), g.ints([2])])
    sizes = g.add("Concat", [head, g.ints(spatial, "sizes")], axis=0)
    return g.add("Resize", [g.value(x), "", "", sizes], **attrs), g.axis_of(x)


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (x.shape[1],) + (1,) * (x.ndim - 2)


@register(norm.BatchNorm)
def _batch_norm(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    x = p["x"]
    if p["training"]:
        g.fail("batch statistics (training mode); export runs the model in eval mode")
    c = x.shape[1]
    w = np.ones(c) if p["weight"] is None else np.asarray(p["weight"].data, np.float64)
    b = np.zeros(c) if p["bias"] is None else np.asarray(p["bias"].data, np.float64)
    mean = np.asarray(p["running_mean"], np.float64)
    if not p["normalize_variance"]:
        scale, shift = w, b - mean * w
        y = g.add("Mul", [g.value(x), g.const(scale.reshape(_channel_shape(x)), "bn_scale")])
        return g.add("Add", [y, g.const(shift.reshape(_channel_shape(x)), "bn_shift")]), g.axis_of(
            x
        )
    scale = g.value(p["weight"]) if p["weight"] is not None else g.const(w, "bn_weight")
    bias = g.value(p["bias"]) if p["bias"] is not None else g.const(b, "bn_bias")
    names = [
        g.const(p["running_mean"], g.param_names.get(-id(p["running_mean"]), "running_mean")),
        g.const(p["running_var"], g.param_names.get(-id(p["running_var"]), "running_var")),
    ]
    y = g.add("BatchNormalization", [g.value(x), scale, bias, *names], epsilon=float(p["eps"]))
    return y, g.axis_of(x)


@register(norm.LayerNorm)
def _layer_norm(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    x, ns = p["x"], tuple(p["normalized_shape"])
    scale = g.value(p["weight"]) if p["weight"] is not None else g.const(np.ones(ns), "ln_weight")
    ins = [g.value(x), scale] + ([g.value(p["bias"])] if p["bias"] is not None else [])
    y = g.add("LayerNormalization", ins, axis=-len(ns), epsilon=float(p["eps"]))
    return y, g.axis_of(x)


@register(norm.GroupNorm)
def _group_norm(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    x, groups = p["x"], int(p["num_groups"])
    xn = g.value(x)
    batch = g.axis_of(x) == 0
    # (N, G, rest) instance-normalised, then back to x's shape and the per-channel affine
    grouped = g.add("Reshape", [xn, g.ints([0 if batch else x.shape[0], groups, -1])])
    ones, zeros = np.ones(groups), np.zeros(groups)
    normed = g.add(
        "InstanceNormalization",
        [grouped, g.const(ones, "gn_ones"), g.const(zeros, "gn_zeros")],
        epsilon=float(p["eps"]),
    )
    y = g.add("Reshape", [normed, g.add("Shape", [xn])])
    weight, bias = p["weight"], p["bias"]
    if weight is None and bias is None:
        return y, g.axis_of(x)
    cs = _channel_shape(x)
    w = np.ones(cs) if weight is None else weight.data.reshape(cs)
    y = g.add("Mul", [y, g.const(w, g.param_names.get(id(weight), "gn_weight"))])
    if bias is not None:
        shift = g.const(bias.data.reshape(cs), g.param_names.get(id(bias), "gn_bias"))
        y = g.add("Add", [y, shift])
    return y, g.axis_of(x)


@register(linalg.Linear)
def _linear(g: _Builder, r: Record) -> tuple[str, int | None]:
    p = r.params
    x, w, b = p["x"], p["w"], p["b"]
    if x.ndim == 2:
        ins = [g.value(x), g.value(w)] + ([g.value(b)] if b is not None else [])
        return g.add("Gemm", ins, transB=1), g.axis_of(x)
    y = g.add("MatMul", [g.value(x), g.add("Transpose", [g.value(w)], perm=[1, 0])])
    if b is not None:
        y = g.add("Add", [y, g.value(b)])
    return y, g.axis_of(x)


@register(linalg.MatMul)
def _matmul(g: _Builder, r: Record) -> tuple[str, int | None]:
    return g.add("MatMul", [g.value(r.params["a"]), g.value(r.params["b"])]), _same_axis(g, r)


_BINARY = {ew.Add: "Add", ew.Sub: "Sub", ew.Mul: "Mul", ew.Div: "Div", ew.Maximum: "Max"}
_UNARY = {
    ew.Neg: "Neg",
    ew.Exp: "Exp",
    ew.Log: "Log",
    ew.Tanh: "Tanh",
    ew.Sigmoid: "Sigmoid",
    ew.Abs: "Abs",
    ew.Sqrt: "Sqrt",
    activation.ReLU: "Relu",
}


def _binary_exporter(op: str) -> Callable:
    def f(g: _Builder, r: Record) -> tuple[str, int | None]:
        return g.add(op, [g.value(r.params["a"]), g.value(r.params["b"])]), _same_axis(g, r)

    return f


def _unary_exporter(op: str) -> Callable:
    def f(g: _Builder, r: Record) -> tuple[str, int | None]:
        return g.add(op, [g.value(r.params["a"])]), _same_axis(g, r)

    return f


for _fn, _op in _BINARY.items():
    register(_fn)(_binary_exporter(_op))
for _fn, _op in _UNARY.items():
    register(_fn)(_unary_exporter(_op))


@register(ew.Pow)
def _pow(g: _Builder, r: Record) -> tuple[str, int | None]:
    a, b = r.params["a"], r.params["b"]
    return g.add("Pow", [g.value(a), g.value(b)]), _same_axis(g, r)


@register(activation.Softmax, activation.LogSoftmax)
def _softmax(g: _Builder, r: Record) -> tuple[str, int | None]:
    a = r.params["a"]
    axis = int(r.params["axis"]) % a.ndim
    op = "Softmax" if r.fn is activation.Softmax else "LogSoftmax"
    return g.add(op, [g.value(a)], axis=axis), g.axis_of(a)


@register(shape.Reshape)
def _reshape(g: _Builder, r: Record) -> tuple[str, int | None]:
    a = r.params["a"]
    new = list(r.out.shape)
    ax = g.axis_of(a)
    out_axis: int | None = None
    if ax is not None:
        if ax == 0 and new and new[0] == a.shape[0]:
            new[0], out_axis = 0, 0  # ONNX Reshape: 0 copies the input's (batch) size
        else:
            g.fail(
                f"a reshape from {a.shape} to {r.out.shape} moves the batch axis; export "
                "with dynamic_batch=False for a fixed batch size"
            )
    return g.add("Reshape", [g.value(a), g.ints(new)]), out_axis


@register(shape.Permute)
def _permute(g: _Builder, r: Record) -> tuple[str, int | None]:
    a, dims = r.params["a"], [int(d) for d in r.params["dims"]]
    ax = g.axis_of(a)
    return g.add("Transpose", [g.value(a)], perm=dims), (None if ax is None else dims.index(ax))


@register(shape.Pad)
def _pad(g: _Builder, r: Record) -> tuple[str, int | None]:
    a, pads = r.params["a"], r.params["pads"]
    flat = [int(b) for b, _ in pads] + [int(e) for _, e in pads]
    value = g.const(np.asarray(r.params["value"], dtype=a.dtype), "pad_value", a.dtype)
    return g.add("Pad", [g.value(a), g.ints(flat, "pads"), value]), g.axis_of(a)


@register(shape.Concat)
def _concat(g: _Builder, r: Record) -> tuple[str, int | None]:
    arrays = r.params["arrays"]
    axis = int(r.params["axis"]) % r.out.ndim
    ax = _same_axis(g, r)
    if ax is not None and axis == ax:
        g.fail("concatenation along the batch axis; export with dynamic_batch=False")
    return g.add("Concat", [g.value(t) for t in arrays], axis=axis), ax


@register(reduce.Sum, reduce.Mean, reduce.Max)
def _reduce(g: _Builder, r: Record) -> tuple[str, int | None]:
    a, keep = r.params["a"], bool(r.params["keepdims"])
    axes = list(reduce._axes(r.params["axis"], a.ndim))
    op = {reduce.Sum: "ReduceSum", reduce.Mean: "ReduceMean", reduce.Max: "ReduceMax"}[r.fn]
    if op == "ReduceSum" or g.opset >= 18:
        y = g.add(op, [g.value(a), g.ints(axes, "axes")], keepdims=int(keep))
    else:
        y = g.add(op, [g.value(a)], axes=axes, keepdims=int(keep))
    ax = g.axis_of(a)
    if ax is None or ax in axes:
        return y, None
    return y, ax if keep else ax - sum(1 for d in axes if d < ax)


# --- export ---------------------------------------------------------------------------------


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "tapegrad.onnx.export needs the onnx package: pip install 'tapegrad[onnx]'"
        ) from exc
    return onnx


def trace(model: Any, inputs: Sequence[Tensor]) -> tuple[list[Record], Any]:
    """Run ``model(*inputs)`` once and return the records of its ops and its output.

    Each record says which module's forward called the op (``features.3 (MaxPool2d)``).
    The model runs as it is (call ``model.eval()`` first for an inference graph).
    """
    records: list[Record] = []
    stack: list[str] = []
    wrapped = []
    modules = list(model.named_modules()) if hasattr(model, "named_modules") else []
    for name, m in modules:
        fwd = m.forward

        def hooked(*a: Any, _fwd: Any = fwd, _label: str = "", **k: Any) -> Any:
            stack.append(_label)
            try:
                return _fwd(*a, **k)
            finally:
                stack.pop()

        label = f"{name or '<model>'} ({type(m).__name__})"
        object.__setattr__(m, "forward", _bind_label(hooked, label))
        wrapped.append(m)

    def on_op(fn: type, args: tuple, kwargs: dict, result: Tensor) -> None:
        where = stack[-1] if stack else "<top level>"
        try:
            params = _bind(fn, args, kwargs)
        except TypeError:  # a forward with an unusual signature: keep the positions
            params = {f"arg{i}": a for i, a in enumerate(args)} | dict(kwargs)
        records.append(Record(fn, params, result, where, len(records), args, dict(kwargs)))

    try:
        with trace_ops(on_op):
            out = model(*inputs)
    finally:
        for m in wrapped:
            m.__dict__.pop("forward", None)
    return records, out


def _bind_label(hooked: Callable, label: str) -> Callable:
    def f(*a: Any, **k: Any) -> Any:
        return hooked(*a, _label=label, **k)

    return f


def _reachable(records: list[Record], outputs: list[Tensor]) -> list[Record]:
    by_out = {id(r.out): r for r in records}
    keep: set[int] = set()
    stack = [by_out[id(t)] for t in outputs if id(t) in by_out]
    while stack:
        r = stack.pop()
        if r.index in keep:
            continue
        keep.add(r.index)
        stack.extend(by_out[id(t)] for t in r.inputs() if id(t) in by_out)
    return [r for r in records if r.index in keep]


def export(
    model: Any,
    example_input: Any,
    path: str | os.PathLike | None,
    opset_version: int = 17,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    fold: bool = False,
) -> Any:
    """Write ``model`` as an ONNX file, traced from one eval-mode forward.

    Parameters
    ----------
    model : Module
        Any tapegrad model (or callable taking Tensors). It is put in eval mode for the
        trace and returned to its previous mode.
    example_input : Tensor, ndarray, or a tuple of them
        Input(s) of the traced forward, e.g. one image of shape (1, C, H, W), float32.
    path : str or PathLike or None
        Where to write the file (None: only return the model proto).
    opset_version : int
        ONNX opset, 17 to 21.
    input_names, output_names : sequences of str
        Graph input and output names (default ``input``/``input_1``..., ``output``...).
    dynamic_batch : bool
        Make axis 0 of the inputs, and of every value computed from it, the symbolic
        ``batch`` dimension. False keeps the example's batch size fixed.
    fold : bool
        Export the graph :func:`tapegrad.inference.optimize` runs: batch norm folded into
        the convolution or linear layer before it (one Conv or Gemm node instead of two).

    Returns
    -------
    onnx.ModelProto
        The checked model (``onnx.checker.check_model`` passed).

    Raises
    ------
    ExportError
        An op has no ONNX form here; the message names the op and the module it was
        called in.
    ValueError, TypeError
        Bad arguments (opset out of range, names of the wrong count, non-float inputs).
    ImportError
        The ``onnx`` package is not installed.
    """
    onnx = _import_onnx()
    if not isinstance(opset_version, int) or not MIN_OPSET <= opset_version <= MAX_OPSET:
        raise ValueError(
            f"onnx.export: opset_version must be an int from {MIN_OPSET} to {MAX_OPSET}, "
            f"got {opset_version!r}"
        )
    inputs = list(example_input) if isinstance(example_input, (tuple, list)) else [example_input]
    if not inputs:
        raise ValueError("onnx.export: example_input is empty")
    tensors = []
    for i, x in enumerate(inputs):
        if isinstance(x, np.ndarray):
            x = Tensor(x)
        if not isinstance(x, Tensor):
            raise TypeError(
                f"onnx.export: example_input[{i}] must be a Tensor or ndarray, "
                f"got {type(x).__name__}"
            )
        if x.dtype.kind != "f" or x.ndim < 1:
            raise TypeError(
                f"onnx.export: example_input[{i}] must be a float tensor with a batch axis, "
                f"got dtype {x.dtype} and shape {x.shape}"
            )
        tensors.append(Tensor(x.data))  # a fresh leaf: its id marks the graph input
    in_names = list(input_names) if input_names is not None else _default("input", len(tensors))
    if len(in_names) != len(tensors):
        raise ValueError(
            f"onnx.export: {len(in_names)} input_names for {len(tensors)} inputs: {in_names}"
        )
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        records, out = trace(model, tensors)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(
            "onnx.export: the model must return a Tensor or a tuple of Tensors, got "
            f"{type(out).__name__}"
        )
    out_names = list(output_names) if output_names is not None else _default("output", len(outs))
    if len(out_names) != len(outs):
        raise ValueError(
            f"onnx.export: {len(out_names)} output_names for {len(outs)} outputs: {out_names}"
        )
    if len(set(in_names) | set(out_names)) != len(in_names) + len(out_names):
        raise ValueError(f"onnx.export: names repeat: inputs {in_names}, outputs {out_names}")

    if fold:
        from .inference import fold_batch_norm

        records = fold_batch_norm(records, outs)
    param_names: dict[int, str] = {}
    if hasattr(model, "named_parameters"):
        param_names.update({id(p): n for n, p in model.named_parameters()})
        param_names.update({id(b): n for n, b in model.named_buffers()})
        # batch norm receives its running statistics as raw arrays
        param_names.update({-id(b.data): n for n, b in model.named_buffers()})
    g = _Builder(onnx, opset_version, tensors[0].dtype, param_names)
    for name in in_names + out_names:
        g._used.add(name)
    for t, name in zip(tensors, in_names):
        g.value_names[id(t)] = name
        g.batch_axis[name] = 0 if dynamic_batch else None
    for r in _reachable(records, outs):
        exporter = _EXPORTERS.get(r.fn)
        if exporter is None:
            raise ExportError(
                f"onnx.export: cannot export {r.describe()}: {r.fn.__name__} has no ONNX "
                f"form; exportable ops: {', '.join(exportable_ops())}"
            )
        g.record = r
        name, axis = exporter(g, r)
        g.value_names[id(r.out)] = name
        g.batch_axis[name] = axis
    h = onnx.helper
    elem = h.np_dtype_to_tensor_dtype(tensors[0].dtype)
    graph_out = []
    g.record = Record(type(None), {}, outs[0], "<output>", -1)
    for o, name in zip(outs, out_names):
        src = g.value(o)
        g.add("Identity", [src])
        g.nodes[-1].output[0] = name
        axis = g.batch_axis.get(src)
        dims: list[Any] = list(o.shape)
        if axis is not None:
            dims[axis] = "batch"
        graph_out.append(h.make_tensor_value_info(name, h.np_dtype_to_tensor_dtype(o.dtype), dims))
    graph_in = [
        h.make_tensor_value_info(
            name, elem, (["batch"] if dynamic_batch else [t.shape[0]]) + list(t.shape[1:])
        )
        for t, name in zip(tensors, in_names)
    ]
    graph = h.make_graph(g.nodes, type(model).__name__, graph_in, graph_out, g.inits)
    proto = h.make_model(
        graph,
        opset_imports=[h.make_opsetid("", opset_version)],
        producer_name="tapegrad",
        ir_version=min(onnx.IR_VERSION, 10),
    )
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        try:
            onnx.save(proto, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return proto


def _default(stem: str, n: int) -> list[str]:
    return [stem] if n == 1 else [f"{stem}_{i}" for i in range(n)]
