"""Empty tensors through every kernel op and every variant, forward and backward.

A batch of 0 (or no channels) gives PyTorch's empty results: outputs of the right shape
with no elements, zero weight gradients, empty input gradients. Arguments too large for
a kernel's C int (a stride of 2**40) are a ValueError naming the argument, in every variant.
"""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F


def _rand(*shape):
    return np.random.default_rng(sum(shape) + len(shape)).standard_normal(shape)


def _bn(t, x, training):
    c = x.shape[1]
    rm, rv = np.linspace(-1, 1, c), np.linspace(1, 2, c)
    if t is tg:
        y = F.batch_norm(x, rm, rv, training=training)
    else:
        rm, rv = t.tensor(rm), t.tensor(rv)
        y = t.nn.functional.batch_norm(x, rm, rv, training=training)
        rm, rv = rm.numpy(), rv.numpy()
    # an empty batch leaves the running statistics as they were
    np.testing.assert_array_equal(rm, np.linspace(-1, 1, c))
    np.testing.assert_array_equal(rv, np.linspace(1, 2, c))
    return y


# (name, kernel op, call(t, *tensors) with t the module: tapegrad.nn.functional or torch, shapes)
CASES = [
    (
        "conv2d-batch0",
        "conv2d",
        lambda f, x, w: f.conv2d(x, w, padding=1),
        [(0, 3, 6, 6), (4, 3, 3, 3)],
    ),
    ("conv2d-batch0-1x1", "conv2d", lambda f, x, w: f.conv2d(x, w), [(0, 3, 5, 5), (4, 3, 1, 1)]),
    (
        "conv2d-cout0",
        "conv2d",
        lambda f, x, w: f.conv2d(x, w, padding=1),
        [(2, 3, 6, 6), (0, 3, 3, 3)],
    ),
    ("conv1d-batch0", "conv2d", lambda f, x, w: f.conv1d(x, w), [(0, 3, 7), (4, 3, 3)]),
    (
        "depthwise-batch0",
        "depthwise_conv2d",
        lambda f, x, w: f.conv2d(x, w, padding=1, groups=3),
        [(0, 3, 6, 6), (6, 1, 3, 3)],
    ),
    (
        "conv_transpose2d-batch0",
        "conv_transpose2d",
        lambda f, x, w: f.conv_transpose2d(x, w, stride=2),
        [(0, 3, 4, 4), (3, 2, 3, 3)],
    ),
    ("max_pool2d-batch0", "max_pool2d", lambda f, x: f.max_pool2d(x, 2), [(0, 3, 4, 4)]),
    (
        "max_pool2d-padded-batch0",
        "max_pool2d",
        lambda f, x: f.max_pool2d(x, 3, 2, 1),
        [(0, 2, 5, 5)],
    ),
    ("avg_pool2d-batch0", "avg_pool2d", lambda f, x: f.avg_pool2d(x, 2), [(0, 3, 4, 4)]),
    (
        "adaptive-batch0",
        "adaptive_avg_pool2d",
        lambda f, x: f.adaptive_avg_pool2d(x, 2),
        [(0, 3, 4, 4)],
    ),
    (
        "adaptive-channels0",
        "adaptive_avg_pool2d",
        lambda f, x: f.adaptive_avg_pool2d(x, 2),
        [(2, 0, 4, 4)],
    ),
    ("batch_norm-eval-batch0", "batch_norm", False, [(0, 3, 4, 4)]),
    ("batch_norm-train-batch0", "batch_norm", True, [(0, 3, 4, 4)]),
    ("layer_norm-batch0", "layer_norm", lambda f, x: f.layer_norm(x, (4, 4)), [(0, 3, 4, 4)]),
    ("group_norm-batch0", "group_norm", lambda f, x: f.group_norm(x, 3), [(0, 3, 4, 4)]),
    ("relu-empty", "relu", lambda f, x: f.relu(x), [(0, 3, 4)]),
    ("dropout-empty", "dropout", lambda f, x: f.dropout(x, 0.5), [(0, 3, 4)]),
    ("dropout2d-empty", "dropout2d", lambda f, x: f.dropout2d(x, 0.5), [(0, 3, 4, 4)]),
]


def _params():
    return [
        pytest.param(case, v, id=f"{case[0]}-{v}")
        for case in CASES
        for v in tg.kernels.variants(case[1])
    ]


def _call(case, module, ts):
    name, _, fn, _ = case
    if isinstance(fn, bool):  # batch norm: running statistics built per framework
        return _bn(tg if module is F else module, *ts, training=fn)
    f = module if module is F else module.nn.functional
    return fn(f, *ts)


@pytest.mark.parametrize("case,variant", _params())
def test_empty_inputs_give_empty_results(case, variant):
    name, op, _, shapes = case
    arrays = [_rand(*s) for s in shapes]
    ts = [tg.tensor(a, requires_grad=True) for a in arrays]
    with tg.kernels.use(**{op: variant}):
        y = _call(case, F, ts)
        y.backward(np.ones(y.shape))
    assert y.data.dtype == np.float64
    for t, a in zip(ts, arrays):
        assert t.grad.shape == a.shape, name
        assert not t.grad.data.any(), name  # nothing flows from an empty output or batch
    try:
        import torch
    except ImportError:
        assert y.data.size == 0, name
        return
    tx = [torch.tensor(a, requires_grad=True) for a in arrays]
    try:
        ty = _call(case, torch, tx)
        ty.backward(torch.ones(ty.shape, dtype=ty.dtype))
    except RuntimeError:
        # PyTorch refuses 0 output channels, and the backward of 0 channels of adaptive
        # pooling; tapegrad gives the empty result and zero gradients
        assert y.data.size == 0, name
        return
    assert y.shape == tuple(ty.shape), name
    np.testing.assert_array_equal(y.data, ty.detach().numpy())
    for t, tt in zip(ts, tx):
        want = tt.grad.numpy() if tt.grad is not None else np.zeros(t.grad.shape)
        np.testing.assert_array_equal(t.grad.data, want)


_HUGE = 2**40
BIG_ARGS = [
    ("conv2d", "stride", lambda x4, w: F.conv2d(x4, w, stride=_HUGE)),
    ("conv2d", "padding", lambda x4, w: F.conv2d(x4, w, padding=_HUGE)),
    ("conv2d", "dilation", lambda x4, w: F.conv2d(x4, w, dilation=(1, _HUGE))),
    ("conv_transpose2d", "stride", lambda x4, w: F.conv_transpose2d(x4, w, stride=_HUGE)),
    ("max_pool2d", "stride", lambda x4, w: F.max_pool2d(x4, 2, stride=_HUGE)),
    ("max_pool2d", "kernel_size", lambda x4, w: F.max_pool2d(x4, _HUGE)),
    ("avg_pool2d", "stride", lambda x4, w: F.avg_pool2d(x4, 2, stride=_HUGE)),
]


@pytest.mark.parametrize("op,arg,call", BIG_ARGS, ids=[f"{a}-{b}" for a, b, _ in BIG_ARGS])
def test_arguments_beyond_a_c_int_are_named(op, arg, call):
    x = tg.tensor(_rand(1, 2, 5, 5).astype(np.float32))
    w = tg.tensor(_rand(2, 2, 3, 3).astype(np.float32))
    for variant in tg.kernels.variants(op):
        with tg.kernels.use(**{op: variant}), pytest.raises(ValueError, match=arg) as info:
            call(x, w)
        assert str(2**31 - 1) in str(info.value), str(info.value)


@pytest.mark.parametrize("op", ["batch_norm", "layer_norm"])
def test_norm_kernels_take_empty_inputs(op):
    """Each variant's statistics pass on an empty input (as autotune may time it) returns
    empty results instead of reading past the array."""
    for variant in tg.kernels.variants(op):
        mod = tg.kernels.get(op, variant)
        if op == "batch_norm":
            x = np.zeros((0, 3, 4), np.float32)
            y, mean, invstd, var = mod.bn_forward_train(x, np.ones(3), np.zeros(3), 1e-5, True)
            assert y.shape == x.shape and mean.shape == invstd.shape == var.shape == (3,)
        else:
            x = np.zeros((3, 0), np.float32)
            y, mean, invstd = mod.row_forward(x, None, None, 1e-5)
            assert y.shape == x.shape and mean.shape == invstd.shape == (3,)
        assert np.isfinite(mean).all() and np.isfinite(invstd).all(), variant
