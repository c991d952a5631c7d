"""NaN, Inf and -0.0 through every kernel op and every variant, as PyTorch treats them.

A NaN or Inf in an op's input must reach its output and gradients where PyTorch's does
(so ``detect_anomaly`` sees it), and the selecting ops (relu, max_pool2d, dropout) keep
the sign of a zero. Each case runs every registered variant; with torch installed the
outputs and gradients are compared with PyTorch's (NaN where NaN, the same infinities,
the same signed zeros for the selecting ops), and the explicit cases below hold without it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F

NAN, INF = np.nan, np.inf


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in the references
        yield


def _specials(shape, seed: int, where: dict[tuple, float]) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    for idx, v in where.items():
        x[idx] = v
    return x


# --- the cases: (name, kernel op, tapegrad call, torch call, input arrays, selecting) ------
# inputs hold NaN, +-Inf and +-0.0 at fixed places; weights stay finite (PyTorch's own conv
# backends disagree on Inf weights times zero padding)

_X4 = _specials(
    (2, 3, 6, 6),
    0,
    {
        (0, 0, 1, 1): NAN,
        (0, 1, 3, 4): INF,
        (0, 1, 3, 5): -INF,
        (1, 2, 0, 0): -INF,
        (1, 0, 5, 5): NAN,
        (1, 1, 2, 2): -0.0,
        (1, 1, 2, 3): 0.0,
    },
)
_W4 = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
_WD = np.random.default_rng(2).standard_normal((6, 1, 3, 3))
_WT = np.random.default_rng(3).standard_normal((3, 2, 3, 3))
# max pooling: a NaN window (the issue's [[nan, 1], [2, 3]]), two NaNs in one window, an
# all -inf window, a tie between -0.0 and +0.0 in both orders
_XP = np.random.default_rng(4).standard_normal((1, 2, 4, 4))
_XP[0, 0, :2, :2] = [[NAN, 1.0], [2.0, 3.0]]
_XP[0, 0, :2, 2:] = [[NAN, 5.0], [6.0, NAN]]
_XP[0, 0, 2:, :2] = -INF
_XP[0, 1, :2, :2] = [[-0.0, 0.0], [-1.0, -2.0]]
_XP[0, 1, :2, 2:] = [[0.0, -0.0], [-1.0, -2.0]]
_XP[0, 1, 2:, 2:] = [[INF, NAN], [1.0, 2.0]]
_XR = np.array([[NAN, -0.0, 0.0, -1.0, INF, -INF, 2.0, 1e-300]])
_XN = _specials((3, 4, 2, 5), 5, {(0, 1, 0, 0): NAN, (2, 2, 1, 3): INF})


def _bn(t, x):
    rm, rv = np.zeros(4), np.ones(4)
    return t.nn.functional.batch_norm(
        x, t.tensor(rm) if t is not tg else rm, t.tensor(rv) if t is not tg else rv, training=True
    )


CASES = [
    ("relu", "relu", lambda x: F.relu(x), lambda t, x: t.relu(x), [_XR], True),
    (
        "max_pool2d-2x2",
        "max_pool2d",
        lambda x: F.max_pool2d(x, 2),
        lambda t, x: t.nn.functional.max_pool2d(x, 2),
        [_XP],
        True,
    ),
    (
        "max_pool2d-inside",
        "max_pool2d",
        lambda x: F.max_pool2d(x, 2, 1),
        lambda t, x: t.nn.functional.max_pool2d(x, 2, 1),
        [_XP],
        True,
    ),
    (
        "max_pool2d-padded",
        "max_pool2d",
        lambda x: F.max_pool2d(x, 3, 2, 1),
        lambda t, x: t.nn.functional.max_pool2d(x, 3, 2, 1),
        [_XP],
        True,
    ),
    (
        "avg_pool2d",
        "avg_pool2d",
        lambda x: F.avg_pool2d(x, 3, 2, 1),
        lambda t, x: t.nn.functional.avg_pool2d(x, 3, 2, 1),
        [_X4],
        False,
    ),
    (
        "adaptive_avg_pool2d",
        "adaptive_avg_pool2d",
        lambda x: F.adaptive_avg_pool2d(x, (4, 3)),
        lambda t, x: t.nn.functional.adaptive_avg_pool2d(x, (4, 3)),
        [_X4],
        False,
    ),
    (
        "conv2d",
        "conv2d",
        lambda x, w: F.conv2d(x, w, padding=1),
        lambda t, x, w: t.nn.functional.conv2d(x, w, padding=1),
        [_X4, _W4],
        False,
    ),
    (
        "conv2d-strided",
        "conv2d",
        lambda x, w: F.conv2d(x, w, stride=2),
        lambda t, x, w: t.nn.functional.conv2d(x, w, stride=2),
        [_X4, _W4],
        False,
    ),
    (
        "depthwise_conv2d",
        "depthwise_conv2d",
        lambda x, w: F.conv2d(x, w, padding=1, groups=3),
        lambda t, x, w: t.nn.functional.conv2d(x, w, padding=1, groups=3),
        [_X4, _WD],
        False,
    ),
    (
        "conv_transpose2d",
        "conv_transpose2d",
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
        lambda t, x, w: t.nn.functional.conv_transpose2d(x, w, stride=2, padding=1),
        [_X4, _WT],
        False,
    ),
    ("batch_norm", "batch_norm", lambda x: _bn(tg, x), lambda t, x: _bn(t, x), [_XN], False),
    (
        "layer_norm",
        "layer_norm",
        lambda x: F.layer_norm(x, (2, 5)),
        lambda t, x: t.nn.functional.layer_norm(x, (2, 5)),
        [_XN],
        False,
    ),
    (
        "group_norm",
        "group_norm",
        lambda x: F.group_norm(x, 2),
        lambda t, x: t.nn.functional.group_norm(x, 2),
        [_XN],
        False,
    ),
]


def _params():
    out = []
    for case in CASES:
        for v in tg.kernels.variants(case[1]):
            out.append(pytest.param(case, v, id=f"{case[0]}-{v}"))
    return out


def _run(case, variant, arrays, proj_seed=9):
    """(output, gradients) of a case under one variant, float64, proj a fixed projection."""
    _, op, fn, _, _, _ = case
    ts = [tg.tensor(a, requires_grad=True) for a in arrays]
    with tg.kernels.use(**{op: variant}):
        y = fn(*ts)
        proj = np.random.default_rng(proj_seed).standard_normal(y.shape)
        y.backward(proj)
    return y.data, [t.grad.data for t in ts], proj


def _same(got, want, msg, signed_zeros):
    """NaN where NaN, equal infinities, finite values to float64 rounding, and (when
    asked) the sign of every zero."""
    assert got.shape == want.shape, msg
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=msg + " NaN places")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=msg)
    if signed_zeros:
        zeros = want == 0
        np.testing.assert_array_equal(
            np.signbit(got[zeros]), np.signbit(want[zeros]), err_msg=msg + " zero signs"
        )


@pytest.mark.torch
@pytest.mark.parametrize("case,variant", _params())
def test_nonfinite_values_match_torch(case, variant):
    torch = pytest.importorskip("torch")
    name, _, _, tfn, arrays, selecting = case
    y, grads, proj = _run(case, variant, arrays)
    tx = [torch.tensor(a, requires_grad=True) for a in arrays]
    ty = tfn(torch, *tx)
    ty.backward(torch.tensor(proj))
    _same(y, ty.detach().numpy(), f"{name} {variant} output", selecting)
    for i, (g, t) in enumerate(zip(grads, tx)):
        _same(g, t.grad.numpy(), f"{name} {variant} gradient {i}", selecting)


# --- explicit expectations (no torch needed) ------------------------------------------------


@pytest.mark.parametrize("variant", tg.kernels.variants("max_pool2d"))
def test_max_pool2d_propagates_nan(variant):
    x = tg.tensor(np.array([[[[NAN, 1.0], [2.0, 3.0]]]]), requires_grad=True)
    with tg.kernels.use(max_pool2d=variant):
        y = F.max_pool2d(x, 2)
        y.backward(np.ones((1, 1, 1, 1)))
    assert np.isnan(y.data).all()
    np.testing.assert_array_equal(x.grad.data, [[[[1.0, 0.0], [0.0, 0.0]]]])  # to the NaN
    # two NaNs: PyTorch's index is the last in scan order; an all -inf window its first pixel
    x = tg.tensor(
        np.array([[[[NAN, 5.0, -INF, -INF], [6.0, NAN, -INF, -INF]]]]), requires_grad=True
    )
    with tg.kernels.use(max_pool2d=variant):
        y = F.max_pool2d(x, 2)
        y.backward(np.ones((1, 1, 1, 2)))
    assert np.isnan(y.data[0, 0, 0, 0]) and y.data[0, 0, 0, 1] == -INF
    np.testing.assert_array_equal(x.grad.data, [[[[0, 0, 1, 0], [0, 1, 0, 0]]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", tg.kernels.variants("relu"))
def test_relu_keeps_nan_and_negative_zero(variant, dtype):
    x = tg.tensor(np.array([NAN, -0.0, 0.0, -1.0, INF, -INF, 2.0], dtype=dtype), requires_grad=True)
    with tg.kernels.use(relu=variant):
        y = F.relu(x)
        y.backward(np.array([1, 2, 3, 4, 5, 6, NAN], dtype=dtype))
    want = np.array([NAN, -0.0, 0.0, 0.0, INF, 0.0, 2.0])
    np.testing.assert_array_equal(y.data, want)
    np.testing.assert_array_equal(np.signbit(y.data), np.signbit(want))
    # the gradient flows through NaN and positives only; a NaN gradient stays NaN there
    np.testing.assert_array_equal(x.grad.data, [1, 0, 0, 0, 5, 0, NAN])
    assert not np.signbit(x.grad.data[[1, 2, 3, 5]]).any()


@pytest.mark.parametrize(
    "op,call,w",
    [
        ("conv2d", lambda x, w: F.conv2d(x, w, padding=1), np.ones((3, 2, 3, 3))),
        (
            "depthwise_conv2d",
            lambda x, w: F.conv2d(x, w, padding=1, groups=2),
            np.ones((4, 1, 3, 3)),
        ),
        ("avg_pool2d", lambda x, w: F.avg_pool2d(x, 3, 1, 1), None),
    ],
)
def test_nan_reaches_every_output_that_reads_it(op, call, w):
    """One NaN input pixel makes exactly the outputs whose window covers it NaN."""
    x = np.ones((1, 2, 5, 5))
    x[0, :, 1, 3] = NAN
    want = np.zeros((5, 5), bool)
    want[0:3, 2:5] = True
    for variant in tg.kernels.variants(op):
        with tg.kernels.use(**{op: variant}):
            y = call(tg.tensor(x), None if w is None else tg.tensor(w)).data
        for o in range(y.shape[1]):
            np.testing.assert_array_equal(np.isnan(y[0, o]), want, err_msg=f"{op} {variant}")


@pytest.mark.parametrize("op", ["dropout", "dropout2d", "gaussian_dropout"])
def test_dropout_multiplies_as_pytorch(op):
    """Dropout multiplies by the mask (PyTorch's ``input * mask``): a dropped NaN or Inf is
    NaN, a dropped -0.0 stays -0.0; Gaussian noise multiplies every element."""
    fn = getattr(F, op)
    shape = (2, 8, 4, 4)
    x = np.full(shape, NAN)
    x[:, 1::4] = INF
    x[:, 2::4] = -0.0
    x[:, 3::4] = -INF
    for variant in tg.kernels.variants(op):
        with tg.kernels.use(**{op: variant}):
            tg.manual_seed(3)
            factor = fn(tg.tensor(np.ones(shape)), 0.5).data  # scale * keep, or 1 + sigma*z
            tg.manual_seed(3)
            y = fn(tg.tensor(x), 0.5).data
        want = x * factor
        msg = f"{op} {variant}"
        np.testing.assert_array_equal(y, want, err_msg=msg)
        np.testing.assert_array_equal(np.signbit(y), np.signbit(want), err_msg=msg)
        assert (factor == 0).any() or op == "gaussian_dropout", msg


@pytest.mark.parametrize("variant", tg.kernels.variants("relu"))
def test_detect_anomaly_sees_nan_through_relu(variant):
    x = tg.tensor(np.array([NAN, 1.0]), requires_grad=True)
    with tg.kernels.use(relu=variant), tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError, match=r"produced NaN"):
            F.relu(x)
