"""Layers and losses with PyTorch's names: forward and every gradient against PyTorch in
float32 and float64, float64 gradchecks, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn as nn
import tapegrad.nn.functional as F
from tests._oracle import check_against_torch, gradcheck64

DTYPES = ["float32", "float64"]
rng = np.random.default_rng(0)


def _x(*shape):
    return rng.standard_normal(shape)


# --- pooling -------------------------------------------------------------------------------

ADAPTIVE = [((2, 3, 7, 5), 3), ((1, 2, 6, 6), (2, 4)), ((2, 1, 5, 9), (None, 2)), ((1, 1, 4, 4), 1)]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,out", ADAPTIVE)
def test_adaptive_max_pool2d(shape, out, dtype):
    torch = pytest.importorskip("torch")
    x = _x(*shape)
    check_against_torch(
        lambda a: F.adaptive_max_pool2d(a, out),
        lambda a: torch.nn.functional.adaptive_max_pool2d(a, out),
        [x],
        dtype,
    )
    y, idx = nn.AdaptiveMaxPool2d(out, return_indices=True)(tg.Tensor(x))
    _, tidx = torch.nn.AdaptiveMaxPool2d(out, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    gradcheck64(lambda a: F.adaptive_max_pool2d(a, out), [x])


POOL1D = [
    ((2, 3, 9), {"kernel_size": 3}),
    ((2, 3, 10), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 2, 11), {"kernel_size": 4, "stride": 3, "ceil_mode": True}),
    ((3, 8), {"kernel_size": 2}),
]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kw", POOL1D)
def test_max_and_avg_pool1d(shape, kw, dtype):
    torch = pytest.importorskip("torch")
    x = _x(*shape)
    tf = torch.nn.functional
    check_against_torch(
        lambda a: F.max_pool1d(a, **kw), lambda a: tf.max_pool1d(a, **kw), [x], dtype
    )
    check_against_torch(
        lambda a: F.avg_pool1d(a, **kw), lambda a: tf.avg_pool1d(a, **kw), [x], dtype
    )
    dil = {**kw, "dilation": 2} if "padding" not in kw else kw
    check_against_torch(
        lambda a: nn.MaxPool1d(**dil)(a), lambda a: torch.nn.MaxPool1d(**dil)(a), [x], dtype
    )
    check_against_torch(
        lambda a: nn.AvgPool1d(**kw, count_include_pad=False)(a),
        lambda a: torch.nn.AvgPool1d(**kw, count_include_pad=False)(a),
        [x],
        dtype,
    )
    gradcheck64(lambda a: F.avg_pool1d(a, **kw), [x])


def test_pool_bad_arguments():
    with pytest.raises(ValueError, match=r"max_pool1d: input must be 2-D \(C, L\) or 3-D"):
        F.max_pool1d(tg.randn(1, 2, 3, 4), 2)
    with pytest.raises(ValueError, match="avg_pool1d: kernel_size must be an int >= 1"):
        F.avg_pool1d(tg.randn(1, 2, 8), 0)
    with pytest.raises(TypeError, match="max_pool1d: stride must be an int"):
        F.max_pool1d(tg.randn(1, 2, 8), 2, stride=1.5)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d: input must be 4-D"):
        F.adaptive_max_pool2d(tg.randn(2, 8), 2)
    with pytest.raises(ValueError, match="adaptive_max_pool2d: output_size"):
        F.adaptive_max_pool2d(tg.randn(1, 1, 4, 4), 0)


# --- instance norm -------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("track", [False, True])
def test_instance_norm2d_matches_torch(affine, track, dtype):
    torch = pytest.importorskip("torch")
    m = nn.InstanceNorm2d(3, affine=affine, track_running_stats=track, momentum=0.3).to(dtype)
    tm = torch.nn.InstanceNorm2d(3, affine=affine, track_running_stats=track, momentum=0.3)
    tm = tm.to(getattr(torch, dtype))
    if affine:
        w, b = _x(3), _x(3)
        m.weight.data[...] = w
        m.bias.data[...] = b
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(w))
            tm.bias.copy_(torch.tensor(b))
    x = _x(2, 3, 4, 5) * 2 + 1
    check_against_torch(m, tm, [x], dtype)
    for name in ("weight", "bias") if affine else ():
        np.testing.assert_allclose(
            getattr(m, name).grad.numpy(), getattr(tm, name).grad.numpy(), rtol=1e-4, atol=1e-5
        )
    if track:
        np.testing.assert_allclose(m.running_mean.numpy(), tm.running_mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(m.running_var.numpy(), tm.running_var.numpy(), rtol=1e-5)
        m.eval()
        tm.eval()
        check_against_torch(m, tm, [_x(2, 3, 4, 5)], dtype)
    check_against_torch(m, tm, [_x(3, 4, 4)], dtype)  # unbatched


def test_instance_norm_gradcheck_and_bad_arguments():
    w, b = tg.Tensor(_x(3), requires_grad=True), tg.Tensor(_x(3), requires_grad=True)
    x = tg.Tensor(_x(2, 3, 3, 4), requires_grad=True)
    assert tg.gradcheck(lambda a, c, d: F.instance_norm(a, weight=c, bias=d), [x, w, b])
    with pytest.raises(ValueError, match=r"InstanceNorm2d: expected 3 channels \(dim 1\)"):
        nn.InstanceNorm2d(3)(tg.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="InstanceNorm2d: expected .N, C, H, W. or .C, H, W."):
        nn.InstanceNorm2d(3)(tg.randn(2, 3))
    with pytest.raises(ValueError, match=r"instance_norm: weight must have shape \(3,\)"):
        F.instance_norm(tg.randn(2, 3, 3, 3), weight=tg.randn(4))


# --- embedding -----------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_matches_torch(padding_idx, dtype):
    torch = pytest.importorskip("torch")
    w = _x(6, 4)
    idx = np.array([[0, 2, 5], [2, 2, 1]])
    check_against_torch(
        lambda a, i: F.embedding(i, a, padding_idx=padding_idx),
        lambda a, i: torch.nn.functional.embedding(i, a, padding_idx=padding_idx),
        [w, idx],
        dtype,
        grad=[True, False],
    )
    if padding_idx is None:  # the padding row is used but, by design, gets no gradient
        gradcheck64(lambda a: F.embedding(idx, a), [w])
    e = nn.Embedding(6, 4, padding_idx=padding_idx)
    assert e.weight.shape == (6, 4) and e.weight.dtype == np.float32
    if padding_idx is not None:
        assert not e.weight.numpy()[padding_idx].any()
    assert e(tg.tensor(idx)).shape == (2, 3, 4)


def test_embedding_pretrained_and_bad_arguments():
    e = nn.Embedding.from_pretrained(np.eye(3))
    assert not e.weight.requires_grad and e(np.array([2])).numpy().tolist() == [[0, 0, 1]]
    with pytest.raises(IndexError, match=r"embedding: input indices must lie in \[-6, 5\]"):
        nn.Embedding(6, 2)(np.array([6]))
    with pytest.raises(TypeError, match="embedding: input must hold integer indices"):
        nn.Embedding(6, 2)(np.array([1.0]))
    with pytest.raises(ValueError, match="Embedding: padding_idx 7 is out of range"):
        nn.Embedding(6, 2, padding_idx=7)
    with pytest.raises(ValueError, match="Embedding: embedding_dim must be a positive int"):
        nn.Embedding(6, 0)


# --- losses --------------------------------------------------------------------------------

REDUCTIONS = ["mean", "sum", "none"]


def _pair_losses(torch):
    tf = torch.nn.functional
    return {
        "l1": (F.l1_loss, tf.l1_loss, {}),
        "smooth_l1": (F.smooth_l1_loss, tf.smooth_l1_loss, {"beta": 0.7}),
        "smooth_l1_b0": (F.smooth_l1_loss, tf.smooth_l1_loss, {"beta": 0.0}),
        "huber": (F.huber_loss, tf.huber_loss, {"delta": 0.8}),
    }


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["l1", "smooth_l1", "smooth_l1_b0", "huber"])
def test_regression_losses(name, reduction, dtype):
    torch = pytest.importorskip("torch")
    ours, theirs, kw = _pair_losses(torch)[name]
    a, b = _x(4, 5), _x(4, 5)
    check_against_torch(
        lambda x, y: ours(x, y, reduction=reduction, **kw),
        lambda x, y: theirs(x, y, reduction=reduction, **kw),
        [a, b],
        dtype,
    )
    gradcheck64(lambda x, y: ours(x, y, reduction=reduction, **kw), [a, b])


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_loss(reduction, weighted, dtype):
    torch = pytest.importorskip("torch")
    p = rng.uniform(0.05, 0.95, (3, 4))
    y = rng.random((3, 4))
    w = rng.random(4) if weighted else None
    tw = None if w is None else torch.tensor(w.astype(dtype))
    check_against_torch(
        lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction),
        lambda a, b: torch.nn.functional.binary_cross_entropy(a, b, weight=tw, reduction=reduction),
        [p, y],
        dtype,
    )
    gradcheck64(lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction), [p, y])
    # probabilities of exactly 0 and 1: finite, clamped like PyTorch
    edge = np.array([0.0, 1.0, 0.5])
    t = np.array([1.0, 0.0, 1.0])
    got = nn.BCELoss(reduction="none")(tg.tensor(edge), tg.tensor(t)).numpy()
    want = torch.nn.BCELoss(reduction="none")(torch.tensor(edge), torch.tensor(t)).numpy()
    np.testing.assert_allclose(got, want.astype(np.float32))


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
def test_kl_div(reduction, log_target, dtype):
    torch = pytest.importorskip("torch")
    x = np.log(rng.dirichlet(np.ones(5), size=3))
    t = rng.dirichlet(np.ones(5), size=3)
    if log_target:
        t = np.log(t)
    check_against_torch(
        lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
        lambda a, b: torch.nn.functional.kl_div(a, b, reduction=reduction, log_target=log_target),
        [x, t],
        dtype,
    )
    gradcheck64(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target), [x, t])
    zero = np.array([[0.0, 0.5, 0.5]])
    got = nn.KLDivLoss(reduction="sum")(tg.tensor(np.log([[0.2, 0.3, 0.5]])), tg.tensor(zero))
    assert np.isfinite(got.item())


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_and_nll_class_weights(reduction, smoothing, dtype):
    torch = pytest.importorskip("torch")
    logits = _x(6, 4) * 2
    target = np.array([0, 3, 1, -1, 3, 2])
    w = rng.random(4) + 0.2
    tw = torch.tensor(w.astype(dtype))
    kw = {"reduction": reduction, "ignore_index": -1}
    check_against_torch(
        lambda a: F.cross_entropy(a, target, weight=w, label_smoothing=smoothing, **kw),
        lambda a: torch.nn.functional.cross_entropy(
            a, torch.tensor(target), weight=tw, label_smoothing=smoothing, **kw
        ),
        [logits],
        dtype,
    )
    gradcheck64(
        lambda a: F.cross_entropy(a, target, weight=w, label_smoothing=smoothing, **kw), [logits]
    )
    logp = np.log(rng.dirichlet(np.ones(4), size=6))
    check_against_torch(
        lambda a: nn.NLLLoss(w, **kw)(a, target),
        lambda a: torch.nn.NLLLoss(tw, **kw)(a, torch.tensor(target)),
        [logp],
        dtype,
    )
    gradcheck64(lambda a: F.nll_loss(a, target, weight=w, **kw), [logp])
    got = nn.CrossEntropyLoss(w, **kw, label_smoothing=smoothing)(tg.tensor(logits), target)
    assert got.shape == ((6,) if reduction == "none" else ())


def test_loss_bad_arguments():
    a, b = tg.randn(2, 3), tg.randn(2, 3)
    with pytest.raises(ValueError, match=r"l1_loss: input and target shapes differ: \(2, 3\)"):
        F.l1_loss(a, tg.randn(3, 2))
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be non-negative"):
        F.smooth_l1_loss(a, b, beta=-1)
    with pytest.raises(ValueError, match="huber_loss: delta must be positive"):
        F.huber_loss(a, b, delta=0)
    with pytest.raises(ValueError, match="huber_loss: reduction must be 'mean', 'sum' or 'none'"):
        F.huber_loss(a, b, reduction="avg")
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities"):
        F.binary_cross_entropy(a * 10, tg.rand(2, 3))
    with pytest.raises(ValueError, match="kl_div: reduction must be 'mean', 'batchmean'"):
        F.kl_div(a, b, reduction="x")
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have shape \(3,\)"):
        F.cross_entropy(a, np.array([0, 1]), weight=np.ones(2))
    with pytest.raises(TypeError, match="CrossEntropyLoss: the first argument is weight"):
        nn.CrossEntropyLoss("sum")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_and_dropout_accept_pytorch_s_inplace_argument(dtype):
    torch = pytest.importorskip("torch")
    a = _x(2, 3, 4).astype(dtype)
    x = tg.Tensor(a.copy(), requires_grad=True)
    y = nn.ReLU(True)(x) + F.relu(x, inplace=True) + nn.ReLU(inplace=False)(x)
    y.sum().backward()
    t = torch.tensor(a.copy(), requires_grad=True)
    ty = torch.nn.ReLU(False)(t) * 3
    ty.sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(a, x.numpy())  # the input is left as it was
    d = nn.Dropout(0.5, inplace=True).eval()
    assert d(x) is x and F.dropout(x, 0.3, False, inplace=True) is x
    assert nn.Dropout2d(p=0.2, inplace=False).inplace is False


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.ReLU("yes"),
        lambda: F.relu(tg.zeros(2), inplace=1),
        lambda: nn.Dropout(0.5, inplace=None),
        lambda: F.dropout2d(tg.zeros(1, 2, 2, 2), inplace="no"),
    ],
)
def test_inplace_argument_must_be_a_bool(make):
    with pytest.raises(TypeError, match="inplace must be a bool"):
        make()
