"""Normalisation ops: gradchecks, the fused batch-norm backward against the same batch
norm composed from tape ops, the seed's problem 2 (axes; no variance division), running
statistics, layers and state dicts, the PyTorch oracle, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn as nn
import tapegrad.nn.functional as F

BN_VARIANTS = K.variants("batch_norm")
ROW_VARIANTS = K.variants("layer_norm")


def _t(a, grad=True):
    return tg.Tensor(np.array(a, dtype=np.float64), requires_grad=grad)


def _data(*shape, seed=0, loc=0.5, scale=2.0):
    return np.random.default_rng(seed).normal(loc, scale, shape)


# --- batch norm: gradients -----------------------------------------------------------------


@pytest.mark.parametrize("variant", BN_VARIANTS)
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 2), (2, 3, 4)])
@pytest.mark.parametrize("normvar", [True, False])
def test_batch_norm_training_gradcheck(variant, shape, normvar):
    x, w, b = _t(_data(*shape)), _t(_data(shape[1], seed=1)), _t(_data(shape[1], seed=2))
    with K.use(batch_norm=variant):
        assert tg.gradcheck(
            lambda x, w, b: F.batch_norm(
                x, None, None, w, b, training=True, normalize_variance=normvar
            ),
            [x, w, b],
        )


@pytest.mark.parametrize("variant", BN_VARIANTS)
def test_batch_norm_eval_gradcheck(variant):
    x, w, b = _t(_data(3, 2, 2, 3)), _t(_data(2, seed=1)), _t(_data(2, seed=2))
    rm, rv = tg.Tensor(np.array([0.3, -0.2])), tg.Tensor(np.array([1.5, 0.7]))
    with K.use(batch_norm=variant):
        assert tg.gradcheck(
            lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), [x, w, b]
        )


def _composed_batch_norm(x, w, b, eps, normvar=True):
    """Batch norm built from primitive tape ops (mean, sub, pow, sqrt, div, mul, add)."""
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    if normvar:
        var = (xc * xc).mean(axis=axes, keepdims=True)
        xc = xc / (var + eps).sqrt()
    return xc * w.reshape(shape) + b.reshape(shape)


@pytest.mark.parametrize("variant", BN_VARIANTS)
@pytest.mark.parametrize("shape", [(6, 4), (4, 3, 5, 5)])
@pytest.mark.parametrize("normvar", [True, False])
def test_fused_backward_matches_composed_tape_ops(variant, shape, normvar):
    xs, ws, bs = _data(*shape), _data(shape[1], seed=1), _data(shape[1], seed=2)
    gy = _data(*shape, seed=3)
    x1, w1, b1 = _t(xs), _t(ws), _t(bs)
    with K.use(batch_norm=variant):
        y1 = F.batch_norm(x1, None, None, w1, b1, training=True, normalize_variance=normvar)
    y1.backward(gy)
    x2, w2, b2 = _t(xs), _t(ws), _t(bs)
    y2 = _composed_batch_norm(x2, w2, b2, 1e-5, normvar)
    y2.backward(gy)
    np.testing.assert_allclose(y1.data, y2.data, rtol=1e-10, atol=1e-10)
    for a, c in ((x1, x2), (w1, w2), (b1, b2)):
        np.testing.assert_allclose(a.grad.data, c.grad.data, rtol=1e-9, atol=1e-10)
    # the closed form of seed problem 6(b) written out
    m = xs.size // shape[1]
    axes = (0, *range(2, len(shape)))
    bc = (1, -1) + (1,) * (len(shape) - 2)
    mu = xs.mean(axis=axes, keepdims=True)
    if normvar:
        inv = 1 / np.sqrt(xs.var(axis=axes, keepdims=True) + 1e-5)
        xhat = (xs - mu) * inv
        gx = (ws.reshape(bc) * inv / m) * (
            m * gy - gy.sum(axis=axes, keepdims=True)
            - xhat * (gy * xhat).sum(axis=axes, keepdims=True)
        )  # fmt: skip
    else:
        gx = ws.reshape(bc) * (gy - gy.mean(axis=axes, keepdims=True))
    np.testing.assert_allclose(x1.grad.data, gx, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("variant", BN_VARIANTS)
@pytest.mark.parametrize("shape", [(1, 4), (1, 3, 1, 1)])
def test_mean_only_batch_norm_has_zero_gradient_for_a_batch_of_one(variant, shape):
    # seed problem 2(b): dL/dx_i = gamma * (dL/dy_i - mean_j dL/dy_j) = 0 when n = 1
    x, w, b = _t(_data(*shape)), _t(_data(shape[1], seed=1)), _t(_data(shape[1], seed=2))
    with K.use(batch_norm=variant):
        y = F.batch_norm(x, None, None, w, b, training=True, normalize_variance=False)
    y.backward(_data(*shape, seed=5))
    np.testing.assert_array_equal(x.grad.data, np.zeros(shape))
    np.testing.assert_array_equal(
        y.data, np.broadcast_to(b.data.reshape(1, -1, *([1] * (len(shape) - 2))), shape)
    )
    assert np.abs(w.grad.data).max() == 0 and np.abs(b.grad.data).max() > 0
    # and with many samples the gradient tends to gamma * dL/dy (seed's n -> infinity)
    n = 4000
    xs = _t(_data(n, 2))
    ws = _t([1.5, -2.0])
    ys = F.batch_norm(xs, None, None, ws, None, training=True, normalize_variance=False)
    gy = _data(n, 2, seed=9, loc=0.0, scale=1.0)
    ys.backward(gy)
    assert np.abs(xs.grad.data - ws.data * gy).max() < 0.2


# --- axes: batch norm vs layer norm vs group norm ------------------------------------------


@pytest.mark.parametrize("variant", ROW_VARIANTS)
def test_batch_norm_and_layer_norm_normalise_different_axes(variant):
    x = _data(4, 3, 5, 6, seed=7) + np.arange(3).reshape(1, 3, 1, 1)  # channel offsets
    x[1] *= 3.0  # a sample with a larger spread
    eps = 1e-5
    bn_axes, ln_axes = (0, 2, 3), (1, 2, 3)

    def formula(axes):
        mu = x.mean(axis=axes, keepdims=True)
        return (x - mu) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)

    with K.use(batch_norm=variant if variant in BN_VARIANTS else "reference", layer_norm=variant):
        bn = F.batch_norm(_t(x, False), None, None, training=True).data
        ln = F.layer_norm(_t(x, False), x.shape[1:]).data
    np.testing.assert_allclose(bn, formula(bn_axes), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ln, formula(ln_axes), rtol=1e-10, atol=1e-12)
    assert np.abs(bn - ln).max() > 0.5  # the axes really differ
    np.testing.assert_allclose(bn.mean(axis=bn_axes), 0, atol=1e-12)  # per channel
    np.testing.assert_allclose(ln.mean(axis=ln_axes), 0, atol=1e-12)  # per sample
    assert np.abs(bn.mean(axis=ln_axes)).max() > 0.1
    assert np.abs(ln.mean(axis=bn_axes)).max() > 0.1


@pytest.mark.parametrize("variant", ROW_VARIANTS)
def test_group_norm_formula_and_limits(variant):
    x = _data(2, 6, 3, 4, seed=4)
    eps = 1e-5
    with K.use(group_norm=variant, layer_norm=variant):
        g3 = F.group_norm(_t(x, False), 3).data
        g1 = F.group_norm(_t(x, False), 1).data
        g6 = F.group_norm(_t(x, False), 6).data
        ln = F.layer_norm(_t(x, False), x.shape[1:]).data
    xg = x.reshape(2, 3, -1)
    want = (xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + eps)
    np.testing.assert_allclose(g3, want.reshape(x.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g1, ln, rtol=1e-10, atol=1e-12)  # one group = layer norm
    inst = (x - x.mean((2, 3), keepdims=True)) / np.sqrt(x.var((2, 3), keepdims=True) + eps)
    np.testing.assert_allclose(g6, inst, rtol=1e-10, atol=1e-12)  # C groups = instance norm


@pytest.mark.parametrize("variant", ROW_VARIANTS)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_gradcheck(variant, affine):
    x = _t(_data(3, 2, 4))
    w, b = (_t(_data(2, 4, seed=1)), _t(_data(2, 4, seed=2))) if affine else (None, None)
    inputs = [x, w, b] if affine else [x]
    with K.use(layer_norm=variant):
        assert tg.gradcheck(lambda x, w=None, b=None: F.layer_norm(x, (2, 4), w, b), inputs)


@pytest.mark.parametrize("variant", ROW_VARIANTS)
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_gradcheck(variant, affine):
    x = _t(_data(2, 4, 3))
    w, b = (_t(_data(4, seed=1)), _t(_data(4, seed=2))) if affine else (None, None)
    inputs = [x, w, b] if affine else [x]
    with K.use(group_norm=variant):
        assert tg.gradcheck(lambda x, w=None, b=None: F.group_norm(x, 2, w, b), inputs)


# --- running statistics and layers ---------------------------------------------------------


def test_running_statistics_update():
    x = _data(8, 3, 2, 2)
    rm, rv = tg.Tensor(np.zeros(3)), tg.Tensor(np.ones(3))
    F.batch_norm(_t(x, False), rm, rv, training=True, momentum=0.25)
    mean, var_unbiased = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(rm.data, 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv.data, 0.75 + 0.25 * var_unbiased, rtol=1e-12)
    # eval uses them (and does not change them)
    y = F.batch_norm(_t(x, False), rm, rv, training=False).data
    want = (x - rm.data.reshape(1, 3, 1, 1)) / np.sqrt(rv.data.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-12)


def test_cumulative_average_and_modes():
    m = nn.BatchNorm1d(2, momentum=None)
    batches = [_data(5, 2, seed=s) for s in range(3)]
    for xb in batches:
        m(tg.Tensor(xb.astype(np.float32)))
    assert int(m.num_batches_tracked.data) == 3
    np.testing.assert_allclose(
        m.running_mean.data, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5
    )
    np.testing.assert_allclose(
        m.running_var.data, np.mean([b.var(0, ddof=1) for b in batches], axis=0), rtol=1e-5
    )
    before = m.running_mean.data.copy()
    m.eval()
    assert not m.training
    m(tg.Tensor(batches[0].astype(np.float32)))
    np.testing.assert_array_equal(m.running_mean.data, before)
    assert int(m.num_batches_tracked.data) == 3
    free = nn.BatchNorm2d(2, track_running_stats=False).eval()
    xb = _data(3, 2, 2, 2).astype(np.float32)
    y = free(tg.Tensor(xb)).data  # no running stats: batch statistics even in eval
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert list(free.state_dict()) == ["weight", "bias"]


def test_layers_state_dict_keys():
    assert list(nn.BatchNorm2d(3).state_dict()) == [
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    assert list(nn.BatchNorm1d(3, affine=False).state_dict()) == [
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    assert list(nn.LayerNorm((2, 3)).state_dict()) == ["weight", "bias"]
    assert nn.LayerNorm(4, elementwise_affine=False).state_dict() == {}
    assert list(nn.GroupNorm(2, 4).state_dict()) == ["weight", "bias"]
    assert [n for n, _ in nn.BatchNorm2d(3).named_parameters()] == ["weight", "bias"]


# --- PyTorch oracle --------------------------------------------------------------------------


def _step_matches_torch(torch, ours, theirs, xs, gy, atol_x, atol_wb):
    """Layer ``ours`` and PyTorch's ``theirs`` on input ``xs`` with output gradient ``gy``:
    the same output (atol 1e-5), input gradient (``atol_x``) and weight and bias gradients
    (``atol_wb``), rtol 1e-4."""
    x1 = tg.Tensor(xs, requires_grad=True)
    y1 = ours(x1)
    y1.backward(gy)
    x2 = torch.tensor(xs, requires_grad=True)
    y2 = theirs(x2)
    y2.backward(torch.tensor(gy))
    np.testing.assert_allclose(y1.data, y2.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(x1.grad.data, x2.grad.numpy(), rtol=1e-4, atol=atol_x)
    for a, b in [(ours.weight, theirs.weight), (ours.bias, theirs.bias)]:
        np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-4, atol=atol_wb)


@pytest.mark.torch
@pytest.mark.parametrize("variant", BN_VARIANTS)
@pytest.mark.parametrize(
    "layer, shape",
    [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (4, 3, 5, 6))],
)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_layers_match_torch(variant, layer, shape, momentum):
    torch = pytest.importorskip("torch")
    ours, theirs = (
        getattr(nn, layer)(3, momentum=momentum),
        getattr(torch.nn, layer)(3, momentum=momentum),
    )
    rng = np.random.default_rng(0)
    w = rng.normal(1, 0.3, 3).astype(np.float32)
    ours.weight.data[...] = w
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(w))
    with K.use(batch_norm=variant):
        for step in range(4):
            xs = rng.normal(step, 1 + step, shape).astype(np.float32)
            gy = rng.standard_normal(shape).astype(np.float32)
            _step_matches_torch(torch, ours, theirs, xs, gy, atol_x=1e-5, atol_wb=1e-4)
            ours.zero_grad()
            theirs.zero_grad()
        sd, tsd = ours.state_dict(), theirs.state_dict()
        assert list(sd) == list(tsd)
        for k in sd:
            np.testing.assert_allclose(sd[k], tsd[k].numpy(), rtol=1e-5, atol=1e-6)
        ours.eval()
        theirs.eval()
        xs = rng.normal(1, 2, shape).astype(np.float32)
        np.testing.assert_allclose(
            ours(tg.Tensor(xs)).data,
            theirs(torch.tensor(xs)).detach().numpy(),
            rtol=1e-4,
            atol=1e-5,
        )
    # a PyTorch state dict loads unchanged
    fresh = getattr(nn, layer)(3)
    fresh.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    fresh.eval()
    np.testing.assert_allclose(
        fresh(tg.Tensor(xs)).data, theirs(torch.tensor(xs)).detach().numpy(), rtol=1e-4, atol=1e-5
    )


@pytest.mark.torch
@pytest.mark.parametrize("variant", ROW_VARIANTS)
def test_layer_and_group_norm_match_torch(variant):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    xs = rng.normal(2, 3, (4, 6, 5, 3)).astype(np.float32)
    gy = rng.standard_normal(xs.shape).astype(np.float32)
    cases = [
        (nn.LayerNorm((5, 3)), torch.nn.LayerNorm((5, 3)), "layer_norm"),
        (nn.LayerNorm((6, 5, 3)), torch.nn.LayerNorm((6, 5, 3)), "layer_norm"),
        (nn.GroupNorm(3, 6), torch.nn.GroupNorm(3, 6), "group_norm"),
    ]
    for ours, theirs, op in cases:
        w = rng.normal(1, 0.5, ours.weight.shape).astype(np.float32)
        b = rng.normal(0, 0.5, ours.bias.shape).astype(np.float32)
        ours.weight.data[...], ours.bias.data[...] = w, b
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
        with K.use(**{op: variant}):
            _step_matches_torch(torch, ours, theirs, xs, gy, atol_x=1e-4, atol_wb=1e-3)


# --- bad input --------------------------------------------------------------------------------


def test_bad_input():
    x = tg.Tensor(np.zeros((4, 3, 2, 2), np.float32))
    rm, rv = tg.Tensor(np.zeros(3, np.float32)), tg.Tensor(np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\).*\(4,\)"):
        F.batch_norm(x, rm, rv, tg.Tensor(np.ones(4, np.float32)), training=True)
    with pytest.raises(ValueError, match="batch_norm: eval mode"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="batch_norm: momentum"):
        F.batch_norm(x, rm, rv, training=True, momentum=1.5)
    with pytest.raises(ValueError, match=r"batch_norm: training needs more than one value"):
        F.batch_norm(tg.Tensor(np.zeros((1, 3), np.float32)), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: input must be at least 2-D"):
        F.batch_norm(tg.Tensor(np.zeros(3, np.float32)), rm, rv)
    with pytest.raises(TypeError, match="batch_norm: input must be float32 or float64"):
        F.batch_norm(tg.Tensor(np.zeros((2, 3), np.int64)), rm, rv)
    with pytest.raises(
        ValueError, match=r"layer_norm: normalized_shape \(3,\) must match .*\(4, 3, 2, 2\)"
    ):
        F.layer_norm(x, 3)
    with pytest.raises(ValueError, match=r"layer_norm: weight must have shape \(2, 2\)"):
        F.layer_norm(x, (2, 2), tg.Tensor(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match="group_norm: num_groups=2 must .* divide"):
        F.group_norm(x, 2)
    with pytest.raises(ValueError, match="BatchNorm2d: expected 3 channels"):
        nn.BatchNorm2d(3)(tg.Tensor(np.zeros((2, 4, 2, 2), np.float32)))
    with pytest.raises(ValueError, match="BatchNorm1d: expected"):
        nn.BatchNorm1d(3)(x)
    with pytest.raises(ValueError, match="GroupNorm: num_groups=4"):
        nn.GroupNorm(4, 6)
