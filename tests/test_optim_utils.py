"""Gradient clipping and weight averaging against torch.nn.utils and torch.optim.swa_utils."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import nn, optim
from tapegrad.optim import swa_utils


def _params(dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 2, 3)]
    ps, grads = [], []
    for s in shapes:
        p = tg.Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True)
        p.grad = (scale * rng.standard_normal(s)).astype(dtype)
        ps.append(p)
        grads.append(p.grad.numpy().copy())
    return ps, grads


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(dtype, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    ps, grads = _params(dtype)
    tps = [torch.zeros(g.shape, dtype=getattr(torch, dtype), requires_grad=True) for g in grads]
    for tp, g in zip(tps, grads):
        tp.grad = torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type=norm_type)
    tol = 1e-6 if dtype == "float32" else 1e-12
    assert total.dtype == np.dtype(dtype) and total.shape == ()
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=tol)
    for p, tp in zip(ps, tps):
        assert p.grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=tol, atol=tol)


def test_clip_grad_norm_skips_missing_grads_and_accepts_one_tensor():
    ps, _ = _params("float64")
    ps[1].grad = None
    lone = ps[0]
    total = nn.utils.clip_grad_norm_(lone, 1e-3)
    assert np.linalg.norm(lone.grad.numpy()) == pytest.approx(1e-3, rel=1e-3)
    assert total.item() > 1e-3
    assert nn.utils.clip_grad_norm_([ps[1]], 1.0).item() == 0.0
    nn.utils.clip_grad_norm_(ps, 1.0)  # the None grad stays None
    assert ps[1].grad is None


def test_clip_grad_norm_nonfinite_and_bad_arguments():
    ps, _ = _params("float64")
    ps[0].grad = np.full((3, 4), np.inf)
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm of order 2.0"):
        nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="clip_grad_norm_: max_norm must be non-negative"):
        nn.utils.clip_grad_norm_(ps, -1.0)
    with pytest.raises(ValueError, match="clip_grad_norm_: norm_type must be positive"):
        nn.utils.clip_grad_norm_(ps, 1.0, norm_type=0)
    with pytest.raises(TypeError, match="clip_grad_norm_: parameter 0 is a ndarray"):
        nn.utils.clip_grad_norm_([np.ones(3)], 1.0)
    with pytest.raises(ValueError, match="clip_grad_value_: clip_value must be non-negative"):
        nn.utils.clip_grad_value_(ps, -0.1)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_grad_value_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    ps, grads = _params(dtype, scale=2.0)
    tps = [torch.zeros(g.shape, dtype=getattr(torch, dtype), requires_grad=True) for g in grads]
    for tp, g in zip(tps, grads):
        tp.grad = torch.tensor(g)
    nn.utils.clip_grad_value_(ps, 0.7)
    torch.nn.utils.clip_grad_value_(tps, 0.7)
    for p, tp in zip(ps, tps):
        np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())
        assert np.abs(p.grad.numpy()).max() <= 0.7


def _net(lib):
    return lib.Sequential(lib.Linear(3, 4), lib.BatchNorm1d(4), lib.Linear(4, 2))


def _copy_weights(model, tmodel):
    import torch

    with torch.no_grad():
        for v, tv in zip(model.state_dict().values(), tmodel.state_dict().values()):
            tv.copy_(torch.tensor(np.asarray(v)))


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["swa", "ema", "ema_multi", "ema_buffers"])
def test_averaged_model_matches_torch(kind):
    torch = pytest.importorskip("torch")
    tsu = torch.optim.swa_utils
    tg.manual_seed(0)
    model, tmodel = _net(nn), _net(torch.nn)
    _copy_weights(model, tmodel)
    kw, tkw = {}, {}
    if kind == "ema":
        kw, tkw = {"avg_fn": swa_utils.get_ema_avg_fn(0.9)}, {"avg_fn": tsu.get_ema_avg_fn(0.9)}
    elif kind in ("ema_multi", "ema_buffers"):
        kw = {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.8)}
        tkw = {"multi_avg_fn": tsu.get_ema_multi_avg_fn(0.8)}
        if kind == "ema_buffers":
            kw["use_buffers"] = tkw["use_buffers"] = True
    avg = swa_utils.AveragedModel(model, **kw)
    tavg = tsu.AveragedModel(tmodel, **tkw)
    opt = optim.SGD(model.parameters(), lr=0.1)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1)
    rng = np.random.default_rng(1)
    for _ in range(4):
        x = rng.standard_normal((5, 3)).astype(np.float32)
        model(tg.Tensor(x)).sum().backward()
        tmodel(torch.tensor(x)).sum().backward()
        opt.step()
        topt.step()
        opt.zero_grad()
        topt.zero_grad()
        avg.update_parameters(model)
        tavg.update_parameters(tmodel)
    sd, tsd = avg.state_dict(), tavg.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        np.testing.assert_allclose(
            np.asarray(sd[k]), tsd[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k
        )
    x = rng.standard_normal((5, 3)).astype(np.float32)
    avg.eval()
    tavg.eval()
    np.testing.assert_allclose(
        avg(tg.Tensor(x)).numpy(), tavg(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_update_bn_gives_the_average_over_the_loader():
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((8, 3)).astype(np.float32) for _ in range(3)]
    model.eval()
    swa_utils.update_bn([(b, None) for b in batches], model)
    lin = model[0]
    outs = [b @ lin.weight.numpy().T + lin.bias.numpy() for b in batches]
    want_mean = np.mean([o.mean(0) for o in outs], axis=0)
    want_var = np.mean([o.var(0, ddof=1) for o in outs], axis=0)
    np.testing.assert_allclose(model[1].running_mean.numpy(), want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model[1].running_var.numpy(), want_var, rtol=1e-5)
    assert model[1].momentum == 0.1 and not model.training


def test_averaged_model_bad_arguments():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="AveragedModel: model must be a Module"):
        swa_utils.AveragedModel(object())
    with pytest.raises(ValueError, match="give avg_fn or multi_avg_fn, not both"):
        swa_utils.AveragedModel(model, avg_fn=lambda a, b, n: a, multi_avg_fn=lambda a, b, n: 0)
    with pytest.raises(ValueError, match="AveragedModel: tapegrad runs on the CPU only"):
        swa_utils.AveragedModel(model, device="cuda")
    with pytest.raises(ValueError, match=r"get_ema_avg_fn: decay must lie in \[0, 1\]"):
        swa_utils.get_ema_avg_fn(1.5)
    avg = swa_utils.AveragedModel(model)
    with pytest.raises(ValueError, match="model does not have the averaged model's parameters"):
        avg.update_parameters(nn.Linear(2, 3))
