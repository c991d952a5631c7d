"""The Winograd conv2d variants (F(2x2, 3x3), and F(4x4, 3x3) where a variant has it):
against ``reference`` and PyTorch on 3x3 stride-1 shapes, gradcheck in float64, the float32
error held, and the calls they do not apply to (delegated, never listed by ``auto``'s rule)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad.kernels.conv import Conv2dCall, _conv2d_rule, _winograd_fast4
from tests._sizes import examples
from tests.kernels._conv_helpers import (
    assert_same_nonfinite,
    check_against_reference,
    check_against_torch,
    check_close_to_reference,
    conv_arrays,
)

VARIANTS = [v for v in K.variants("conv2d") if v.startswith("winograd")]
# "<variant>/f4": the variant with F(4x4, 3x3) tiles for every call (winograd-cython picks
# them for large outputs and channel counts only)
WINOGRAD = VARIANTS + [
    f"{v}/f4" for v in VARIANTS if hasattr(K.get("conv2d", v), "_F4_MIN_SIDE")
]  # fmt: skip
pytestmark = pytest.mark.skipif(not VARIANTS, reason="no Winograd variant builds here")


def _name(variant: str) -> str:
    return variant.split("/")[0]


@pytest.fixture(autouse=True)
def _winograd_paths(request, monkeypatch):
    """The tests' small channel counts take the Winograd weight gradient too (the variants
    hand calls with few input channels to im2col's); a "/f4" variant runs every forward and
    input gradient on F(4x4, 3x3) tiles, the others on F(2x2, 3x3)."""
    f4 = getattr(request.node, "callspec", None) and str(
        request.node.callspec.params.get("variant", "")
    ).endswith("/f4")
    for v in VARIANTS:
        mod = K.get("conv2d", v)
        if hasattr(mod, "_WGRAD_MIN_CHANNELS"):
            monkeypatch.setattr(mod, "_WGRAD_MIN_CHANNELS", 1)
        if hasattr(mod, "_F4_MIN_SIDE"):
            monkeypatch.setattr(mod, "_F4_MIN_SIDE", 1 if f4 else 1 << 30)
            monkeypatch.setattr(mod, "_F4_MIN_CHANNELS", 1)
        if hasattr(mod, "_F4_FAST_MIN_SIDE"):
            monkeypatch.setattr(mod, "_F4_FAST_MIN_SIDE", 1 if f4 else 1 << 30)
            monkeypatch.setattr(mod, "_F4_FAST_MIN_CHANNELS", 1)


@st.composite
def winograd_case(draw):
    """A 3x3 stride-1 call: odd and even sizes, padding 0..2 per side, batch 1..3, channel
    counts that are not multiples of a SIMD width."""
    n = draw(st.integers(1, 3))
    c, o = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, 3 - 2 * padding[0]), 11))
    w = draw(st.integers(max(1, 3 - 2 * padding[1]), 11))
    bias = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return n, c, o, h, w, padding, bias, dtype


def _arrays(case, seed=0):
    n, c, o, h, w, padding, bias, dtype = case
    return conv_arrays(n, c, o, h, w, 3, 3, bias, dtype, seed=seed)


@pytest.mark.parametrize("variant", WINOGRAD)
@settings(max_examples=examples(15), deadline=None)
@given(case=winograd_case(), need=st.sampled_from(["both", "x", "w"]))
def test_winograd_matches_reference(variant, case, need):
    x, w, b = _arrays(case)
    args = ((1, 1), case[5], (1, 1), 1)
    check_against_reference(K.get("conv2d", _name(variant)), x, w, b, args, need)


@pytest.mark.parametrize("variant", WINOGRAD)
def test_winograd_many_tiles_and_blocks(variant):
    """Enough tiles for several blocks of the tile loop, a partial last block, odd sizes."""
    wn = K.get("conv2d", _name(variant))  # the variant's module: its block size is patched
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 13, 9))
    w = rng.standard_normal((7, 5, 3, 3))
    b = rng.standard_normal(7)
    # blocks of 10 tiles (where a share or F(4x4)'s 36 matrices go below the 8-tile floor: 8)
    blocks = 16 * 12 * 8 * 10
    for padding in [(0, 0), (1, 1), (2, 1), (3, 0)]:
        args = ((1, 1), padding, (1, 1), 1)
        check_close_to_reference(wn, x, w, b, args, rng, _BLOCK_BYTES=blocks)


@pytest.mark.parametrize("variant", WINOGRAD)
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_winograd_gradcheck(variant, padding):
    rng = np.random.default_rng(2)
    x = tg.Tensor(rng.standard_normal((1, 3, 5, 6)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(2), requires_grad=True)
    with K.use(conv2d=_name(variant)):
        assert tg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, padding), [x, w, b])


@pytest.mark.torch
@pytest.mark.parametrize("variant", WINOGRAD)
@settings(max_examples=examples(10), deadline=None)
@given(case=winograd_case())
def test_winograd_matches_torch(variant, case):
    check_against_torch(_name(variant), *_arrays(case, seed=3), 1, case[5])


# the float32 error bound documented for users (README's kernel table): the largest
# difference from the float64 reference, over the float64 output's RMS, on unit-variance
# inputs (measured 0.6e-6 to 2.8e-6 for 3 to 256 input channels, im2col 0.7e-6 to 2.3e-6)
WINOGRAD_F32_ERROR = 1e-5
# F(4x4, 3x3)'s interpolation points (0, +-1, +-2) and G's 1/6, 1/12, 1/24 lose about a
# decimal digit more: measured 2.7e-5 (forward and input gradient) at 64 channels;
# held at the 1e-4 users are promised
WINOGRAD_F4_F32_ERROR = 1e-4


@pytest.mark.parametrize("variant", WINOGRAD)
@pytest.mark.parametrize("c", [3, 64, 256])
def test_winograd_float32_error_held(variant, c):
    bound = WINOGRAD_F4_F32_ERROR if variant.endswith("/f4") else WINOGRAD_F32_ERROR
    rng = np.random.default_rng(c)
    x = rng.standard_normal((2, c, 12, 12))
    w = rng.standard_normal((8, c, 3, 3))
    args = ((1, 1), (1, 1), (1, 1), 1)
    want = K.get("conv2d", "reference").forward(x, w, None, *args)
    mod = K.get("conv2d", _name(variant))
    y = mod.forward(x.astype(np.float32), w.astype(np.float32), None, *args)
    scale = np.sqrt(np.mean(want**2))
    assert np.max(np.abs(y - want)) / scale <= bound
    gy = rng.standard_normal(want.shape)
    gx_want = K.get("conv2d", "reference").backward(gy, x, w, *args, True, False)[0]
    gx = mod.backward(gy.astype(np.float32), x.astype(np.float32), w.astype(np.float32),
                      *args, True, False)[0]  # fmt: skip
    assert np.max(np.abs(gx - gx_want)) / np.sqrt(np.mean(gx_want**2)) <= bound
    gw_want = K.get("conv2d", "reference").backward(gy, x, w, *args, False, True)[1]
    gw = mod.backward(gy.astype(np.float32), x.astype(np.float32), w.astype(np.float32),
                      *args, False, True)[1]  # fmt: skip
    assert np.max(np.abs(gw - gw_want)) / np.sqrt(np.mean(gw_want**2)) <= WINOGRAD_F32_ERROR


@pytest.mark.parametrize("variant", WINOGRAD)
@pytest.mark.parametrize(
    "w_shape, stride, dilation, groups",
    [((4, 2, 5, 5), 1, 1, 1), ((4, 2, 3, 3), 2, 1, 1), ((4, 2, 3, 3), 1, 2, 1),
     ((4, 1, 3, 3), 1, 1, 2), ((4, 2, 3, 1), 1, 1, 1)],
)  # fmt: skip
def test_winograd_not_applicable(variant, w_shape, stride, dilation, groups):
    """Calls Winograd does not cover: the variant still gives the right answer (it delegates
    to im2col), and ``auto``'s rule never lists it for them."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 9, 8))
    w = rng.standard_normal(w_shape)
    s, d = (stride, stride), (dilation, dilation)
    args = (s, (1, 1), d, groups)
    check_close_to_reference(K.get("conv2d", _name(variant)), x, w, None, args, rng)
    call = Conv2dCall.of(x, w, s, (1, 1), d, groups)
    assert not any(n.startswith("winograd") for n in _conv2d_rule(call))


@pytest.mark.parametrize("variant", WINOGRAD)
def test_winograd_nonfinite_stays_local(variant):
    """A NaN or an infinity reaches the outputs a direct convolution gives it, not the
    rest of its Winograd tile."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 8, 8))
    w = rng.standard_normal((3, 2, 3, 3))
    x[0, 1, 0, 0], x[0, 0, 5, 6] = np.nan, np.inf
    args = ((1, 1), (0, 0), (1, 1), 1)
    y = K.get("conv2d", _name(variant)).forward(x, w, None, *args)
    want = K.get("conv2d", "reference").forward(x, w, None, *args)
    assert_same_nonfinite(y, want)
    gy = rng.standard_normal(want.shape)
    gy[0, 2, 3, 4], gy[0, 0, 0, 5] = np.nan, -np.inf
    gx = K.get("conv2d", _name(variant)).backward(gy, x, w, *args, True, False)[0]
    gx_want = K.get("conv2d", "reference").backward(gy, x, w, *args, True, False)[0]
    assert_same_nonfinite(gx, gx_want)


@pytest.mark.parametrize("variant", WINOGRAD)
def test_winograd_weight_gradient_nonfinite_input(variant):
    """A NaN or an infinity in x reaches the weight-gradient taps a direct sum gives it."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    x[1, 2, 0, 0], x[0, 1, 4, 3] = np.nan, np.inf
    args = ((1, 1), (1, 1), (1, 1), 1)
    gy = rng.standard_normal((2, 4, 7, 6))
    gw = K.get("conv2d", _name(variant)).backward(gy, x, w, *args, False, True)[1]
    want = K.get("conv2d", "reference").backward(gy, x, w, *args, False, True)[1]
    assert_same_nonfinite(gw, want)


@pytest.mark.parametrize("variant", [v for v in WINOGRAD if "cython" in v])
@pytest.mark.parametrize("width, padding", [(32, 1), (33, 0), (41, 2), (16, 1), (70, 1)])
def test_winograd_float32_rows_of_many_tiles(variant, width, padding):
    """float32 rows wider than one vector of tiles (full, partial and several vectors per
    row segment) match the float64 reference, and a NaN or an infinity anywhere along such
    a row is found: it reaches only the outputs a direct convolution gives it."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 6, width)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    args = ((1, 1), (padding, padding), (1, 1), 1)
    mod, ref = K.get("conv2d", _name(variant)), K.get("conv2d", "reference")
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = ref.forward(x64, w64, None, *args)
    np.testing.assert_allclose(mod.forward(x, w, None, *args), want, rtol=1e-4, atol=1e-4)
    gy = rng.standard_normal(want.shape).astype(np.float32)
    got = mod.backward(gy, x, w, *args, True, True)
    want_g = ref.backward(gy.astype(np.float64), x64, w64, *args, True, True)
    for g, r in zip(got, want_g):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)
    for col in (width // 2, width - 1):
        xb = x.copy()
        xb[1, 2, 3, col] = np.nan if col < width - 1 else np.inf
        y = mod.forward(xb, w, None, *args)
        y_ref = ref.forward(xb.astype(np.float64), w64, None, *args)
        np.testing.assert_array_equal(np.isfinite(y), np.isfinite(y_ref))


def _unit_case(n, c, o, h, w, padding):
    """Unit-variance float64 arrays of a 3x3 stride-1 call and the reference's forward (with
    bias) and input gradient: (x, w, b, gy, args, y, gx)."""
    rng = np.random.default_rng(c * o + h)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, 3, 3))
    b = rng.standard_normal(o)
    args = ((1, 1), padding, (1, 1), 1)
    ref = K.get("conv2d", "reference")
    want = ref.forward(x, wt, b, *args)
    gy = rng.standard_normal(want.shape)
    return x, wt, b, gy, args, want, ref.backward(gy, x, wt, *args, True, False)[0]


@pytest.mark.parametrize("team", [1, 2])
@pytest.mark.parametrize(
    "n, c, o, h, w, padding",
    [
        (1, 5, 19, 9, 70, (1, 1)),  # 18 tiles a row: segments of 16 and 2
        (3, 19, 5, 13, 9, (0, 0)),  # odd sides, partial tiles at the edges
        (2, 8, 16, 11, 23, (2, 1)),
        (1, 17, 9, 6, 6, (2, 2)),  # batch 1, one block
        (2, 3, 24, 20, 33, (1, 0)),
    ],
)
def test_winograd_cython_f4_vector_path(monkeypatch, team, n, c, o, h, w, padding):
    """winograd-cython's vector-register F(4x4, 3x3) float32 path (AVX-512 builds): blocks of
    16 tiles (several per call, a partial last one, tile rows split across blocks and into
    16-tile segments), channel counts that are not a multiple of 8 or 16, padding 0 to 2,
    forward with bias and input gradient within F(4x4)'s float32 bound of the float64
    reference, the same arrays on every call."""
    mod = K.get("conv2d", "winograd-cython")
    if not mod.fast4_available():
        pytest.skip("no vector-register F(4x4, 3x3) path in this build")
    monkeypatch.setattr(mod, "_F4_FAST_MIN_SIDE", 1)
    monkeypatch.setattr(mod, "_F4_FAST_MIN_CHANNELS", 1)
    monkeypatch.setattr(mod, "_F4_FAST_BLOCK_BYTES", 1)
    monkeypatch.setattr(mod, "_team_size", lambda work: team)
    x, wt, b, gy, args, want, want_gx = _unit_case(n, c, o, h, w, padding)
    x32, w32, b32 = x.astype(np.float32), wt.astype(np.float32), b.astype(np.float32)
    y = mod.forward(x32, w32, b32, *args)
    assert y.dtype == np.float32
    scale = np.sqrt(np.mean(want**2))
    assert np.max(np.abs(y - want)) / scale <= WINOGRAD_F4_F32_ERROR
    np.testing.assert_array_equal(mod.forward(x32, w32, b32, *args), y)
    gx = mod.backward(gy.astype(np.float32), x32, w32, *args, True, False)[0]
    scale = np.sqrt(np.mean(want_gx**2))
    assert np.max(np.abs(gx - want_gx)) / scale <= WINOGRAD_F4_F32_ERROR


def test_winograd_cython_weight_gradient_by_channels(monkeypatch):
    """winograd-cython's weight gradient: Winograd's from ``_WGRAD_MIN_CHANNELS`` channels in
    and out, chvec-cython's (the same array; im2col-cython's in builds without it) below;
    both agree with the reference."""
    if "winograd-cython" not in VARIANTS:
        pytest.skip("winograd-cython does not build here")
    mod = K.get("conv2d", "winograd-cython")
    below = "chvec-cython" if mod._wgrad_direct is not None else "im2col-cython"
    other = K.get("conv2d", below)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 7, 6))
    w = rng.standard_normal((4, 5, 3, 3))
    gy = rng.standard_normal((2, 4, 7, 6))
    args = ((1, 1), (1, 1), (1, 1), 1)
    want = K.get("conv2d", "reference").backward(gy, x, w, *args, False, True)[1]
    for least in (5, 4):  # one side below the bound: the direct one's; both at it: Winograd's
        monkeypatch.setattr(mod, "_WGRAD_MIN_CHANNELS", least)
        gw = mod.backward(gy, x, w, *args, False, True)[1]
        by_other = other.backward(gy, x, w, *args, False, True)[1]
        assert np.array_equal(gw, by_other) == (least == 5)
        np.testing.assert_allclose(gw, want, rtol=1e-10, atol=1e-10)


def test_auto_rule_winograd_on_small_images():
    """The auto rule puts winograd-cython first on 8x8 and 16x16 outputs with 64 channels in
    and out or more, on 16x16 outputs from 32 channels when there are at least as many in as
    out, and im2col-cython there otherwise; on 32x32 outputs winograd-cython from 16
    channels. (This is the order behind chvec-cython's lead on these layers, see
    test_conv_chvec.py.)"""
    from tapegrad.kernels.conv import Conv2dCall
    from tapegrad.kernels.conv import _conv2d_order as _conv2d_rule

    def call(c, o, hw):
        return Conv2dCall((64, c, hw, hw), (o, c, 3, 3), (1, 1), (1, 1), (1, 1), 1, "<f4")

    assert _conv2d_rule(call(64, 64, 8))[0] == "winograd-cython"
    assert _conv2d_rule(call(128, 64, 8))[0] == "winograd-cython"
    assert _conv2d_rule(call(32, 64, 8))[0] == "im2col-cython"
    assert _conv2d_rule(call(64, 64, 4))[0] == "im2col-cython"  # 16 output pixels
    assert _conv2d_rule(call(32, 64, 16))[0] == "im2col-cython"
    # 16x16 outputs with 32 channels, at least as many in as out (resnet8's 32->32 layer)
    assert _conv2d_rule(call(32, 32, 16))[0] == "winograd-cython"
    assert _conv2d_rule(call(64, 32, 16))[0] == "winograd-cython"
    assert _conv2d_rule(call(24, 24, 16))[0] == "im2col-cython"
    assert _conv2d_rule(call(32, 32, 12))[0] == "im2col-cython"  # 144 output pixels
    assert _conv2d_rule(call(32, 32, 8))[0] == "im2col-cython"
    assert _conv2d_rule(call(64, 64, 16))[0] == "winograd-cython"
    assert _conv2d_rule(call(32, 64, 32))[0] == "winograd-cython"
    assert _conv2d_rule(call(24, 24, 32))[0] == "winograd-cython"


@pytest.mark.parametrize("team", [1, 2])
def test_auto_rule_winograd_f4_first(monkeypatch, team):
    """Builds with winograd-cython's vector F(4x4, 3x3) path: winograd-cython first for
    float32 3x3 stride-1 calls on outputs of 20x20 or more with 32 or more channels in and
    out and on 16x16 ones with 64 or more, listed once; float64 calls, fewer channels and
    strided calls keep the order they had (chvec-cython first where it led)."""
    from tapegrad.kernels import threads

    monkeypatch.setattr(threads, "get_num_threads", lambda: team)

    def rule(n, c, o, side, dtype="<f4", stride=1):
        s = (stride, stride)
        return _conv2d_rule(
            Conv2dCall((n, c, side, side), (o, c, 3, 3), s, (1, 1), (1, 1), 1, dtype)
        )

    first = ["winograd-cython"] if _winograd_fast4() else ["chvec-cython"]
    for n, c, o, side in [(32, 64, 64, 32), (64, 32, 32, 32), (64, 64, 64, 16), (8, 64, 96, 20),
                          (32, 40, 40, 24), (32, 48, 48, 20), (64, 32, 32, 24)]:  # fmt: skip
        r = rule(n, c, o, side)
        assert r[:1] == first, (n, c, o, side)
        assert r.count("winograd-cython") == 1
        assert rule(n, c, o, side, "<f8")[0] == "chvec-cython"
    assert rule(64, 16, 16, 32)[0] == "chvec-cython"
    assert rule(64, 64, 64, 32, stride=2)[0] != "winograd-cython"


@pytest.mark.parametrize("team", [1, 2])
def test_auto_rule_winograd_lanes_first(monkeypatch, team):
    """float32 3x3 stride-1 calls on outputs of at most 32x32 with 32 or more channels in and
    out and at least one image per thread (resnet8's 16x16 32->32 and 8x8 64->64, vgg_small's
    16x16 32->64): winograd-cython first (its channel-lane F(2x2, 3x3)), listed once; float64,
    16 channels, fewer images than threads and the rule with the lead switched off keep
    chvec-cython first."""
    from tapegrad.kernels import conv, threads

    if "winograd-cython" not in VARIANTS:
        pytest.skip("winograd-cython does not build here")
    monkeypatch.setattr(threads, "get_num_threads", lambda: team)

    def rule(n, c, o, side, dtype="<f4"):
        return _conv2d_rule(
            Conv2dCall((n, c, side, side), (o, c, 3, 3), (1, 1), (1, 1), (1, 1), 1, dtype)
        )

    for n, c, o, side in [(64, 32, 32, 16), (64, 64, 64, 8), (64, 32, 64, 16), (3, 40, 33, 11),
                          (8, 48, 48, 18)]:  # fmt: skip
        r = rule(n, c, o, side)
        assert r[0] == "winograd-cython", (n, c, o, side)
        assert r.count("winograd-cython") == 1
        assert rule(n, c, o, side, "<f8")[0] == "chvec-cython"
    assert rule(64, 16, 16, 32)[0] == "chvec-cython"
    assert rule(64, 16, 32, 16)[0] == "chvec-cython"
    assert (rule(1, 32, 64, 16)[0] == "winograd-cython") == (team == 1)
    monkeypatch.setattr(conv, "_LANES_LEAD", False)
    assert rule(64, 64, 64, 8)[0] == "chvec-cython"
    assert rule(8, 48, 48, 18)[0] == "chvec-cython"


@pytest.mark.parametrize("team", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n, c, o, h, w, padding",
    [
        (2, 16, 16, 8, 8, (1, 1)),
        (3, 5, 23, 7, 9, (0, 0)),  # odd sides, partial tiles, channels below a vector
        (1, 17, 40, 11, 6, (2, 2)),  # batch 1, part vectors in and out
        (2, 33, 70, 13, 15, (1, 2)),  # three vectors of outputs plus a part one
        (2, 64, 64, 8, 8, (1, 1)),  # resnet8's 8x8 layer: four vectors of outputs
        (1, 3, 1, 5, 4, (1, 0)),
    ],
)
@pytest.mark.parametrize("strip", [1, 1 << 30])
def test_winograd_cython_lanes_path(monkeypatch, team, dtype, n, c, o, h, w, padding, strip):
    """winograd-cython's F(2x2, 3x3) with channels across the vector lanes (chvec-cython's
    ``winograd2_threads``), for every call here: strips of one tile row, or of every tile
    of several images (``strip`` large: groups of images, the last one short), odd sizes
    and partial tiles, padding 0 to 2, batch 1, channel counts that are not a multiple of 8
    or 16, 1 to 3 threads; forward with bias and input gradient against the float64
    reference (float32 within 1e-4 of the output's RMS), the same arrays on a repeat."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS or mod._lanes is None:
        pytest.skip("winograd-cython's channel-lane path does not build here")
    monkeypatch.setattr(mod, "_LANES_MIN_CHANNELS", 1)
    monkeypatch.setattr(mod, "_LANES_MAX_SIDE", 1 << 30)
    monkeypatch.setattr(mod, "_LANES_STRIP_BYTES", strip)
    monkeypatch.setattr(mod, "_LANES_GROUP_BYTES", strip)
    monkeypatch.setattr(mod, "_team_size", lambda work: team)
    x, wt, b, gy, args, want, want_gx = _unit_case(n, c, o, h, w, padding)
    xd, wd, bd, gd = (a.astype(dtype) for a in (x, wt, b, gy))
    y = mod.forward(xd, wd, bd, *args)
    gx = mod.backward(gd, xd, wd, *args, True, False)[0]
    bound = 1e-4 if dtype == np.float32 else 1e-12
    for got, ref_ in ((y, want), (gx, want_gx)):
        assert got.dtype == dtype and got.shape == ref_.shape
        assert np.max(np.abs(got - ref_)) / np.sqrt(np.mean(ref_**2)) <= bound
    np.testing.assert_array_equal(mod.forward(xd, wd, bd, *args), y)


def test_winograd_cython_lanes_path_nonfinite(monkeypatch):
    """A NaN or an infinity in x on the channel-lane path: the call goes to im2col-cython,
    which puts it where a direct sum does."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS or mod._lanes is None:
        pytest.skip("winograd-cython's channel-lane path does not build here")
    monkeypatch.setattr(mod, "_LANES_MIN_CHANNELS", 1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 20, 8, 8))
    w = rng.standard_normal((18, 20, 3, 3))
    x[0, 3, 2, 5], x[1, 19, 7, 0] = np.nan, np.inf
    args = ((1, 1), (1, 1), (1, 1), 1)
    assert_same_nonfinite(mod.forward(x, w, None, *args),
                          K.get("conv2d", "reference").forward(x, w, None, *args))  # fmt: skip


def _lanes_wgrad_module(mp, strip_bytes=None, team=None):
    """winograd-cython with its channel-lane weight gradient (chvec-cython's
    ``winograd2_wgrad_threads``) taking every call, or None where it does not build."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS or not hasattr(mod, "_wgrad_lanes"):
        return None
    if not mod._wgrad_lanes(1 << 20, 1 << 20, 1, 1, 1):
        return None
    mp.setattr(mod, "_LANES_MIN_CHANNELS", 1)
    if strip_bytes is not None:
        mp.setattr(mod, "_WGRAD_LANES_STRIP_BYTES", strip_bytes)
    if team is not None:
        mp.setattr(mod, "_team_size", lambda work: team)
    return mod


@pytest.mark.parametrize("team", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strip_bytes", [1, None])  # strips of one tile row; the default
@pytest.mark.parametrize(
    "n, c, o, h, w, padding",
    [
        (2, 16, 16, 8, 8, (1, 1)),
        (3, 5, 23, 7, 9, (0, 0)),  # odd sides, partial tiles, channels below a vector
        (1, 17, 40, 11, 6, (2, 2)),  # batch 1, part vectors in and out
        (2, 33, 70, 13, 15, (1, 2)),  # three vectors of outputs plus a part one
        (5, 64, 64, 8, 8, (1, 1)),  # resnet8's 8x8 layer: strips of several images
        (2, 64, 48, 16, 16, (1, 1)),
        (1, 3, 1, 5, 4, (1, 0)),
    ],
)
def test_winograd_cython_lanes_weight_gradient(team, dtype, strip_bytes, n, c, o, h, w, padding):
    """winograd-cython's F(2x2, 3x3) weight gradient with channels across the vector lanes
    (chvec-cython's ``winograd2_wgrad_threads``), for every call here: strips of one tile row
    and strips of several images, odd sizes and partial tiles, padding 0 to 2, batch 1,
    channel counts that are not a multiple of 8 or 16, 1 to 3 threads (chunks of the batch);
    against the float64 reference (float32 within the documented Winograd bound of the
    gradient's RMS), the same array on a repeat."""
    with pytest.MonkeyPatch.context() as mp:
        mod = _lanes_wgrad_module(mp, strip_bytes, team)
        if mod is None:
            pytest.skip("winograd-cython's channel-lane weight gradient does not build here")
        x, wt, _, gy, args, _, _ = _unit_case(n, c, o, h, w, padding)
        want = K.get("conv2d", "reference").backward(gy, x, wt, *args, False, True)[1]
        xd, wd, gd = (a.astype(dtype) for a in (x, wt, gy))
        gw = mod.backward(gd, xd, wd, *args, False, True)[1]
        bound = WINOGRAD_F32_ERROR if dtype == np.float32 else 1e-12
        assert gw.dtype == dtype and gw.shape == want.shape
        assert np.max(np.abs(gw - want)) / np.sqrt(np.mean(want**2)) <= bound
        np.testing.assert_array_equal(mod.backward(gd, xd, wd, *args, False, True)[1], gw)


@pytest.mark.parametrize("team", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n, c, o, h, w, padding, path",
    [
        (3, 40, 33, 7, 9, (0, 0), "lanes"),  # odd sides: gradients padded to whole tiles
        (5, 64, 64, 8, 8, (1, 1), "lanes"),  # several images per strip
        (1, 33, 70, 13, 15, (1, 2), "lanes"),  # batch 1, a part vector of outputs
        (4, 16, 16, 12, 12, (1, 1), "direct"),  # chvec-cython's direct weight gradient
        (3, 5, 23, 7, 9, (0, 0), "direct"),
        (2, 40, 33, 7, 9, (1, 1), "blas"),  # F(2x2, 3x3) through BLAS: no bias pass
    ],
)
def test_winograd_cython_backward_with_bias(monkeypatch, team, dtype, n, c, o, h, w, padding, path):
    """``backward_with_bias``: gx and gw the same bits as ``backward``'s, and the bias
    gradient summed by the weight gradient's own pass (the channel-lane chunks, or
    chvec-cython's direct weight gradient) against the output gradient summed per channel;
    None from the BLAS Winograd weight gradient, without the weight gradient or when not
    asked for."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS or mod._lanes is None:
        pytest.skip("winograd-cython's channel-lane path does not build here")
    # the module's own thresholds (this file's fixture sends small calls to the BLAS path)
    monkeypatch.setattr(mod, "_WGRAD_MIN_CHANNELS", 1 if path == "blas" else 1 << 30)
    if path == "blas":
        monkeypatch.setattr(mod, "_LANES_MIN_CHANNELS", 1 << 30)
    summed = path != "blas"
    x, wt, _, gy, args, _, _ = _unit_case(n, c, o, h, w, padding)
    xd, wd, gd = (a.astype(dtype) for a in (x, wt, gy))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mod, "_team_size", lambda work: team)
        gx, gw, gb = mod.backward_with_bias(gd, xd, wd, *args, True, True)
        want_gx, want_gw = mod.backward(gd, xd, wd, *args, True, True)
        assert mod.backward_with_bias(gd, xd, wd, *args, True, False)[2] is None
        assert mod.backward_with_bias(gd, xd, wd, *args, True, True, False)[2] is None
        again = mod.backward_with_bias(gd, xd, wd, *args, False, True)[2]
    np.testing.assert_array_equal(gx, want_gx)
    np.testing.assert_array_equal(gw, want_gw)
    assert (gb is not None) == summed
    if not summed:
        return
    assert gb.dtype == dtype and gb.shape == (o,)
    want = gy.astype(np.float64).sum(axis=(0, 2, 3))
    scale = np.sqrt(gy[0].size * n / o)  # the RMS of a sum of unit-variance values
    assert np.max(np.abs(gb - want)) / scale <= (1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(again, gb)


@pytest.mark.parametrize("team", [2, 3])
@pytest.mark.parametrize("n, c, o, h, w", [(5, 64, 64, 8, 8), (7, 33, 70, 13, 15)])
def test_winograd_cython_lanes_weight_gradient_parts_budget(team, n, c, o, h, w):
    """Past ``_WGRAD_LANES_PARTS_BYTES`` the channel-lane weight gradient cuts the batch into
    one chunk per thread (not four): the kernel sees that many partial sums and the result
    still matches the float64 reference within the Winograd bound."""
    with pytest.MonkeyPatch.context() as mp:
        mod = _lanes_wgrad_module(mp, None, team)
        if mod is None:
            pytest.skip("winograd-cython's channel-lane weight gradient does not build here")
        lanes, chunks = mod._lanes, []

        class Spy:
            def __getattr__(self, name):
                return getattr(lanes, name)

            def winograd2_wgrad_threads(self, x, gy, du, *rest):
                chunks.append(du.shape[0])
                return lanes.winograd2_wgrad_threads(x, gy, du, *rest)

        mp.setattr(mod, "_lanes", Spy())
        x, wt, _, gy, args, _, _ = _unit_case(n, c, o, h, w, (1, 1))
        want = K.get("conv2d", "reference").backward(gy, x, wt, *args, False, True)[1]
        xd, wd, gd = (a.astype(np.float32) for a in (x, wt, gy))
        mp.setattr(mod, "_WGRAD_LANES_PARTS_BYTES", 1)
        gw = mod.backward(gd, xd, wd, *args, False, True)[1]
        assert np.max(np.abs(gw - want)) / np.sqrt(np.mean(want**2)) <= WINOGRAD_F32_ERROR
        mp.setattr(mod, "_WGRAD_LANES_PARTS_BYTES", 1 << 40)
        mod.backward(gd, xd, wd, *args, False, True)
        assert chunks == [team, min(n, 4 * team)]


@settings(max_examples=examples(15), deadline=None)
@given(case=winograd_case())
def test_winograd_cython_lanes_weight_gradient_matches_reference(case):
    """The channel-lane weight gradient on the shared Winograd cases (hypothesis: odd and even
    sizes, padding 0 to 2, batch 1 to 3, few channels), both gradients asked for."""
    with pytest.MonkeyPatch.context() as mp:
        mod = _lanes_wgrad_module(mp)
        if mod is None:
            pytest.skip("winograd-cython's channel-lane weight gradient does not build here")
        x, w, b = _arrays(case)
        check_against_reference(mod, x, w, b, ((1, 1), case[5], (1, 1), 1), "both")


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_winograd_cython_lanes_weight_gradient_gradcheck(padding):
    """gradcheck in float64 with the channel-lane weight gradient."""
    with pytest.MonkeyPatch.context() as mp:
        mod = _lanes_wgrad_module(mp)
        if mod is None:
            pytest.skip("winograd-cython's channel-lane weight gradient does not build here")
        rng = np.random.default_rng(12)
        x = tg.Tensor(rng.standard_normal((2, 3, 5, 6)), requires_grad=True)
        w = tg.Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
        with K.use(conv2d="winograd-cython"):
            assert tg.gradcheck(lambda x, w: F.conv2d(x, w, None, 1, padding), [x, w])


@pytest.mark.parametrize("side", [8, 16])
def test_winograd_cython_lanes_weight_gradient_float32_error(side):
    """The float32 error the docs give for the channel-lane weight gradient on unit-variance
    inputs at the zoo's size (64 channels in and out, batch 64: sums over 1024 and 4096
    tiles), taken by default (no patching), held at the Winograd bound."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS or not getattr(mod, "_wgrad_lanes", None):
        pytest.skip("winograd-cython's channel-lane weight gradient does not build here")
    if not mod._wgrad_lanes(64, 64, side, side, 64):
        pytest.skip("the channel-lane weight gradient does not build here")
    rng = np.random.default_rng(side)
    x = rng.standard_normal((64, 64, side, side))
    w = rng.standard_normal((64, 64, 3, 3))
    gy = rng.standard_normal((64, 64, side, side))
    args = ((1, 1), (1, 1), (1, 1), 1)
    want = K.get("conv2d", "reference").backward(gy, x, w, *args, False, True)[1]
    gw = mod.backward(gy.astype(np.float32), x.astype(np.float32), w.astype(np.float32),
                      *args, False, True)[1]  # fmt: skip
    assert np.max(np.abs(gw - want)) / np.sqrt(np.mean(want**2)) <= WINOGRAD_F32_ERROR


def test_winograd_cython_lanes_weight_gradient_nonfinite():
    """A NaN or an infinity in x or gy on the channel-lane weight gradient: the call goes to
    the direct weight gradient, which puts it in the taps a direct sum does."""
    with pytest.MonkeyPatch.context() as mp:
        mod = _lanes_wgrad_module(mp)
        if mod is None:
            pytest.skip("winograd-cython's channel-lane weight gradient does not build here")
        rng = np.random.default_rng(13)
        x = rng.standard_normal((2, 20, 8, 8))
        w = rng.standard_normal((18, 20, 3, 3))
        gy = rng.standard_normal((2, 18, 8, 8))
        args = ((1, 1), (1, 1), (1, 1), 1)
        ref = K.get("conv2d", "reference")
        for arr, where, val in ((x, (0, 3, 2, 5), np.nan), (gy, (1, 17, 7, 0), np.inf)):
            a = arr.copy()
            a[where] = val
            xs, gs = (a, gy) if arr is x else (x, a)
            assert_same_nonfinite(mod.backward(gs, xs, w, *args, False, True)[1],
                                  ref.backward(gs, xs, w, *args, False, True)[1])  # fmt: skip


def test_winograd_cython_lanes_weight_gradient_takes():
    """Which calls winograd-cython's weight gradient runs on its channel-lane path by default:
    32 or more channels in and out, any plane, any batch (one image too)."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS or not getattr(mod, "_wgrad_lanes", None):
        pytest.skip("winograd-cython's channel-lane weight gradient does not build here")
    if not mod._wgrad_lanes(64, 64, 8, 8, 64):
        pytest.skip("the channel-lane weight gradient does not build here")
    team = tg.get_num_threads()
    for c, o, side, n in [
        (64, 64, 16, 1),
        (32, 32, 16, 1),
        (32, 64, 11, 1),
        (128, 128, 8, 1),
        (32, 32, 32, team),
        (64, 64, 64, team),
        (48, 48, 24, 2 * team),
        (64, 64, 32, 1),
        (128, 128, 64, 1),
    ]:
        assert mod._wgrad_lanes(c, o, side, side, n), (c, o, side, n)
    for c, o, side, n in [(16, 64, 8, 64), (31, 31, 16, 64), (64, 16, 32, 64), (16, 16, 32, 1)]:
        assert not mod._wgrad_lanes(c, o, side, side, n), (c, o, side, n)


def test_winograd_cython_lanes_forward_takes():
    """Which calls winograd-cython's forward (and input gradient) runs on its channel-lane
    path by default: outputs up to 32x32 with 32 or more channels in and out, any batch (one
    image too)."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS or mod._lanes is None:
        pytest.skip("winograd-cython's channel-lane path does not build here")
    team = tg.get_num_threads()
    for c, o, side, n in [
        (64, 64, 8, 1),
        (32, 32, 16, 1),
        (64, 64, 16, 1),
        (48, 48, 24, team),
        (32, 32, 32, team),
        (256, 256, 16, 1),
        (64, 64, 32, 1),
        (128, 128, 28, 1),
    ]:
        assert mod._uses_lanes(c, o, side, side, n), (c, o, side, n)
    for c, o, side, n in [(16, 16, 16, 64), (31, 64, 8, 64), (32, 32, 33, 64), (64, 64, 64, 1)]:
        assert not mod._uses_lanes(c, o, side, side, n), (c, o, side, n)


def _cpu_ms_while_idle(seconds: float = 0.05) -> float:
    """Process CPU ms spent while the calling thread sleeps: threads left spinning."""
    import time

    c0 = time.process_time()
    time.sleep(seconds)
    return 1e3 * (time.process_time() - c0)


@pytest.mark.parametrize(
    "n, c, o, side",
    [
        (4, 64, 64, 8),  # channel-lane forward and weight gradient
        (1, 128, 128, 40),  # F(4x4, 3x3) forward and input gradient, BLAS weight gradient
    ],
)
def test_winograd_cython_leaves_no_blas_thread_spinning(n, c, o, side):
    """At two threads winograd-cython's small NumPy products (weight transforms, the weight
    gradient's last transform) run on one BLAS thread: OpenBLAS's workers, once woken, keep
    spinning on the cores the next kernels' OpenMP team needs. After each pass the process
    burns (almost) no CPU while idle."""
    mod = K.get("conv2d", "winograd-cython")
    if "winograd-cython" not in VARIANTS:
        pytest.skip("winograd-cython does not build here")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, side, side), dtype=np.float32)
    w = rng.standard_normal((o, c, 3, 3), dtype=np.float32)
    gy = rng.standard_normal((n, o, side, side), dtype=np.float32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    before = tg.get_num_threads()
    tg.set_num_threads(2)
    try:
        for run in (
            lambda: mod.forward(x, w, None, *args),
            lambda: mod.backward(gy, x, w, *args, True, False),
            lambda: mod.backward(gy, x, w, *args, False, True),
        ):
            run()
            spent = _cpu_ms_while_idle()
            assert spent < 10.0, spent
    finally:
        tg.set_num_threads(before)
