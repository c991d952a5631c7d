"""One validation per op: a bad argument reaches the op's ``check`` whichever way it comes in.

Every kernel-backed Function of ``tapegrad.ops`` declares ``check``; the table below gives
one bad call per Function, made through ``tapegrad.nn.functional``, through
``Function.apply`` directly and through the Tensor method where there is one. All entries
must raise the same exception with the same message, before any kernel runs.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
import tapegrad.ops
from tapegrad.autograd import Function
from tapegrad.ops import (
    activation,
    conv,
    conv_transpose,
    dropout,
    elementwise,
    fused,
    nn_extra,
    norm,
    pool,
    upsample,
)


def _t(*shape, dtype=np.float32):
    return tg.Tensor(np.ones(shape, dtype=dtype), requires_grad=dtype != np.complex64)


x4 = _t(1, 3, 5, 5)
x3 = _t(1, 3, 5)
v = _t(2, 4)
z = tg.Tensor(np.ones((2, 3), np.complex64))
rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)

# Function -> (exception, the message's start, entries: name -> zero-argument call)
CASES = {
    conv.Conv2d: (
        ValueError,
        "conv2d: weight expects 2 input channels",
        {
            "F.conv2d": lambda: F.conv2d(x4, _t(4, 2, 3, 3)),
            "apply": lambda: conv.Conv2d.apply(x4, _t(4, 2, 3, 3)),
        },
    ),
    conv.DepthwiseConv2d: (
        ValueError,
        "conv2d: bias must have shape (3,)",
        {
            "F.conv2d": lambda: F.conv2d(x4, _t(3, 1, 3, 3), _t(2), groups=3),
            "apply": lambda: conv.DepthwiseConv2d.apply(x4, _t(3, 1, 3, 3), _t(2), groups=3),
        },
    ),
    conv_transpose.ConvTranspose2d: (
        ValueError,
        "conv_transpose2d: weight's first dimension (2) must equal the input channels (3)",
        {
            "F.conv_transpose2d": lambda: F.conv_transpose2d(x4, _t(2, 2, 3, 3)),
            "apply": lambda: conv_transpose.ConvTranspose2d.apply(x4, _t(2, 2, 3, 3)),
        },
    ),
    conv_transpose.ConvTranspose2dReLU: (
        ValueError,
        "conv_transpose2d_relu: output_padding (2, 2) must be smaller than stride (2, 2)",
        {
            "F.conv_transpose2d_relu": lambda: F.conv_transpose2d_relu(
                x4, _t(3, 2, 3, 3), stride=2, output_padding=2
            ),
            "apply": lambda: conv_transpose.ConvTranspose2dReLU.apply(
                x4, _t(3, 2, 3, 3), None, 2, 0, 2
            ),
        },
    ),
    pool.MaxPool2d: (
        ValueError,
        "max_pool2d: padding (2, 2) must be at most half the kernel size (2, 2)",
        {
            "F.max_pool2d": lambda: F.max_pool2d(x4, 2, padding=2),
            "apply": lambda: pool.MaxPool2d.apply(x4, 2, padding=2),
        },
    ),
    pool.AvgPool2d: (
        ValueError,
        "avg_pool2d: input must be 4-D (N, C, H, W), got shape (1, 3, 5)",
        {
            "F.avg_pool2d": lambda: F.avg_pool2d(x3, 2),
            "apply": lambda: pool.AvgPool2d.apply(x3, 2),
        },
    ),
    upsample.Upsample: (
        ValueError,
        "interpolate: either size or scale_factor should be given",
        {
            "F.interpolate": lambda: F.interpolate(x4),
            "apply": lambda: upsample.Upsample.apply(x4),
        },
    ),
    pool.AdaptiveAvgPool2d: (
        ValueError,
        "adaptive_avg_pool2d: output_size must be positive",
        {
            "F.adaptive_avg_pool2d": lambda: F.adaptive_avg_pool2d(x4, 0),
            "apply": lambda: pool.AdaptiveAvgPool2d.apply(x4, 0),
        },
    ),
    nn_extra.AdaptiveMaxPool2d: (
        ValueError,
        "adaptive_max_pool2d: output_size must be positive",
        {
            "F.adaptive_max_pool2d": lambda: F.adaptive_max_pool2d(x4, (2, 0)),
            "apply": lambda: nn_extra.AdaptiveMaxPool2d.apply(x4, (2, 0)),
        },
    ),
    norm.BatchNorm: (
        ValueError,
        "batch_norm: weight must have shape (3,)",
        {
            "F.batch_norm": lambda: F.batch_norm(x4, rm, rv, _t(2), training=True),
            "apply": lambda: norm.BatchNorm.apply(x4, _t(2), None, rm, rv, True),
        },
    ),
    norm.LayerNorm: (
        ValueError,
        "layer_norm: normalized_shape (3,) must match the trailing dimensions",
        {
            "F.layer_norm": lambda: F.layer_norm(x4, 3),
            "apply": lambda: norm.LayerNorm.apply(x4, None, None, 3),
        },
    ),
    norm.GroupNorm: (
        ValueError,
        "group_norm: num_groups=2 must be positive and divide the channels",
        {
            "F.group_norm": lambda: F.group_norm(x4, 2),
            "apply": lambda: norm.GroupNorm.apply(x4, None, None, 2),
        },
    ),
    dropout.Dropout: (
        ValueError,
        "dropout: p must be in [0, 1], got 1.5",
        {
            "F.dropout": lambda: F.dropout(v, 1.5),
            "F.dropout (eval)": lambda: F.dropout(v, 1.5, training=False),
            "apply": lambda: dropout.Dropout.apply(v, 1.5),
        },
    ),
    dropout.Dropout2d: (
        ValueError,
        "dropout2d: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape (2, 4)",
        {
            "F.dropout2d": lambda: F.dropout2d(v),
            "apply": lambda: dropout.Dropout2d.apply(v),
        },
    ),
    dropout.GaussianDropout: (
        ValueError,
        "gaussian_dropout: sigma must be a finite non-negative float, got -1.0",
        {
            "F.gaussian_dropout": lambda: F.gaussian_dropout(v, -1.0),
            "apply": lambda: dropout.GaussianDropout.apply(v, -1.0),
        },
    ),
    activation.ReLU: (
        TypeError,
        "relu: input must be real-valued, got complex64 (shape (2, 3))",
        {
            "F.relu": lambda: F.relu(z),
            "apply": lambda: activation.ReLU.apply(z),
            "Tensor.relu": lambda: z.relu(),
        },
    ),
    activation.Softmax: (
        ValueError,
        "softmax: dim 2 is out of range for input of shape (2, 4)",
        {
            "F.softmax": lambda: F.softmax(v, dim=2),
            "apply": lambda: activation.Softmax.apply(v, 2),
            "Tensor.softmax": lambda: v.softmax(dim=2),
        },
    ),
    activation.LogSoftmax: (
        ValueError,
        "log_softmax: dim -3 is out of range for input of shape (2, 4)",
        {
            "F.log_softmax": lambda: F.log_softmax(v, dim=-3),
            "apply": lambda: activation.LogSoftmax.apply(v, -3),
            "Tensor.log_softmax": lambda: v.log_softmax(dim=-3),
        },
    ),
}


def _elementwise_cases() -> dict:
    """One case per Function of a declared elementwise op (its ``record`` is marked
    ``elementwise``): an int64 input, which the record's check refuses. A new family of such
    ops needs no line here."""
    out = {}
    ints = tg.Tensor(np.ones((2, 4), np.int64))
    for fn in _op_functions():
        rec = getattr(fn, "record", None)
        if rec is None or not getattr(rec, "elementwise", False) or not rec.__dict__.get("op"):
            continue
        f = getattr(F, rec.functional)
        out[fn] = (
            TypeError,
            f"{rec.functional}: input must be float32 or float64, got int64 (shape (2, 4))",
            {
                f"F.{rec.functional}": lambda f=f: f(ints),
                "apply": lambda fn=fn: fn.apply(ints),
            },
        )
    return out


def _op_functions() -> list[type[Function]]:
    """Every Function class defined in a module of tapegrad.ops."""
    found = []
    for info in pkgutil.iter_modules(tapegrad.ops.__path__):
        mod = importlib.import_module(f"tapegrad.ops.{info.name}")
        for obj in vars(mod).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Function)
                and obj.__module__ == mod.__name__
                and obj not in found
            ):
                found.append(obj)
    return found


CASES.update(_elementwise_cases())
CASES.update(
    {
        fused.Conv2dReLU: (
            ValueError,
            "conv2d_relu: weight expects 2 input channels",
            {
                "F.conv2d_relu": lambda: F.conv2d_relu(x4, _t(4, 2, 3, 3)),
                "apply": lambda: fused.Conv2dReLU.apply(x4, _t(4, 2, 3, 3)),
            },
        ),
        fused.DepthwiseConv2dReLU: (
            ValueError,
            "conv2d_relu: bias must have shape (3,)",
            {
                "F.conv2d_relu": lambda: F.conv2d_relu(x4, _t(3, 1, 3, 3), _t(2), groups=3),
                "apply": lambda: fused.DepthwiseConv2dReLU.apply(
                    x4, _t(3, 1, 3, 3), _t(2), groups=3
                ),
            },
        ),
        fused.BatchNormReLU: (
            ValueError,
            "batch_norm_relu: weight must have shape (3,)",
            {
                "F.batch_norm_relu": lambda: F.batch_norm_relu(x4, rm, rv, _t(2), training=True),
                "apply": lambda: fused.BatchNormReLU.apply(x4, _t(2), None, rm, rv, True),
            },
        ),
        elementwise.Add: (
            ValueError,
            "add: operands could not be broadcast together: shapes (1, 3, 5, 5) and (2,)",
            {
                "a + b": lambda: x4 + _t(2),
                "apply": lambda: elementwise.Add.apply(x4, _t(2)),
            },
        ),
        fused.AddReLU: (
            ValueError,
            "add_relu: input (1, 3, 5, 5) and other (2,) do not broadcast",
            {
                "F.add_relu": lambda: F.add_relu(x4, _t(2)),
                "apply": lambda: fused.AddReLU.apply(x4, _t(2)),
            },
        ),
    }
)


def _kernel_backed(fn: type[Function]) -> bool:
    """A Function whose forward selects a kernel variant (the ops a user calls; the
    gradient-of-gradient ops run the variant their forward call already chose)."""
    if fn.forward is Function.forward or fn.__name__.startswith("_"):  # a shared base
        return False
    src = inspect.getsource(fn.forward)
    return "tuning.resolve" in src or ".run(ctx" in src  # directly or through a shared body


def test_every_kernel_backed_function_declares_a_check_and_a_case():
    backed = [fn for fn in _op_functions() if _kernel_backed(fn)]
    assert conv.Conv2d in backed and norm.BatchNorm in backed  # the walk finds them
    for fn in backed:
        assert fn.check is not None, f"{fn.__qualname__} has no check (see CONTRIBUTING.md)"
        assert fn in CASES, f"{fn.__qualname__}: add a bad-input case to {__name__}.CASES"


@pytest.mark.parametrize("fn", list(CASES), ids=lambda f: f.__name__)
def test_bad_input_same_error_through_every_entry(fn):
    exc, start, entries = CASES[fn]
    messages = {}
    for name, call in entries.items():
        with K.record() as calls, pytest.raises(exc) as info:
            call()
        assert calls == [], f"{name}: a kernel ran before the error"
        messages[name] = str(info.value)
    assert len(set(messages.values())) == 1, messages
    assert next(iter(messages.values())).startswith(start), messages


def test_check_normalises_what_forward_receives():
    # apply takes the functional's arguments; forward gets them checked and normalised
    assert conv.Conv2d.check(x4.data, _t(2, 3, 3, 3).data, None, 2, 1)[3:] == (
        (2, 2),
        (1, 1),
        (1, 1),
        1,
    )
    assert pool.MaxPool2d.check(x4.data, 2, ceil_mode=True)[1:] == (
        (2, 2),
        (2, 2),
        (0, 0),
        (1, 1),
        (3, 3),
    )
    y = conv.Conv2d.apply(x4, _t(2, 3, 3, 3), None, 2, 1)
    assert y.shape == (1, 2, 3, 3)


def test_direct_apply_with_same_padding_that_needs_an_extra_pixel_points_to_functional():
    w = _t(2, 3, 2, 2)
    assert F.conv2d(x4, w, padding="same").shape == (1, 2, 5, 5)
    with pytest.raises(ValueError, match="conv2d: padding='same' with kernel .* call "):
        conv.Conv2d.apply(x4, w, None, 1, "same")
    assert conv.Conv2d.apply(x4, _t(2, 3, 3, 3), None, 1, "same").shape == (1, 2, 5, 5)


def test_traced_arguments_are_the_checked_ones():
    seen = []

    def tracer(fn, args, kwargs, result):
        seen.append((fn, args, kwargs))

    from tapegrad.autograd import trace_ops

    with trace_ops(tracer):
        F.max_pool2d(x4, 2)
    (fn, args, kwargs) = seen[-1]
    assert fn is pool.MaxPool2d and args[0] is x4 and kwargs == {}
    assert args[1:] == ((2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
