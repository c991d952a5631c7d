"""The pointwise-cython conv2d variant (1x1 kernels, no padding, one group, any stride:
one GEMM per image on the data as it lies): against ``reference`` and PyTorch on random
shapes, gradcheck in float64, a repeatable weight gradient, the calls it delegates, and
``auto``'s rule."""

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
@given(case=pointwise_case(), team=st.integers(1, 3), need=st.sampled_from(["both", "x", "w"]))
def test_pointwise_matches_reference(case, team, need):
    """Forward and each gradient alone or both, with a team of 1 to 3 threads whatever the
    batch (threads without an image leave their weight-gradient part at zero)."""
    mod = _module()
    x, w, b = _arrays(case)
    check_against_reference(mod, x, w, b, (case[5], (0, 0), (1, 1), 1), need, team)


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
    order: the same bits on every call."""
    mod = _module()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 13, 6, 6)).astype(np.float32)
    w = rng.standard_normal((9, 13, 1, 1)).astype(np.float32)
    gy = rng.standard_normal((7, 9, 3, 3)).astype(np.float32)
    args = ((2, 2), (0, 0), (1, 1), 1)
    with patched(mod, team=2):
        first = mod.backward(gy, x, w, *args, False, True)[1]
        for _ in range(10):
            np.testing.assert_array_equal(mod.backward(gy, x, w, *args, False, True)[1], first)


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
