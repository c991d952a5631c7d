"""Numerical safety: ``detect_anomaly`` stops at the first NaN/Inf, and the stable ops stay
finite for large logits and float32 edge values."""

from __future__ import annotations

import re
import threading
import warnings

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import autograd

HERE = __file__.rsplit("/", 1)[-1]


def _leaf(values, dtype=np.float64) -> tg.Tensor:
    return tg.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# --- detect_anomaly -----------------------------------------------------------------------


def test_forward_anomaly_names_the_first_bad_op_and_its_position():
    x = _leaf([1.0, 0.0, 2.0])
    with tg.detect_anomaly():
        y = x * 3.0  # finite: no error
        with pytest.raises(tg.AnomalyError) as info:
            z = y.log()  # log(0) = -inf: the first bad op
            z.exp().sum()  # never reached
        after = x * 2.0
    msg = str(info.value)
    assert msg.startswith("Log: forward produced Inf"), msg
    m = re.search(r"tape position #(\d+), called at (.+):(\d+)\)", msg)
    assert m, msg
    # the position lies between the records made just before and just after
    assert y._node.seq < int(m.group(1)) < after._node.seq
    assert m.group(2).endswith(HERE)  # the user's line, not tapegrad's internals


def test_forward_nan_reported_as_nan():
    x = _leaf([-1.0, 4.0])
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=r"^Sqrt: forward produced NaN"):
        x.sqrt()


def test_backward_anomaly_names_the_op_and_its_record():
    x = _leaf([0.0, 4.0])
    with tg.detect_anomaly():
        y = x.sqrt()  # forward finite; backward 1/(2*sqrt(0)) = inf
        seq = y._node.seq
        loss = (y * 2.0).sum()
        with pytest.raises(tg.AnomalyError) as info:
            loss.backward()
    msg = str(info.value)
    assert msg.startswith("Sqrt: backward produced Inf"), msg
    m = re.search(r"tape record #(\d+), recorded at (.+):(\d+)\)", msg)
    assert m, msg
    assert int(m.group(1)) == seq
    assert m.group(2).endswith(HERE)


def test_backward_reports_the_first_record_in_replay_order():
    """Two ops both make Inf gradients; the one nearer the loss (replayed first) is named."""
    x = _leaf([0.0, 1.0])
    with tg.detect_anomaly():
        a = x.sqrt()  # backward inf at 0
        b = (a + 1e-300).log()  # forward finite (log(1e-300)); backward 1/1e-300 finite
        c = (b * 0 + a).sqrt()  # backward inf at a == 0, replayed before the first sqrt
        seq_c = c._node.seq
        with pytest.raises(tg.AnomalyError) as info:
            c.sum().backward()
    assert f"tape record #{seq_c}," in str(info.value)


def test_nan_input_is_caught_at_the_first_op_that_uses_it():
    x = _leaf([np.nan, 1.0])
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=r"^Mul: forward produced NaN"):
        (x * 2).sum()


def test_conv_and_layers_are_checked_too():
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((1, 1, 5, 5)))
    w = tg.tensor(rng.standard_normal((2, 1, 3, 3)), requires_grad=True)
    w.data[0, 0, 0, 0] = np.inf
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=r"^Conv2d: forward"):
        F.conv2d(x, w)


def test_without_detect_anomaly_nothing_is_raised():
    x = _leaf([0.0, 4.0])
    y = x.log()
    assert np.isinf(y.data[0])
    x.sqrt().sum().backward()
    assert np.isinf(x.grad.data[0])


def test_state_restored_after_exit_and_after_an_error():
    assert not autograd._anomaly_on()
    with tg.detect_anomaly():
        assert autograd._anomaly_on()
        with tg.detect_anomaly():
            pass
        assert autograd._anomaly_on()
    assert not autograd._anomaly_on()
    with pytest.raises(tg.AnomalyError), tg.detect_anomaly():
        _leaf([0.0]).log()
    assert not autograd._anomaly_on()


def test_detect_anomaly_is_per_thread():
    seen = []

    def other():
        seen.append(autograd._anomaly_on())
        _leaf([0.0]).log()  # no error in a thread that did not ask for checks

    with tg.detect_anomaly():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == [False]


def test_integer_and_boolean_results_are_not_checked():
    with tg.detect_anomaly():
        t = tg.tensor([1.0, 2.0])
        assert (t > 1).data.tolist() == [False, True]
        assert t.argmax().item() == 1


# --- finite results for large and extreme inputs ------------------------------------------

F32 = np.finfo(np.float32)

EDGE_ROWS = {
    "1e4": np.array([[1e4, -1e4, 0.0, 5e3], [-1e4, -1e4, -1e4, -1e4]]),
    "-1e4": np.array([[-1e4, -1e4 + 1, -1e4 + 2, -1e4 - 3]]),
    "3e4 spread": np.array([[3e4, 1e4, -1e4, 2e4]]),
    "max": np.array([[F32.max, F32.max, F32.max]]),
    "max and 0": np.array([[F32.max, 0.0, 1.0]]),
    "-max and 0": np.array([[-F32.max, 0.0, -1.0]]),
    "tiny": np.array([[F32.tiny, -F32.tiny, 0.0]]),
    "denormal": np.array([[F32.smallest_subnormal, 0.0, -F32.smallest_subnormal]]),
    "eps": np.array([[1.0 + F32.eps, 1.0, 1.0 - F32.epsneg]]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(EDGE_ROWS))
def test_softmax_family_stays_finite(case, dtype):
    data = EDGE_ROWS[case].astype(dtype)
    n, c = data.shape
    target = np.arange(n) % c
    for name, fn in (
        ("softmax", lambda t: F.softmax(t, dim=1)),
        ("log_softmax", lambda t: F.log_softmax(t, dim=1)),
        ("cross_entropy", lambda t: F.cross_entropy(t, target)),
        ("cross_entropy smoothed", lambda t: F.cross_entropy(t, target, label_smoothing=0.1)),
        ("cross_entropy sum", lambda t: F.cross_entropy(t, target, reduction="sum")),
    ):
        x = tg.tensor(data.copy(), requires_grad=True)
        with tg.detect_anomaly():  # any NaN/Inf in forward or backward raises
            y = fn(x)
            y.backward(np.ones(y.shape, dtype=dtype))
        assert y.dtype == dtype, name
        assert np.isfinite(y.data).all(), (name, y.data)
        assert np.isfinite(x.grad.data).all(), (name, x.grad.data)
        if name == "softmax":
            np.testing.assert_allclose(y.data.sum(axis=1), 1.0, rtol=1e-6)


def test_softmax_values_at_1e4_match_float64_math():
    x = np.array([[1e4, 1e4 - 1.0, -1e4]], dtype=np.float32)
    p = F.softmax(tg.tensor(x), dim=1).data
    e = np.exp(np.array([0.0, -1.0, -2e4]))
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-6)
    lp = F.log_softmax(tg.tensor(x), dim=1).data
    np.testing.assert_allclose(lp[0, :2], np.log(e / e.sum())[:2], rtol=1e-6)
    assert lp[0, 2] == pytest.approx(-2e4 - np.log(e.sum()), rel=1e-6)


def test_cross_entropy_at_1e4_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 5)) * 1e4).astype(np.float32)
    t = rng.integers(0, 5, 6)
    ours = tg.tensor(x, requires_grad=True)
    loss = F.cross_entropy(ours, t, label_smoothing=0.2)
    loss.backward()
    tx = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t), label_smoothing=0.2)
    tl.backward()
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=1e-5)
    np.testing.assert_allclose(ours.grad.data, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_log_sum_exp_identity_is_finite_at_1e4():
    """log-sum-exp written with tapegrad ops the stable way (max subtracted) stays finite."""
    x = tg.tensor(np.array([[1e4, 1e4, -1e4]], dtype=np.float32), requires_grad=True)
    with tg.detect_anomaly():
        m = x.max(axis=1, keepdims=True)
        lse = (x - m).exp().sum(axis=1).log() + m.reshape(1)
        lse.sum().backward()
    assert lse.item() == pytest.approx(1e4 + np.log(2), rel=1e-7)
    # its gradient is the softmax
    np.testing.assert_allclose(x.grad.data, F.softmax(tg.tensor(x.data)).data, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_saturate_without_overflow(dtype):
    fi = np.finfo(dtype)
    x = tg.tensor(np.array([fi.max, -fi.max, 1e4, -1e4, 0.0], dtype=dtype), requires_grad=True)
    for fn in (F.sigmoid, F.tanh):
        x.grad = None
        with tg.detect_anomaly(), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no overflow inside either
            y = fn(x)
            y.sum().backward()
        assert np.isfinite(y.data).all() and np.isfinite(x.grad.data).all()


NORM_ROWS = {
    "1e4": np.array([1e4, -1e4, 5e3, 0.0]),
    "offset 1e4": 1e4 + np.array([0.5, -0.5, 0.25, 0.0]),  # large mean, small spread
    "offset -3e4": -3e4 + np.array([2.0, -1.0, 0.0, 1.0]),
    "max": np.full(4, F32.max),
    "max and -max": np.array([F32.max, -F32.max, 0.0, 1.0]),
    "tiny": np.array([F32.tiny, 0.0, -F32.tiny, F32.smallest_subnormal]),
    "constant": np.full(4, 7.0),
}


def _norm_reference(rows: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) per row, in float64 from the float32 values."""
    r = rows.astype(np.float64)
    mu = r.mean(axis=-1, keepdims=True)
    return (r - mu) / np.sqrt(((r - mu) ** 2).mean(axis=-1, keepdims=True) + eps)


@pytest.mark.parametrize("case", list(NORM_ROWS))
@pytest.mark.parametrize("op", ["batch_norm", "layer_norm", "group_norm"])
def test_norms_stay_finite_and_accurate(op, case):
    row = NORM_ROWS[case].astype(np.float32)
    rows = np.stack([row, row[::-1], row * 0.5]).astype(np.float32)  # (3, 4)
    want = _norm_reference(rows, 1e-5)
    for v in tg.kernels.variants(op):
        with tg.kernels.use(**{op: v}), tg.detect_anomaly():
            if op == "layer_norm":
                x = tg.tensor(rows.copy(), requires_grad=True)
                y = F.layer_norm(x, 4)
                got = y.data
            elif op == "group_norm":  # one group of 4 channels per sample
                x = tg.tensor(rows.reshape(3, 4, 1).copy(), requires_grad=True)
                y = F.group_norm(x, 1)
                got = y.data.reshape(3, 4)
            else:  # channels = the 3 rows, statistics over the 4 samples
                x = tg.tensor(rows.T.copy(), requires_grad=True)
                y = F.batch_norm(x, None, None, training=True)
                got = y.data.T
            y.backward(np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape))
        assert np.isfinite(got).all() and np.isfinite(x.grad.data).all(), (op, v, case)
        np.testing.assert_allclose(got, want, atol=2e-3, err_msg=f"{op} {v} {case}")
