"""The blocked-cython conv2d variant (direct convolution with its accumulators in vector
registers, stride 1 or 2 through column phases): against ``reference`` and PyTorch on
random shapes, gradcheck in float64, the calls it delegates, and ``auto``'s rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad.kernels as K
from tapegrad.kernels.conv import Conv2dCall, _conv2d_rule
from tests._sizes import examples
from tests.kernels._conv_helpers import (
    assert_same_nonfinite,
    case_arrays,
    check_against_reference,
    check_against_torch,
    check_close_to_reference,
    check_gradcheck,
    conv_case,
)

NAME = "blocked-cython"
pytestmark = pytest.mark.skipif(NAME not in K.variants("conv2d"), reason="not built here")


def blocked_case():
    """Odd and even sizes, kernels 1..5, padding 0..2 per side, stride 1 or 2, batch 1..3,
    channel counts that are not multiples of the tile's 8 channels or 16 columns."""
    return conv_case(strides=st.integers(1, 2))


@settings(max_examples=examples(15), deadline=None)
@given(case=blocked_case(), team=st.integers(1, 3), need=st.sampled_from(["both", "x", "w"]))
def test_blocked_matches_reference(case, team, need):
    """Forward and each gradient alone or both, with a team of 1 to 3 threads whatever the
    batch."""
    padding, stride = case[7], case[8]
    x, w, b = case_arrays(case)
    args = (stride, padding, (1, 1), 1)
    check_against_reference(K.get("conv2d", NAME), x, w, b, args, need, team)


def test_blocked_many_tiles():
    """Several tiles of output channels and columns, partial last tiles, a batch split over
    two threads; stride 1 and 2."""
    mod = K.get("conv2d", NAME)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 9, 19, 37))
    w = rng.standard_normal((21, 9, 3, 5))
    b = rng.standard_normal(21)
    for stride in [(1, 1), (2, 2)]:
        check_close_to_reference(mod, x, w, b, (stride, (1, 2), (1, 1), 1), rng, team=2)


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 2), (2, 1)])
def test_blocked_gradcheck(stride, padding):
    check_gradcheck(NAME, stride, padding, hw=(6, 7))


@pytest.mark.torch
@settings(max_examples=examples(10), deadline=None)
@given(case=blocked_case())
def test_blocked_matches_torch(case):
    padding, stride = case[7], case[8]
    check_against_torch(NAME, *case_arrays(case, seed=3), stride, padding)


def test_blocked_nonfinite_stays_local():
    """A NaN or an infinity reaches the outputs whose window holds it, as in a direct sum."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 9, 9))
    w = rng.standard_normal((3, 2, 3, 3))
    x[0, 1, 0, 0], x[0, 0, 5, 6] = np.nan, np.inf
    for stride in [(1, 1), (2, 2)]:
        args = (stride, (1, 1), (1, 1), 1)
        y = K.get("conv2d", NAME).forward(x, w, None, *args)
        want = K.get("conv2d", "reference").forward(x, w, None, *args)
        assert_same_nonfinite(y, want)


@pytest.mark.parametrize(
    "w_shape, stride, dilation, groups",
    [((4, 2, 3, 3), 3, 1, 1), ((4, 2, 3, 3), 1, 2, 1), ((4, 1, 3, 3), 1, 1, 2)],
)
def test_blocked_not_applicable(w_shape, stride, dilation, groups):
    """Stride 3, dilated or grouped calls: the right answer (through im2col-cython), and
    ``auto``'s rule does not put blocked-cython first for them."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 9, 8))
    w = rng.standard_normal(w_shape)
    args = ((stride, stride), (1, 1), (dilation, dilation), groups)
    check_close_to_reference(K.get("conv2d", NAME), x, w, None, args, rng)
    big = Conv2dCall((32, 2 * groups, 32, 32), (16, 2, 3, 3), (stride, stride), (1, 1),
                     (dilation, dilation), groups, "<f4")  # fmt: skip
    assert NAME not in _conv2d_rule(big)


def test_auto_rule_puts_blocked_first_for_few_channels():
    """A 16->8 3x3 layer and a 6->12 5x5 layer on 16x16 outputs: blocked-cython first; 64
    channels (a long reduction), 6 output channels, one input channel, a stride of 2, lenet5's
    10x10 outputs or exactly 16 output channels (chvec-cython's): not first."""
    for x_shape, w_shape in [((64, 16, 32, 32), (8, 16, 3, 3)), ((64, 6, 20, 20), (12, 6, 5, 5))]:
        call = Conv2dCall(x_shape, w_shape, (1, 1), (1, 1), (1, 1), 1, "<f4")
        assert _conv2d_rule(call)[0] == NAME
    for x_shape, w_shape, s in [
        ((32, 64, 32, 32), (64, 64, 3, 3), 1),
        ((64, 1, 28, 28), (6, 1, 5, 5), 1),
        ((64, 1, 32, 32), (16, 1, 3, 3), 1),
        ((64, 16, 32, 32), (32, 16, 3, 3), 2),
        ((64, 6, 12, 12), (16, 6, 5, 5), 1),
        ((64, 16, 32, 32), (16, 16, 3, 3), 1),
    ]:
        call = Conv2dCall(x_shape, w_shape, (s, s), (1, 1), (1, 1), 1, "<f4")
        assert _conv2d_rule(call)[0] != NAME
