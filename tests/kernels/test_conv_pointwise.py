"""The pointwise-cython conv2d variant (1x1 kernels, no padding, one group, any stride:
one GEMM per image on the data as it lies, the weight gradient on its own tile kernel for
some stride-1 calls): against ``reference`` and PyTorch on random shapes, with the tile
kernel forced on and in chunks of one image or several, gradcheck in float64, the bias
gradient of ``backward_with_bias``, a repeatable weight gradient, the calls it delegates,
and ``auto``'s rule and the tile kernel's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad.kernels.conv import Conv2dCall, _conv2d_rule
from tests._sizes import examples
from tests.kernels._conv_helpers import (
    check_against_reference,
    check_against_torch,
    check_close_to_reference,
    conv_arrays,
    patched,
)

NAME = "pointwise-cython"
pytestmark = pytest.mark.skipif(NAME not in K.variants("conv2d"), reason="not built here")


def _module():
    from tapegrad.kernels import cblas

    if cblas.gemm_addresses() is None:
        pytest.skip("NumPy's BLAS is not an ILP64 OpenBLAS: pointwise-cython delegates")
    return K.get("conv2d", NAME)


@st.composite
def pointwise_case(draw):
    """A 1x1 call without padding: odd sizes, strides 1..3, batch 1..4, channel counts that
    are not multiples of a SIMD width."""
    n = draw(st.integers(1, 4))
    c, o = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    bias = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return n, c, o, h, w, stride, bias, dtype


def _arrays(case, seed=0):
    n, c, o, h, w, _, bias, dtype = case
    return conv_arrays(n, c, o, h, w, 1, 1, bias, dtype, seed=seed)


@settings(max_examples=examples(15), deadline=None)
@given(
    case=pointwise_case(),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
    own=st.sampled_from([None, True]),
    chunk_bytes=st.sampled_from([1, 1 << 19]),
    own_nn=st.sampled_from([None, True, False]),
    split=st.sampled_from([None, True, False]),
    slice_rows=st.sampled_from([1, 8]),
)
def test_pointwise_matches_reference(case, team, need, own, chunk_bytes, own_nn, split, slice_rows):
    """Forward and each gradient alone or both, with a team of 1 to 3 threads whatever the
    batch (threads without an image leave their weight-gradient part at zero), the weight
    gradient of stride-1 calls by the rule or on the tile kernel (partial tiles, rows
    zero-padded to whole vectors), in chunks of one image or of all a thread's, the
    forward and input gradient by the rule, on the own kernel (float32: partial row tiles,
    strips of 1 to 4 vectors, the last one masked) or on the BLAS; whole images per
    thread or split by channels (by the rule, always or never; slices of 1 row or 8, so
    that these few channels are split too, threads past the last slice idle)."""
    mod = _module()
    x, w, b = _arrays(case)
    check_against_reference(mod, x, w, b, (case[5], (0, 0), (1, 1), 1), need, team,
                            _OWN_W=own, _CHUNK_BYTES=chunk_bytes, _OWN_NN=own_nn,
                            _SPLIT=split, _SLICE_ROWS=slice_rows)  # fmt: skip


@pytest.mark.parametrize("team", [2, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("own", [None, True])
@pytest.mark.parametrize("shape", [(1, 70, 50, 9, 9), (5, 64, 40, 8, 8), (1, 33, 130, 16, 16)])
def test_pointwise_split_by_channels(team, stride, own, shape):
    """A batch the images do not share out evenly (one image, five on two or three) split
    by channels: slices of output channels (forward) and input channels (input gradient)
    per image, the weight and bias gradients by output channels per thread over every
    image, on the tile kernel (``own``, stride 1) or the BLAS, the own forward kernel by
    the rule; against ``reference``, the bias gradient against the output gradient's sum,
    the input gradient added into a held one, and the same bits on every call."""
    mod = _module()
    n, c, o, h, w_ = shape
    x, w, b = conv_arrays(n, c, o, h, w_, 1, 1, True, np.float32, seed=13)
    args = ((stride, stride), (0, 0), (1, 1), 1)
    assert mod._split(n, team)
    check_against_reference(mod, x, w, b, args, "both", team, _OWN_W=own)
    rng = np.random.default_rng(14)
    gy = rng.standard_normal(mod.forward(x, w, None, *args).shape).astype(np.float32)
    held = rng.standard_normal(x.shape).astype(np.float32)
    with patched(mod, team, _OWN_W=own):
        gx, gw, gb = mod.backward_with_bias(gy, x, w, *args, True, True)
        acc, gw2 = mod.backward_accumulate(gy, x, w, *args, True, held.copy())
        again = [mod.backward_with_bias(gy, x, w, *args, True, True) for _ in range(5)]
    np.testing.assert_allclose(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5,
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(acc, held + gx, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gw2, gw)
    for r in again:
        for got, want in zip(r, (gx, gw, gb), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 37, 29, 9, 7), (3, 64, 40, 8, 8), (4, 6, 4, 16, 16)])
def test_pointwise_tile_weight_gradient(dtype, shape):
    """The tile kernel on more channels than one tile (37 and 29: partial tiles at both
    edges), rows of a whole number of vectors and not, over two threads and in chunks of
    one image and of several, against ``reference``'s weight gradient."""
    mod = _module()
    n, c, o, h, w_ = shape
    x, w, b = conv_arrays(n, c, o, h, w_, 1, 1, False, dtype, seed=8)
    for chunk_bytes in (1, 1 << 19):
        check_against_reference(mod, x, w, b, ((1, 1), (0, 0), (1, 1), 1), "w", 2,
                                _OWN_W=True, _CHUNK_BYTES=chunk_bytes)  # fmt: skip


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(3, 50, 13, 9, 11), (2, 7, 70, 16, 8), (2, 64, 30, 1, 3)])
def test_pointwise_own_kernel_forward_and_input_gradient(stride, shape):
    """The forward's and input gradient's own kernel (float32) on more rows than one tile
    (50 and 70: partial row tiles), planes of more than one strip of 64 columns and of a
    part of one, with a bias, over two threads, against ``reference``; and the input
    gradient added into a held one (``backward_accumulate``) equal to the held one plus
    ``backward``'s."""
    mod = _module()
    if not mod.HAVE_NN:
        pytest.skip("built without AVX-512: the BLAS runs these passes")
    n, c, o, h, w_ = shape
    x, w, b = conv_arrays(n, c, o, h, w_, 1, 1, True, np.float32, seed=11)
    args = ((stride, stride), (0, 0), (1, 1), 1)
    check_against_reference(mod, x, w, b, args, "both", 2, _OWN_NN=True)
    rng = np.random.default_rng(12)
    gy = rng.standard_normal(mod.forward(x, w, None, *args).shape).astype(np.float32)
    held = rng.standard_normal(x.shape).astype(np.float32)
    with patched(mod, 2, _OWN_NN=True):
        gx = mod.backward(gy, x, w, *args, True, False)[0]
        acc, _ = mod.backward_accumulate(gy, x, w, *args, False, held.copy())
    np.testing.assert_allclose(acc, held + gx, rtol=1e-5, atol=1e-5)


@settings(max_examples=examples(15), deadline=None)
@given(
    case=pointwise_case(),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
    own=st.sampled_from([None, True]),
)
def test_pointwise_backward_with_bias(case, team, need, own):
    """``backward_with_bias``: gx and gw the same bits as ``backward``'s, and the bias
    gradient (summed per thread in the backward's parallel region) against the output
    gradient summed per channel in float64; None when not asked for."""
    mod = _module()
    x, w, _ = _arrays(case)
    args = (case[5], (0, 0), (1, 1), 1)
    nx, nw = need in ("both", "x"), need in ("both", "w")
    with patched(mod, team, _OWN_W=own):
        y = mod.forward(x, w, None, *args)
        gy = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
        gx, gw, gb = mod.backward_with_bias(gy, x, w, *args, nx, nw)
        want = mod.backward(gy, x, w, *args, nx, nw)
        assert mod.backward_with_bias(gy, x, w, *args, nx, nw, False)[2] is None
    for got, ref in zip((gx, gw), want, strict=True):
        assert (got is None) == (ref is None)
        if ref is not None:
            np.testing.assert_array_equal(got, ref)
    assert gb.dtype == x.dtype and gb.shape == (w.shape[0],)
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=rtol,
                               atol=rtol * gy.shape[0] * gy[0, 0].size)  # fmt: skip


def test_pointwise_op_bias_gradient():
    """Through ``conv2d``'s op: the bias gradient is the one ``backward_with_bias`` sums
    (the op does not sum it again), and the weight and input gradients ``backward``'s."""
    mod = _module()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 40, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((24, 40, 1, 1)) * 0.1).astype(np.float32)
    gy = rng.standard_normal((6, 24, 8, 8)).astype(np.float32)
    args = ((1, 1), (0, 0), (1, 1), 1)
    with patched(mod, 2):
        gx, gw, gb = mod.backward_with_bias(gy, x, w, *args, True, True)
        tx, tw, tb = (tg.Tensor(a, requires_grad=True) for a in (x, w, np.zeros(24, np.float32)))
        with K.use(conv2d=NAME):
            F.conv2d(tx, tw, tb).backward(gy)
    np.testing.assert_array_equal(tb.grad.numpy(), gb)
    np.testing.assert_array_equal(tw.grad.numpy(), gw)
    np.testing.assert_array_equal(tx.grad.numpy(), gx)


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_gradcheck(stride):
    _module()
    rng = np.random.default_rng(2)
    x = tg.Tensor(rng.standard_normal((2, 3, 5, 4)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((4, 3, 1, 1)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(4), requires_grad=True)
    with K.use(conv2d=NAME):
        assert tg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride), [x, w, b])


@pytest.mark.torch
@settings(max_examples=examples(10), deadline=None)
@given(case=pointwise_case())
def test_pointwise_matches_torch(case):
    _module()
    check_against_torch(NAME, *_arrays(case, seed=3), case[5], 0)


def test_pointwise_weight_gradient_is_repeatable():
    """Two threads, each summing its own images (static schedule), parts added in thread
    order: the same bits on every call, by GEMMs (strided) and by the tile kernel."""
    mod = _module()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 13, 6, 6)).astype(np.float32)
    w = rng.standard_normal((9, 13, 1, 1)).astype(np.float32)
    gy = rng.standard_normal((7, 9, 3, 3)).astype(np.float32)
    for stride, own in [((2, 2), None), ((1, 1), True)]:
        args = (stride, (0, 0), (1, 1), 1)
        g = gy if stride == (2, 2) else rng.standard_normal((7, 9, 6, 6)).astype(np.float32)
        with patched(mod, team=2, _OWN_W=own, _CHUNK_BYTES=1):
            first = mod.backward(g, x, w, *args, False, True)[1]
            for _ in range(10):
                np.testing.assert_array_equal(mod.backward(g, x, w, *args, False, True)[1], first)


@pytest.mark.parametrize(
    "w_shape, padding, groups",
    [((4, 2, 1, 1), (1, 0), 1), ((4, 1, 1, 1), (0, 0), 2), ((4, 2, 3, 3), (0, 0), 1)],
)
def test_pointwise_not_applicable(w_shape, padding, groups):
    """Padded, grouped or larger kernels: the right answer (through im2col-cython), and
    ``auto``'s rule does not list pointwise-cython for them."""
    mod = _module()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 7, 6))
    w = rng.standard_normal(w_shape)
    check_close_to_reference(mod, x, w, None, ((1, 1), padding, (1, 1), groups), rng)
    big = Conv2dCall((32, 64, 16, 16), (w_shape[0] * 16, *w_shape[1:]), (1, 1), padding,
                     (1, 1), groups, "<f4")  # fmt: skip
    assert NAME not in _conv2d_rule(big)


def test_auto_rule_puts_pointwise_first_for_1x1():
    """1x1, no padding, one group, stride 1 or 2 above the direct kernels' size: first."""
    for stride in [(1, 1), (2, 2)]:
        call = Conv2dCall((32, 64, 16, 16), (128, 64, 1, 1), stride, (0, 0), (1, 1), 1, "<f4")
        assert _conv2d_rule(call)[0] == NAME
        assert K.resolved_name("conv2d", call) == NAME
    tiny = Conv2dCall((1, 2, 4, 4), (3, 2, 1, 1), (1, 1), (0, 0), (1, 1), 1, "<f4")
    assert _conv2d_rule(tiny)[0].startswith("direct-")


def test_tile_weight_gradient_rule():
    """The tile kernel for float32 stride-1 calls with whole-vector rows of 64 or more
    pixels, 32 or more input and at most 128 output channels (the issue's 64->128 16x16
    layer); the BLAS for fewer input channels, more output channels, small or odd planes
    and float64."""
    from tapegrad.kernels.conv import pointwise_cy

    rule = pointwise_cy._own_w
    assert rule(128, 64, 256, np.float32)
    assert rule(64, 256, 64, np.float32) and rule(64, 32, 1024, np.float32)
    assert not rule(40, 24, 784, np.float32)  # 24 input channels
    assert not rule(256, 128, 64, np.float32)  # 256 output channels
    assert not rule(128, 128, 16, np.float32) and not rule(64, 32, 49, np.float32)
    assert not rule(128, 64, 256, np.float64)


def test_own_kernel_rule():
    """The own kernel for float32 forwards of 48 or more output channels and input
    gradients of 48 or more input channels, on planes of 64 to 256 pixels, where the build
    has AVX-512; never for float64."""
    from tapegrad.kernels.conv import pointwise_cy

    rule, have = pointwise_cy._own_nn, pointwise_cy.HAVE_NN
    assert rule(np.float32, 256, 64) is have and rule(np.float32, 64, 48) is have
    assert not rule(np.float32, 256, 24) and not rule(np.float32, 256, 32)
    assert not rule(np.float32, 16, 64) and not rule(np.float32, 1024, 64)
    assert not rule(np.float64, 256, 64)


def test_split_rule():
    """Split by channels when the images do not share out evenly among the threads and
    there are fewer than 3 per thread (one image on two threads, three, five);
    whole images per thread otherwise, and always on one thread. Slices of whole multiples
    of 8 rows, enough for the items to share out evenly, and none for fewer than 16 rows."""
    from tapegrad.kernels.conv import pointwise_cy

    split, slices = pointwise_cy._split, pointwise_cy._slices
    assert split(1, 2) and split(3, 2) and split(5, 2) and split(2, 3) and split(8, 3)
    assert not split(2, 2) and not split(7, 2) and not split(9, 3) and not split(1, 1)
    assert slices(1, 2, 64) == (2, 32) and slices(3, 2, 70) == (2, 40)
    assert slices(2, 3, 96) == (3, 32) and slices(1, 2, 12) == (1, 12)
    assert slices(4, 2, 64) == (1, 64)
