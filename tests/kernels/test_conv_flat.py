"""The flat-cython conv2d variant (direct convolution over phase planes in flat tiles of
output positions; the input gradient as one stride-1 convolution per input phase): against
``reference`` and PyTorch on random shapes, gradcheck in float64, NaN/inf, a repeatable
weight gradient, the calls it delegates, and ``auto``'s rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tapegrad.kernels.conv import Conv2dCall, _conv2d_rule
from tests._sizes import examples
from tests.kernels._conv_helpers import (
    assert_forward_relu_is_epilogue,
    assert_same_nonfinite,
    case_arrays,
    check_against_reference,
    check_against_torch,
    check_close_to_reference,
    check_gradcheck,
    conv_case,
    patched,
)

NAME = "flat-cython"
pytestmark = pytest.mark.skipif(NAME not in K.variants("conv2d"), reason="not built here")


def flat_case():
    """Odd and even sizes, kernels 1..5, padding 0..2 per side, stride 1 to 3, batch 1..3,
    channel counts that are not multiples of the tile's 8 channels or 16 positions."""
    return conv_case(strides=st.integers(1, 3))


def _with_team(mod, team, fn):
    """fn() with a team of ``team`` threads and the kernel's own weight gradient at every
    size (not only on images with many output positions)."""
    with patched(mod, team, _WGRAD_MIN_POSITIONS=0):
        return fn()


@settings(max_examples=examples(20), deadline=None)
@given(case=flat_case(), team=st.integers(1, 3), need=st.sampled_from(["both", "x", "w"]))
def test_flat_matches_reference(case, team, need):
    """Forward and each gradient alone or both, with a team of 1 to 3 threads whatever the
    batch."""
    mod = K.get("conv2d", NAME)
    padding, stride = case[7], case[8]
    x, w, b = case_arrays(case)
    args = (stride, padding, (1, 1), 1)
    check_against_reference(mod, x, w, b, args, need, team, _WGRAD_MIN_POSITIONS=0)


@settings(max_examples=examples(20), deadline=None)
@given(case=flat_case(), team=st.integers(1, 3), need=st.sampled_from(["both", "x", "w"]))
def test_flat_channel_lane_tiles_match_reference(case, team, need):
    """The channel-lane tiles (output channels across the vector lanes) forced on the
    forward and both gradients whatever the channel counts: one partial channel vector,
    positions not a multiple of the tile's."""
    mod = K.get("conv2d", NAME)
    padding, stride = case[7], case[8]
    x, w, b = case_arrays(case, seed=11)
    args = (stride, padding, (1, 1), 1)
    check_against_reference(
        mod,
        x,
        w,
        b,
        args,
        need,
        team,
        _WGRAD_MIN_POSITIONS=0,
        _CL_MIN_OUT=0,
        _CL_MIN_IN=0,
        _CL_WGRAD_MIN_OUT=0,
    )


@pytest.mark.parametrize(
    "n, c, o, h, w, k, stride, padding",
    [
        (1, 32, 48, 28, 28, 5, 2, 2),  # three channel vectors, taps in several chunks
        (2, 32, 64, 16, 16, 3, 2, 1),  # four vectors, 8x8 outputs
        (1, 40, 70, 15, 13, 3, 2, 0),  # a block of four vectors and one of one, partial
        (3, 33, 36, 11, 17, 5, 3, 1),  # three vectors (36 channels), stride 3
        (1, 48, 40, 9, 10, 3, 2, 2),  # the input gradient with three vectors
        (1, 16, 32, 14, 14, 3, 2, 1),  # 7x7 outputs, two vectors (conv_autoencoder's layer)
        (3, 20, 40, 13, 15, 3, 2, 0),  # 6x7 outputs, 40 channels (a partial vector)
        (2, 12, 32, 16, 16, 3, 2, 1),  # 8x8 outputs, reduction not a multiple of the taps
        (2, 8, 40, 9, 41, 3, 2, 1),  # 21 output columns: two column blocks per row
        (2, 64, 100, 15, 15, 5, 2, 1),  # reduction 1600, seven vectors (the last partial)
        (1, 128, 128, 9, 10, 5, 2, 2),  # reduction 3200, eight vectors
        # compact positions (the kept columns of each row only): 7x7 and 7x8 outputs, the
        # input gradient's column phases 8 and 7 wide, 3x3 outputs, stride 3
        (2, 32, 48, 15, 16, 5, 2, 1),
        (1, 64, 64, 15, 15, 5, 2, 1),
        (1, 32, 32, 6, 6, 5, 2, 2),
        (2, 36, 33, 13, 11, 5, 3, 2),
        (1, 40, 96, 14, 13, 5, 2, 0),
        # compact positions with three or four channel vectors where a row drops one
        # column in 9 or 15 (8x8 and 14x14 outputs); 900 taps in chunks of unequal sizes
        (3, 32, 48, 27, 28, 5, 2, 2),
        (2, 36, 64, 16, 15, 5, 2, 2),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_channel_lane_wide_channels(n, c, o, h, w, k, stride, padding, dtype):
    """Channel counts where the rule takes the channel-lane tiles (and not multiples of the
    vector), odd sizes, batch 1, padding 0 to 2, reductions longer than one chunk of taps:
    forward and both gradients against ``reference``, and forward_relu against the forward
    with the epilogue."""
    mod = K.get("conv2d", NAME)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, k, k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    args = ((stride, stride), (padding, padding), (1, 1), 1)
    assert o >= mod._CL_MIN_OUT or c >= mod._CL_MIN_IN
    check_against_reference(mod, x, wt, b, args, "both", 2, _WGRAD_MIN_POSITIONS=0)
    with patched(mod, 2):
        got = mod.forward_relu(x, wt, b, *args)
        y0 = mod.forward(x, wt, None, *args)
    assert_forward_relu_is_epilogue(got, y0, b)


@settings(max_examples=examples(12), deadline=None)
@given(case=flat_case(), team=st.integers(1, 3))
def test_flat_forward_relu_is_the_bias_relu_epilogue_bit_for_bit(case, team):
    """The bias and ReLU applied as each thread copies its rows out of the tiles: the values
    and the mask of the forward without bias followed by ``kernels/fused``'s reference
    epilogue, bit for bit, NaN and inf included, odd sizes, strides 1 to 3, float32 and
    float64, a team of 1 to 3 threads."""
    mod = K.get("conv2d", NAME)
    padding, stride = case[7], case[8]
    x, w, b = case_arrays(case, seed=5)
    flat = x.reshape(-1)
    k = min(3, flat.size)
    picked = np.random.default_rng(7).choice(flat.size, k, replace=False)
    flat[picked] = [np.nan, np.inf, -np.inf][:k]
    args = (stride, padding, (1, 1), 1)
    with patched(mod, team):
        got = mod.forward_relu(x, w, b, *args)
        y0 = mod.forward(x, w, None, *args)
    assert_forward_relu_is_epilogue(got, y0, b)


def test_flat_forward_relu_declines_calls_it_does_not_run():
    """Dilated and grouped calls (not the direct kernel): None, so that the op runs the
    forward and the epilogue apart."""
    mod = K.get("conv2d", NAME)
    x = np.ones((1, 4, 9, 9), np.float32)
    w = np.ones((4, 4, 3, 3), np.float32)
    assert mod.forward_relu(x, w, None, (2, 2), (1, 1), (2, 2), 1) is None
    assert mod.forward_relu(x, w[:, :2], None, (2, 2), (1, 1), (1, 1), 2) is None


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_flat_many_tiles(stride):
    """Several tiles of output channels and positions, partial last tiles, rows of several
    widths in one tile, a batch split over two threads."""
    mod = K.get("conv2d", NAME)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 9, 19, 37))
    w = rng.standard_normal((21, 9, 3, 5))
    b = rng.standard_normal(21)
    args = ((stride, stride), (1, 2), (1, 1), 1)
    check_close_to_reference(mod, x, w, b, args, rng, team=2, _WGRAD_MIN_POSITIONS=0)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (3, 2)])
def test_flat_gradcheck(stride, padding):
    check_gradcheck(NAME, stride, padding, team=2, _WGRAD_MIN_POSITIONS=0)


@pytest.mark.torch
@settings(max_examples=examples(10), deadline=None)
@given(case=flat_case())
def test_flat_matches_torch(case):
    padding, stride = case[7], case[8]
    x, w, b = case_arrays(case, seed=3)
    check_against_torch(NAME, x, w, b, stride, padding, team=2, _WGRAD_MIN_POSITIONS=0)


def test_flat_nonfinite_stays_local():
    """A NaN or an infinity reaches the outputs (and input-gradient pixels) whose window
    holds it, as in a direct sum."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 9, 9))
    w = rng.standard_normal((3, 2, 3, 3))
    x[0, 1, 0, 0], x[0, 0, 5, 6] = np.nan, np.inf
    mod, ref = K.get("conv2d", NAME), K.get("conv2d", "reference")
    for stride in [(1, 1), (2, 2)]:
        args = (stride, (1, 1), (1, 1), 1)
        y, want = mod.forward(x, w, None, *args), ref.forward(x, w, None, *args)
        assert_same_nonfinite(y, want)
        gy = rng.standard_normal(y.shape)
        gy[0, 2, 1, 1] = np.inf
        gx, want = (
            mod.backward(gy, x, w, *args, True, False)[0],
            ref.backward(gy, x, w, *args, True, False)[0],
        )
        assert_same_nonfinite(gx, want)


def test_flat_weight_gradient_ignores_pixels_no_window_reads():
    """An infinity in an input column no window reaches (the last column of an even width
    at stride 2 without padding) leaves the weight gradient finite; one inside a window
    reaches it."""
    mod, ref = K.get("conv2d", NAME), K.get("conv2d", "reference")
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 10, 10))
    w = rng.standard_normal((5, 3, 3, 3))
    args = ((2, 2), (0, 0), (1, 1), 1)
    gy = rng.standard_normal((2, 5, 4, 4))
    for pixel in [(1, 2, 4, 9), (1, 2, 4, 5)]:
        xi = x.copy()
        xi[pixel] = np.inf
        gw = _with_team(mod, 1, lambda xi=xi: mod.backward(gy, xi, w, *args, False, True)[1])
        want = ref.backward(gy, xi, w, *args, False, True)[1]
        assert_same_nonfinite(gw, want)


def test_flat_weight_gradient_is_repeatable():
    """Two calls on the same arrays at two threads give the same bits."""
    mod = K.get("conv2d", NAME)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 5, 13, 13)).astype(np.float32)
    w = rng.standard_normal((12, 5, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((6, 12, 7, 7)).astype(np.float32)
    args = ((2, 2), (1, 1), (1, 1), 1)
    first = _with_team(mod, 2, lambda: mod.backward(gy, x, w, *args, True, True))
    again = _with_team(mod, 2, lambda: mod.backward(gy, x, w, *args, True, True))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("o", [5, 36])
def test_flat_weight_gradient_same_bits_at_any_team(o):
    """The weight gradient's chunks of the batch are fixed by the shapes and summed in
    chunk order: teams of 1, 2 and 3 threads give the same bits, on a batch whose chunks
    hold more images than a block (uneven blocks) and a batch of fewer images than chunks;
    and the result is the reference's. With 5 output channels (position-lane tiles) and 36
    (channel-lane tiles)."""
    mod, ref = K.get("conv2d", NAME), K.get("conv2d", "reference")
    rng = np.random.default_rng(12)
    args = ((2, 2), (1, 1), (1, 1), 1)
    for n, hw in [(23, 40), (3, 11)]:
        x = rng.standard_normal((n, 3, hw, hw)).astype(np.float32)
        w = rng.standard_normal((o, 3, 3, 3)).astype(np.float32)
        gy = rng.standard_normal(mod.forward(x, w, None, *args).shape).astype(np.float32)
        gws = [
            _with_team(
                mod, team, lambda g=gy, a=x, k=w: mod.backward(g, a, k, *args, False, True)[1]
            )
            for team in (1, 2, 3)
        ]
        for gw in gws[1:]:
            np.testing.assert_array_equal(gw, gws[0])
        want = ref.backward(gy.astype(np.float64), x.astype(np.float64),
                            w.astype(np.float64), *args, False, True)[1]  # fmt: skip
        np.testing.assert_allclose(gws[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize(
    "w_shape, stride, dilation, groups",
    [((4, 2, 3, 3), 4, 1, 1), ((4, 2, 3, 3), 1, 2, 1), ((4, 1, 3, 3), 1, 1, 2)],
)
def test_flat_not_applicable(w_shape, stride, dilation, groups):
    """Stride 4, dilated or grouped calls: the right answer (through im2col-cython), and
    ``auto``'s rule does not put flat-cython first for them."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 9, 8))
    w = rng.standard_normal(w_shape)
    args = ((stride, stride), (1, 1), (dilation, dilation), groups)
    check_close_to_reference(K.get("conv2d", NAME), x, w, None, args, rng)
    big = Conv2dCall((32, 2 * groups, 32, 32), (16, 2, 3, 3), (stride, stride), (1, 1),
                     (dilation, dilation), groups, "<f4")  # fmt: skip
    assert NAME not in _conv2d_rule(big)[:1]


def test_auto_rule_puts_flat_first_for_strided_layers(monkeypatch):
    """resnet8's 16->32 and 32->64 (8x8 outputs) stride-2 3x3 layers, conv_autoencoder's
    7x7 16->32 layer, 8x8 outputs with 32 output channels, the 5x5 stride-2 layer and wider
    ones (reductions to 3200, 128 output channels from 64 or 128 input channels):
    flat-cython first; stride 1, 1x1 kernels, one input channel, 8x8 outputs with 16 output
    channels, 6x6 outputs, 4x4 outputs, 128 output channels from 16 input channels, 256
    output channels and a reduction of 4608: not first."""
    from tapegrad.kernels import conv

    monkeypatch.setattr(conv._threads, "get_num_threads", lambda: 1)
    for x_shape, w_shape, p in [
        ((64, 16, 32, 32), (32, 16, 3, 3), 1),
        ((16, 32, 28, 28), (48, 32, 5, 5), 2),
        ((64, 32, 16, 16), (64, 32, 3, 3), 1),
        ((64, 16, 14, 14), (32, 16, 3, 3), 1),
        ((64, 32, 16, 16), (32, 32, 3, 3), 1),
        ((16, 64, 15, 15), (64, 64, 5, 5), 1),
        ((16, 128, 14, 14), (64, 128, 5, 5), 2),
        ((32, 64, 16, 16), (128, 64, 3, 3), 1),
        ((16, 128, 16, 16), (128, 128, 5, 5), 2),
    ]:
        call = Conv2dCall(x_shape, w_shape, (2, 2), (p, p), (1, 1), 1, "<f4")
        assert _conv2d_rule(call)[0] == NAME
    for x_shape, w_shape, s in [
        ((64, 16, 32, 32), (16, 16, 3, 3), 1),
        ((64, 16, 32, 32), (32, 16, 1, 1), 2),
        ((64, 1, 32, 32), (16, 1, 3, 3), 2),
        ((64, 32, 16, 16), (16, 32, 3, 3), 2),
        ((64, 32, 12, 12), (32, 32, 3, 3), 2),
        ((64, 32, 8, 8), (64, 32, 3, 3), 2),
        ((16, 16, 32, 32), (128, 16, 3, 3), 2),
        ((16, 256, 16, 16), (256, 256, 3, 3), 2),
        ((8, 512, 16, 16), (64, 512, 3, 3), 2),
    ]:
        call = Conv2dCall(x_shape, w_shape, (s, s), (1, 1), (1, 1), 1, "<f4")
        assert _conv2d_rule(call)[0] != NAME


@pytest.mark.parametrize("team", [2, 3])
def test_auto_rule_puts_flat_first_for_strided_layers_at_teams(monkeypatch, team):
    """At more than one thread as at one: flat-cython first on the strided layers with
    short reductions (resnet8's and conv_autoencoder's 16->32 3x3 layers, 144) as on the
    longer ones (the 5x5 32->48 layer, a 64->64 3x3 layer), on 8x8 outputs with 64
    output channels (resnet8's 32->64 stride-2 layer) and on 7x7 outputs with 32
    (conv_autoencoder's 16->32 layer), im2col-cython second; 8x8 outputs with 16 output
    channels keep im2col-cython first."""
    from tapegrad.kernels import conv

    monkeypatch.setattr(conv._threads, "get_num_threads", lambda: team)
    for x_shape, w_shape, p in [
        ((64, 16, 32, 32), (32, 16, 3, 3), 1),
        ((64, 16, 28, 28), (32, 16, 3, 3), 1),
        ((8, 31, 30, 30), (16, 31, 3, 3), 1),
        ((16, 32, 28, 28), (48, 32, 5, 5), 2),
        ((32, 64, 32, 32), (64, 64, 3, 3), 1),
        ((8, 32, 30, 30), (16, 32, 3, 3), 1),
        ((64, 32, 16, 16), (64, 32, 3, 3), 1),
        ((64, 16, 14, 14), (32, 16, 3, 3), 1),
    ]:
        call = Conv2dCall(x_shape, w_shape, (2, 2), (p, p), (1, 1), 1, "<f4")
        assert _conv2d_rule(call)[:2] == [NAME, "im2col-cython"]
    call = Conv2dCall((64, 32, 16, 16), (16, 32, 3, 3), (2, 2), (1, 1), (1, 1), 1, "<f4")
    assert _conv2d_rule(call)[0] == "im2col-cython"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_wide_rows_and_image_blocks(dtype):
    """Rows wide enough for the vector copies of the phase planes (stride 1) and the
    vector shuffles (stride 2), rows too wide for the stride-2 plane copy's 16 chunks
    (the row-by-row copy instead), one-pixel-wide images (no odd column phase for the input
    gradient's interleaved rows), and batches of several weight-gradient image blocks per
    thread (lane sums kept across blocks): against the float64 reference at two threads."""
    mod = K.get("conv2d", NAME)
    ref = K.get("conv2d", "reference")
    rng = np.random.default_rng(11)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for s, p, (h, w), k in [
        (2, 1, (33, 67), 3),
        (2, 2, (20, 40), 5),
        (1, 1, (9, 35), 3),
        (2, 0, (6, 530), 3),
        (2, 1, (7, 1), 3),
        (2, 1, (8, 2), 3),
    ]:
        x = rng.standard_normal((9, 3, h, w))
        wt = rng.standard_normal((10, 3, k, k))
        b = rng.standard_normal(10)
        args = ((s, s), (p, p), (1, 1), 1)
        y_ref = ref.forward(x, wt, b, *args)
        gy = rng.standard_normal(y_ref.shape)
        refs = (y_ref, *ref.backward(gy, x, wt, *args, True, True))
        xd, wd, bd, gyd = (a.astype(dtype) for a in (x, wt, b, gy))
        y = _with_team(mod, 2, lambda xd=xd, wd=wd, bd=bd, a=args: mod.forward(xd, wd, bd, *a))
        gx, gw = _with_team(
            mod, 2, lambda gyd=gyd, xd=xd, wd=wd, a=args: mod.backward(gyd, xd, wd, *a, True, True)
        )
        for got, want in zip((y, gx, gw), refs, strict=True):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("o", [8, 32])
def test_flat_every_phase_table_matches_reference(stride, o):
    """Every kernel size 1/3/5, padding 0-2 and plane of 7, 12 and 35 rows at this stride,
    float64, both gradients: the input gradient's per-phase tables once rounded the
    negative tap offsets toward zero (C division in a compiled helper), which stride 3 with
    a 5x5 kernel and padding 2 on 35x36 planes showed and random shapes had missed."""
    mod = K.get("conv2d", NAME)
    rng = np.random.default_rng(stride * 100 + o)
    for k in (1, 3, 5):
        for p in (0, 1, 2):
            for h in (7, 12, 35):
                if h + 2 * p < k:
                    continue
                x = rng.standard_normal((2, 16, h, h + 1))
                w = rng.standard_normal((o, 16, k, k))
                args = ((stride, stride), (p, p), (1, 1), 1)
                y = mod.forward(x, w, None, *args)
                np.testing.assert_allclose(
                    y,
                    K.get("conv2d", "reference").forward(x, w, None, *args),
                    rtol=1e-12,
                    atol=1e-10,
                )
                gy = rng.standard_normal(y.shape)
                got = mod.backward(gy, x, w, *args, True, True)
                want = K.get("conv2d", "reference").backward(gy, x, w, *args, True, True)
                for g, r in zip(got, want):
                    np.testing.assert_allclose(
                        g, r, rtol=1e-12, atol=1e-10, err_msg=f"k={k} p={p} h={h}"
                    )
