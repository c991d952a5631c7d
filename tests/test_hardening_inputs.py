"""Every public op and layer answers bad arguments with a clear ValueError/TypeError.

The table below walks ``tapegrad.nn.functional`` and ``tapegrad.nn``: each row is one
bad call, the exception type it must raise and the words its message must contain
(the function's name and the argument's name, plus the offending value or shape where
that is the point). ``test_every_public_op_has_rows`` fails when a new op or layer is
exported without rows here.

The second half checks that non-contiguous, negative-stride, Fortran-ordered and
read-only arrays (a memory-mapped dataset) give exactly the results (forward and
gradients) of their C-contiguous copies, in every kernel variant.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn as nn
import tapegrad.nn.functional as F


def _r(*shape: int, dtype=np.float32) -> tg.Tensor:
    return tg.tensor(np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype))


x2 = _r(2, 3)
x3 = _r(2, 3, 8)
x4 = _r(2, 3, 8, 8)
w4 = _r(4, 3, 3, 3)
w3 = _r(4, 3, 3)
tgt = np.array([0, 2])

# (function name, argument name, exception, call, extra words the message must contain)
Row = tuple[str, str, type, Callable[[], object], tuple[str, ...]]
ROWS: list[Row] = []


def row(fn: str, arg: str, call: Callable[[], object], exc: type = ValueError, *words: str):
    ROWS.append((fn, arg, exc, call, words))


# --- activations -----------------------------------------------------------------------
for _name in ("relu", "sigmoid", "tanh", "softmax", "log_softmax"):
    _f = getattr(F, _name)
    row(_name, "input", lambda f=_f: f([1.0, 2.0]), TypeError, "list")
    row(_name, "input", lambda f=_f: f("abc"), TypeError, "str")
for _name in ("softmax", "log_softmax"):
    _f = getattr(F, _name)
    row(_name, "dim", lambda f=_f: f(x2, dim=2), ValueError, "2", "(2, 3)")
    row(_name, "dim", lambda f=_f: f(x2, dim=-3), ValueError, "-3")
    row(_name, "dim", lambda f=_f: f(x2, dim="1"), TypeError, "'1'")
    row(_name, "dim", lambda f=_f: f(x2, dim=1.0), TypeError, "1.0")
    row(_name, "input", lambda f=_f: f(tg.tensor([[1, 2], [3, 4]])), TypeError, "int64")
    row(_name, "input", lambda f=_f: f(tg.tensor(3.0)), ValueError, "0-d")

# declared elementwise kernel ops (kernels/<family>/__init__.py records with elementwise=True):
# rows derived from each record's declaration, so a new family needs no line here
ELEMENTWISE = {op: r for op, r in tg.kernels.declarations().items() if r.__dict__.get("op") and
               getattr(r, "elementwise", False)}  # fmt: skip
for _rec in ELEMENTWISE.values():
    _f = getattr(F, _rec.functional)
    row(_rec.functional, "input", lambda f=_f: f([1.0, 2.0]), TypeError, "list")
    row(_rec.functional, "input", lambda f=_f: f(tg.tensor([1, 2])), TypeError, "int64")
    for _arg, _value, _exc, _words in _rec.bad_arguments():
        row(_rec.functional, _arg, lambda f=_f, k={_arg: _value}: f(x2, **k), _exc, *_words)
row("prelu", "weight", lambda: F.prelu(x2, np.ones(2, np.float32)), ValueError, "(2, 3)")
row("prelu", "weight", lambda: F.prelu(x2, np.ones(3)), TypeError, "float64")
row("PReLU", "num_parameters", lambda: nn.PReLU(0), ValueError, "0")

# --- linear ----------------------------------------------------------------------------
row("linear", "input", lambda: F.linear([[1.0]], _r(3, 3)), TypeError, "list")
row("linear", "weight", lambda: F.linear(x2, np.ones(3).tolist()), TypeError)
row("linear", "weight", lambda: F.linear(x2, _r(3)), ValueError, "(3,)")
row("linear", "weight", lambda: F.linear(x2, _r(4, 5)), ValueError, "(2, 3)", "(4, 5)")
row("linear", "weight", lambda: F.linear(x2, _r(4, 3, dtype=np.float64)), TypeError, "float64")
row("linear", "input", lambda: F.linear(tg.tensor([[1, 2, 3]]), _r(4, 3)), TypeError, "int64")
row("linear", "input", lambda: F.linear(tg.tensor(1.0), _r(4, 3)), ValueError, "()")
row("linear", "bias", lambda: F.linear(x2, _r(4, 3), _r(3)), ValueError, "(4,)", "(3,)")
row("linear", "bias", lambda: F.linear(x2, _r(4, 3), _r(4, 1)), ValueError, "(4, 1)")
row("linear", "bias", lambda: F.linear(x2, _r(4, 3), _r(4, dtype=np.float64)), TypeError, "float64")

# --- losses ----------------------------------------------------------------------------
row("cross_entropy", "input", lambda: F.cross_entropy([[1.0, 2.0]], [0]), TypeError)
row("cross_entropy", "input", lambda: F.cross_entropy(x3, tgt), ValueError, "(2, 3, 8)")
row("cross_entropy", "input", lambda: F.cross_entropy(_r(3), tgt), ValueError, "(3,)")
row(
    "cross_entropy",
    "input",
    lambda: F.cross_entropy(tg.tensor([[1, 2], [3, 4]]), tgt),
    TypeError,
    "int64",
)
row(
    "cross_entropy",
    "target",
    lambda: F.cross_entropy(x2, np.array([0.0, 1.0])),
    TypeError,
    "float64",
)
row("cross_entropy", "target", lambda: F.cross_entropy(x2, np.array([0, 1, 2])), ValueError, "(3,)")
row("cross_entropy", "target", lambda: F.cross_entropy(x2, np.array([0, 3])), ValueError, "3")
row("cross_entropy", "target", lambda: F.cross_entropy(x2, np.array([-1, 0])), ValueError, "-1")
row("cross_entropy", "target", lambda: F.cross_entropy(x2, np.array([[0, 1]])), ValueError)
row(
    "cross_entropy",
    "reduction",
    lambda: F.cross_entropy(x2, tgt, reduction="avg"),
    ValueError,
    "'avg'",
)
row(
    "cross_entropy",
    "label_smoothing",
    lambda: F.cross_entropy(x2, tgt, label_smoothing=1.5),
    ValueError,
    "1.5",
)
row(
    "cross_entropy",
    "label_smoothing",
    lambda: F.cross_entropy(x2, tgt, label_smoothing=-0.1),
    ValueError,
    "-0.1",
)
row("mse_loss", "input", lambda: F.mse_loss([1.0], x2), TypeError, "list")
row("mse_loss", "target", lambda: F.mse_loss(x2, [1.0]), TypeError, "list")
row("mse_loss", "shapes", lambda: F.mse_loss(x2, _r(3, 2)), ValueError, "(2, 3)", "(3, 2)")
row("mse_loss", "reduction", lambda: F.mse_loss(x2, x2, reduction="avg"), ValueError, "'avg'")
row("mse_loss", "target", lambda: F.mse_loss(x2, tg.tensor([[1, 2, 3]])), TypeError, "int64")

row("nll_loss", "input", lambda: F.nll_loss([[0.0]], [0]), TypeError, "list")
row("nll_loss", "input", lambda: F.nll_loss(x3, tgt), ValueError, "(2, 3, 8)")
row("nll_loss", "target", lambda: F.nll_loss(x2, np.array([0, 5])), ValueError, "5")
row("nll_loss", "target", lambda: F.nll_loss(x2, np.array([0.0, 1.0])), TypeError, "float64")
row("nll_loss", "target", lambda: F.nll_loss(x2, np.array([0, 1, 2])), ValueError, "(3,)")
row("nll_loss", "reduction", lambda: F.nll_loss(x2, tgt, reduction="avg"), ValueError, "'avg'")
_bce = F.binary_cross_entropy_with_logits
_bn = "binary_cross_entropy_with_logits"
row(_bn, "input", lambda: _bce([1.0], x2), TypeError, "list")
row(_bn, "shapes", lambda: _bce(x2, _r(3, 2)), ValueError, "(2, 3)", "(3, 2)")
row(_bn, "reduction", lambda: _bce(x2, x2, reduction="avg"), ValueError, "'avg'")
row(_bn, "target", lambda: _bce(x2, tg.tensor(np.ones((2, 3), int))), TypeError, "int64")
row(_bn, "pos_weight", lambda: _bce(x2, x2, pos_weight=np.ones(5)), ValueError, "(5,)")
row("cross_entropy", "reduction", lambda: nn.CrossEntropyLoss(reduction="x")(x2, tgt))
row("mse_loss", "reduction", lambda: nn.MSELoss(reduction="x")(x2, x2), ValueError, "'x'")
row("nll_loss", "target", lambda: nn.NLLLoss()(x2, np.array([0, 9])), ValueError, "9")
row(_bn, "shapes", lambda: nn.BCEWithLogitsLoss()(x2, _r(3, 2)), ValueError, "(3, 2)")

# --- convolutions ----------------------------------------------------------------------
for _fn, _x, _w in (("conv2d", x4, w4), ("conv1d", x3, w3), ("conv2d_relu", x4, w4)):
    _f = getattr(F, _fn)
    row(_fn, "input", lambda f=_f, w=_w: f(np.ones(3).tolist(), w), TypeError, "list")
    row(_fn, "weight", lambda f=_f, x=_x: f(x, "w"), TypeError, "str")
    row(_fn, "input", lambda f=_f, w=_w: f(x2, w), ValueError, "(2, 3)")
    row(_fn, "weight", lambda f=_f, x=_x: f(x, _r(4, 3)), ValueError, "(4, 3)")
    row(_fn, "stride", lambda f=_f, x=_x, w=_w: f(x, w, stride=0), ValueError, "0")
    row(_fn, "stride", lambda f=_f, x=_x, w=_w: f(x, w, stride=-2), ValueError, "-2")
    row(_fn, "stride", lambda f=_f, x=_x, w=_w: f(x, w, stride=1.5), TypeError, "1.5")
    row(_fn, "stride", lambda f=_f, x=_x, w=_w: f(x, w, stride=(1, 1, 1)), TypeError)
    row(_fn, "padding", lambda f=_f, x=_x, w=_w: f(x, w, padding=-1), ValueError, "-1")
    row(_fn, "padding", lambda f=_f, x=_x, w=_w: f(x, w, padding="full"), ValueError, "'full'")
    row(_fn, "padding", lambda f=_f, x=_x, w=_w: f(x, w, padding=None), TypeError, "None")
    row(_fn, "dilation", lambda f=_f, x=_x, w=_w: f(x, w, dilation=0), ValueError, "0")
    row(_fn, "groups", lambda f=_f, x=_x, w=_w: f(x, w, groups=0), ValueError, "0")
    row(_fn, "groups", lambda f=_f, x=_x, w=_w: f(x, w, groups=2), ValueError, "2")
    row(_fn, "groups", lambda f=_f, x=_x, w=_w: f(x, w, groups=True), ValueError, "True")
    row(_fn, "bias", lambda f=_f, x=_x, w=_w: f(x, w, _r(3)), ValueError, "(3,)")
    row(_fn, "stride", lambda f=_f, x=_x, w=_w: f(x, w, padding="same", stride=2), ValueError)
    row(
        _fn,
        "weight",
        lambda f=_f, x=_x, w=_w: f(x, tg.tensor(w.data.astype(np.float64))),
        TypeError,
        "float64",
    )
    row(
        _fn,
        "input",
        lambda f=_f, x=_x, w=_w: f(tg.tensor(x.data.astype(np.int32)), w),
        TypeError,
        "int64",
    )
row("conv2d", "weight", lambda: F.conv2d(x4, _r(4, 2, 3, 3)), ValueError, "(4, 2, 3, 3)")
row("conv2d", "kernel", lambda: F.conv2d(x4, _r(4, 3, 9, 9)), ValueError, "(9, 9)")
row("conv2d", "kernel", lambda: F.conv2d(x4, w4, dilation=4), ValueError, "dilated", "(2, 3, 8, 8)")
row("conv2d", "stride", lambda: F.conv2d(x4, w4, stride=(1, 0)), ValueError, "(1, 0)")
row("conv1d", "weight", lambda: F.conv1d(x3, _r(4, 2, 3)), ValueError, "(4, 2, 3)")
row("conv1d", "kernel", lambda: F.conv1d(x3, _r(4, 3, 11)), ValueError, "(11,)")

# --- pooling ---------------------------------------------------------------------------
row("max_pool2d", "input", lambda: F.max_pool2d([[1.0]], 2), TypeError, "list")
row("max_pool2d", "input", lambda: F.max_pool2d(x3, 2), ValueError, "(2, 3, 8)")
row(
    "max_pool2d", "input", lambda: F.max_pool2d(tg.tensor(np.ones((1, 1, 4, 4), int)), 2), TypeError
)
row("max_pool2d", "kernel_size", lambda: F.max_pool2d(x4, 0), ValueError, "0")
row("max_pool2d", "kernel_size", lambda: F.max_pool2d(x4, (2, 2, 2)), TypeError)
row("max_pool2d", "kernel_size", lambda: F.max_pool2d(x4, 2.0), TypeError, "2.0")
row("max_pool2d", "stride", lambda: F.max_pool2d(x4, 2, stride=0), ValueError, "0")
row("max_pool2d", "padding", lambda: F.max_pool2d(x4, 2, padding=2), ValueError, "(2, 2)")
row("max_pool2d", "padding", lambda: F.max_pool2d(x4, 2, padding=-1), ValueError, "-1")
row("max_pool2d", "dilation", lambda: F.max_pool2d(x4, 2, dilation=0), ValueError, "0")
row("max_pool2d", "output size", lambda: F.max_pool2d(x4, 9), ValueError, "(2, 3, 8, 8)")

for _fn in ("avg_pool2d",):
    _f = getattr(F, _fn)
    row(_fn, "input", lambda f=_f: f([[1.0]], 2), TypeError, "list")
    row(_fn, "input", lambda f=_f: f(x3, 2), ValueError, "(2, 3, 8)")
    row(_fn, "input", lambda f=_f: f(tg.tensor(np.ones((1, 1, 4, 4), int)), 2), TypeError)
    row(_fn, "kernel_size", lambda f=_f: f(x4, 0), ValueError, "0")
    row(_fn, "kernel_size", lambda f=_f: f(x4, (2, 2, 2)), TypeError)
    row(_fn, "stride", lambda f=_f: f(x4, 2, stride=0), ValueError, "0")
    row(_fn, "stride", lambda f=_f: f(x4, 2, stride=-1), ValueError, "-1")
    row(_fn, "padding", lambda f=_f: f(x4, 2, padding=2), ValueError, "(2, 2)")
    row(_fn, "padding", lambda f=_f: f(x4, 2, padding=-1), ValueError, "-1")
    row(_fn, "output size", lambda f=_f: f(x4, 9), ValueError, "(2, 3, 8, 8)")
row("interpolate", "input", lambda: F.interpolate([1.0], 2), TypeError, "list")
row("interpolate", "input", lambda: F.interpolate(x2, 2), ValueError, "(2, 3)")
row("interpolate", "input", lambda: F.interpolate(x3, 4, mode="bilinear"), ValueError, "(2, 3, 8)")
row("interpolate", "size", lambda: F.interpolate(x4, (4, 0)), ValueError, "(4, 0)")
row("interpolate", "size", lambda: F.interpolate(x4, (1, 2, 3)), TypeError, "(1, 2, 3)")
row("interpolate", "scale_factor", lambda: F.interpolate(x4, scale_factor=0.0), ValueError)
row("interpolate", "scale_factor", lambda: F.interpolate(x4, scale_factor=0.01), ValueError)
row("interpolate", "mode", lambda: F.interpolate(x4, 4, mode="area"), ValueError, "'area'")
row("interpolate", "align_corners", lambda: F.interpolate(x4, 4, align_corners=True), ValueError)
row("interpolate", "size", lambda: F.interpolate(x4, 4, 2.0), ValueError, "only one")
row("upsample", "scale_factor", lambda: F.upsample(x4, scale_factor=-2), ValueError, "-2")
row("upsample", "size", lambda: F.upsample(x4), ValueError, "either size")
row("interpolate", "size", lambda: nn.Upsample()(x4), ValueError, "either size")
row("adaptive_avg_pool2d", "input", lambda: F.adaptive_avg_pool2d([1.0], 2), TypeError, "list")
row("adaptive_avg_pool2d", "input", lambda: F.adaptive_avg_pool2d(x2, 2), ValueError, "(2, 3)")
row("adaptive_avg_pool2d", "output_size", lambda: F.adaptive_avg_pool2d(x4, 0), ValueError, "0")
row("adaptive_avg_pool2d", "output_size", lambda: F.adaptive_avg_pool2d(x4, -1), ValueError)
row("adaptive_avg_pool2d", "output_size", lambda: F.adaptive_avg_pool2d(x4, 2.5), TypeError)
row("adaptive_avg_pool2d", "output_size", lambda: F.adaptive_avg_pool2d(x4, (1, 2, 3)), TypeError)

# --- transposed convolutions -----------------------------------------------------------
wt4, wt3 = _r(3, 4, 3, 3), _r(3, 4, 3)
for _fn, _x, _w in (
    ("conv_transpose2d", x4, wt4),
    ("conv_transpose1d", x3, wt3),
    ("conv_transpose2d_relu", x4, wt4),
):
    _f = getattr(F, _fn)
    row(_fn, "input", lambda f=_f, w=_w: f([1.0], w), TypeError, "list")
    row(_fn, "weight", lambda f=_f, x=_x: f(x, None), TypeError, "NoneType")
    row(_fn, "input", lambda f=_f, w=_w: f(x2, w), ValueError, "(2, 3)")
    row(_fn, "weight", lambda f=_f, x=_x: f(x, _r(3, 4)), ValueError, "(3, 4)")
    row(_fn, "stride", lambda f=_f, x=_x, w=_w: f(x, w, stride=0), ValueError, "0")
    row(_fn, "stride", lambda f=_f, x=_x, w=_w: f(x, w, stride=2.0), TypeError, "2.0")
    row(_fn, "padding", lambda f=_f, x=_x, w=_w: f(x, w, padding=-1), ValueError, "-1")
    row(_fn, "padding", lambda f=_f, x=_x, w=_w: f(x, w, padding=9), ValueError, "9")
    row(_fn, "output_padding", lambda f=_f, x=_x, w=_w: f(x, w, stride=2, output_padding=2))
    row(_fn, "output_padding", lambda f=_f, x=_x, w=_w: f(x, w, output_padding=-1), ValueError)
    row(_fn, "dilation", lambda f=_f, x=_x, w=_w: f(x, w, dilation=0), ValueError, "0")
    row(_fn, "groups", lambda f=_f, x=_x, w=_w: f(x, w, groups=0), ValueError, "0")
    row(_fn, "groups", lambda f=_f, x=_x, w=_w: f(x, w, groups=2), ValueError, "2")
    row(_fn, "bias", lambda f=_f, x=_x, w=_w: f(x, w, _r(3)), ValueError, "(3,)")
    row(_fn, "input", lambda f=_f, x=_x, w=_w: f(x, _r(4, *w.shape[1:])), ValueError, "(3")
    row(
        _fn,
        "weight",
        lambda f=_f, x=_x, w=_w: f(x, tg.tensor(w.data.astype(np.float64))),
        TypeError,
        "float64",
    )

# --- normalisation ---------------------------------------------------------------------
rm, rv = _r(3), tg.tensor(np.ones(3, np.float32))
row("batch_norm", "input", lambda: F.batch_norm([1.0], rm, rv), TypeError, "list")
row("batch_norm", "input", lambda: F.batch_norm(_r(3), rm, rv), ValueError, "(3,)")
row("batch_norm", "input", lambda: F.batch_norm(tg.tensor(np.ones((2, 3), int)), rm, rv), TypeError)
row("batch_norm", "running_mean", lambda: F.batch_norm(x4, _r(4), rv), ValueError, "(4,)")
row("batch_norm", "running_var", lambda: F.batch_norm(x4, rm, _r(2)), ValueError, "(2,)")
row("batch_norm", "weight", lambda: F.batch_norm(x4, rm, rv, weight=_r(2)), ValueError, "(2,)")
row("batch_norm", "bias", lambda: F.batch_norm(x4, rm, rv, bias=_r(5)), ValueError, "(5,)")
row("batch_norm", "eps", lambda: F.batch_norm(x4, rm, rv, eps=-1.0), ValueError, "-1")
row("batch_norm", "momentum", lambda: F.batch_norm(x4, rm, rv, training=True, momentum=2.0))
row("batch_norm", "training", lambda: F.batch_norm(_r(1, 3), rm, rv, training=True), ValueError)
row("batch_norm", "running_mean", lambda: F.batch_norm(x4, None, None, training=False))
row("batch_norm_relu", "input", lambda: F.batch_norm_relu(_r(3), rm, rv), ValueError, "(3,)")
row("batch_norm_relu", "weight", lambda: F.batch_norm_relu(x4, rm, rv, _r(2)), ValueError, "(2,)")
row("add_relu", "other", lambda: F.add_relu(x4, "y"), TypeError, "str")
row("add_relu", "shapes", lambda: F.add_relu(x4, _r(5)), ValueError, "(2, 3, 8, 8)", "(5,)")
row(
    "add_relu",
    "other",
    lambda: F.add_relu(x4, tg.tensor(np.ones((2, 3, 8, 8)))),
    TypeError,
    "float64",
)
row("layer_norm", "input", lambda: F.layer_norm("x", 3), TypeError, "str")
row("layer_norm", "normalized_shape", lambda: F.layer_norm(x4, (7,)), ValueError, "(7,)")
row("layer_norm", "normalized_shape", lambda: F.layer_norm(x4, -8), ValueError, "-8")
row("layer_norm", "normalized_shape", lambda: F.layer_norm(x2, (2, 2, 3)), ValueError)
row("layer_norm", "normalized_shape", lambda: F.layer_norm(x4, 8.0), TypeError, "8.0")
row("layer_norm", "weight", lambda: F.layer_norm(x4, 8, weight=_r(7)), ValueError, "(7,)")
row("layer_norm", "bias", lambda: F.layer_norm(x4, 8, bias=_r(7)), ValueError, "(7,)")
row("layer_norm", "eps", lambda: F.layer_norm(x4, 8, eps=-1.0), ValueError, "-1")
row("layer_norm", "normalized_shape", lambda: F.layer_norm(x4, "8"), TypeError, "'8'")
row("layer_norm", "normalized_shape", lambda: F.layer_norm(x4, (8, 0)), ValueError, "(8, 0)")
row("layer_norm", "input", lambda: F.layer_norm(tg.tensor([[1, 2]]), 2), TypeError, "int64")
row("group_norm", "input", lambda: F.group_norm(None, 1), TypeError, "NoneType")
row("group_norm", "num_groups", lambda: F.group_norm(x4, 2), ValueError, "2", "(2, 3, 8, 8)")
row("group_norm", "num_groups", lambda: F.group_norm(x4, 0), ValueError, "0")
row("group_norm", "num_groups", lambda: F.group_norm(x4, 1.5), TypeError, "1.5")
row("group_norm", "weight", lambda: F.group_norm(x4, 3, weight=_r(2)), ValueError, "(2,)")
row("group_norm", "input", lambda: F.group_norm(_r(3), 1), ValueError, "(3,)")
row("group_norm", "eps", lambda: F.group_norm(x4, 3, eps=-1.0), ValueError, "-1")

# --- dropout ---------------------------------------------------------------------------
for _fn in ("dropout", "dropout2d"):
    _f = getattr(F, _fn)
    row(_fn, "input", lambda f=_f: f([1.0], 0.5), TypeError, "list")
    row(_fn, "p", lambda f=_f: f(x4, 1.5), ValueError, "1.5")
    row(_fn, "p", lambda f=_f: f(x4, -0.1), ValueError, "-0.1")
    row(_fn, "p", lambda f=_f: f(x4, float("nan")), ValueError, "nan")
    row(_fn, "p", lambda f=_f: f(x4, "a"), TypeError, "'a'")
    row(_fn, "input", lambda f=_f: f(tg.tensor(np.ones((1, 1, 2, 2), int)), 0.5), TypeError)
row("dropout2d", "input", lambda: F.dropout2d(x2, 0.5), ValueError, "(2, 3)")
row("gaussian_dropout", "input", lambda: F.gaussian_dropout([1.0], 0.5), TypeError, "list")
row("gaussian_dropout", "sigma", lambda: F.gaussian_dropout(x2, -1.0), ValueError, "-1.0")
row("gaussian_dropout", "sigma", lambda: F.gaussian_dropout(x2, float("inf")), ValueError, "inf")

# --- layers ----------------------------------------------------------------------------
row("Linear", "in_features", lambda: nn.Linear(-1, 3), ValueError, "-1")
row("Linear", "out_features", lambda: nn.Linear(3, 0), ValueError, "0")
row("Linear", "in_features", lambda: nn.Linear(2.5, 3), TypeError, "2.5")
row("linear", "weight", lambda: nn.Linear(4, 2)(x2), ValueError, "(2, 3)", "(2, 4)")
for _cls, _k in (("Conv2d", 3), ("Conv1d", 3)):
    _C = getattr(nn, _cls)
    row(_cls, "groups", lambda C=_C: C(3, 4, 3, groups=2), ValueError, "groups=2")
    row(_cls, "groups", lambda C=_C: C(4, 4, 3, groups=0), ValueError, "0")
    row(_cls, "in_channels", lambda C=_C: C(-3, 4, 3), ValueError, "-3")
    row(_cls, "out_channels", lambda C=_C: C(3, 0, 3), ValueError, "0")
    row(_cls, "kernel_size", lambda C=_C: C(3, 4, 0), ValueError, "0")
    row(_cls, "in_channels", lambda C=_C: C(3.0, 4, 3), TypeError, "3.0")
row("conv2d", "input", lambda: nn.Conv2d(2, 4, 3)(x4), ValueError, "(2, 3, 8, 8)")
row("conv1d", "input", lambda: nn.Conv1d(3, 4, 3)(x4), ValueError, "(2, 3, 8, 8)")
row("max_pool2d", "kernel_size", lambda: nn.MaxPool2d(0)(x4), ValueError, "0")
row("max_pool2d", "input", lambda: nn.MaxPool2d(2)(x2), ValueError, "(2, 3)")
row("relu", "input", lambda: nn.ReLU()([1.0]), TypeError, "list")
row("tanh", "input", lambda: nn.Tanh()([1.0]), TypeError, "list")
row("sigmoid", "input", lambda: nn.Sigmoid()([1.0]), TypeError, "list")
row("flatten", "start_dim", lambda: nn.Flatten(5)(x4), ValueError, "5", "(2, 3, 8, 8)")
row("flatten", "end_dim", lambda: nn.Flatten(1, -6)(x4), ValueError, "-6")
row("flatten", "start_dim", lambda: nn.Flatten(3, 1)(x4), ValueError, "end_dim")

for _cls in ("ConvTranspose2d", "ConvTranspose1d"):
    _C = getattr(nn, _cls)
    row(_cls, "groups", lambda C=_C: C(3, 4, 3, groups=2), ValueError, "groups=2")
    row(_cls, "in_channels", lambda C=_C: C(-3, 4, 3), ValueError, "-3")
    row(_cls, "kernel_size", lambda C=_C: C(3, 4, 0), ValueError, "0")
row("conv_transpose2d", "weight", lambda: nn.ConvTranspose2d(2, 4, 3)(x4), ValueError, "(2, 4")
for _cls in ("BatchNorm1d", "BatchNorm2d"):
    _C = getattr(nn, _cls)
    row(_cls, "num_features", lambda C=_C: C(0), ValueError, "0")
    row(_cls, "num_features", lambda C=_C: C(2.5), ValueError, "2.5")
    row(_cls, "momentum", lambda C=_C: C(3, momentum=-1), ValueError, "-1")
    row(_cls, "eps", lambda C=_C: C(3, eps=-1.0), ValueError, "-1")
row("BatchNorm2d", "channels", lambda: nn.BatchNorm2d(4)(x4), ValueError, "(2, 3, 8, 8)")
row("BatchNorm2d", "input", lambda: nn.BatchNorm2d(3)(x2), ValueError, "(2, 3)")
row("BatchNorm1d", "input", lambda: nn.BatchNorm1d(3)(x4), ValueError, "(2, 3, 8, 8)")
row("GroupNorm", "num_groups", lambda: nn.GroupNorm(2, 3), ValueError, "num_channels=3")
row("GroupNorm", "num_groups", lambda: nn.GroupNorm(0, 3), ValueError, "0")
row("group_norm", "weight", lambda: nn.GroupNorm(1, 4)(x4), ValueError, "(4,)")
row("LayerNorm", "normalized_shape", lambda: nn.LayerNorm(-3), ValueError, "-3")
row("LayerNorm", "normalized_shape", lambda: nn.LayerNorm("8"), TypeError, "'8'")
row("layer_norm", "normalized_shape", lambda: nn.LayerNorm(5)(x4), ValueError, "(5,)")
row("Dropout", "p", lambda: nn.Dropout(1.5), ValueError, "1.5")
row("Dropout2d", "p", lambda: nn.Dropout2d(-1), ValueError, "-1")
row("GaussianDropout", "sigma", lambda: nn.GaussianDropout(-1), ValueError, "-1")

row("avg_pool2d", "kernel_size", lambda: nn.AvgPool2d(0)(x4), ValueError, "0")
row("adaptive_avg_pool2d", "output_size", lambda: nn.AdaptiveAvgPool2d(0)(x4), ValueError, "0")

# --- layers, pooling, losses with PyTorch's names (second batch) ---------------------------
row("adaptive_max_pool2d", "input", lambda: F.adaptive_max_pool2d(x2, 2), ValueError, "(2, 3)")
row("adaptive_max_pool2d", "output_size", lambda: nn.AdaptiveMaxPool2d(0)(x4), ValueError, "0")
row("max_pool1d", "input", lambda: F.max_pool1d(x4, 2), ValueError, "(2, 3, 8, 8)")
row("max_pool1d", "kernel_size", lambda: nn.MaxPool1d(0)(x3), ValueError, "0")
row("avg_pool1d", "stride", lambda: nn.AvgPool1d(2, stride=2.5)(x3), TypeError, "2.5")
row("instance_norm", "weight", lambda: F.instance_norm(x4, weight=_r(2)), ValueError, "(2,)")
row("InstanceNorm2d", "channels", lambda: nn.InstanceNorm2d(4)(x4), ValueError, "(2, 3, 8, 8)")
row("InstanceNorm2d", "num_features", lambda: nn.InstanceNorm2d(0), ValueError, "0")
row("embedding", "input", lambda: F.embedding(np.array([5]), _r(4, 2)), IndexError, "[5, 5]")
row("embedding", "input", lambda: nn.Embedding(4, 2)(np.array([0.5])), TypeError, "float64")
row("Embedding", "padding_idx", lambda: nn.Embedding(4, 2, padding_idx=4), ValueError, "4")
row("l1_loss", "shapes", lambda: nn.L1Loss()(x2, _r(3, 2)), ValueError, "(3, 2)")
row("smooth_l1_loss", "beta", lambda: nn.SmoothL1Loss(beta=-1.0)(x2, x2), ValueError, "-1")
row("huber_loss", "delta", lambda: nn.HuberLoss(delta=0.0)(x2, x2), ValueError, "0")
row("huber_loss", "reduction", lambda: F.huber_loss(x2, x2, reduction="avg"), ValueError, "avg")
row("binary_cross_entropy", "input", lambda: nn.BCELoss()(x2 * 9, x2), ValueError, "[0, 1]")
row("kl_div", "reduction", lambda: nn.KLDivLoss(reduction="x")(x2, x2), ValueError, "'x'")
row("cross_entropy", "weight", lambda: F.cross_entropy(x2, tgt, weight=[1.0]), ValueError, "(1,)")
row("nll_loss", "weight", lambda: nn.NLLLoss(np.ones((3, 1)))(x2, tgt), ValueError, "(3, 1)")
row("ModuleList", "index", lambda: nn.ModuleList()[0], IndexError, "0")
row("pad", "padding", lambda: F.pad(x4, (1, 1, 1)), ValueError, "(1, 1, 1)")
row("pad", "mode", lambda: F.pad(x4, (1, 1), mode="wrap"), ValueError, "'wrap'")
row("pad", "padding", lambda: F.pad(x4, (9, 0), mode="reflect"), ValueError, "9")
row("ModuleDict", "key", lambda: nn.ModuleDict()["a"], KeyError, "'a'")

# --- Tensor methods and the core ops behind operators ------------------------------------
row("reshape", "shape", lambda: x2.reshape(4, 4), ValueError, "(2, 3)", "(4, 4)")
row("add", "shapes", lambda: x2 + _r(4), ValueError, "(2, 3)", "(4,)")
row("multiply", "shapes", lambda: x2 * _r(2), ValueError, "(2, 3)", "(2,)")
row("subtract", "shapes", lambda: x2 - _r(3, 2), ValueError, "(3, 2)")
row("divide", "shapes", lambda: x2 / _r(1, 2), ValueError, "(1, 2)")
row("matmul", "shapes", lambda: x2 @ x2, ValueError, "(2, 3)")
row("matmul", "dimension", lambda: x2 @ tg.tensor(2.0), ValueError, "()")
row("permute", "dims", lambda: x2.permute(0, 0), ValueError, "(0, 0)")
row("reduction", "axis", lambda: x2.sum(axis=2), ValueError, "2")
row("reduction", "axis", lambda: x2.mean(axis=-3), ValueError, "-3")
row("item", "elements", lambda: x2.item(), ValueError, "6")
row("Tensor", "grad", lambda: tg.tensor([1, 2], requires_grad=True), TypeError, "int64")
row("backward", "grad", lambda: x2.requires_grad_().sum().backward(np.ones(2)), ValueError)
row("set_num_threads", "n", lambda: tg.set_num_threads(0), ValueError, "0")
row("Tensor", "data", lambda: tg.tensor(["a", "b"]), TypeError, "<U1")
row("Tensor", "data", lambda: tg.tensor([None, 1.0]), TypeError, "object")
row("getitem", "index", lambda: x2[5], IndexError, "(2, 3)")
row("getitem", "index", lambda: x2[:, 3], IndexError, "axis 1")


def _row_id(r: Row) -> str:
    return f"{r[0]}-{r[1]}"


@pytest.mark.parametrize("fn,arg,exc,call,words", ROWS, ids=[_row_id(r) for r in ROWS])
def test_bad_argument_is_named(fn, arg, exc, call, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert type(info.value) in (ValueError, TypeError, IndexError, exc)
    assert msg.startswith(fn) or f"{fn}" in msg.split(":")[0], msg
    if arg not in ("shapes", "output size", "kernel", "dimension", "elements"):
        assert arg in msg, f"argument {arg!r} not named: {msg}"
    for w in words:
        assert w in msg, f"{w!r} missing from: {msg}"


def test_row_count():
    # the report quotes this number; it only grows
    assert len(ROWS) >= 150


_LAYERS_WITHOUT_ARGUMENTS = {"Identity", "Module", "Sequential", "Parameter"}


def _covered() -> set[str]:
    return {r[0] for r in ROWS}


def test_every_public_op_has_rows():
    covered = {c.lower().replace("_", "") for c in _covered()}
    missing = [name for name in F.__all__ if name.lower().replace("_", "") not in covered]
    assert not missing, f"nn.functional ops without bad-input rows: {missing}"
    layers = [
        n
        for n in nn.__all__
        if isinstance(getattr(nn, n), type)
        and issubclass(getattr(nn, n), nn.Module)
        and n not in _LAYERS_WITHOUT_ARGUMENTS
    ]
    # a layer is covered by a row naming the layer or its functional form
    functional = {
        "CrossEntropyLoss": "cross_entropy",
        "MSELoss": "mse_loss",
        "NLLLoss": "nll_loss",
        "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
        "BCELoss": "binary_cross_entropy",
        "KLDivLoss": "kl_div",
    }
    missing = [
        n
        for n in layers
        if n.lower() not in covered and functional.get(n, "?").replace("_", "") not in covered
    ]
    assert not missing, f"nn layers without bad-input rows: {missing}"


def test_errors_come_before_any_kernel(monkeypatch):
    """A rejected conv/pool call never reaches the kernel registry."""
    import tapegrad.kernels as K

    def boom(*a, **k):
        raise AssertionError("kernel resolved for a call that should have been rejected")

    monkeypatch.setattr(K, "resolve", boom)
    for fn, _arg, exc, call, _words in ROWS:
        if fn in ("conv2d", "conv1d", "max_pool2d"):
            with pytest.raises(exc):
                call()


# --- layouts: non-contiguous, negative strides, Fortran order -----------------------------


def _layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """The same values in five memory layouts (one of them read-only)."""
    big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    strided = big[tuple(slice(None, None, 2) for _ in a.shape)]
    flipped = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
    negative = flipped[tuple(slice(None, None, -1) for _ in a.shape)]
    readonly = np.array(a, order="C")
    readonly.flags.writeable = False
    out = {
        "contiguous": np.ascontiguousarray(a),
        "strided": strided,
        "negative": negative,
        "fortran": np.asfortranarray(a),
        "readonly": readonly,
    }
    assert not out["strided"].flags.c_contiguous or a.size <= 1
    assert any(s < 0 for s in out["negative"].strides) or a.size <= 1
    return out


LAYOUT_CASES = [
    ("linear", lambda x, w, b: F.linear(x, w, b), [(5, 4), (3, 4), (3,)]),
    ("linear-3d", lambda x, w: F.linear(x, w), [(2, 5, 4), (3, 4)]),
    ("tanh", F.tanh, [(3, 4)]),
    ("sigmoid", F.sigmoid, [(3, 4)]),
    ("softmax", lambda x: F.softmax(x, dim=1), [(3, 5, 2)]),
    ("log_softmax", lambda x: F.log_softmax(x, dim=0), [(3, 5)]),
    ("cross_entropy", lambda x: F.cross_entropy(x, np.array([0, 3, 1])), [(3, 5)]),
    ("mse_loss", F.mse_loss, [(3, 4), (3, 4)]),
    ("matmul", lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    ("sum", lambda a: a.sum(axis=1), [(3, 4, 2)]),
    ("max", lambda a: a.max(axis=(0, 2)), [(3, 4, 2)]),
]


def _seeded(example, F):
    def run(*a):
        if example.seed is not None:
            tg.manual_seed(example.seed)  # the same dropout mask for every layout
        return example.call(F, *a)

    return run


LAYOUT_CASES += [
    ("nll_loss", lambda x: F.nll_loss(x, np.array([0, 3, 1])), [(3, 5)]),
    ("bce", lambda x, y: F.binary_cross_entropy_with_logits(x, y), [(3, 5), (3, 5)]),
]
LAYOUT_CASES += [  # the declared elementwise ops, by their functional names
    (r.functional, getattr(F, r.functional), [(3, 4, 2)]) for r in ELEMENTWISE.values()
]
KERNEL_OF = {r.functional: op for op, r in ELEMENTWISE.items()}
# every other kernel op: one row per example its call record declares (kernels/examples.py),
# under the op's name, so a new family needs no line here
for _op, _rec in tg.kernels.declarations().items():
    if _op in KERNEL_OF.values():
        continue
    KERNEL_OF[_op] = _op
    for _ex in _rec.examples:
        _name = f"{_op}-{_ex.name}" if _ex.name else _op
        LAYOUT_CASES.append((_name, _seeded(_ex, F), [*_ex.shapes]))

_ULP = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}


def _variants(op: str) -> list[str]:
    return tg.kernels.variants(op)


# one thread (one_thread, conftest.py): layouts are copied before the kernels run, whatever
# the thread count, and it keeps the layouts x dtypes x variants loop quick.
# every layout on every variant, the read-only one on the Numba variants too: they receive
# read-only arrays as writable copies (kernels.registry.WritableInputs), so no second
# specialisation compiles (tests/kernels/test_registry.py counts them)
@pytest.mark.parametrize("name,fn,shapes", LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES])
def test_layouts_give_the_same_results(name, fn, shapes, one_thread):
    rng = np.random.default_rng(7)
    base = [rng.standard_normal(s) for s in shapes]
    kernel_op = KERNEL_OF.get(name.split("-")[0])
    variants = _variants(kernel_op) if kernel_op else [None]
    for dtype in (np.float32, np.float64):
        for variant in variants:
            results = {}
            for layout in ("contiguous", "strided", "negative", "fortran", "readonly"):
                arrays = [_layouts(a.astype(dtype))[layout] for a in base]
                ts = [_leaf(a) for a in arrays]
                ctx = tg.kernels.use(**{kernel_op: variant}) if variant else _nullctx()
                with ctx:
                    y = fn(*ts)
                    proj = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
                    # the read-only layout feeds the backward a read-only gradient too
                    proj.flags.writeable = layout != "readonly"
                    y.backward(proj)
                results[layout] = (y.data.copy(), [t.grad.data.copy() for t in ts])
            ref_y, ref_g = results["contiguous"]
            # kernels copy to C order, so conv/pool are bit-identical; NumPy reductions may
            # sum a Fortran array in another order, so the rest agree to a few ulp, and so do
            # the norm kernels, whose row sums are vectorised with reassociation allowed (a
            # float32 input gradient was seen 1 ulp apart between two processes)
            exact = kernel_op and not kernel_op.endswith("_norm")
            tol = dict(rtol=0, atol=0) if exact else _ULP[dtype]
            for layout, (yy, gg) in results.items():
                msg = f"{name} {variant} {layout} {np.dtype(dtype)}"
                np.testing.assert_allclose(yy, ref_y, err_msg=msg, **tol)
                for g, rg in zip(gg, ref_g):
                    np.testing.assert_allclose(g, rg, err_msg=msg, **tol)


def _leaf(a: np.ndarray) -> tg.Tensor:
    """A leaf holding exactly ``a`` (Tensor() would copy it into C order)."""
    t = tg.tensor(np.zeros(1, dtype=a.dtype), requires_grad=True)
    t.data = a
    return t


def test_views_made_by_ops_feed_kernels():
    """Slices and permutes made on the tape reach conv/pool as non-contiguous arrays."""
    rng = np.random.default_rng(5)
    big = tg.tensor(rng.standard_normal((2, 6, 14, 10)).astype(np.float32), requires_grad=True)
    w = tg.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)

    def make_view():  # (2, 3, 10, 7), strided and with a negative stride
        return big[:, ::2, ::-2, :].permute(0, 1, 3, 2)

    assert not make_view().data.flags.c_contiguous and min(make_view().data.strides) < 0
    dense = tg.tensor(np.ascontiguousarray(make_view().data), requires_grad=True)
    for v in _variants("conv2d"):
        view = make_view()
        with tg.kernels.use(conv2d=v, max_pool2d=_variants("max_pool2d")[-1]):
            big.grad = dense.grad = w.grad = None
            ya = F.max_pool2d(F.conv2d(view, w, padding=1), 2)
            yb = F.max_pool2d(F.conv2d(dense, w, padding=1), 2)
            np.testing.assert_array_equal(ya.data, yb.data)
            ya.sum().backward()
            gw = w.grad.data.copy()
            w.grad = None
            yb.sum().backward()
            np.testing.assert_array_equal(gw, w.grad.data)
            gview = big.grad.data[:, ::2, ::-2, :].transpose(0, 1, 3, 2)
            np.testing.assert_array_equal(gview, dense.grad.data)


class _nullctx:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def test_layout_inputs_are_not_modified():
    """Kernels that need C order copy; the caller's strided array is left alone."""
    rng = np.random.default_rng(3)
    x = np.asfortranarray(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)[..., ::-1]
    before = (x.copy(), w.copy())
    F.conv2d(tg.tensor(x), tg.tensor(w), padding=1)
    F.max_pool2d(tg.tensor(x), 2)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])


@pytest.mark.parametrize("variant", ["auto", "cython"])
def test_evaluate_on_a_memory_mapped_dataset(tmp_path, variant):
    """train.evaluate over np.load(..., mmap_mode="r") batches: read-only views reach the
    kernels (under auto, and with every op forced to its Cython variants)."""
    from tapegrad import data, train, zoo

    rng = np.random.default_rng(0)
    images = rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
    labels = np.arange(6) % 10
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    loader = data.DataLoader(data.TensorDataset(mapped, labels), batch_size=4)
    tg.manual_seed(0)
    model = zoo.get_model("lenet5")
    choices = {}
    if variant == "cython":
        for op in tg.kernels.ops():
            cy = [v for v in tg.kernels.variants(op) if v.endswith("-cython")]
            if cy:
                choices[op] = cy[0]
        if not choices:
            pytest.skip("the Cython kernels are not built here")
    with tg.kernels.use(**choices):
        got = train.evaluate(model, loader)
    copied = data.DataLoader(data.TensorDataset(images.copy(), labels), batch_size=4)
    with tg.kernels.use(**choices):
        want = train.evaluate(model, copied)
    assert got == want
