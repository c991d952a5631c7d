"""The chvec-cython conv2d variant (direct convolution with output channels across the vector
lanes, stride 1): against ``reference`` and PyTorch on random shapes, gradcheck in float64,
the calls it delegates, non-finite values, a repeatable weight gradient and ``auto``'s rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tapegrad.kernels.conv import (
    Conv2dCall,
    _conv2d_rule,
    _winograd_f4_leads,
    _winograd_lanes_leads,
)
from tests._sizes import examples
from tests.kernels._conv_helpers import (
    assert_same_nonfinite,
    case_arrays,
    check_against_reference,
    check_against_torch,
    check_close_to_reference,
    check_gradcheck,
    conv_case,
    patched,
    tol,
)

NAME = "chvec-cython"
pytestmark = pytest.mark.skipif(NAME not in K.variants("conv2d"), reason="not built here")


def chvec_case():
    """Odd and even sizes (rows wider than a tile's 16 columns too), kernels 1..5 (the
    weight gradient's own tiles are 3x3 and 5x5), padding 0..2 per side, batch 1..3, output
    channel counts below, at and past one vector's 8 or 16 lanes."""
    kernels = st.sampled_from([1, 2, 3, 3, 5, 5]).flatmap(
        lambda k: st.one_of(st.just((k, k)), st.tuples(st.just(k), st.integers(1, 5)))
    )
    return conv_case(
        channels=st.integers(1, 18),
        outputs=st.sampled_from([1, 5, 8, 16, 17, 23]),
        kernels=kernels,
        max_h=13,
        max_w=37,
    )


@settings(max_examples=examples(20), deadline=None)
@given(case=chvec_case(), team=st.integers(1, 3), need=st.sampled_from(["both", "x", "w"]))
def test_chvec_matches_reference(case, team, need):
    """Forward and each gradient alone or both, with a team of 1 to 3 threads whatever the
    batch."""
    x, w, b = case_arrays(case)
    args = (case[8], case[7], (1, 1), 1)
    check_against_reference(K.get("conv2d", NAME), x, w, b, args, need, team)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chvec_own_paths_on_layer_shapes(dtype):
    """lenet5's 6->16 5x5 layer and a 16->16 3x3 layer (its own input gradient), batch of 5
    split over two threads, rows of 10 and 19 columns (one tile and a 16 + 3 split)."""
    mod, ref = K.get("conv2d", NAME), K.get("conv2d", "reference")
    rng = np.random.default_rng(5)
    for x_shape, w_shape, p in [((5, 6, 14, 14), (16, 6, 5, 5), 0),
                                ((5, 16, 9, 19), (16, 16, 3, 3), 1)]:  # fmt: skip
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        args = ((1, 1), (p, p), (1, 1), 1)
        with patched(mod, 2):
            y = mod.forward(x, w, b, *args)
            gy = rng.standard_normal(y.shape).astype(dtype)
            got = mod.backward(gy, x, w, *args, True, True)
        np.testing.assert_allclose(y, ref.forward(x, w, b, *args), **tol(dtype))
        for g, r in zip(got, ref.backward(gy, x, w, *args, True, True), strict=True):
            np.testing.assert_allclose(g, r, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [((3, 40, 9, 11), (72, 40, 3, 3), 1), ((2, 33, 12, 10), (48, 33, 5, 5), 2)],
)
def test_chvec_wide_layers(dtype, x_shape, w_shape, padding):
    """The wider layers ``auto`` now gives it (several vectors of output channels, input
    channels past two vectors, 5x5 with padding 2): forward and both gradients against
    ``reference``, on two threads over an odd batch."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) * 0.1).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    args = ((1, 1), (padding, padding), (1, 1), 1)
    check_against_reference(K.get("conv2d", NAME), x, w, b, args, "both", 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pair_columns", [5, 12])
@pytest.mark.parametrize(
    "x_shape, o",
    [((2, 5, 7, 37), 40), ((3, 17, 8, 8), 33), ((2, 3, 5, 19), 20), ((2, 9, 4, 6), 17)],
)
def test_chvec_pair_tiles(dtype, pair_columns, x_shape, o):
    """Forward tiles of two channel vectors (3-wide kernels, more outputs than one vector's
    lanes, rows of at most 8 or more than 16 columns): odd row widths cut into tiles of
    equal width, output counts that are not a multiple of the lanes, the input gradient
    through the same tiles (more input channels than lanes); against ``reference``."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal((o, x_shape[1], 3, 3)) * 0.2).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    args = ((1, 1), (1, 1), (1, 1), 1)
    check_against_reference(K.get("conv2d", NAME), x, w, b, args, "both", 2,
                            _PAIR_COLUMNS=pair_columns)  # fmt: skip


def test_chvec_outputs_same_at_any_team():
    """Forward and input gradient: each image is one thread's whichever thread takes it, so
    1, 2 and 3 threads give the same bits; the weight gradient is the same bits on a repeat
    at each team size (chunks of the batch added in order)."""
    mod = K.get("conv2d", NAME)
    rng = np.random.default_rng(21)
    x = rng.standard_normal((7, 20, 8, 19)).astype(np.float32)
    w = rng.standard_normal((36, 20, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((7, 36, 8, 19)).astype(np.float32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    outs = []
    for team in (1, 2, 3):
        with patched(mod, team):
            y = mod.forward(x, w, None, *args)
            gx, gw = mod.backward(gy, x, w, *args, True, True)
            np.testing.assert_array_equal(gw, mod.backward(gy, x, w, *args, False, True)[1])
        outs.append((y, gx))
    for y, gx in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        np.testing.assert_array_equal(gx, outs[0][1])


def test_chvec_weight_gradient_repeatable():
    """The same call twice gives the same weight gradient bit for bit (partial sums per
    thread added in thread order)."""
    mod = K.get("conv2d", NAME)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((7, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((7, 16, 10, 10)).astype(np.float32)
    args = ((1, 1), (0, 0), (1, 1), 1)
    with patched(mod, 2):
        first = mod.backward(gy, x, w, *args, False, True)[1]
        again = mod.backward(gy, x, w, *args, False, True)[1]
    np.testing.assert_array_equal(first, again)


@settings(max_examples=examples(20), deadline=None)
@given(case=chvec_case(), team=st.integers(1, 3), need=st.sampled_from(["both", "x", "w"]))
def test_chvec_backward_with_bias(case, team, need):
    """``backward_with_bias``: gx and gw the same bits as ``backward``'s, and the bias
    gradient (summed in the weight gradient's parallel region when its own tiles run it,
    else None for the op to sum) against the output gradient summed per channel."""
    mod = K.get("conv2d", NAME)
    x, w, b = case_arrays(case)
    args = (case[8], case[7], (1, 1), 1)
    nx, nw = need in ("both", "x"), need in ("both", "w")
    with patched(mod, team):
        y = mod.forward(x, w, b, *args)
        gy = np.random.default_rng(3).standard_normal(y.shape).astype(x.dtype)
        gx, gw, gb = mod.backward_with_bias(gy, x, w, *args, nx, nw)
        want = mod.backward(gy, x, w, *args, nx, nw)
        again = mod.backward_with_bias(gy, x, w, *args, nx, nw)[2]
    for got, ref in zip((gx, gw), want, strict=True):
        assert (got is None) == (ref is None)
        if ref is not None:
            np.testing.assert_array_equal(got, ref)
    own = nw and w.shape[2:] in ((3, 3), (5, 5))
    assert (gb is not None) == own
    if own:
        assert gb.dtype == x.dtype and gb.shape == (w.shape[0],)
        np.testing.assert_allclose(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), **tol(x.dtype))
        np.testing.assert_array_equal(gb, again)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chvec_gradients_in_one_region(dtype):
    """resnet8's 16- and 32-channel layers on an odd batch over two threads: the input, weight
    and bias gradients of one ``backward_with_bias`` call (one parallel region: the weight
    gradient's chunks, then the input gradient's images) against ``reference``'s, and the
    bias gradient through ``tapegrad.nn.functional.conv2d``'s backward."""
    import tapegrad as tg
    import tapegrad.nn.functional as F

    mod, ref = K.get("conv2d", NAME), K.get("conv2d", "reference")
    rng = np.random.default_rng(17)
    args = ((1, 1), (1, 1), (1, 1), 1)
    for c, side in [(16, 12), (32, 8)]:
        x = rng.standard_normal((5, c, side, side)).astype(dtype)
        w = (rng.standard_normal((c, c, 3, 3)) * 0.1).astype(dtype)
        gy = rng.standard_normal((5, c, side, side)).astype(dtype)
        with patched(mod, 2):
            gx, gw, gb = mod.backward_with_bias(gy, x, w, *args, True, True)
            tx, tw, tb = (tg.Tensor(a, requires_grad=True) for a in (x, w, w[:, 0, 0, 0].copy()))
            with K.use(conv2d=NAME):
                F.conv2d(tx, tw, tb, padding=1).backward(gy)
        gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
        np.testing.assert_allclose(gx, gx_r, **tol(dtype))
        np.testing.assert_allclose(gw, gw_r, **tol(dtype))
        np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), **tol(dtype))
        np.testing.assert_array_equal(tb.grad.numpy(), gb)
        np.testing.assert_array_equal(tw.grad.numpy(), gw)


@pytest.mark.parametrize("k, padding", [(3, 1), (5, 2), (3, 0)])
def test_chvec_gradcheck(k, padding):
    check_gradcheck(NAME, 1, padding, k=k)


@pytest.mark.torch
@settings(max_examples=examples(10), deadline=None)
@given(case=chvec_case())
def test_chvec_matches_torch(case):
    check_against_torch(NAME, *case_arrays(case, seed=3), case[8], case[7])


def test_chvec_nonfinite_stays_local():
    """A NaN or an infinity reaches the outputs (and weight-gradient taps) whose window
    holds it, as in a direct sum."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 9, 11))
    w = rng.standard_normal((16, 4, 3, 3))
    x[0, 1, 0, 0], x[1, 0, 5, 6] = np.nan, np.inf
    args = ((1, 1), (1, 1), (1, 1), 1)
    mod, ref = K.get("conv2d", NAME), K.get("conv2d", "reference")
    y = mod.forward(x, w, None, *args)
    want = ref.forward(x, w, None, *args)
    assert_same_nonfinite(y, want)
    gy = rng.standard_normal(y.shape)
    gw = mod.backward(gy, x, w, *args, False, True)[1]
    gw_ref = ref.backward(gy, x, w, *args, False, True)[1]
    np.testing.assert_array_equal(np.isfinite(gw), np.isfinite(gw_ref))


@pytest.mark.parametrize(
    "w_shape, stride, dilation, groups",
    [((4, 2, 3, 3), 2, 1, 1), ((4, 2, 3, 3), 1, 2, 1), ((4, 1, 3, 3), 1, 1, 2)],
)
def test_chvec_not_applicable(w_shape, stride, dilation, groups):
    """Strided, dilated or grouped calls: the right answer (through im2col-cython), and
    ``auto``'s rule does not put chvec-cython first for them."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 9, 8))
    w = rng.standard_normal(w_shape)
    args = ((stride, stride), (1, 1), (dilation, dilation), groups)
    check_close_to_reference(K.get("conv2d", NAME), x, w, None, args, rng)
    big = Conv2dCall((32, 16 * groups, 32, 32), (16, 16, 3, 3), (stride, stride), (1, 1),
                     (dilation, dilation), groups, "<f4")  # fmt: skip
    assert NAME not in _conv2d_rule(big)


def test_auto_rule_puts_chvec_first_for_16_output_channels():
    """lenet5's 6->16 5x5 layer and resnet8's 16->16 3x3 layer: chvec-cython first, then
    blocked-cython; 8 output channels, one input channel, 7x7 kernels or a stride of 2: not
    first."""
    for x_shape, w_shape in [((64, 6, 14, 14), (16, 6, 5, 5)), ((64, 16, 32, 32), (16, 16, 3, 3))]:
        rule = _conv2d_rule(Conv2dCall(x_shape, w_shape, (1, 1), (0, 0), (1, 1), 1, "<f4"))
        assert rule[:2] == [NAME, "blocked-cython"]
    for x_shape, w_shape, s in [
        ((64, 16, 32, 32), (8, 16, 3, 3), 1),
        ((64, 1, 28, 28), (16, 1, 5, 5), 1),
        ((64, 3, 32, 32), (16, 3, 7, 7), 1),
        ((64, 16, 32, 32), (16, 16, 3, 3), 2),
    ]:
        call = Conv2dCall(x_shape, w_shape, (s, s), (1, 1), (1, 1), 1, "<f4")
        assert _conv2d_rule(call)[0] != NAME


def _rule(n, c, o, side, k=3, team=1, monkeypatch=None):
    from tapegrad.kernels import threads

    monkeypatch.setattr(threads, "get_num_threads", lambda: team)
    call = Conv2dCall((n, c, side, side), (o, c, k, k), (1, 1), (k // 2,) * 2, (1, 1), 1, "<f4")
    return _conv2d_rule(call)


@pytest.mark.parametrize("team", [1, 2])
def test_auto_rule_puts_chvec_first_for_wider_layers(monkeypatch, team):
    """Stride-1 3x3 and 5x5 layers with 16 or more output channels, 4 or more input
    channels and fewer than 128 on one side (vgg_small's and resnet8's 3x3 layers, 5x5
    layers of 16 and 32 channels, 24 and 48 outputs): chvec-cython first, the rule's former
    order after it (Winograd before im2col where Winograd led). 128 channels in and out
    (Winograd's), one input channel, a reduction of 1152 or more, or fewer images than
    threads: not first."""
    for n, c, o, side, k in [
        (64, 32, 32, 32, 3),
        (64, 32, 64, 16, 3),
        (64, 64, 64, 16, 3),
        (64, 32, 32, 16, 3),
        (64, 64, 64, 8, 3),
        (64, 16, 32, 32, 3),
        (32, 32, 48, 28, 3),
        (32, 32, 24, 28, 3),
        (32, 16, 32, 28, 5),
        (64, 32, 64, 14, 5),
        (2, 64, 64, 16, 3),
    ]:
        rule = _rule(n, c, o, side, k, team, monkeypatch)
        call = Conv2dCall((n, c, side, side), (o, c, k, k), (1, 1), (1, 1), (1, 1), 1, "<f4")
        # winograd-cython's vector F(4x4, 3x3) or channel-lane F(2x2, 3x3) leads there
        if _winograd_f4_leads(call) or _winograd_lanes_leads(call):
            assert rule[0] == "winograd-cython", (n, c, o, side, k)
            continue
        assert rule[0] == NAME, (n, c, o, side, k)
        assert rule.count(NAME) == 1
    assert _rule(64, 24, 24, 32, 3, team, monkeypatch)[1] == "winograd-cython"
    for n, c, o, side, k in [
        (64, 128, 128, 8, 3),
        (64, 1, 32, 32, 3),
        (64, 48, 64, 14, 5),  # reduction 1200
        (64, 32, 8, 32, 3),
    ]:
        assert _rule(n, c, o, side, k, team, monkeypatch)[0] != NAME, (n, c, o, side, k)
    assert (_rule(1, 32, 32, 16, 5, team, monkeypatch)[0] == NAME) == (team == 1)
