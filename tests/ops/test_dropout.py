"""Dropout ops: statistics of the masks, scaling, p edges and errors, dropout2d's
channel masks, Gaussian noise, reproducibility (seed, threads, backends), gradients."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn as nn
import tapegrad.nn.functional as F
from tapegrad.ops.dropout import rng_state

VARIANTS = K.variants("dropout")


def _x(*shape, dtype=np.float32, seed=0):
    # strictly positive values: a zero output then always means "dropped"
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(dtype)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_fraction_and_scaling(variant, p):
    tg.manual_seed(0)
    x = _x(300, 1000)
    n = x.size
    with K.use(dropout=variant):
        y = F.dropout(tg.Tensor(x), p).data
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 4 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[kept], x[kept] * np.float32(1 / (1 - p)), rtol=1e-6)
    with K.use(dropout=variant):
        y = F.dropout(tg.Tensor(x), p, scale=False).data
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])  # the seed's unscaled dropout
    assert abs(kept.mean() - (1 - p)) < 4 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_reuses_the_mask(variant):
    tg.manual_seed(1)
    xs = _x(4, 5, 6)
    x = tg.Tensor(xs, requires_grad=True)
    with K.use(dropout=variant):
        y = F.dropout(x, 0.3)
    (keep,) = y._node.ctx.saved
    assert keep.dtype == np.uint8 and keep.nbytes == xs.size  # one byte per element
    gy = _x(4, 5, 6, seed=2)
    y.backward(gy)
    np.testing.assert_allclose(
        x.grad.data, np.where(y.data != 0, gy / np.float32(0.7), 0), rtol=1e-6
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_gradcheck(variant):
    x = tg.Tensor(_x(3, 7, dtype=np.float64), requires_grad=True)

    def fn(x):
        tg.manual_seed(3)  # the same mask on every evaluation
        return F.dropout(x, 0.4)

    with K.use(dropout=variant, dropout2d=variant, gaussian_dropout=variant):
        assert tg.gradcheck(fn, [x])
        x4 = tg.Tensor(_x(2, 3, 2, 2, dtype=np.float64), requires_grad=True)
        assert tg.gradcheck(lambda x: (tg.manual_seed(3), F.dropout2d(x, 0.4))[1], [x4])
        assert tg.gradcheck(lambda x: (tg.manual_seed(3), F.gaussian_dropout(x, 0.7))[1], [x])


def test_p_edges_and_errors():
    x = tg.Tensor(_x(50, 50), requires_grad=True)
    y = F.dropout(x, 1.0)
    assert np.all(y.data == 0) and not np.isnan(y.data).any()
    y.backward(np.ones((50, 50), np.float32))
    assert np.all(x.grad.data == 0)
    assert np.all(F.dropout2d(tg.Tensor(_x(2, 3, 4, 4)), 1.0).data == 0)
    z = F.dropout(x, 0.0)
    np.testing.assert_array_equal(z.data, x.data)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]"):
            F.dropout(x, bad)
        with pytest.raises(ValueError, match=r"dropout2d: p must be in \[0, 1\]"):
            F.dropout2d(tg.Tensor(_x(1, 2, 3, 3)), bad)
        with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\]"):
            nn.Dropout(bad)
    with pytest.raises(TypeError, match="dropout: p must be a float"):
        F.dropout(x, "0.5")
    with pytest.raises(ValueError, match="gaussian_dropout: sigma"):
        F.gaussian_dropout(x, -1.0)
    with pytest.raises(ValueError, match=r"dropout2d: input must be 4-D .* got shape \(50, 50\)"):
        F.dropout2d(x, 0.5)
    with pytest.raises(TypeError, match="dropout: input must be float32 or float64"):
        F.dropout(tg.Tensor(np.ones(4, np.int64)), 0.5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout2d_drops_whole_channels(variant):
    tg.manual_seed(5)
    x = _x(40, 50, 3, 4)
    p = 0.4
    with K.use(dropout2d=variant):
        y = F.dropout2d(tg.Tensor(x), p).data
    planes = y.reshape(2000, 12)
    dropped = (planes == 0).all(axis=1)
    kept = (planes != 0).all(axis=1)
    assert np.all(dropped | kept)  # never a partly dropped channel
    assert abs(dropped.mean() - p) < 4 * np.sqrt(p * (1 - p) / 2000)
    np.testing.assert_allclose(planes[kept], x.reshape(2000, 12)[kept] / np.float32(0.6), rtol=1e-6)
    y3 = F.dropout2d(tg.Tensor(_x(6, 3, 4)), 0.5).data  # (C, H, W): one mask per channel
    assert np.all(((y3 == 0).all(axis=(1, 2))) | ((y3 != 0).all(axis=(1, 2))))


@pytest.mark.parametrize("variant", VARIANTS)
def test_gaussian_dropout_statistics_and_gradient(variant):
    tg.manual_seed(6)
    sigma, n = 0.6, 200_000
    x = tg.Tensor(np.ones(n, np.float64), requires_grad=True)
    with K.use(gaussian_dropout=variant):
        y = F.gaussian_dropout(x, sigma)
    r = y.data  # R itself, since x = 1
    assert abs(r.mean() - 1) < 4 * sigma / np.sqrt(n)
    assert abs(r.std() - sigma) < 4 * sigma * np.sqrt(0.5 / n)
    y.backward(np.full(n, 2.0))
    np.testing.assert_allclose(x.grad.data, 2 * r, rtol=1e-12)  # noise regenerated


def test_reproducible_masks_across_seeds_threads_and_backends():
    x = _x(8, 16, 9, 7)
    old = tg.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            tg.set_num_threads(threads)
            for v in VARIANTS:
                with K.use(dropout=v, dropout2d=v, gaussian_dropout=v):
                    tg.manual_seed(123)
                    a = F.dropout(tg.Tensor(x), 0.5).data
                    b = F.dropout(tg.Tensor(x), 0.5).data
                    c = F.dropout2d(tg.Tensor(x), 0.5).data
                    d = F.gaussian_dropout(tg.Tensor(x), 0.3).data
                outs.append((v, threads, a, b, c, d))
    finally:
        tg.set_num_threads(old)
    _, _, a0, b0, c0, d0 = outs[0]
    assert (a0 != b0).any()  # the call counter advances: consecutive masks differ
    compiled = [o[5] for o in outs if o[0] != "reference"]
    for v, threads, a, b, c, d in outs[1:]:
        np.testing.assert_array_equal(a, a0, err_msg=f"{v} {threads}")
        np.testing.assert_array_equal(b, b0, err_msg=f"{v} {threads}")
        np.testing.assert_array_equal(c, c0, err_msg=f"{v} {threads}")
        np.testing.assert_allclose(d, d0, rtol=1e-6)
    for d in compiled[1:]:  # compiled backends share libm: Gaussian noise bit-identical too
        np.testing.assert_array_equal(d, compiled[0])


def test_autotune_trials_draw_no_random_numbers(monkeypatch, tmp_path):
    """Autotune times the dropout kernels on the call's own key: the masks and the
    generator's counter come out as without autotune."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    x = _x(8, 16, 9, 7)

    def run() -> tuple:
        tg.manual_seed(5)
        a = F.dropout(tg.Tensor(x), 0.5).data
        c = F.dropout2d(tg.Tensor(x), 0.5).data
        d = F.gaussian_dropout(tg.Tensor(x), 0.3).data
        return a, c, d, rng_state()

    want = run()
    K.clear_tuning()
    K.autotune(True)
    try:
        with K.record() as calls:
            got = run()
        timed = [
            op for op, sig in calls if K.registry._tune_key(op, sig, False) in K.registry._tuned
        ]
    finally:
        K.autotune(False)
        K.clear_tuning()
    assert timed == ["dropout", "dropout2d", "gaussian_dropout"]  # each one was tuned
    assert got[3] == want[3] == (5, 3)
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-6)


def test_manual_seed_resets_the_counter():
    tg.manual_seed(9)
    assert rng_state() == (9, 0)
    F.dropout(tg.Tensor(_x(3)), 0.5)
    F.gaussian_dropout(tg.Tensor(_x(3)), 0.5)
    assert rng_state() == (9, 2)
    tg.manual_seed(9)
    assert rng_state() == (9, 0)


def test_layers_and_eval_mode():
    x = tg.Tensor(_x(4, 3, 5, 5))
    for layer in (nn.Dropout(0.5), nn.Dropout2d(0.5), nn.GaussianDropout(0.5)):
        assert layer.training
        assert (layer(x).data != x.data).any()
        layer.eval()
        assert layer(x) is x  # identity, no randomness consumed
        assert layer.state_dict() == {}
    seq = nn.Sequential(nn.Dropout(0.3, scale=False)).eval()
    assert not seq[0].training
    assert seq(x) is x
    assert F.dropout(x, 0.5, training=False) is x


@pytest.mark.torch
def test_dropout_semantics_match_torch():
    torch = pytest.importorskip("torch")
    tg.manual_seed(11)
    xs = _x(6, 7)
    gy = _x(6, 7, seed=1)
    x1 = tg.Tensor(xs, requires_grad=True)
    y1 = F.dropout(x1, 0.3)
    y1.backward(gy)
    mask = torch.tensor((y1.data != 0).astype(np.float32))
    # PyTorch's inverted dropout with the same mask: x * mask / (1 - p)
    x2 = torch.tensor(xs, requires_grad=True)
    y2 = x2 * mask / (1 - 0.3)
    y2.backward(torch.tensor(gy))
    np.testing.assert_allclose(y1.data, y2.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x1.grad.data, x2.grad.numpy(), rtol=1e-6)
    # and torch's own dropout keeps the same expected fraction and scale
    t = torch.nn.functional.dropout(torch.ones(200_000), 0.3)
    kept = t != 0
    assert abs(kept.float().mean().item() - 0.7) < 4 * np.sqrt(0.21 / 200_000)
    np.testing.assert_allclose(t[kept].numpy(), 1 / 0.7, rtol=1e-6)
