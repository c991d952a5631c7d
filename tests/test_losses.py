"""Losses: gradchecks in float64, PyTorch oracle, stability at extreme logits, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn as nn
import tapegrad.nn.functional as F

rng = np.random.default_rng(0)


def _t(a, grad=True):
    return tg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_gradcheck(reduction):
    logp = np.log(rng.dirichlet(np.ones(5), size=6))
    target = np.array([0, 4, 2, -100, 1, 3])

    def fn(x):
        out = F.nll_loss(x, target, reduction=reduction)
        return out if reduction != "none" else (out * _t(np.arange(1, 7), False)).sum()

    assert tg.gradcheck(fn, [_t(logp)])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [None, [0.5, 2.0, 3.0]])
def test_bce_with_logits_gradcheck(reduction, pos_weight):
    x = rng.standard_normal((4, 3)) * 3
    y = rng.random((4, 3))
    w = _t(rng.random((4, 3)), False)

    def fn(a, b):
        out = F.binary_cross_entropy_with_logits(a, b, reduction=reduction, pos_weight=pos_weight)
        return out if reduction != "none" else (out * w).sum()

    assert tg.gradcheck(fn, [_t(x), _t(y)])


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_cross_entropy_options_gradcheck(smoothing):
    logits = rng.standard_normal((5, 4))
    target = np.array([1, -1, 3, 0, -1])
    assert tg.gradcheck(
        lambda x: F.cross_entropy(x, target, label_smoothing=smoothing, ignore_index=-1),
        [_t(logits)],
    )


def test_bce_stable_for_huge_logits():
    x = tg.Tensor(np.array([1e4, -1e4, 0.0], np.float32), requires_grad=True)
    y = tg.Tensor(np.array([1.0, 0.0, 1.0], np.float32))
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="sum")
    loss.backward()
    np.testing.assert_allclose(loss.item(), np.log(2), rtol=1e-6)
    assert np.all(np.isfinite(x.grad.numpy()))
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, -0.5], atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_matches_torch(reduction, smoothing, ignore_index):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((8, 5)).astype(np.float32) * 4
    target = rng.integers(0, 5, 8)
    target[1] = ignore_index if ignore_index >= 0 else -100
    x = tg.Tensor(logits, requires_grad=True)
    out = F.cross_entropy(
        x, target, reduction=reduction, label_smoothing=smoothing, ignore_index=ignore_index
    )
    tx = torch.tensor(logits, requires_grad=True)
    tout = torch.nn.functional.cross_entropy(
        tx,
        torch.tensor(target),
        reduction=reduction,
        label_smoothing=smoothing,
        ignore_index=ignore_index,
    )
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(g if out.ndim else None)
    tout.backward(torch.tensor(g) if out.ndim else None)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_nll_and_bce_match_torch(reduction):
    torch = pytest.importorskip("torch")
    logp = np.log(rng.dirichlet(np.ones(4), size=6)).astype(np.float32)
    target = np.array([0, 3, 1, -100, 2, 2])
    a = tg.Tensor(logp, requires_grad=True)
    ta = torch.tensor(logp, requires_grad=True)
    F.nll_loss(a, target, reduction=reduction).backward()
    tl = torch.nn.functional.nll_loss(ta, torch.tensor(target), reduction=reduction)
    tl.backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-6)

    x = (rng.standard_normal((5, 3)) * 5).astype(np.float32)
    y = rng.random((5, 3)).astype(np.float32)
    pw = np.array([1.0, 2.0, 0.5], np.float32)
    b = tg.Tensor(x, requires_grad=True)
    tb = torch.tensor(x, requires_grad=True)
    out = F.binary_cross_entropy_with_logits(b, y, reduction=reduction, pos_weight=pw)
    tout = torch.nn.functional.binary_cross_entropy_with_logits(
        tb, torch.tensor(y), reduction=reduction, pos_weight=torch.tensor(pw)
    )
    np.testing.assert_allclose(out.item(), tout.item(), rtol=1e-5)
    out.backward()
    tout.backward()
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_loss_modules_equal_functional():
    logits = tg.Tensor(rng.standard_normal((4, 3)).astype(np.float32))
    target = np.array([0, 2, 1, 1])
    assert nn.CrossEntropyLoss(label_smoothing=0.1)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=0.1).item()
    )
    logp = F.log_softmax(logits, 1)
    assert nn.NLLLoss()(logp, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item()
    )
    b = tg.Tensor(rng.random((4, 3)).astype(np.float32))
    assert nn.MSELoss(reduction="sum")(logits, b).item() == pytest.approx(
        float(((logits.numpy() - b.numpy()) ** 2).sum()), rel=1e-5
    )
    assert nn.BCEWithLogitsLoss()(logits, b).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, b).item()
    )


def test_bad_input_names_function_and_shapes():
    x = tg.Tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"nll_loss: target must have shape \(3,\)"):
        F.nll_loss(x, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="nll_loss: target values must lie in"):
        F.nll_loss(x, np.array([0, 1, 7]))
    with pytest.raises(TypeError, match="nll_loss: target must hold integer"):
        F.nll_loss(x, np.zeros(3, np.float32))
    with pytest.raises(
        ValueError, match=r"binary_cross_entropy_with_logits: .*\(3, 4\) vs \(4, 3\)"
    ):
        F.binary_cross_entropy_with_logits(x, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits: reduction"):
        F.binary_cross_entropy_with_logits(x, np.zeros((3, 4), np.float32), reduction="avg")
