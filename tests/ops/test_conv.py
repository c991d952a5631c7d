"""conv2d / conv1d ops: gradcheck, the PyTorch oracle, the worked examples, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

CONV_VARIANTS = K.variants("conv2d")


def _t(a, grad=True):
    return tg.Tensor(np.asarray(a), requires_grad=grad)


def _rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- worked examples --------------------------------------------------------------------


def test_seed_conv1d_example():
    """The homework's length-3 filter [2, -1, 3] over [1, 4, 0, -2, 3] gives [-2, 2, 11]."""
    x = tg.Tensor(np.array([[[1.0, 4, 0, -2, 3]]]))
    w = tg.Tensor(np.array([[[2.0, -1, 3]]]))
    y = F.conv1d(x, w)
    np.testing.assert_allclose(y.data.ravel(), [-2, 2, 11])


def test_seed_parameter_counts():
    """3x3 conv 3 -> 4 channels: 108 weights; depthwise-separable: 27 + 12 = 39."""
    full = tg.nn.Conv2d(3, 4, 3, bias=False)
    dw = tg.nn.Conv2d(3, 3, 3, groups=3, bias=False)
    pw = tg.nn.Conv2d(3, 4, 1, bias=False)
    assert full.weight.data.size == 108
    assert dw.weight.data.size + pw.weight.data.size == 39


# --- gradcheck per variant ---------------------------------------------------------------

GRAD_CASES = [
    # (x shape, w shape, stride, padding, dilation, groups)
    ((1, 2, 4, 4), (3, 2, 2, 3), 1, 1, 1, 1),
    ((1, 4, 5, 4), (4, 2, 3, 2), (2, 1), (0, 2), (1, 2), 2),
]


@pytest.mark.parametrize("variant", CONV_VARIANTS)
@pytest.mark.parametrize("case", GRAD_CASES)
def test_conv2d_gradcheck(variant, case):
    xs, ws, stride, padding, dilation, groups = case
    x, w, b = _t(_rand(*xs)), _t(_rand(*ws, seed=1)), _t(_rand(ws[0], seed=2))
    with K.use(conv2d=variant):
        assert tg.gradcheck(
            lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), [x, w, b]
        )


def test_conv1d_gradcheck():
    x, w, b = _t(_rand(2, 2, 7)), _t(_rand(4, 1, 3, seed=1)), _t(_rand(4, seed=2))
    assert tg.gradcheck(lambda x, w, b: F.conv1d(x, w, b, 2, 1, 2, 2), [x, w, b])


def test_same_padding_even_kernel_gradcheck():
    x, w = _t(_rand(1, 2, 5, 4)), _t(_rand(2, 2, 2, 4, seed=1))
    assert tg.gradcheck(lambda x, w: F.conv2d(x, w, padding="same"), [x, w])


# --- PyTorch oracle ---------------------------------------------------------------------

TORCH_CASES = [
    ((2, 3, 8, 7), (4, 3, 3, 3), 1, 1, 1, 1),
    ((3, 4, 9, 6), (6, 2, 2, 3), (2, 3), (2, 0), (2, 1), 2),
    ((1, 4, 7, 7), (8, 1, 3, 3), 2, 1, 1, 4),
    ((2, 3, 5, 5), (3, 1, 3, 1), 1, (1, 0), 1, 3),
    ((2, 2, 6, 6), (2, 2, 3, 3), 1, "same", 2, 1),
    ((2, 2, 6, 5), (3, 2, 2, 2), 1, "same", 1, 1),
    ((2, 2, 6, 5), (3, 2, 2, 2), 1, "valid", 1, 1),
]


def _torch_conv(torch, fn, xs, ws, *args, dtype=np.float64):
    x, w, b = _rand(*xs, dtype=dtype), _rand(*ws, seed=1, dtype=dtype), _rand(ws[0], seed=2)
    b = b.astype(dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = getattr(torch.nn.functional, fn)(tx, tw, tb, *args)
    gy = _rand(*ty.shape, seed=3, dtype=dtype)
    ty.backward(torch.tensor(gy))
    gx, gw, gb = _t(x), _t(w), _t(b)
    y = getattr(F, fn)(gx, gw, gb, *args)
    y.backward(gy)
    return (y.data, gx.grad.data, gw.grad.data, gb.grad.data), (
        ty.detach().numpy(),
        tx.grad.numpy(),
        tw.grad.numpy(),
        tb.grad.numpy(),
    )


@pytest.mark.torch
@pytest.mark.parametrize("variant", CONV_VARIANTS)
@pytest.mark.parametrize("case", TORCH_CASES)
def test_conv2d_matches_torch(variant, case):
    torch = pytest.importorskip("torch")
    with K.use(conv2d=variant):
        ours, theirs = _torch_conv(torch, "conv2d", *case)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.torch
def test_conv2d_matches_torch_float32():
    torch = pytest.importorskip("torch")
    ours, theirs = _torch_conv(
        torch, "conv2d", (2, 8, 10, 10), (16, 8, 3, 3), 1, 1, 1, 1, dtype=np.float32
    )
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize(
    "case",
    [
        ((2, 3, 11), (4, 3, 3), 1, 0, 1, 1),
        ((2, 4, 12), (6, 2, 4), 3, 2, 2, 2),
        ((1, 2, 9), (2, 2, 4), 1, "same", 1, 1),
        ((2, 4, 10), (4, 1, 3), 2, 1, 1, 4),
    ],
)
def test_conv1d_matches_torch(case):
    torch = pytest.importorskip("torch")
    ours, theirs = _torch_conv(torch, "conv1d", *case)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_no_bias_no_weight_grad():
    x = _t(_rand(1, 2, 4, 4))
    w = _t(_rand(3, 2, 3, 3), grad=False)
    y = F.conv2d(x, w, padding=1)
    y.sum().backward()
    assert x.grad is not None and w.grad is None
    assert y.shape == (1, 3, 4, 4)


# --- bad input --------------------------------------------------------------------------


def _x(*s, dtype=np.float64):
    return tg.Tensor(np.zeros(s, dtype=dtype))


@pytest.mark.parametrize(
    "args, kwargs, exc, words",
    [
        ((_x(1, 3, 5, 5), _x(4, 2, 3, 3)), {}, ValueError, ["conv2d", "input", "(1, 3, 5, 5)"]),
        ((_x(3, 5, 5), _x(4, 3, 3, 3)), {}, ValueError, ["conv2d", "input", "4-D"]),
        ((_x(1, 3, 5, 5), _x(4, 3, 3)), {}, ValueError, ["conv2d", "weight"]),
        ((_x(1, 3, 5, 5), _x(4, 3, 3, 3)), {"stride": 0}, ValueError, ["conv2d", "stride"]),
        ((_x(1, 3, 5, 5), _x(4, 3, 3, 3)), {"padding": -1}, ValueError, ["conv2d", "padding"]),
        ((_x(1, 3, 5, 5), _x(4, 3, 3, 3)), {"dilation": 0}, ValueError, ["conv2d", "dilation"]),
        ((_x(1, 3, 2, 5), _x(4, 3, 3, 3)), {}, ValueError, ["conv2d", "kernel", "(1, 3, 2, 5)"]),
        ((_x(1, 3, 5, 5), _x(4, 3, 3, 3)), {"dilation": 3}, ValueError, ["conv2d", "dilated"]),
        ((_x(1, 4, 5, 5), _x(3, 2, 3, 3)), {"groups": 2}, ValueError, ["conv2d", "groups"]),
        ((_x(1, 3, 5, 5), _x(4, 1, 3, 3)), {"groups": 0}, ValueError, ["conv2d", "groups"]),
        ((_x(1, 3, 5, 5), _x(4, 3, 3, 3)), {"padding": "full"}, ValueError, ["padding"]),
        (
            (_x(1, 3, 5, 5), _x(4, 3, 3, 3)),
            {"stride": 2, "padding": "same"},
            ValueError,
            ["same", "stride"],
        ),
        (
            (_x(1, 3, 5, 5, dtype=np.int64), _x(4, 3, 3, 3, dtype=np.int64)),
            {},
            TypeError,
            ["conv2d", "float32"],
        ),
        ((_x(1, 3, 5, 5, dtype=np.float32), _x(4, 3, 3, 3)), {}, TypeError, ["conv2d", "dtype"]),
        ((_x(1, 3, 5, 5), _x(4, 3, 3, 3), _x(3)), {}, ValueError, ["conv2d", "bias"]),
    ],
)
def test_conv2d_bad_input(args, kwargs, exc, words):
    with pytest.raises(exc) as info:
        F.conv2d(*args, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_conv1d_bad_input():
    with pytest.raises(ValueError, match="conv1d.*input.*3-D"):
        F.conv1d(_x(1, 3, 5, 5), _x(4, 3, 3))
    with pytest.raises(ValueError, match="conv1d.*kernel"):
        F.conv1d(_x(1, 3, 2), _x(4, 3, 3))


# --- depthwise ----------------------------------------------------------------------------

DW_VARIANTS = K.variants("depthwise_conv2d")


@pytest.mark.parametrize("variant", DW_VARIANTS)
@pytest.mark.parametrize(
    "case",
    [
        ((2, 3, 5, 4), (3, 1, 3, 2), 1, 1, 1),
        ((1, 2, 6, 5), (6, 1, 2, 3), (2, 1), (1, 2), (1, 2)),  # channel multiplier 3
        ((1, 3, 7, 6), (3, 1, 5, 5), 2, 2, 1),  # 5x5 stride 2 (phase planes)
    ],
)
def test_depthwise_gradcheck(variant, case):
    xs, ws, stride, padding, dilation = case
    x, w, b = _t(_rand(*xs)), _t(_rand(*ws, seed=1)), _t(_rand(ws[0], seed=2))
    with K.use(depthwise_conv2d=variant):
        assert tg.gradcheck(
            lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, xs[1]), [x, w, b]
        )


@pytest.mark.parametrize(
    "c, o, groups, op",
    [
        (4, 4, 4, "depthwise_conv2d"),
        (4, 8, 4, "depthwise_conv2d"),
        (4, 4, 2, "conv2d"),
        (4, 4, 1, "conv2d"),
    ],
)
def test_conv2d_routes_depthwise(c, o, groups, op):
    """groups == C_in goes to the dedicated depthwise kernels, never the grouped GEMM."""
    x = _t(_rand(1, c, 5, 5))
    w = _t(_rand(o, c // groups, 3, 3))
    with K.record() as calls:
        y = F.conv2d(x, w, padding=1, groups=groups)
        y.sum().backward()
    assert [name for name, _ in calls] == [op]
    with K.record() as calls:
        F.conv1d(tg.Tensor(_rand(1, c, 7)), tg.Tensor(_rand(o, c // groups, 3)), groups=groups)
    assert [name for name, _ in calls] == [op]


@pytest.mark.torch
@pytest.mark.parametrize("variant", DW_VARIANTS)
@pytest.mark.parametrize(
    "case",
    [
        ((2, 4, 9, 8), (4, 1, 3, 3), 1, 1, 1, 4),
        ((2, 3, 9, 8), (6, 1, 3, 2), (2, 3), (2, 1), (2, 1), 3),
        ((1, 5, 7, 7), (5, 1, 5, 5), 1, "same", 1, 5),
        ((2, 5, 11, 9), (5, 1, 3, 3), 2, 1, 1, 5),
        ((1, 3, 9, 10), (6, 1, 5, 5), 2, 2, 1, 3),
    ],
)
def test_depthwise_matches_torch(variant, case):
    torch = pytest.importorskip("torch")
    with K.use(depthwise_conv2d=variant):
        ours, theirs = _torch_conv(torch, "conv2d", *case)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


# --- auto rule and autotune ----------------------------------------------------------------


def test_auto_rule_small_direct_large_im2col():
    """The shape rule sends small convs to the direct kernels and large ones to im2col;
    Winograd comes before im2col-numba for 3x3 stride-1 calls only, and winograd-cython
    leads for those with 16 channels or more on outputs of 512 pixels or more (64 channels
    or more on 8x8 up to 511 pixels), after chvec-cython below 128 channels (ahead of it
    on float32 32x32 64->64 where its vector F(4x4, 3x3) path builds, and on float32 8x8
    32->64 with its channel-lane F(2x2, 3x3)); flat-cython leads
    strided calls into at most 64 channels."""
    from tapegrad.kernels.conv import (
        Conv2dCall,
        _conv2d_order,
        _conv2d_rule,
        _winograd_fast4,
        _winograd_lanes_leads,
    )

    small = Conv2dCall((2, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, "<f4")
    large = Conv2dCall((32, 64, 32, 32), (64, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1, "<f4")
    strided = Conv2dCall((32, 64, 32, 32), (64, 64, 3, 3), (2, 2), (1, 1), (1, 1), 1, "<f4")
    assert K.resolved_name("conv2d", small).startswith("direct-")
    narrow = Conv2dCall((32, 8, 32, 32), (8, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1, "<f4")
    small_image = Conv2dCall((16, 32, 8, 8), (64, 32, 3, 3), (1, 1), (1, 1), (1, 1), 1, "<f4")
    if _winograd_fast4():  # F(4x4, 3x3) in vector registers: a quarter of the products
        assert K.resolved_name("conv2d", large) == "winograd-cython"
        assert _conv2d_rule(large).count("winograd-cython") == 1
    else:
        assert K.resolved_name("conv2d", large) == "chvec-cython"  # vectors across channels
        assert _conv2d_rule(large)[1] == "winograd-cython"
    assert _conv2d_rule(large).index("winograd-numba") < _conv2d_rule(large).index("im2col-numba")
    wide_strided = Conv2dCall((32, 128, 16, 16), (256, 128, 3, 3), (2, 2), (1, 1), (1, 1), 1,
                              "<f4")  # fmt: skip
    strided_128 = Conv2dCall((32, 64, 32, 32), (128, 64, 3, 3), (2, 2), (1, 1), (1, 1), 1, "<f4")
    # winograd-cython's channel-lane F(2x2, 3x3) leads on small float32 planes, else chvec's
    lead = "winograd-cython" if _winograd_lanes_leads(small_image) else "chvec-cython"
    assert K.resolved_name("conv2d", small_image) == lead
    assert _conv2d_order(small_image)[0] == "im2col-cython"  # after chvec-cython
    assert K.resolved_name("conv2d", wide_strided).startswith("im2col-")  # 256 channels out
    assert K.resolved_name("conv2d", strided_128) == "flat-cython"  # 128 out from 64 in
    assert K.resolved_name("conv2d", strided) == "flat-cython"  # stride 2, <= 64 channels out
    assert _conv2d_rule(narrow)[0] == "blocked-cython"  # few channels: registers, no GEMM
    assert _conv2d_rule(narrow).index("im2col-cython") < _conv2d_rule(narrow).index(
        "winograd-numba"
    )
    assert "winograd-numba" not in _conv2d_rule(strided)
    assert "winograd-cython" not in _conv2d_rule(strided)


@pytest.mark.parametrize(
    "wshape, call",
    [
        ((4, 4, 3, 3), lambda x, w: F.conv2d(x, w, padding=1)),
        ((8, 1, 3, 3), lambda x, w: F.conv2d(x, w, padding=1, groups=4)),
        ((4, 4, 3, 3), lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1)),
    ],
)
def test_autotune_picks_a_variant_and_agrees(wshape, call):
    x = tg.Tensor(_rand(2, 4, 6, 6))
    w = tg.Tensor(_rand(*wshape, seed=1))
    with K.use(conv2d="reference", depthwise_conv2d="reference", conv_transpose2d="reference"):
        want = call(x, w).data
    was_on, disk_on = K.autotune_enabled(), K.disk_cache_enabled()
    K.autotune(True)
    K.disk_cache(False)
    try:
        with K.record() as calls:
            got = call(x, w).data
        (op, sig), *_ = calls
        assert K.resolved_name(op, sig) in K.variants(op)
    finally:
        K.autotune(was_on)
        K.disk_cache(disk_on)
        K.clear_tuning()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# --- the backward around the kernels: bias gradient, output-gradient layouts, ownership ----


@pytest.mark.parametrize(
    "shape", [(1, 3, 4, 5), (4, 7, 3, 3), (3, 2, 1, 1), (2, 5, 9), (0, 3, 2, 2), (2, 4, 0, 3)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_sum_matches_float64_sum(shape, dtype):
    from tapegrad.ops.conv import channel_sum

    gy = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    got = channel_sum(gy)
    want = gy.astype(np.float64).sum(axis=(0, *range(2, gy.ndim)))
    assert got.dtype == dtype and got.shape == (shape[1],)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def _layouts(shape, seed):
    """The same output gradient as a C-contiguous array, a transposed view and a strided
    slice (both non-contiguous)."""
    g = _rand(*shape, seed=seed)
    t = np.ascontiguousarray(g.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    big = np.zeros((shape[0], 2 * shape[1], shape[2], shape[3] + 3))
    big[:, ::2, :, 1 : 1 + shape[3]] = g
    s = big[:, ::2, :, 1 : 1 + shape[3]]
    assert not t.flags.c_contiguous and not s.flags.c_contiguous
    return g, {"contiguous": g, "transposed": t, "sliced": s}


@pytest.mark.torch
@pytest.mark.parametrize(
    "case",
    [
        # (x shape, w shape, stride, padding, groups): conv2d, depthwise (channel blocks,
        # multiplier 1 and 2, phase planes), grouped
        ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1, 1),
        ((3, 5, 9, 9), (5, 1, 3, 3), 2, 1, 5),
        ((2, 17, 8, 8), (17, 1, 3, 3), 2, 1, 17),
        ((2, 3, 8, 7), (6, 1, 3, 3), 1, 1, 3),
        ((1, 4, 20, 21), (4, 1, 5, 5), 1, 2, 4),
        ((2, 4, 6, 6), (6, 2, 3, 3), 2, 0, 2),
    ],
)
def test_conv2d_gradients_for_every_output_gradient_layout(case):
    """x, weight and bias gradients match PyTorch whether the output gradient arrives
    C-contiguous, as a transposed view or as a strided slice; the bias gradient of a
    second backward adds to the first."""
    torch = pytest.importorskip("torch")
    xs, ws, stride, padding, groups = case
    x, w, b = _rand(*xs), _rand(*ws, seed=1), _rand(ws[0], seed=2)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, 1, groups)
    g, layouts = _layouts(tuple(ty.shape), seed=3)
    ty.backward(torch.tensor(g))
    want = [t.grad.numpy() for t in (tx, tw, tb)]
    for name, gy in layouts.items():
        before = gy.copy()
        ax, aw, ab = _t(x), _t(w), _t(b)
        y = F.conv2d(ax, aw, ab, stride, padding, 1, groups)
        y.backward(gy)
        for got, ref in zip((ax.grad.data, aw.grad.data, ab.grad.data), want):
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9, err_msg=name)
        assert not np.may_share_memory(ax.grad.data, gy)
        np.testing.assert_array_equal(gy, before)  # the caller's gradient is not written
        y2 = F.conv2d(ax, aw, ab, stride, padding, 1, groups)
        y2.backward(gy)
        np.testing.assert_allclose(ab.grad.data, 2 * want[2], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ax.grad.data, 2 * want[0], rtol=1e-9, atol=1e-9)
