"""Every depthwise_conv2d variant agrees with ``reference`` (and the reference with conv2d's)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
from tests._sizes import covering, examples

VARIANTS = K.variants("depthwise_conv2d")


@st.composite
def dw_case(draw):
    n, c, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 10))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 10))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bias = draw(st.booleans())
    return n, c, m, h, w, kh, kw, stride, padding, dilation, dtype, bias


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=examples(15), deadline=None)
@given(case=dw_case())
def test_depthwise_variant_matches_conv2d_reference(variant, case):
    n, c, m, h, w, kh, kw, stride, padding, dilation, dtype, bias = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c * m, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype) if bias else None
    args = (stride, padding, dilation, c)
    ref = K.get("conv2d", "reference")  # the general grouped conv: an independent oracle
    mod = K.get("depthwise_conv2d", variant)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    y = mod.forward(x, wt, b, *args)
    y_r = ref.forward(x, wt, b, *args)
    assert y.dtype == dtype and y.shape == y_r.shape
    np.testing.assert_allclose(y, y_r, **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gw = mod.backward(gy, x, wt, *args, True, True)
    gx_r, gw_r = ref.backward(gy, x, wt, *args, True, True)
    np.testing.assert_allclose(gx, gx_r, **tol)
    np.testing.assert_allclose(gw, gw_r, **tol)
    assert mod.backward(gy, x, wt, *args, False, True)[0] is None


# default run: every stride x padding at dilation 1 and one multiplier, then dilation 2 and
# multiplier 2 at padding 1, stride 2; the whole grid under -m slow
FUSED_ROWS = covering(
    itertools.product(VARIANTS, [0, 1, 2], [1, 2], [1, 2], [(1, 1), (2, 2), (2, 1), (1, 2)]),
    lambda v, padding, dilation, m, stride: (
        (dilation, m) == (1, 1) or (padding, stride) == (1, (2, 2))
    ),
)


@pytest.mark.parametrize("variant,padding,dilation,m,stride", FUSED_ROWS)
def test_depthwise_3x3_fused_rows(variant, padding, dilation, m, stride):
    """The 3x3 stride-1 and stride-2 cases (fused inner rows; stride 1's flipped-filter input
    gradient) on odd planes wide enough to have interior rows and columns and borders."""
    rng = np.random.default_rng(padding * 10 + dilation * 3 + m)
    n, c, h, w = 2, 3, 9, 13
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = rng.standard_normal((c * m, 1, 3, 3)).astype(dtype)
        b = rng.standard_normal(c * m).astype(dtype)
        args = (stride, (padding, padding), (dilation, dilation), c)
        ref = K.get("conv2d", "reference")
        mod = K.get("depthwise_conv2d", variant)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
        y = mod.forward(x, wt, b, *args)
        np.testing.assert_allclose(y, ref.forward(x, wt, b, *args), **tol)
        gy = rng.standard_normal(y.shape).astype(dtype)
        for got, want in zip(
            mod.backward(gy, x, wt, *args, True, True), ref.backward(gy, x, wt, *args, True, True)
        ):
            np.testing.assert_allclose(got, want, **tol)


# default run: every stride for 3x3 kernels and one multiplier, 5x5 with multiplier 2 at two
# strides; the whole grid under -m slow
PHASE_PLANES = covering(
    itertools.product(VARIANTS, [3, 5], [(1, 1), (2, 2), (2, 1), (1, 3)], [1, 2]),
    lambda v, k, stride, m: (k, m) == (3, 1) or (k == 5 and m == 2 and stride[0] == 2),
)


@pytest.mark.parametrize("variant,k,stride,m", PHASE_PLANES)
def test_depthwise_phase_planes(variant, k, stride, m):
    """Dilation-1 calls (phase planes: padded, split by stride phase, taps as unit-stride
    streams; the input gradient as one small convolution per phase) on odd planes, batch 1
    and 2, 5 channels, every padding from 0 to 2."""
    rng = np.random.default_rng(k * 100 + stride[0] * 10 + stride[1] + m)
    ref = K.get("conv2d", "reference")
    mod = K.get("depthwise_conv2d", variant)
    for n, c, h, w, padding, dtype in [
        (1, 5, 11, 9, (0, 2), np.float32),
        (2, 5, 13, 17, (1, 1), np.float64),
        (1, 3, 7, 6, (2, 0), np.float64),
    ]:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = rng.standard_normal((c * m, 1, k, k)).astype(dtype)
        b = rng.standard_normal(c * m).astype(dtype)
        args = (stride, padding, (1, 1), c)
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
        y = mod.forward(x, wt, b, *args)
        np.testing.assert_allclose(y, ref.forward(x, wt, b, *args), **tol)
        gy = rng.standard_normal(y.shape).astype(dtype)
        want = ref.backward(gy, x, wt, *args, True, True)
        for need in ((True, True), (True, False), (False, True)):
            got = mod.backward(gy, x, wt, *args, *need)
            for g, r, asked in zip(got, want, need):
                assert (g is None) != asked
                if asked:
                    np.testing.assert_allclose(g, r, **tol)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "reference"])
@pytest.mark.parametrize(
    "k, stride, padding, width",
    [
        (5, 1, 2, 35),
        (3, 2, 1, 35),
        (5, 2, 2, 35),
        (2, 2, 0, 35),
        (3, 2, 1, 19),
        (5, 2, 2, 21),
        (5, 1, 2, 20),
        (3, 1, 1, 33),
        (5, 1, 2, 64),
    ],
)
def test_depthwise_wide_planes_repeat_and_match_float64(variant, k, stride, padding, width):
    """Output planes wider than a float32 vector, with widths and heights that are not
    multiples of the vector width or of the rows computed together (the last band and the
    last vector of a row overlap the previous ones; kernel 2 stride 2 has no discarded
    columns; widths 19 and 21 give stride-2 outputs 10 and 11 wide, half a float32 vector
    and more; stride-1 rows of 20, 33 and 64 outputs: one vector and an overlapping one,
    two vectors at a time and an overlapping pair, pairs only), 37 channels: float32
    against the float64 reference, and a second call repeats the first bit for bit
    (fixed-order sums)."""
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.standard_normal((3, 37, 26, width))
    wt = rng.standard_normal((37, 1, k, k)) / k
    b = rng.standard_normal(37)
    args = ((stride, stride), (padding, padding), (1, 1), 37)
    ref = K.get("conv2d", "reference")
    mod = K.get("depthwise_conv2d", variant)
    y64 = ref.forward(x, wt, b, *args)
    gy = rng.standard_normal(y64.shape)
    want = (y64, *ref.backward(gy, x, wt, *args, True, True))
    x32, w32, b32, gy32 = (a.astype(np.float32) for a in (x, wt, b, gy))
    runs = [
        (mod.forward(x32, w32, b32, *args), *mod.backward(gy32, x32, w32, *args, True, True))
        for _ in range(2)
    ]
    for got, again, ref64 in zip(*runs, want):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, again)
        np.testing.assert_allclose(got, ref64, rtol=1e-4, atol=1e-4 * np.abs(ref64).max())


# channel blocks (direct-cython's small planes: stride 2, and stride 1 outputs up to 15
# columns wide for floats, 8 for doubles): channel counts around the 16-float / 8-double
# block, several blocks


@st.composite
def blocked_case(draw):
    k = draw(st.sampled_from([3, 5]))
    stride, padding = draw(st.sampled_from([1, 2])), draw(st.integers(0, 2))
    lo = max(1, k - 2 * padding)
    hi = 13 if stride == 1 else 15  # stride 1: outputs at most 15 wide
    h, w = draw(st.integers(lo, hi)), draw(st.integers(lo, hi))
    c = draw(st.sampled_from([1, 7, 16, 17, 37]))
    return draw(st.integers(1, 3)), c, draw(st.integers(1, 2)), h, w, k, stride, padding


def _dw_arrays(case, dtype, seed=0):
    n, c, m, h, w, k, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c * m, 1, k, k)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype)
    return x, wt, b, ((stride, stride), (padding, padding), (1, 1), c)


@settings(max_examples=examples(20), deadline=None)
@given(case=blocked_case(), dtype=st.sampled_from([np.float32, np.float64]))
def test_depthwise_channel_blocks_match_reference_and_repeat(case, dtype):
    """Odd plane sizes, padding 0 to 2, batch 1 to 3, kernel 3 and 5, stride 1 and 2,
    channel counts that are not multiples of the block, multiplier 1 and 2: direct-cython
    against the reference, and a second call repeats the first bit for bit."""
    x, wt, b, args = _dw_arrays(case, dtype)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    y = mod.forward(x, wt, b, *args)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    got = (y, *mod.backward(gy, x, wt, *args, True, True))
    want = (ref.forward(x, wt, b, *args), *ref.backward(gy, x, wt, *args, True, True))
    again = (mod.forward(x, wt, b, *args), *mod.backward(gy, x, wt, *args, True, True))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for g, r, a in zip(got, want, again):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, **tol)
        np.testing.assert_array_equal(g, a)


@settings(max_examples=examples(15), deadline=None)
@given(
    case=blocked_case(),
    dtype=st.sampled_from([np.float32, np.float64]),
    need=st.sampled_from([(True, True), (True, False), (False, True), (False, False)]),
)
def test_depthwise_backward_with_bias_matches_backward(case, dtype, need):
    """direct-cython's one-pass backward (multiplier 1 on channel blocks) gives the input and
    weight gradients of ``backward`` bit for bit and the bias gradient of a float64 sum,
    repeatably; other calls leave the bias gradient to the op (None)."""
    x, wt, b, args = _dw_arrays(case, dtype)
    mod = K.get("depthwise_conv2d", "direct-cython")
    y = mod.forward(x, wt, b, *args)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx, gw, gb = mod.backward_with_bias(gy, x, wt, *args, *need)
    want = mod.backward(gy, x, wt, *args, *need)
    for got, ref in zip((gx, gw), want):
        assert (got is None) == (ref is None)
        if ref is not None:
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, ref)
    size = x.itemsize
    fused = (
        wt.shape[0] == x.shape[1] and mod._blocked(x.shape, y.shape[3], *args[:2], itemsize=size)
    ) or mod._phase_fused(x.shape, wt.shape, y.shape[3], *args[:3], size)
    assert (gb is not None) == fused
    if fused:
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(
            gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=tol, atol=tol
        )
        np.testing.assert_array_equal(gb, mod.backward_with_bias(gy, x, wt, *args, *need)[2])


@pytest.mark.torch
@settings(max_examples=examples(5), deadline=None)
@given(case=blocked_case())
def test_depthwise_channel_blocks_match_torch(case):
    torch = pytest.importorskip("torch")
    import tapegrad.nn.functional as F

    x, wt, b, (stride, padding, _, c) = _dw_arrays(case, np.float64, seed=2)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(wt, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, torch.tensor(b), stride, padding, groups=c)
    gy = np.random.default_rng(3).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    gx, gw = tg.Tensor(x, requires_grad=True), tg.Tensor(wt, requires_grad=True)
    with K.use(depthwise_conv2d="direct-cython"):
        y = F.conv2d(gx, gw, tg.Tensor(b), stride, padding, groups=c)
        y.backward(gy)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gx.grad.data, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw.grad.data, tw.grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k, stride, padding", [(3, 2, 1), (5, 2, 2), (3, 1, 0)])
def test_depthwise_channel_blocks_gradcheck(k, stride, padding):
    import tapegrad.nn.functional as F

    rng = np.random.default_rng(k + stride)
    x = tg.Tensor(rng.standard_normal((2, 17, 7, 6)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((17, 1, k, k)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(17), requires_grad=True)
    with K.use(depthwise_conv2d="direct-cython"):
        assert tg.gradcheck(
            lambda x, w, b: F.conv2d(x, w, b, stride, padding, groups=17), [x, w, b]
        )


@pytest.mark.parametrize("k, padding, width", [(3, 1, 18), (5, 2, 28), (3, 0, 19)])
def test_depthwise_stride1_wide_channel_blocks_op(k, padding, width):
    """Stride-1 planes with outputs 16+ columns wide (not whole vector pairs for float64: 18,
    28, 17) whose backward runs in one pass on channel blocks (``_cb_all``), through
    ``conv2d``'s op with a bias: float64 gradcheck, and PyTorch's values and gradients."""
    import tapegrad.nn.functional as F

    rng = np.random.default_rng(k * width)
    mod = K.get("depthwise_conv2d", "direct-cython")
    xs, ws = (2, 17, 6, width), (17, 1, k, k)
    wo = width + 2 * padding - k + 1
    assert mod._cb_all(xs, ws, wo, (1, 1), (padding, padding), (1, 1), 8)
    assert not mod._blocked(xs, wo, (1, 1), (padding, padding), itemsize=8)
    x = tg.Tensor(rng.standard_normal(xs), requires_grad=True)
    w = tg.Tensor(rng.standard_normal(ws), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(17), requires_grad=True)
    with K.use(depthwise_conv2d="direct-cython"):
        assert tg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, padding, groups=17), [x, w, b])
    torch = pytest.importorskip("torch")
    tx, tw, tb = (torch.tensor(t.data, requires_grad=True) for t in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, 1, padding, groups=17)
    gy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    x.grad = w.grad = b.grad = None
    with K.use(depthwise_conv2d="direct-cython"):
        y = F.conv2d(x, w, b, 1, padding, groups=17)
        y.backward(gy)
    for got, want in (
        (y.data, ty),
        (x.grad.data, tx.grad),
        (w.grad.data, tw.grad),
        (b.grad.data, tb.grad),
    ):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "n, c, m, hw, k, stride, padding, dtype",
    [
        (1, 19, 1, (15, 13), (5, 5), (2, 2), (2, 2), np.float32),  # odd input, kernel 5
        (2, 7, 2, (9, 16), (3, 3), (2, 2), (0, 1), np.float64),  # multiplier 2, padding 0
        (1, 17, 3, (11, 10), (3, 3), (2, 2), (1, 1), np.float32),  # multiplier 3
        (3, 5, 1, (7, 6), (5, 5), (1, 1), (2, 0), np.float64),  # stride 1, 8 or fewer wide
        (2, 19, 1, (13, 11), (4, 2), (2, 1), (3, 1), np.float32),  # run-time taps, padding > k - 1
        (1, 9, 2, (10, 12), (3, 5), (3, 2), (2, 2), np.float64),  # stride 3 x 2
    ],
)
def test_depthwise_channel_blocks_gathered_input_gradient(n, c, m, hw, k, stride, padding, dtype):
    """The input gradient on channel blocks, gathered phase by phase (3x3 and 5x5 at stride 1
    and 2 unrolled, other kernels and strides at run time; channel counts not a multiple of
    the block, multipliers 1 to 3, padding 0 to past the kernel, batch 1): the reference's
    values, 64-byte aligned, bit for bit the same alone and in the one-pass backward, and
    at 1 and 2 threads."""
    rng = np.random.default_rng(c * 10 + m)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    x = rng.standard_normal((n, c, *hw)).astype(dtype)
    wt = rng.standard_normal((c * m, 1, *k)).astype(dtype)
    args = (stride, padding, (1, 1), c)
    y = mod.forward(x, wt, None, *args)
    assert mod._blocked(x.shape, y.shape[3], stride, padding, itemsize=x.itemsize)
    assert y.ctypes.data % 64 == 0
    gy = rng.standard_normal(y.shape).astype(dtype)
    old = tg.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            tg.set_num_threads(threads)
            runs.append(mod.backward(gy, x, wt, *args, True, False)[0])
    finally:
        tg.set_num_threads(old)
    gx = runs[0]
    assert gx.ctypes.data % 64 == 0
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, ref.backward(gy, x, wt, *args, True, False)[0], **tol)
    np.testing.assert_array_equal(gx, runs[1])
    np.testing.assert_array_equal(gx, mod.backward_with_bias(gy, x, wt, *args, True, True)[0])


@pytest.mark.parametrize(
    "n, c, m, hw, stride, dtype",
    [
        (11, 37, 1, (4, 4), 1, np.float32),  # two image groups, three blocks, the last short
        (17, 19, 3, (8, 8), 2, np.float32),  # multiplier 3: blocks straddle input channels
        (9, 40, 1, (9, 7), 2, np.float64),  # 8-double blocks, an odd plane
        (10, 21, 1, (13, 13), 1, np.float32),  # stride 1, outputs 13 wide: floats block
        (3, 9, 2, (11, 14), 1, np.float32),  # stride 1, outputs 14 wide, multiplier 2
    ],
)
def test_depthwise_channel_blocks_many_images_and_blocks(n, c, m, hw, stride, dtype):
    """Channel blocks over more images than one weight-gradient task takes (8) and more
    channels than one block: each block's own weights and bias (laid out once per call),
    each output channel's input plane at multiplier 3, and the one-pass backward's bias
    gradient against the reference, at 1 and 2 threads bit for bit."""
    rng = np.random.default_rng(n * c * m)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    x = rng.standard_normal((n, c, *hw)).astype(dtype)
    wt = rng.standard_normal((c * m, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(c * m).astype(dtype)
    args = ((stride, stride), (1, 1), (1, 1), c)
    y0 = ref.forward(x, wt, b, *args)
    assert mod._blocked(x.shape, y0.shape[3], *args[:2], itemsize=x.itemsize)
    gy = rng.standard_normal(y0.shape).astype(dtype)
    want = (y0, *ref.backward(gy, x, wt, *args, True, True), gy.sum(axis=(0, 2, 3)))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    old = tg.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            tg.set_num_threads(threads)
            y = mod.forward(x, wt, b, *args)
            gx, gw = mod.backward(gy, x, wt, *args, True, True)
            fused = mod.backward_with_bias(gy, x, wt, *args, True, True)
            runs.append((y, gx, gw, *fused))
    finally:
        tg.set_num_threads(old)
    y, gx, gw, fgx, fgw, gb = runs[0]
    for got, ref_ in zip((y, gx, gw), want):
        np.testing.assert_allclose(got, ref_, **tol)
    np.testing.assert_array_equal(fgx, gx)
    np.testing.assert_array_equal(fgw, gw)
    assert (gb is None) == (m > 1)
    if gb is not None:
        np.testing.assert_allclose(gb, want[3], **tol)
    for a, r in zip(runs[0], runs[1]):
        if a is not None:
            np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("width, float_blocks", [(8, True), (9, True), (15, True), (16, False)])
def test_depthwise_stride1_channel_block_widths(width, float_blocks):
    """At stride 1 the forward and input gradient take channel blocks for float32 outputs
    narrower than one 16-float vector, and for float64 outputs up to 8 columns wide (one
    8-double vector); wider ones take the phase planes."""
    mod = K.get("depthwise_conv2d", "direct-cython")
    shape, s1, p1 = (2, 16, width, width), (1, 1), (1, 1)
    assert mod._blocked(shape, width, s1, p1, itemsize=4) == float_blocks
    assert mod._blocked(shape, width, s1, p1, itemsize=8) == (width <= 8)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("width", [4, 7, 13])
def test_depthwise_stride1_weight_gradient_row_blocks(k, width):
    """The stride-1 weight gradient on channel blocks takes four output pixels of a row at a
    time and the rest of the row one by one: output widths of 4, 7 and 13 columns (one
    block, a block and a tail of 3, three blocks and a tail of 1) match the reference."""
    rng = np.random.default_rng(k * width)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    x = rng.standard_normal((2, 17, 5, width))
    wt = rng.standard_normal((17, 1, k, k))
    args = ((1, 1), (k // 2, k // 2), (1, 1), 17)
    assert mod._blocked(x.shape, width, (1, 1), args[1], weight=True)
    gy = rng.standard_normal((2, 17, 5, width))
    got = mod.backward(gy, x, wt, *args, False, True)[1]
    np.testing.assert_allclose(
        got, ref.backward(gy, x, wt, *args, False, True)[1], rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_channel_blocks_nonfinite_like_reference(stride):
    """A NaN and an infinity in the input (and in the output gradient) reach the outputs and
    gradients whose sums hold them, as in the reference's sums over the padded input."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 19, 9, 8))
    wt = rng.standard_normal((19, 1, 3, 3))
    x[0, 3, 0, 0], x[1, 17, 4, 5] = np.nan, np.inf
    args = ((stride, stride), (1, 1), (1, 1), 19)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    y, y_r = mod.forward(x, wt, None, *args), ref.forward(x, wt, None, *args)
    gy = rng.standard_normal(y.shape)
    gy[1, 2, 1, 1] = np.inf
    got = (y, *mod.backward(gy, x, wt, *args, True, True))
    want = (y_r, *ref.backward(gy, x, wt, *args, True, True))
    fused = mod.backward_with_bias(gy, x, wt, *args, True, True)
    got += fused
    want += (*want[1:], gy.sum(axis=(0, 2, 3)))
    for g, r in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("k, stride", [(3, 2), (5, 2), (3, 1), (5, 1)])
def test_depthwise_large_planes_keep_phase_planes(k, stride):
    """Planes too large for a channel block in cache take the phase planes (all three
    passes); a NaN in the input reaches the weight gradient as in the reference (the phase
    planes' non-finite recheck)."""
    rng = np.random.default_rng(k + stride)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    args = ((stride, stride), (1, 1), (1, 1), 3)
    assert not mod._blocked((1, 3, 131, 130), 65, (stride, stride), (1, 1), weight=True)
    for dtype, nan in ((np.float32, False), (np.float64, True)):
        x = rng.standard_normal((1, 3, 131, 130)).astype(dtype)
        wt = rng.standard_normal((3, 1, k, k)).astype(dtype)
        if nan:
            x[0, 1, 30, 0] = np.nan
        y = mod.forward(x, wt, None, *args)
        gy = rng.standard_normal(y.shape).astype(dtype)
        got = (y, *mod.backward(gy, x, wt, *args, True, True))
        want = (ref.forward(x, wt, None, *args), *ref.backward(gy, x, wt, *args, True, True))
        for g, r in zip(got, want):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3, equal_nan=True)


def test_depthwise_wide_stride1_weight_gradient_phase_planes_any_team():
    """Stride-1 3x3 weight gradients of planes 32 outputs wide take the phase planes in
    tasks of 16 output channels x 8 images: 19 images (a short last group) and 21 channels
    with multiplier 2 (42 filters: a short last block) match the float64 reference, and 1
    and 2 threads give the same bits (the groups are added in image order)."""
    rng = np.random.default_rng(32)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    x = rng.standard_normal((19, 21, 12, 32))
    wt = rng.standard_normal((42, 1, 3, 3))
    args = ((1, 1), (1, 1), (1, 1), 21)
    assert not mod._blocked(x.shape, 32, (1, 1), (1, 1), weight=True, taps=9)
    gy = rng.standard_normal((19, 42, 12, 32))
    want = ref.backward(gy, x, wt, *args, False, True)[1]
    x32, wt32, gy32 = (a.astype(np.float32) for a in (x, wt, gy))
    old = tg.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            tg.set_num_threads(threads)
            runs.append(mod.backward(gy32, x32, wt32, *args, False, True)[1])
    finally:
        tg.set_num_threads(old)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_allclose(runs[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(
        mod.backward(gy, x, wt, *args, False, True)[1], want, rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize(
    "n, c, h, w, k, padding, dtype, path",
    [
        # phase planes: rows of whole vector pairs (32 or 48 floats, 32 doubles) or planes
        # past the channel blocks' limits
        (3, 19, 9, 32, 3, (1, 1), np.float32, "phase"),  # a short last channel block of the 16
        (2, 33, 16, 50, 3, (1, 0), np.float32, "phase"),  # outputs 48 columns wide
        (9, 17, 12, 30, 3, (0, 2), np.float64, "phase"),  # a short last image group of the 8
        (2, 5, 7, 33, 2, (1, 0), np.float32, "phase"),  # even kernel, padding past half of it
        (1, 3, 130, 131, 5, (2, 2), np.float64, "phase"),  # 5x5: too large a plane for blocks
        (2, 3, 131, 130, 4, (3, 1), np.float32, "phase"),  # 4x4 (the tap list), padding k - 1
        (1, 2, 115, 114, 3, (1, 1), np.float32, "phase"),  # 3x3 past _CB_PLANE_S1
        # channel blocks: outputs 16 columns wide or not a multiple of the vector
        (3, 19, 9, 33, 3, (1, 1), np.float32, "cb"),  # a short last channel block of the 16
        (2, 33, 16, 18, 3, (1, 0), np.float32, "cb"),  # outputs 16 columns wide
        (9, 17, 12, 35, 3, (0, 2), np.float64, "cb"),  # a short last image group of the 8
        (2, 5, 7, 40, 2, (1, 0), np.float32, "cb"),  # even kernel, padding past half of it
        (2, 18, 20, 28, 5, (2, 2), np.float32, "cb"),  # 5x5, outputs 28 wide
        (1, 2, 112, 111, 3, (1, 1), np.float32, "cb"),  # 3x3 at _CB_PLANE_S1, batch 1
        (2, 17, 9, 31, 3, (2, 3), np.float32, "neither"),  # padding past k - 1: two passes
    ],
)
def test_depthwise_stride1_one_pass_backward(n, c, h, w, k, padding, dtype, path):
    """Stride-1 multiplier-1 calls run the whole backward in one pass, on the phase planes
    (``_phase_fused``) or on channel blocks (``_cb_all``): every subset of the gradients
    matches the reference (the bias gradient a float64 sum), the input and weight gradients
    equal each pass run alone bit for bit (the input gradient alone takes the phase planes
    for the "cb" rows too: the gather adds the taps in the same order), and 1 and 2
    threads give the same bits. Padding past k - 1 runs the passes apart (the bias
    gradient left to the op)."""
    rng = np.random.default_rng(n * 100 + k)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, 1, k, k)).astype(dtype)
    args = ((1, 1), padding, (1, 1), c)
    y = mod.forward(x, wt, None, *args)
    rules = (mod._phase_fused, mod._cb_all)
    assert [f(x.shape, wt.shape, y.shape[3], *args[:3], x.itemsize) for f in rules] == [
        path == "phase",
        path == "cb",
    ]
    gy = rng.standard_normal(y.shape).astype(dtype)
    want = (*ref.backward(gy, x, wt, *args, True, True), gy.astype(np.float64).sum(axis=(0, 2, 3)))
    alone = (
        mod.backward(gy, x, wt, *args, True, False)[0],
        mod.backward(gy, x, wt, *args, False, True)[1],
    )
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    old = tg.get_num_threads()
    try:
        for need in itertools.product((True, False), repeat=2):
            runs = []
            for threads in (1, 2):
                tg.set_num_threads(threads)
                runs.append(mod.backward_with_bias(gy, x, wt, *args, *need))
            rows = zip(runs[0], runs[1], want, (*alone, None), (*need, path != "neither"))
            for got, again, r, a, asked in rows:
                assert (got is None) != asked
                if asked:
                    assert got.dtype == dtype
                    np.testing.assert_allclose(got, r, **tol)
                    np.testing.assert_array_equal(got, again)
                    if a is not None:
                        np.testing.assert_array_equal(got, a)
        got = mod.backward(gy, x, wt, *args, True, True)
        for g, a in zip(got, alone):
            np.testing.assert_array_equal(g, a)
    finally:
        tg.set_num_threads(old)


@pytest.mark.parametrize("width, rule", [(32, "_phase_fused"), (34, "_cb_all")])
def test_depthwise_stride1_one_pass_backward_nonfinite_like_reference(width, rule):
    """A NaN in the input and an infinity in the output gradient of a one-pass backward
    (phase planes, channel blocks) reach the gradients whose sums hold them, as in the
    reference."""
    rng = np.random.default_rng(7)
    mod, ref = K.get("depthwise_conv2d", "direct-cython"), K.get("depthwise_conv2d", "reference")
    x = rng.standard_normal((2, 17, 10, width))
    wt = rng.standard_normal((17, 1, 3, 3))
    x[0, 3, 0, 0], x[1, 16, 4, width - 1] = np.nan, np.inf
    args = ((1, 1), (1, 1), (1, 1), 17)
    assert getattr(mod, rule)(x.shape, wt.shape, width, *args[:3], x.itemsize)
    gy = rng.standard_normal((2, 17, 10, width))
    gy[1, 2, 1, 1] = np.inf
    got = mod.backward_with_bias(gy, x, wt, *args, True, True)
    want = (*ref.backward(gy, x, wt, *args, True, True), gy.sum(axis=(0, 2, 3)))
    for g, r in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10, equal_nan=True)
