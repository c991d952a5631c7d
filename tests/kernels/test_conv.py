"""Every registered conv2d variant agrees with ``reference`` over random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tapegrad.kernels.conv.reference import _out_size
from tests._sizes import examples
from tests.kernels._conv_helpers import assert_forward_relu_is_epilogue, conv_arrays
from tests.kernels._conv_helpers import tol as _tol

VARIANTS = [v for v in K.variants("conv2d") if v != "reference"]


@st.composite
def conv_case(draw):
    """Shapes for one conv2d call: groups 1, 2 or C, stride 1..3, padding 0..2, dilation 1..2."""
    n = draw(st.integers(1, 4))
    gkind = draw(st.sampled_from(["one", "two", "depthwise"]))
    if gkind == "one":
        c, groups = draw(st.integers(1, 4)), 1
        o = draw(st.integers(1, 5))
    elif gkind == "two":
        groups = 2
        c, o = 2 * draw(st.integers(1, 2)), 2 * draw(st.integers(1, 3))
    else:
        c = draw(st.integers(1, 4))
        groups, o = c, c * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 9))
    bias = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return n, c, o, h, w, kh, kw, stride, padding, dilation, groups, bias, dtype


def _arrays(case, seed=0):
    n, c, o, h, w, kh, kw, stride, padding, dilation, groups, bias, dtype = case
    return conv_arrays(n, c, o, h, w, kh, kw, bias, dtype, groups, seed)


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=examples(15), deadline=None)
@given(case=conv_case())
def test_conv2d_variant_matches_reference(variant, case):
    stride, padding, dilation, groups, dtype = case[7], case[8], case[9], case[10], case[12]
    x, w, b = _arrays(case)
    ref = K.get("conv2d", "reference")
    mod = K.get("conv2d", variant)
    y_ref = ref.forward(x, w, b, stride, padding, dilation, groups)
    y = mod.forward(x, w, b, stride, padding, dilation, groups)
    assert y.shape == y_ref.shape
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y, y_ref, **_tol(dtype))
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx_r, gw_r = ref.backward(gy, x, w, stride, padding, dilation, groups, True, True)
    gx, gw = mod.backward(gy, x, w, stride, padding, dilation, groups, True, True)
    np.testing.assert_allclose(gx, gx_r, **_tol(dtype))
    np.testing.assert_allclose(gw, gw_r, **_tol(dtype))
    # asking for one gradient only gives that one
    gx1, gw1 = mod.backward(gy, x, w, stride, padding, dilation, groups, True, False)
    assert gw1 is None
    np.testing.assert_allclose(gx1, gx_r, **_tol(dtype))


IM2COL = [v for v in VARIANTS if v.startswith("im2col")]


@pytest.mark.parametrize("variant", IM2COL)
@settings(max_examples=examples(12), deadline=None)
@given(case=conv_case(), chunk=st.integers(1, 4), need=st.sampled_from(["both", "x", "w"]))
def test_im2col_batch_chunks_match_reference(variant, case, chunk, need):
    """The chunked paths (columns for a few images at a time, the forward one image at a
    time) forced on small shapes: chunk boundaries, a partial last chunk, groups, strides,
    and each gradient asked alone."""
    from tapegrad.kernels.conv import im2col as alg

    stride, padding, dilation, groups, dtype = case[7], case[8], case[9], case[10], case[12]
    x, w, b = _arrays(case)
    ref, mod = K.get("conv2d", "reference"), K.get("conv2d", variant)
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(wd, kw, stride[1], padding[1], dilation[1])
    saved = alg._CHUNK_ABOVE, alg._CHUNK_BYTES, alg._FORWARD_CHUNK_IMAGE
    try:
        alg._CHUNK_ABOVE, alg._FORWARD_CHUNK_IMAGE = 0, 0
        alg._CHUNK_BYTES = chunk * c * kh * kw * ho * wo * x.itemsize  # `chunk` images each
        y = mod.forward(x, w, b, stride, padding, dilation, groups)
        y_ref = ref.forward(x, w, b, stride, padding, dilation, groups)
        np.testing.assert_allclose(y, y_ref, **_tol(dtype))
        gy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
        nx, nw = need in ("both", "x"), need in ("both", "w")
        gx, gw = mod.backward(gy, x, w, stride, padding, dilation, groups, nx, nw)
    finally:
        alg._CHUNK_ABOVE, alg._CHUNK_BYTES, alg._FORWARD_CHUNK_IMAGE = saved
    gx_r, gw_r = ref.backward(gy, x, w, stride, padding, dilation, groups, True, True)
    assert (gx is None) != nx and (gw is None) != nw
    if nx:
        np.testing.assert_allclose(gx, gx_r, **_tol(dtype))
    if nw:
        np.testing.assert_allclose(gw, gw_r, **_tol(dtype))


def _threaded_module():
    from tapegrad.kernels import cblas

    try:
        mod = K.get("conv2d", "im2col-cython")
    except RuntimeError:
        pytest.skip("the Cython kernels are not built")

    if cblas.gemm_addresses() is None:
        pytest.skip("NumPy's BLAS is not an ILP64 OpenBLAS: no threaded im2col drivers")
    return mod


@settings(max_examples=examples(12), deadline=None)
@given(
    case=conv_case(),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
    block_cols=st.sampled_from([1, 40, 512]),
)
def test_im2col_threaded_drivers_match_reference(case, team, need, block_cols):
    """im2col-cython's threaded drivers (each thread unfolds, multiplies and folds whole
    images with its own buffers and BLAS calls) forced on every shape: groups, strides,
    dilations, padding, batch 1, a team of 1 to 3 threads whatever the batch, each gradient
    asked alone."""
    mod = _threaded_module()
    stride, padding, dilation, groups, dtype = case[7], case[8], case[9], case[10], case[12]
    x, w, b = _arrays(case)
    if w.shape[2:] == (1, 1):
        w = np.ascontiguousarray(np.repeat(np.repeat(w, 2, axis=2), 2, axis=3))
        if x.shape[2] + 2 * padding[0] < dilation[0] + 1 or x.shape[3] + 2 * padding[1] < (
            dilation[1] + 1
        ):
            return
    ref = K.get("conv2d", "reference")
    saved = mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS
    try:
        mod._THREADS_MIN_PLANE, mod._team_size = 0, lambda macs: team
        mod._BLOCK_COLS = block_cols  # one image per GEMM, or blocks of several side by side
        y = mod.forward(x, w, b, stride, padding, dilation, groups)
        assert mod._threaded(x, w, stride, padding, *y.shape[2:]) is not None
        gy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
        nx, nw = need in ("both", "x"), need in ("both", "w")
        gx, gw = mod.backward(gy, x, w, stride, padding, dilation, groups, nx, nw)
    finally:
        mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS = saved
    np.testing.assert_allclose(y, ref.forward(x, w, b, stride, padding, dilation, groups),
                               **_tol(dtype))  # fmt: skip
    gx_r, gw_r = ref.backward(gy, x, w, stride, padding, dilation, groups, True, True)
    assert (gx is None) != nx and (gw is None) != nw
    if nx:
        np.testing.assert_allclose(gx, gx_r, **_tol(dtype))
    if nw:
        assert gw.dtype == dtype and gw.shape == w.shape
        np.testing.assert_allclose(gw, gw_r, **_tol(dtype))


@pytest.mark.parametrize("variant", IM2COL)
@pytest.mark.parametrize("pixels", [(1, 1), (4, 4), (8, 8), (9, 7)])  # both sides of 64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_pointwise_path_matches_reference(variant, pixels, dtype):
    """1x1, stride 1, no padding: a GEMM per image, no unfold (with a dilation, which a 1x1
    kernel ignores, and with a bias); a strided or padded 1x1 takes the general path."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, *pixels)).astype(dtype)
    w = rng.standard_normal((6, 5, 1, 1)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    ref, mod = K.get("conv2d", "reference"), K.get("conv2d", variant)
    cases = [((1, 1), (0, 0), (1, 1)), ((1, 1), (0, 0), (2, 3)), ((2, 1), (0, 0), (1, 1))]
    for stride, padding, dilation in [*cases, ((1, 1), (1, 0), (1, 1))]:
        args = (stride, padding, dilation, 1)
        y = mod.forward(x, w, b, *args)
        np.testing.assert_allclose(y, ref.forward(x, w, b, *args), **_tol(dtype))
        gy = rng.standard_normal(y.shape).astype(dtype)
        got, want = (
            mod.backward(gy, x, w, *args, True, True),
            ref.backward(gy, x, w, *args, True, True),
        )
        for g, r in zip(got, want):
            assert g.dtype == dtype
            np.testing.assert_allclose(g, r, **_tol(dtype))


def test_reference_against_direct_sum():
    """The reference itself against the definition, written as plain loops."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    stride, padding, dilation, groups = (2, 1), (1, 2), (1, 2), 2
    y = K.get("conv2d", "reference").forward(x, w, b, stride, padding, dilation, groups)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)))
    ho = _out_size(6, 3, 2, 1, 1)
    wo = _out_size(5, 2, 1, 2, 2)
    want = np.zeros((2, 6, ho, wo))
    for n in range(2):
        for o in range(6):
            g = o // 3
            for oh in range(ho):
                for ow in range(wo):
                    s = b[o]
                    for c in range(2):
                        for i in range(3):
                            for j in range(2):
                                s += xp[n, g * 2 + c, oh * 2 + i, ow + 2 * j] * w[o, c, i, j]
                    want[n, o, oh, ow] = s
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block_cols", [1, 512])
def test_im2col_threaded_weight_gradient_is_repeatable(block_cols):
    """The batch is summed in chunks fixed by its shapes, each in image order: a call
    repeated, at 1, 2 or 3 threads, gives the same weight gradient bit for bit, whichever
    thread finishes first (one image per GEMM, or blocks of images side by side)."""
    mod = _threaded_module()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 6, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 6, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((8, 8, 16, 16)).astype(np.float32)
    saved = mod._team_size, mod._BLOCK_COLS
    try:
        mod._BLOCK_COLS = block_cols
        mod._team_size = lambda macs: 1
        first = mod.backward(gy, x, w, (1, 1), (1, 1), (1, 1), 1, False, True)[1]
        for team in (2, 3, 2):
            mod._team_size = lambda macs, team=team: team
            for _ in range(8):
                again = mod.backward(gy, x, w, (1, 1), (1, 1), (1, 1), 1, False, True)[1]
                np.testing.assert_array_equal(again, first)
    finally:
        mod._team_size, mod._BLOCK_COLS = saved


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_cols", [1, 512])
def test_im2col_threaded_stride2_rows_match_reference(dtype, block_cols):
    """Stride-2 unfold rows as whole vectors of even lanes: output rows of 3 to 33 columns
    (shorter than a vector, one vector, between), with and without padding (the image
    itself read up to its last element), one image per GEMM or several side by side,
    forward and both gradients against the float64 reference."""
    mod = _threaded_module()
    ref = K.get("conv2d", "reference")
    rng = np.random.default_rng(13)
    saved = mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS
    try:
        mod._THREADS_MIN_PLANE, mod._team_size = 0, lambda macs: 2
        mod._BLOCK_COLS = block_cols
        for (h, wd), k, p in [((7, 7), 3, 0), ((16, 16), 3, 1), ((28, 28), 3, 1),
                              ((33, 34), 3, 1), ((66, 67), 3, 0), ((29, 31), 5, 2)]:  # fmt: skip
            x = rng.standard_normal((3, 2, h, wd))
            w = rng.standard_normal((4, 2, k, k))
            args = ((2, 2), (p, p), (1, 1), 1)
            y_ref = ref.forward(x, w, None, *args)
            gy = rng.standard_normal(y_ref.shape)
            gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
            xd, wt, gyd = (a.astype(dtype) for a in (x, w, gy))
            y = mod.forward(xd, wt, None, *args)
            gx, gw = mod.backward(gyd, xd, wt, *args, True, True)
            for got, want in ((y, y_ref), (gx, gx_r), (gw, gw_r)):
                assert got.dtype == dtype
                np.testing.assert_allclose(got, want, **_tol(dtype))
    finally:
        mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS = saved


@settings(max_examples=examples(12), deadline=None)
@given(case=conv_case(), team=st.integers(1, 3), block_cols=st.sampled_from([1, 40, 512]))
def test_im2col_forward_relu_is_the_bias_relu_epilogue_bit_for_bit(case, team, block_cols):
    """The bias and ReLU applied by the threaded forward as each block leaves its GEMM: the
    values and the mask of the forward without bias followed by ``kernels/fused``'s
    reference epilogue, bit for bit, NaN and inf included (one image per GEMM or blocks of
    several, groups, a team of 1 to 3 threads)."""
    mod = _threaded_module()
    stride, padding, dilation, groups = case[7], case[8], case[9], case[10]
    x, w, b = _arrays(case, seed=5)
    if w.shape[2:] == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return  # a pointwise call: the forward is a GEMM per image, no threaded driver
    flat = x.reshape(-1)
    k = min(3, flat.size)
    picked = np.random.default_rng(7).choice(flat.size, k, replace=False)
    flat[picked] = [np.nan, np.inf, -np.inf][:k]
    saved = mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS
    try:
        mod._THREADS_MIN_PLANE, mod._team_size = 0, lambda macs: team
        mod._BLOCK_COLS = block_cols
        got = mod.forward_relu(x, w, b, stride, padding, dilation, groups)
        y0 = mod.forward(x, w, None, stride, padding, dilation, groups)
    finally:
        mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS = saved
    assert_forward_relu_is_epilogue(got, y0, b)


def test_im2col_forward_relu_declines_without_the_threaded_driver():
    """A pointwise call (a GEMM per image, no threaded driver) returns None: the caller runs
    the forward and the epilogue apart; so does the backward."""
    mod = _threaded_module()
    x = np.ones((2, 3, 4, 4), np.float32)
    w = np.ones((5, 3, 1, 1), np.float32)
    assert mod.forward_relu(x, w, None, (1, 1), (0, 0), (1, 1), 1) is None
    gy, mask = np.ones((2, 5, 4, 4), np.float32), np.ones((2, 5, 4, 4), np.uint8)
    assert mod.backward_relu(gy, mask, x, w, (1, 1), (0, 0), (1, 1), 1, True, True) is None


@settings(max_examples=examples(12), deadline=None)
@given(
    case=conv_case(),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
    block_cols=st.sampled_from([1, 40, 512]),
)
def test_im2col_backward_relu_is_the_masked_backward(case, team, need, block_cols):
    """The ReLU's mask applied and the bias gradient summed as the threaded backward copies
    each block of the output gradient: the gradients of the reference epilogue's masked
    gradient through ``backward`` and its channel sum, NaN and inf in the masked-out
    gradient included (they give +0.0, not NaN)."""
    from tapegrad.kernels.fused import reference as R

    mod = _threaded_module()
    stride, padding, dilation, groups, dtype = case[7], case[8], case[9], case[10], case[12]
    x, w, _ = _arrays(case, seed=8)
    if w.shape[2:] == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return  # a pointwise call: no threaded driver
    rng = np.random.default_rng(9)
    nx, nw = need in ("both", "x"), need in ("both", "w")
    saved = mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS
    try:
        mod._THREADS_MIN_PLANE, mod._team_size = 0, lambda macs: team
        mod._BLOCK_COLS = block_cols
        y0 = mod.forward(x, w, None, stride, padding, dilation, groups)
        mask = R.bias_relu_forward(y0, None)
        gy = rng.standard_normal(y0.shape).astype(dtype)
        off = np.flatnonzero(mask.reshape(-1) == 0)[:2]
        gy.reshape(-1)[off] = [np.nan, np.inf][: off.size]
        got = mod.backward_relu(gy, mask, x, w, stride, padding, dilation, groups, nx, nw)
        g, gb_want = R.masked_backward(gy, mask, True)
        gx_want, gw_want = mod.backward(g, x, w, stride, padding, dilation, groups, nx, nw)
    finally:
        mod._THREADS_MIN_PLANE, mod._team_size, mod._BLOCK_COLS = saved
    assert got is not None
    gx, gw, gb = got
    assert (gx is None) != nx and (gw is None) != nw
    if nx:
        np.testing.assert_allclose(gx, gx_want, **_tol(dtype))
    if nw:
        np.testing.assert_allclose(gw, gw_want, **_tol(dtype))
    assert gb.dtype == dtype and gb.shape == (w.shape[0],)
    np.testing.assert_allclose(gb, gb_want, **_tol(dtype))


def test_im2col_backward_relu_bias_gradient_is_repeatable():
    """The bias gradient's rows follow the batch's chunks, not the threads: the same bits
    at 1, 2 and 3 threads, call after call."""
    mod = _threaded_module()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 6, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 6, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((16, 8, 6, 6)).astype(np.float32)
    mask = (rng.random(gy.shape) < 0.6).astype(np.uint8)
    args = ((2, 2), (1, 1), (1, 1), 1)
    saved = mod._team_size
    try:
        first = None
        for team in (1, 2, 3, 2):
            mod._team_size = lambda macs, team=team: team
            for _ in range(4):
                got = mod.backward_relu(gy, mask, x, w, *args, True, True)
                if first is None:
                    first = got
                for a, b in zip(got, first):
                    np.testing.assert_array_equal(a, b)
    finally:
        mod._team_size = saved


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_relu_runs_the_kernel_epilogue(monkeypatch, bias):
    """conv2d_relu on im2col-cython takes the fused forward and backward; values and all
    three gradients
    as relu(conv2d(...)) gives them, and float64 gradcheck through the fused op."""
    import tapegrad as tg
    from tapegrad.kernels.conv import im2col_cy
    from tapegrad.nn import functional as F

    _threaded_module()
    calls, bcalls = [], []
    fused, fused_b = im2col_cy.forward_relu, im2col_cy.backward_relu
    monkeypatch.setattr(im2col_cy, "forward_relu", lambda *a: calls.append(1) or fused(*a))
    monkeypatch.setattr(
        im2col_cy, "backward_relu", lambda *a: bcalls.append(1) or fused_b(*a)
    )  # fmt: skip
    rng = np.random.default_rng(4)
    x = tg.Tensor(rng.standard_normal((3, 4, 9, 9)).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(6).astype(np.float32), requires_grad=True) if bias else None
    leaves = (x, w, b) if bias else (x, w)
    with K.use(conv2d="im2col-cython"):
        y = F.conv2d_relu(x, w, b, 2, 1)
        want = F.relu(F.conv2d(x, w, b, 2, 1))
    assert calls == [1]
    np.testing.assert_array_equal(y.data, want.data)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    got = [t.grad.data.copy() for t in leaves]
    for t in leaves:
        t.grad = None
    assert bcalls == [1]
    want.backward(g)
    for p, q in zip(got, [t.grad.data for t in leaves]):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5)
    x64 = tg.Tensor(rng.standard_normal((2, 2, 5, 5)), requires_grad=True)
    w64 = tg.Tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    b64 = tg.Tensor(rng.standard_normal(3), requires_grad=True)
    with K.use(conv2d="im2col-cython"):
        assert tg.gradcheck(lambda *t: F.conv2d_relu(*t, 1, 1), (x64, w64, b64))
    assert len(calls) > 1
