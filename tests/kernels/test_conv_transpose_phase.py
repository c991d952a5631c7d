"""phase-cython transposed convolution (per output phase a stride-1 convolution with the
taps landing on it): against ``reference`` and PyTorch on random shapes, gradcheck in
float64, NaN/inf, threads, and where ``auto`` picks it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
from tapegrad.nn import functional as F
from tests._sizes import examples
from tests.kernels._conv_helpers import assert_forward_relu_is_epilogue

PHASE = "phase-cython" in K.variants("conv_transpose2d")
pytestmark = pytest.mark.skipif(not PHASE, reason="the Cython kernels are not built")


@pytest.fixture(scope="module", autouse=True)
def _phase_forward_on_every_channel_count():
    """The phase forward itself on the small channel counts drawn here (below
    ``_MIN_FORWARD_ROWS`` output channels the variant runs col2im-cython's forward)."""
    if not PHASE:
        yield
        return
    mod = K.get("conv_transpose2d", "phase-cython")
    saved, mod._MIN_FORWARD_ROWS = mod._MIN_FORWARD_ROWS, 1
    yield
    mod._MIN_FORWARD_ROWS = saved


@st.composite
def phase_case(draw):
    n = draw(st.integers(1, 3))
    c, o = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh = draw(st.sampled_from([3, 4, 3, 4, 1, 2]))
    kw = draw(st.sampled_from([kh, kh, 1, 2, 3, 4]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    outpad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    out = [
        (m - 1) * s - 2 * p + d * (k - 1) + op + 1
        for m, s, p, d, k, op in zip((h, w), stride, padding, dilation, (kh, kw), outpad)
    ]
    if min(out) < 1:
        padding = (0, 0)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return n, c, o, h, w, kh, kw, stride, padding, outpad, dilation, dtype, draw(st.booleans())


def _arrays(case, seed=0):
    n, c, o, h, w, kh, kw, stride, padding, outpad, dilation, dtype, bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, o, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    return x, wt, b, (stride, padding, outpad, dilation, 1)


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


@settings(max_examples=examples(15), deadline=None)
@given(
    case=phase_case(),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
    block=st.integers(1, 3),
    direct=st.booleans(),
)
def test_phase_matches_reference(case, team, need, block, direct):
    mod, ref = K.get("conv_transpose2d", "phase-cython"), K.get("conv_transpose2d", "reference")
    x, w, b, args = _arrays(case)
    saved = mod._team, mod._block_images, mod._DIRECT_FORWARD
    mod._team = lambda macs: team  # 1 to 3 threads on every shape
    # 1 to 3 images per forward GEMM (a short last block too); with fewer blocks than
    # twice the team the output channels are split among the tasks as well
    mod._block_images = lambda n, *a: block
    mod._DIRECT_FORWARD = direct  # the forward's direct tiles or its GEMMs
    try:
        y = mod.forward(x, w, b, *args)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
        nx, nw = need in ("both", "x"), need in ("both", "w")
        gx, gw = mod.backward(gy, x, w, *args, nx, nw)
    finally:
        mod._team, mod._block_images, mod._DIRECT_FORWARD = saved
    want = ref.forward(x, w, b, *args)
    assert y.shape == want.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y, want, **_tol(x.dtype))
    gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
    assert (gx is None) != nx and (gw is None) != nw
    if nx:
        np.testing.assert_allclose(gx, gx_r, **_tol(x.dtype))
    if nw:
        assert gw.shape == w.shape and gw.dtype == w.dtype
        np.testing.assert_allclose(gw, gw_r, **_tol(x.dtype))


@pytest.mark.parametrize(
    "kh,kw,stride,padding,dilation",
    [(3, 3, 2, 1, 1), (4, 4, 2, 1, 1), (3, 2, 3, 2, 1), (3, 3, 2, 0, 2), (5, 4, 4, 1, 1)],
)
def test_phases_cover_every_tap_once(kh, kw, stride, padding, dilation):
    from tapegrad.kernels.conv_transpose import phase_cy

    s, p, d = (stride,) * 2, (padding,) * 2, (dilation,) * 2
    geo, taps, _ = phase_cy.geometry((2, 3, kh, kw), s, p, d, (5, 6), (11, 12))
    assert len(geo) == stride * stride and geo[:, 3].sum() == kh * kw
    assert sorted(taps[:, 0]) == list(range(kh * kw))


@pytest.mark.parametrize(
    "k,stride,padding,outpad", [(3, 2, 1, 1), (4, 2, 1, 0), (3, 3, 0, 2), (4, 1, 2, 0)]
)
def test_phase_gradcheck(k, stride, padding, outpad):
    rng = np.random.default_rng(2)
    x = tg.Tensor(rng.standard_normal((1, 2, 3, 4)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((2, 3, k, k)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(3), requires_grad=True)
    with K.use(conv_transpose2d="phase-cython"):
        assert tg.gradcheck(
            lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, outpad), [x, w, b]
        )


@pytest.mark.torch
@settings(max_examples=examples(6), deadline=None)
@given(case=phase_case())
def test_phase_matches_torch(case):
    torch = pytest.importorskip("torch")
    x, w, b, (stride, padding, outpad, dilation, _) = _arrays(case, seed=3)
    x, w = x.astype(np.float64), w.astype(np.float64)
    b = None if b is None else b.astype(np.float64)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, stride, padding, outpad, 1, dilation)
    gy = np.random.default_rng(4).standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    gx, gw = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    with K.use(conv_transpose2d="phase-cython"):
        y = F.conv_transpose2d(
            gx, gw, None if b is None else tg.Tensor(b), stride, padding, outpad, 1, dilation
        )
        y.backward(gy)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gx.grad.data, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw.grad.data, tw.grad.numpy(), rtol=1e-9, atol=1e-9)


def test_phase_nonfinite_input_like_reference():
    """A NaN or an infinity in x reaches the outputs and weight-gradient taps the
    reference gives it (including the taps of a cropped border: inf * 0 = NaN)."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((3, 4, 4, 4))
    x[0, 1, 0, 0], x[1, 2, 3, 5] = np.nan, np.inf
    args = ((2, 2), (1, 1), (0, 0), (1, 1), 1)
    mod, ref = K.get("conv_transpose2d", "phase-cython"), K.get("conv_transpose2d", "reference")
    y, want = mod.forward(x, w, None, *args), ref.forward(x, w, None, *args)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10, equal_nan=True)
    gy = rng.standard_normal(y.shape)
    got, exp = mod.backward(gy, x, w, *args, True, True), ref.backward(gy, x, w, *args, True, True)
    for g, r in zip(got, exp):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("n", [1, 2, 3, 13, 64, 500])
@pytest.mark.parametrize("team", [1, 2, 3])
def test_forward_blocks(n, team):
    """Images per forward GEMM: at least one, at most the batch, the block within the
    budget unless a single image exceeds it, and two blocks per thread where the batch
    allows (a team of one takes the budget's blocks)."""
    from tapegrad.kernels.conv_transpose import phase_cy

    for c, rows, plane in [(32, 64, 64), (64, 128, 324), (1, 4, 4)]:
        nb = phase_cy._block_images(n, c, rows, plane, 4, team)
        blocks = -(-n // nb)
        assert 1 <= nb <= n
        assert nb == 1 or nb * (c + rows) * plane * 4 <= phase_cy._BLOCK_BYTES
        if team > 1:
            assert blocks >= min(n, 2 * team)


def test_auto_picks_phase_for_the_larger_calls():
    from tapegrad.kernels.conv_transpose import ConvTranspose2dCall, _conv_transpose2d_rule

    def first(x_shape, w_shape):
        x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
        return _conv_transpose2d_rule(
            ConvTranspose2dCall.of(x, w, (2, 2), (1, 1), (1, 1), (1, 1), 1)
        )[0]

    assert first((32, 64, 16, 16), (64, 32, 4, 4)) == "phase-cython"
    assert first((64, 32, 7, 7), (32, 16, 3, 3)) == "phase-cython"
    # one output channel: phase-cython for its backward (the forward is col2im-cython's)
    assert first((64, 16, 14, 14), (16, 1, 3, 3)) == "phase-cython"
    assert first((1, 4, 5, 5), (4, 8, 3, 3)) == "col2im-cython"  # small


def test_few_output_channels_forward_runs_col2im(monkeypatch):
    """Below ``_MIN_FORWARD_ROWS`` output channels the forward is col2im-cython's (the phase
    GEMMs would have one row per output channel); the backward stays the phase one."""
    from tapegrad.kernels.conv_transpose import phase_cy

    calls = []
    col2im = phase_cy.col2im_cy

    class Spy:
        @staticmethod
        def forward(*a):
            calls.append("forward")
            return col2im.forward(*a)

        @staticmethod
        def backward(*a):
            calls.append("backward")
            return col2im.backward(*a)

    monkeypatch.setattr(phase_cy, "_MIN_FORWARD_ROWS", 8)
    monkeypatch.setattr(phase_cy, "col2im_cy", Spy)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 4, 5, 5)), rng.standard_normal((4, 1, 3, 3))
    args = ((2, 2), (1, 1), (1, 1), (1, 1), 1)
    ref = K.get("conv_transpose2d", "reference")
    y = phase_cy.forward(x, w, None, *args)
    gy = rng.standard_normal(y.shape)
    gx, gw = phase_cy.backward(gy, x, w, *args, True, True)
    assert calls == ["forward"]
    np.testing.assert_allclose(y, ref.forward(x, w, None, *args), rtol=1e-10, atol=1e-10)
    for g, r in zip((gx, gw), ref.backward(gy, x, w, *args, True, True)):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)


# --- the direct forward (12 to 16 output channels: _direct_grad_cy.forward_direct) ------


def _check_direct_forward(n, c, o, hw, k, stride, padding, outpad, dilation, dtype, team, relu,
                          patches):  # fmt: skip
    """``phase_cy._direct_forward`` on one random case (the module's constants in ``patches``
    set for the call, ``team`` threads) against ``reference``; with ``relu`` the values and
    the mask of the ReLU after it. Output padding is clipped to what the stride and
    dilation allow, and padding dropped where the output would be empty."""
    from tapegrad.kernels.conv_transpose import phase_cy

    outpad = tuple(min(p, max(s, d) - 1) for p, s, d in zip(outpad, stride, dilation))
    size = [
        (m - 1) * s - 2 * p + d * (kk - 1) + op + 1
        for m, s, p, d, kk, op in zip(hw, stride, padding, dilation, k, outpad)
    ]
    if min(size) < 1:
        padding = (0, 0)
    rng = np.random.default_rng(n * 1000 + c * 100 + o)
    x = rng.standard_normal((n, c, *hw)).astype(dtype)
    w = rng.standard_normal((c, o, *k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    args = (stride, padding, outpad, dilation, 1)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in patches.items():
            mp.setattr(phase_cy, name, value)
        mp.setattr(phase_cy, "_team", lambda macs: team)
        got = phase_cy._direct_forward(x, w, b, stride, padding, outpad, dilation, relu)
    assert got is not None  # evenly spaced taps on every shape here
    want = K.get("conv_transpose2d", "reference").forward(x, w, b, *args)
    if relu:
        got, mask = got
        np.testing.assert_array_equal(mask, want > 0)
        want = np.maximum(want, 0)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tol(dtype))


@settings(max_examples=examples(15), deadline=None)
@given(
    n=st.integers(1, 5),
    c=st.sampled_from([1, 3, 17, 32]),
    o=st.integers(1, 16),
    hw=st.tuples(st.integers(1, 10), st.integers(1, 10)),
    k=st.sampled_from([(3, 3), (4, 4), (3, 2), (1, 1), (5, 3)]),
    stride=st.sampled_from([(2, 2), (1, 1), (3, 2), (2, 3)]),
    padding=st.sampled_from([(1, 1), (0, 0), (2, 1)]),
    outpad=st.sampled_from([(0, 0), (1, 1), (1, 0)]),
    dilation=st.sampled_from([(1, 1), (2, 1), (2, 2)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    team=st.integers(1, 3),
    relu=st.booleans(),
)
def test_direct_forward_matches_reference(
    n, c, o, hw, k, stride, padding, outpad, dilation, dtype, team, relu
):
    """The direct forward on odd sizes, output padding, dilation, channel counts not a
    multiple of 16 (the lanes padded with zero weights), float32 and float64, 1 to 3
    threads; with ``relu`` the values and the mask of the ReLU after it."""
    _check_direct_forward(n, c, o, hw, k, stride, padding, outpad, dilation, dtype, team, relu,
                          {"_DIRECT_FORWARD_MIN_OUT": 1})  # fmt: skip


def _record_direct_forward(monkeypatch) -> list[bool]:
    """A list that gets, per ``phase_cy._direct_forward`` call from now on, whether the
    direct tiles ran it (False: they declined, the GEMMs run)."""
    from tapegrad.kernels.conv_transpose import phase_cy

    ran: list[bool] = []
    direct = phase_cy._direct_forward

    def spy(*a):
        out = direct(*a)
        ran.append(out is not None)
        return out

    monkeypatch.setattr(phase_cy, "_direct_forward", spy)
    return ran


def test_direct_forward_runs_on_12_to_16_output_channels(monkeypatch):
    """``forward`` takes the direct tiles for 12 to 16 output channels, the GEMMs outside;
    switched off, the GEMMs give the same values."""
    from tapegrad.kernels.conv_transpose import phase_cy

    ran = _record_direct_forward(monkeypatch)
    rng = np.random.default_rng(9)
    args = ((2, 2), (1, 1), (1, 1), (1, 1), 1)
    ref = K.get("conv_transpose2d", "reference")
    for o in (11, 12, 16, 17):
        x, w = rng.standard_normal((2, 32, 7, 7)), rng.standard_normal((32, o, 3, 3))
        y = phase_cy.forward(x, w, None, *args)
        np.testing.assert_allclose(y, ref.forward(x, w, None, *args), rtol=1e-10, atol=1e-10)
        monkeypatch.setattr(phase_cy, "_DIRECT_FORWARD", False)
        np.testing.assert_allclose(y, phase_cy.forward(x, w, None, *args), rtol=1e-12, atol=1e-12)
        monkeypatch.setattr(phase_cy, "_DIRECT_FORWARD", True)
    assert ran == [False, True, True, False]


@settings(max_examples=examples(15), deadline=None)
@given(
    n=st.integers(1, 4),
    c=st.sampled_from([1, 3, 17, 33]),
    o=st.integers(17, 80),
    hw=st.tuples(st.integers(1, 10), st.integers(1, 11)),
    k=st.sampled_from([(4, 4), (3, 3), (3, 2), (1, 1), (5, 3)]),
    stride=st.sampled_from([(2, 2), (1, 1), (3, 2)]),
    padding=st.sampled_from([(1, 1), (0, 0), (2, 1), (2, 2)]),
    outpad=st.sampled_from([(0, 0), (1, 1), (1, 0)]),
    dilation=st.sampled_from([(1, 1), (2, 1)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    team=st.integers(1, 3),
    relu=st.booleans(),
)
def test_wide_direct_forward_matches_reference(
    n, c, o, hw, k, stride, padding, outpad, dilation, dtype, team, relu
):
    """The wide direct forward (32 output channels x 8 columns per tile) on odd sizes,
    padding 0 to 2, output padding, dilation, batch 1, 17 to 80 output channels (the lanes
    past O padded with zero weights; past 32, blocks of 32 channels written in place, the
    last one partial), float32 and float64, 1 to 3 threads; with ``relu`` the values and the
    mask of the ReLU after it."""
    # any o, any last block, any plane size
    patches = {"_DIRECT_WIDE_MIN_OUT": 1, "_DIRECT_BLOCKS_MAX_PIXELS": 1 << 30}
    _check_direct_forward(n, c, o, hw, k, stride, padding, outpad, dilation, dtype, team, relu,
                          patches)  # fmt: skip


@pytest.mark.parametrize(
    "k, padding, outpad",
    [((4, 4), (1, 1), (0, 0)), ((3, 3), (1, 1), (1, 1)), ((3, 3), (0, 0), (0, 0))],
)
@pytest.mark.parametrize("width", [1, 4, 7, 8, 9, 13])
@pytest.mark.parametrize("o", [24, 32, 56])
def test_wide_direct_forward_float32_stride2_rows(k, padding, outpad, width, o):
    """The float32 wide forward at stride 2, whose two column phases of a row are written
    together (interleaved per channel, partial last tiles masked, the odd phase one column
    short or with no tile of its own): widths giving even and odd output rows, whole and
    partial tiles of 8, one and two blocks of 32 channels, with the ReLU, 2 threads."""
    _check_direct_forward(3, 17, o, (5, width), k, (2, 2), padding, outpad, (1, 1), np.float32,
                          2, True, {"_DIRECT_WIDE_MIN_OUT": 1})  # fmt: skip


def test_wide_direct_forward_runs_on_24_to_128_output_channels(monkeypatch):
    """``forward`` takes the wide direct tiles for 24 to 32 output channels and, in blocks
    of 32 on inputs of at most 16x16, for 33 to 128 whose last block fills 24 or more lanes;
    the GEMMs on either side, for 48 channels and on 16x17 inputs; switched off, the GEMMs
    give the same values."""
    from tapegrad.kernels.conv_transpose import phase_cy

    ran = _record_direct_forward(monkeypatch)
    rng = np.random.default_rng(11)
    args = ((2, 2), (1, 1), (0, 0), (1, 1), 1)
    ref = K.get("conv_transpose2d", "reference")
    cases = [(23, (6, 9)), (24, (6, 9)), (32, (6, 9)), (33, (6, 9)), (56, (8, 8)),
             (64, (6, 9)), (128, (4, 5)), (129, (6, 9)), (48, (6, 9)), (64, (16, 17))]  # fmt: skip
    for o, hw in cases:
        x, w = rng.standard_normal((2, 40, *hw)), rng.standard_normal((40, o, 4, 4))
        y = phase_cy.forward(x, w, None, *args)
        np.testing.assert_allclose(y, ref.forward(x, w, None, *args), rtol=1e-10, atol=1e-10)
        monkeypatch.setattr(phase_cy, "_DIRECT_WIDE", False)
        np.testing.assert_allclose(y, phase_cy.forward(x, w, None, *args), rtol=1e-12, atol=1e-12)
        monkeypatch.setattr(phase_cy, "_DIRECT_WIDE", True)
    want = [False, True, True, False, True, True, True, False, False, False]
    assert ran[::2] == want and not any(ran[1::2])


# --- direct gradients (the input gradient as a direct strided convolution, the weight
# gradient in register tiles over each image's positions; _direct_grad_cy.pyx) ----------


def _force_direct(mp):
    """The direct gradient kernels on every shape (the rule keeps them to 24+ channels)."""
    from tapegrad.kernels.conv_transpose import phase_cy

    mp.setattr(phase_cy, "_direct_input_grad_applies", lambda x, w: True)
    mp.setattr(phase_cy, "_direct_weight_grad_applies", lambda x, w: True)
    mp.setattr(phase_cy, "_BATCHED", False)
    return phase_cy


@pytest.fixture
def direct_everywhere(monkeypatch):
    return _force_direct(monkeypatch)


@settings(max_examples=examples(15), deadline=None)
@given(
    case=phase_case(),
    channels=st.sampled_from([None, 24, 33, 40]),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
)
def test_direct_gradients_match_reference(case, channels, team, need):
    with pytest.MonkeyPatch.context() as mp:
        _direct_gradients_match_reference(_force_direct(mp), case, channels,
                                          team, need)  # fmt: skip


def _direct_gradients_match_reference(mod, case, channels, team, need):
    ref = K.get("conv_transpose2d", "reference")
    if channels is not None:  # more than one channel tile, and a partial one
        case = (case[0], channels, *case[2:])
    x, w, _, args = _arrays(case)
    gy = np.random.default_rng(1).standard_normal(ref.forward(x, w, None, *args).shape)
    gy = gy.astype(x.dtype)
    saved = mod._team
    mod._team = lambda macs: team
    try:
        nx, nw = need in ("both", "x"), need in ("both", "w")
        gx, gw = mod.backward(gy, x, w, *args, nx, nw)
    finally:
        mod._team = saved
    gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
    assert (gx is None) != nx and (gw is None) != nw
    if nx:
        assert gx.shape == x.shape and gx.dtype == x.dtype
        np.testing.assert_allclose(gx, gx_r, **_tol(x.dtype))
    if nw:
        assert gw.shape == w.shape and gw.dtype == w.dtype
        np.testing.assert_allclose(gw, gw_r, **_tol(x.dtype))


@settings(max_examples=examples(12), deadline=None)
@given(
    case=phase_case(),
    channels=st.sampled_from([None, 24, 33]),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
)
def test_backward_relu_is_the_masked_backward(case, channels, team, need):
    """``backward_relu``: the direct gradients of gy where mask else 0 and the bias
    gradient, as the ``bias_relu`` reference epilogue's masked gradient and channel sum
    followed by ``backward`` give them (NaN and inf in gy where the mask stops them too);
    bit for bit on one thread."""
    from tapegrad.kernels.fused import reference as R

    if channels is not None:
        case = (case[0], channels, *case[2:])
    x, w, _, args = _arrays(case, seed=9)
    with pytest.MonkeyPatch.context() as mp:
        mod = _force_direct(mp)
        mp.setattr(mod, "_team", lambda macs: team)
        y = mod.forward(x, w, None, *args)
        rng = np.random.default_rng(10)
        gy = rng.standard_normal(y.shape).astype(x.dtype)
        mask = (rng.random(y.shape) < 0.6).astype(np.uint8)
        gy.reshape(-1)[: min(2, gy.size)] = [np.nan, np.inf][: min(2, gy.size)]
        nx, nw = need in ("both", "x"), need in ("both", "w")
        got = mod.backward_relu(gy, mask, x, w, *args, nx, nw)
        g, gb = R.masked_backward(gy, mask, True)
        gx, gw = mod.backward(g, x, w, *args, nx, nw)
    assert got is not None
    tol = _tol(x.dtype)
    for a, b in zip(got, (gx, gw, gb)):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and a.dtype == b.dtype
            if team == 1:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, **tol, equal_nan=True)


def test_backward_relu_declines_where_the_direct_kernels_do_not_apply():
    """Calls whose gradients are not the direct kernels' (here: 16 input channels, one
    output channel, conv_autoencoder's last layer) get None: the op masks and runs
    ``backward`` instead."""
    from tapegrad.kernels.conv_transpose import phase_cy

    x, w = np.ones((2, 16, 5, 5), np.float32), np.ones((16, 1, 3, 3), np.float32)
    gy, mask = np.ones((2, 1, 10, 10), np.float32), np.ones((2, 1, 10, 10), np.uint8)
    args = ((2, 2), (1, 1), (1, 1), (1, 1), 1)
    assert phase_cy.backward_relu(gy, mask, x, w, *args, True, True) is None


def test_conv_transpose2d_relu_backward_runs_the_kernel_mask(monkeypatch):
    """conv_transpose2d_relu's backward on phase-cython with 24+ input channels: the mask
    and the bias sum inside the gradient kernels, the unfused composition's gradients."""
    from tapegrad.kernels.conv_transpose import phase_cy

    calls = []
    fused = phase_cy.backward_relu
    monkeypatch.setattr(phase_cy, "backward_relu", lambda *a: calls.append(1) or fused(*a))
    rng = np.random.default_rng(11)
    x = tg.tensor(rng.standard_normal((3, 24, 5, 4)), requires_grad=True)
    w = tg.tensor(rng.standard_normal((24, 6, 3, 3)), requires_grad=True)
    b = tg.tensor(rng.standard_normal(6), requires_grad=True)
    g = rng.standard_normal((3, 6, 10, 8))
    leaves = (x, w, b)
    with K.use(conv_transpose2d="phase-cython"):
        y = F.conv_transpose2d_relu(x, w, b, 2, 1, 1)
        y.backward(g)
        got = [t.grad.data.copy() for t in leaves]
        for t in leaves:
            t.grad = None
        F.relu(F.conv_transpose2d(x, w, b, 2, 1, 1)).backward(g)
    assert calls == [1]
    for a, t in zip(got, leaves):
        np.testing.assert_allclose(a, t.grad.data, rtol=1e-10, atol=1e-10)


def test_direct_gradients_nonfinite_like_reference(direct_everywhere):
    """NaN / inf in x, w and gy reach the gradients the reference gives them (an infinity in
    x times a cropped output's zero is NaN in its weight-gradient taps)."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 27, 5, 6))
    w = rng.standard_normal((27, 5, 3, 3))
    x[0, 1, 0, 0], x[1, 26, 3, 5] = np.nan, np.inf
    w[3, 2, 1, 1] = -np.inf
    args = ((2, 2), (1, 1), (1, 1), (1, 1), 1)
    ref = K.get("conv_transpose2d", "reference")
    gy = rng.standard_normal(ref.forward(x, w, None, *args).shape)
    gy[1, 4, 2, 7] = np.nan
    got = direct_everywhere.backward(gy, x, w, *args, True, True)
    exp = ref.backward(gy, x, w, *args, True, True)
    for g, r in zip(got, exp):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10, equal_nan=True)


def test_direct_weight_gradient_repeats_bit_for_bit(direct_everywhere):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((7, 32, 7, 7)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    args = ((2, 2), (1, 1), (1, 1), (1, 1), 1)
    gy = rng.standard_normal((7, 16, 14, 14)).astype(np.float32)
    saved = direct_everywhere._team
    direct_everywhere._team = lambda macs: 2
    try:
        first = direct_everywhere.backward(gy, x, w, *args, False, True)[1]
        again = direct_everywhere.backward(gy, x, w, *args, False, True)[1]
    finally:
        direct_everywhere._team = saved
    np.testing.assert_array_equal(first.view(np.uint32), again.view(np.uint32))


@pytest.mark.parametrize("team", [1, 2])
@pytest.mark.parametrize("c", [8, 13, 40, 64])
@pytest.mark.parametrize("hw", [(1, 7), (2, 4), (7, 9), (16, 16)])
def test_direct_gradients_float32_transposes(direct_everywhere, c, hw, team):
    """The float32 direct gradients, whose transposed images, input-gradient weight table
    and weight gradient (the threads' partial sums added and transposed) are moved in 8 x 8
    blocks with the rest one by one: every mix of whole and partial blocks (channels 8 to
    64, a partial last block of 32; planes of fewer than 8, a multiple of 8, and neither;
    80 (output channel, tap) rows), 1 and 2 threads, against the float64 reference."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((3, c, *hw)).astype(np.float32)
    w = rng.standard_normal((c, 5, 4, 4)).astype(np.float32)
    args = ((2, 2), (1, 1), (0, 0), (1, 1), 1)
    ref = K.get("conv_transpose2d", "reference")
    gy = rng.standard_normal(ref.forward(x, w, None, *args).shape).astype(np.float32)
    saved = direct_everywhere._team
    direct_everywhere._team = lambda macs: team
    try:
        gx, gw = direct_everywhere.backward(gy, x, w, *args, True, True)
    finally:
        direct_everywhere._team = saved
    exp = ref.backward(*(a.astype(np.float64) for a in (gy, x, w)), *args, True, True)
    np.testing.assert_allclose(gx, exp[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, exp[1], rtol=1e-4, atol=1e-4)


def test_direct_gradients_gradcheck(direct_everywhere):
    rng = np.random.default_rng(2)
    x = tg.Tensor(rng.standard_normal((2, 3, 3, 4)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    with K.use(conv_transpose2d="phase-cython"):
        assert tg.gradcheck(lambda x, w: F.conv_transpose2d(x, w, None, 2, 1, 1), [x, w])


@pytest.mark.torch
def test_direct_gradients_match_torch():
    """The autoencoder's kind of layer (32 -> 16 channels, 3x3, stride 2, output_padding 1),
    which the rule sends to the direct kernels, in float64 against PyTorch."""
    torch = pytest.importorskip("torch")
    from tapegrad.kernels.conv_transpose import phase_cy

    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 32, 5, 4)), rng.standard_normal((32, 16, 3, 3))
    assert phase_cy._direct_input_grad_applies(x, w)
    assert phase_cy._direct_weight_grad_applies(x, w)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, None, 2, 1, 1)
    gy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    gx, gw = phase_cy.backward(gy, x, w, (2, 2), (1, 1), (1, 1), (1, 1), 1, True, True)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-9)


def test_direct_gradients_rule():
    from tapegrad.kernels.conv_transpose import phase_cy

    def both(x_shape, w_shape):
        x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
        return phase_cy._direct_input_grad_applies(x, w), phase_cy._direct_weight_grad_applies(x, w)

    assert both((32, 64, 16, 16), (64, 32, 4, 4)) == (True, True)
    assert both((64, 32, 7, 7), (32, 16, 3, 3)) == (True, True)
    assert both((64, 16, 14, 14), (16, 1, 3, 3)) == (False, False)  # the GEMMs
    assert both((64, 16, 32, 32), (16, 8, 4, 4)) == (True, True)  # half tiles, 128 rows
    assert both((32, 16, 28, 28), (16, 8, 3, 3)) == (False, False)  # half tiles, 72 rows
    assert both((8, 256, 8, 8), (256, 256, 4, 4)) == (True, True)  # 4096 rows
    assert both((8, 256, 8, 8), (256, 257, 4, 4)) == (False, False)


@settings(max_examples=examples(12), deadline=None)
@given(case=phase_case(), team=st.integers(1, 3), block=st.integers(1, 3), direct=st.booleans())
def test_forward_relu_is_the_bias_relu_epilogue_bit_for_bit(case, team, block, direct):
    """The ReLU applied as the phases are written: the values and the mask of the forward
    without bias followed by ``kernels/fused``'s reference epilogue, NaN and inf included."""
    mod = K.get("conv_transpose2d", "phase-cython")
    x, w, b, args = _arrays(case, seed=6)
    flat = x.reshape(-1)
    k = min(3, flat.size)
    flat[np.random.default_rng(7).choice(flat.size, k, replace=False)] = [np.nan, np.inf, -np.inf][
        :k
    ]
    saved = mod._team, mod._block_images, mod._DIRECT_FORWARD
    mod._team = lambda macs: team
    mod._block_images = lambda n, *a: block
    mod._DIRECT_FORWARD = direct
    try:
        got = mod.forward_relu(x, w, b, *args)
        y0 = mod.forward(x, w, None, *args)
    finally:
        mod._team, mod._block_images, mod._DIRECT_FORWARD = saved
    # got is not None for every channel count here (the fixture lowers the bound)
    assert_forward_relu_is_epilogue(got, y0, b)


def test_conv_transpose2d_relu_runs_the_kernel_epilogue(monkeypatch):
    from tapegrad.kernels.conv_transpose import phase_cy

    calls = []
    fused = phase_cy.forward_relu
    monkeypatch.setattr(
        phase_cy, "forward_relu", lambda *a: calls.append(1) or fused(*a)
    )  # fmt: skip
    rng = np.random.default_rng(4)
    x = tg.Tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((3, 8, 3, 3)).astype(np.float32), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(8).astype(np.float32), requires_grad=True)
    with K.use(conv_transpose2d="phase-cython"):
        y = F.conv_transpose2d_relu(x, w, b, 2, 1, 1)
        want = F.relu(F.conv_transpose2d(x, w, b, 2, 1, 1))
    assert calls == [1]
    np.testing.assert_array_equal(y.data, want.data)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    got = [t.grad.data.copy() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    want.backward(g)
    for p, q in zip(got, (x.grad.data, w.grad.data, b.grad.data)):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5)


# --- the bias gradient summed as the direct gradient kernels read gy --------------------


@settings(max_examples=examples(15), deadline=None)
@given(
    case=phase_case(),
    channels=st.sampled_from([None, 24, 40]),
    team=st.integers(1, 3),
    need=st.sampled_from([(True, True), (True, False), (False, True), (False, False)]),
)
def test_backward_with_bias_matches_backward(case, channels, team, need):
    """``backward_with_bias``: gx and gw the same bits as ``backward``'s, and the bias
    gradient (where the direct kernels run) gy's channel sum, the same bits on every call;
    elsewhere None (the op sums it)."""
    from tapegrad.kernels.conv_transpose import phase_cy

    if channels is not None:
        case = (case[0], channels, *case[2:])
    x, w, _, args = _arrays(case, seed=11)
    ref = K.get("conv_transpose2d", "reference")
    gy = np.random.default_rng(12).standard_normal(ref.forward(x, w, None, *args).shape)
    gy = gy.astype(x.dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phase_cy, "_team", lambda macs: team)
        gx, gw, gb = phase_cy.backward_with_bias(gy, x, w, *args, *need)
        want = phase_cy.backward(gy, x, w, *args, *need)
        again = phase_cy.backward_with_bias(gy, x, w, *args, *need)[2]
    for got, exp in zip((gx, gw), want):
        assert (got is None) == (exp is None)
        if exp is not None:
            np.testing.assert_array_equal(got, exp)
    direct = (need[0] and phase_cy._direct_input_grad_applies(x, w)) or (
        need[1] and phase_cy._direct_weight_grad_applies(x, w)
    )
    batched = (need[0] or need[1]) and phase_cy._batched_applies(x, w)
    assert (gb is not None) == bool(direct or batched)
    if gb is not None:
        assert gb.shape == (w.shape[1],) and gb.dtype == x.dtype
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=tol,
                                   atol=tol)  # fmt: skip
        np.testing.assert_array_equal(gb, again)


def test_conv_transpose2d_bias_gradient_from_the_kernels(monkeypatch):
    """The op takes the bias gradient from ``backward_with_bias`` on the 4x4 layer's kind of
    call, and it matches the reference's channel sum (float64)."""
    from tapegrad.kernels.conv_transpose import phase_cy

    calls = []
    fused = phase_cy.backward_with_bias
    monkeypatch.setattr(phase_cy, "backward_with_bias", lambda *a: calls.append(a) or fused(*a))
    rng = np.random.default_rng(13)
    x = tg.Tensor(rng.standard_normal((2, 40, 4, 5)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((40, 6, 4, 4)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(6), requires_grad=True)
    with K.use(conv_transpose2d="phase-cython"):
        y = F.conv_transpose2d(x, w, b, 2, 1)
        gy = rng.standard_normal(y.shape)
        y.backward(gy)
    assert len(calls) == 1
    np.testing.assert_allclose(b.grad.data, gy.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    gx, gw = K.get("conv_transpose2d", "reference").backward(
        gy, x.data, w.data, (2, 2), (1, 1), (0, 0), (1, 1), 1, True, True
    )
    np.testing.assert_allclose(x.grad.data, gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w.grad.data, gw, rtol=1e-10, atol=1e-10)


# --- batched GEMMs on small planes (_phase_cy.forward_batched / backward_batched) and
# the direct kernels' images shared among tasks when there are fewer than threads -------


def _force_batched(mp, chunk_bytes):
    from tapegrad.kernels.conv_transpose import phase_cy

    mp.setattr(phase_cy, "_batched_applies", lambda x, w: True)
    mp.setattr(phase_cy, "_batched_forward_applies", lambda x, w: True)
    mp.setattr(phase_cy, "_BATCHED_BYTES", chunk_bytes)
    return phase_cy


@settings(max_examples=examples(15), deadline=None)
@given(
    case=phase_case(),
    team=st.integers(1, 3),
    need=st.sampled_from(["both", "x", "w"]),
    chunk_bytes=st.sampled_from([1, 2048, 1 << 22]),  # one image, a few, all per chunk
    channels=st.sampled_from([None, 17, 40]),
)
def test_batched_matches_reference(case, team, need, chunk_bytes, channels):
    ref = K.get("conv_transpose2d", "reference")
    if channels is not None:  # GEMM rows split among threads in slices of 16, a short one
        case = (case[0], channels, channels + 3, *case[3:])
    x, w, b, args = _arrays(case)
    with pytest.MonkeyPatch.context() as mp:
        mod = _force_batched(mp, chunk_bytes)
        mp.setattr(mod, "_team", lambda macs: team)
        y = mod.forward(x, w, b, *args)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
        nx, nw = need in ("both", "x"), need in ("both", "w")
        gx, gw, gb = mod.backward_with_bias(gy, x, w, *args, nx, nw)
        assert mod.backward_relu(gy, np.ones(y.shape, np.uint8), x, w, *args, nx, nw) is None
        assert mod.forward_relu(x, w, b, *args) is None  # the epilogue runs apart
    np.testing.assert_allclose(y, ref.forward(x, w, b, *args), **_tol(x.dtype))
    gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
    assert (gx is None) != nx and (gw is None) != nw
    # the bias gradient summed by backward_batched's threads, over each channel's images
    assert gb.shape == (w.shape[1],) and gb.dtype == x.dtype
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=tol,
                               atol=tol)  # fmt: skip
    if nx:
        assert gx.shape == x.shape and gx.dtype == x.dtype
        np.testing.assert_allclose(gx, gx_r, **_tol(x.dtype))
    if nw:
        assert gw.shape == w.shape and gw.dtype == w.dtype
        np.testing.assert_allclose(gw, gw_r, **_tol(x.dtype))


def test_batched_gradcheck(monkeypatch):
    _force_batched(monkeypatch, 1)  # a chunk per image: the weight gradient added up
    rng = np.random.default_rng(21)
    x = tg.Tensor(rng.standard_normal((3, 4, 2, 3)), requires_grad=True)
    w = tg.Tensor(rng.standard_normal((4, 3, 4, 3)), requires_grad=True)
    b = tg.Tensor(rng.standard_normal(3), requires_grad=True)
    with K.use(conv_transpose2d="phase-cython"):
        assert tg.gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1), [x, w, b])


def test_batched_runs_on_small_planes_with_large_weights(monkeypatch):
    """The rule: the forward on planes of at most 64 pixels at most 4 wide with 128+ input
    channels, at most 6 wide with 256+; the backward on such planes with 256+ input channels
    and weights over 1 MB, or on planes narrower than 8 with channels the direct kernels do
    not take. Switched off, the same calls run the other paths."""
    from tapegrad.kernels.conv_transpose import phase_cy

    def rule(x_shape, w_shape):
        x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
        return phase_cy._batched_forward_applies(x, w), phase_cy._batched_applies(x, w)

    assert rule((8, 256, 4, 4), (256, 128, 4, 4)) == (True, True)
    assert rule((1, 512, 2, 2), (512, 256, 4, 4)) == (True, True)
    assert rule((16, 128, 4, 4), (128, 64, 3, 3)) == (True, False)  # 288 KB: direct
    assert rule((32, 64, 4, 4), (64, 32, 4, 4)) == (False, False)
    assert rule((64, 8, 4, 4), (8, 8, 4, 4)) == (False, True)  # too few channels for direct
    assert rule((16, 128, 8, 8), (128, 64, 4, 4)) == (False, False)  # 8 wide: the tiles fill
    assert rule((8, 256, 12, 6), (256, 128, 4, 4)) == (False, False)  # 72 pixels
    assert rule((8, 256, 6, 6), (256, 128, 3, 3)) == (True, True)
    assert rule((8, 256, 7, 7), (256, 128, 3, 3)) == (False, False)
    assert rule((8, 128, 7, 7), (128, 128, 4, 4)) == (False, False)  # 7 of 8 columns
    assert rule((8, 128, 5, 5), (128, 64, 4, 4)) == (False, False)
    assert rule((8, 128, 4, 4), (128, 256, 3, 3)) == (True, False)  # 128 in: direct

    ran = []
    monkeypatch.setattr(phase_cy, "forward_batched", lambda *a: ran.append("f"))
    monkeypatch.setattr(phase_cy, "backward_batched", lambda *a: ran.append("b"))
    x = np.zeros((2, 256, 3, 3), np.float32)
    w = np.zeros((256, 80, 4, 4), np.float32)  # 1.25 MB
    gy = np.zeros((2, 80, 6, 6), np.float32)
    args = ((2, 2), (1, 1), (0, 0), (1, 1), 1)
    phase_cy.forward(x, w, None, *args)
    phase_cy.backward(gy, x, w, *args, True, True)
    assert ran == ["f", "b"]
    monkeypatch.setattr(phase_cy, "_BATCHED", False)
    phase_cy.forward(x, w, None, *args)
    phase_cy.backward(gy, x, w, *args, True, True)
    assert ran == ["f", "b"]


@pytest.mark.torch
def test_batched_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(22)
    x = rng.standard_normal((3, 260, 3, 4))
    w = rng.standard_normal((260, 35, 4, 4)) * 0.1  # 1.16 MB in float64
    b = rng.standard_normal(35)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv_transpose2d(tx, tw, torch.tensor(b), 2, 1, 1)
    gy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    gx, gw = tg.Tensor(x, requires_grad=True), tg.Tensor(w, requires_grad=True)
    gb = tg.Tensor(b, requires_grad=True)
    mod = K.get("conv_transpose2d", "phase-cython")
    assert mod._batched_forward_applies(x, w) and mod._batched_applies(x, w)
    with K.use(conv_transpose2d="phase-cython"):
        y = F.conv_transpose2d(gx, gw, gb, 2, 1, 1)
        y.backward(gy)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gx.grad.data, tx.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw.grad.data, tw.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gb.grad.data, gy.sum(axis=(0, 2, 3)), rtol=1e-9, atol=1e-9)


@settings(max_examples=examples(12), deadline=None)
@given(
    case=phase_case(),
    team=st.integers(2, 3),
    channels=st.sampled_from([(24, 13), (33, 30), (40, 70)]),  # narrow, wide, blocks
    relu=st.booleans(),
)
def test_split_images_match_one_task_per_image(case, team, channels, relu):
    """With fewer images than threads the direct kernels share each image among tasks: the
    same outputs bit for bit as one task per image, and the reference's."""
    from tapegrad.kernels.conv_transpose import phase_cy as mod

    ref = K.get("conv_transpose2d", "reference")
    case = (1, *channels, max(case[3], 5), max(case[4], 5), *case[5:])
    x, w, b, args = _arrays(case)
    y_r = ref.forward(x, w, b, *args)
    gy = np.random.default_rng(1).standard_normal(y_r.shape).astype(x.dtype)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        _force_direct(mp)
        mp.setattr(mod, "_team", lambda macs: team)
        for split in (False, True):
            mp.setattr(mod, "_SPLIT_IMAGES", split)
            if relu:
                y, mask = mod.forward_relu(x, w, b, *args)
                out[split] = (y, mask, *mod.backward_relu(gy, mask, x, w, *args, True, True))
            else:
                y = mod.forward(x, w, b, *args)
                out[split] = (y, *mod.backward_with_bias(gy, x, w, *args, True, True))
    for a, c in zip(out[False], out[True], strict=True):
        np.testing.assert_array_equal(a, c)
    y, *_, gx, gw, gb = out[True]
    g = gy * out[True][1] if relu else gy
    np.testing.assert_allclose(y, np.maximum(y_r, 0) if relu else y_r, **_tol(x.dtype))
    gx_r, gw_r = ref.backward(g, x, w, *args, True, True)
    np.testing.assert_allclose(gx, gx_r, **_tol(x.dtype))
    np.testing.assert_allclose(gw, gw_r, **_tol(x.dtype))
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2, 3)), **_tol(x.dtype))


def test_split_images_divide_the_work():
    from tapegrad.kernels.conv_transpose import phase_cy

    assert [phase_cy._split(n, 2) for n in (1, 2, 5)] == [2, 1, 1]
    assert [phase_cy._split(n, 4) for n in (1, 2, 3, 4)] == [4, 2, 2, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_grads_threads_without_a_task(dtype):
    """The direct gradients' per-thread partial sums and bias rows live in reused workspaces,
    each zeroed by its thread at its first task: those of threads left without a task (here
    one image, no split, a team of 3) are zeroed after the call, so a second call (the
    workspaces holding the first call's sums) gives the reference's gradients again."""
    from tapegrad.kernels.conv_transpose import phase_cy

    rng = np.random.default_rng(31)
    x = rng.standard_normal((1, 40, 5, 6)).astype(dtype)
    w = rng.standard_normal((40, 12, 4, 4)).astype(dtype)
    args = ((2, 2), (1, 1), (0, 0), (1, 1), 1)
    ref = K.get("conv_transpose2d", "reference")
    gy = rng.standard_normal(ref.forward(x, w, None, *args).shape).astype(dtype)
    gx_r, gw_r = ref.backward(gy, x, w, *args, True, True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phase_cy, "_team", lambda macs: 3)
        mp.setattr(phase_cy, "_split", lambda n, nt: 1)
        assert phase_cy._direct_applies(x, w) and not phase_cy._batched_applies(x, w)
        for _ in range(3):
            gx, gw, gb = phase_cy.backward_with_bias(gy, x, w, *args, True, True)
            np.testing.assert_allclose(gx, gx_r, **_tol(dtype))
            np.testing.assert_allclose(gw, gw_r, **_tol(dtype))
            np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), **_tol(dtype))
