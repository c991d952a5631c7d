"""LR schedulers against torch.optim.lr_scheduler, state round trips, bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import lr_scheduler as S
from tapegrad import optim


def _opt(kind="sgd", lr=0.1):
    w = tg.Tensor(np.zeros(2), requires_grad=True)
    if kind == "adam":
        return optim.Adam([w], lr=lr)
    return optim.SGD([w], lr=lr, momentum=0.9)


def _torch_opt(torch, kind="sgd", lr=0.1):
    w = torch.zeros(2, requires_grad=True)
    if kind == "adam":
        return torch.optim.Adam([w], lr=lr)
    return torch.optim.SGD([w], lr=lr, momentum=0.9)


def _trace(opt, sched, n, torch_side=False):
    lrs, moms = [], []
    for _ in range(n):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if "betas" in g else g["momentum"])
        if torch_side:
            opt.step()
        sched.step()
    return np.array(lrs), np.array(moms)


def _decay(t):
    return 1.0 / (1 + 0.5 * t) if t % 4 else 0.3


BUILDERS = {
    "step": (lambda o: S.StepLR(o, 3, gamma=0.5), "StepLR", {"step_size": 3, "gamma": 0.5}),
    "cosine": (
        lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
        "CosineAnnealingLR",
        {"T_max": 10, "eta_min": 0.01},
    ),
    "onecycle": (
        lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=20),
        "OneCycleLR",
        {"max_lr": 0.5, "total_steps": 20},
    ),
    "onecycle_linear": (
        lambda o: S.OneCycleLR(
            o, max_lr=0.3, epochs=3, steps_per_epoch=5, pct_start=0.25, anneal_strategy="linear"
        ),
        "OneCycleLR",
        {
            "max_lr": 0.3,
            "epochs": 3,
            "steps_per_epoch": 5,
            "pct_start": 0.25,
            "anneal_strategy": "linear",
        },
    ),
    "multistep": (
        lambda o: S.MultiStepLR(o, [2, 5, 5, 9], gamma=0.5),
        "MultiStepLR",
        {"milestones": [2, 5, 5, 9], "gamma": 0.5},
    ),
    "exponential": (lambda o: S.ExponentialLR(o, 0.8), "ExponentialLR", {"gamma": 0.8}),
    "lambda": (lambda o: S.LambdaLR(o, _decay), "LambdaLR", {"lr_lambda": _decay}),
    "warmup": (
        lambda o: S.LinearWarmup(o, warmup_steps=4, start_factor=0.25),
        "LinearLR",
        {"start_factor": 0.25, "total_iters": 4},
    ),
}


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_matches_torch(name, kind):
    torch = pytest.importorskip("torch")
    build, tname, kwargs = BUILDERS[name]
    n = 15 if "onecycle_linear" == name else 20 if name == "onecycle" else 14
    opt = _opt(kind)
    lrs, moms = _trace(opt, build(opt), n)
    topt = _torch_opt(torch, kind)
    tsched = getattr(torch.optim.lr_scheduler, tname)(topt, **kwargs)
    tlrs, tmoms = _trace(topt, tsched, n, torch_side=True)
    np.testing.assert_allclose(lrs, tlrs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(moms, tmoms, rtol=1e-9)


def test_warmup_then_cosine():
    opt = _opt(lr=1.0)
    cos = S.CosineAnnealingLR(opt, T_max=6)
    sched = S.LinearWarmup(opt, warmup_steps=2, start_factor=0.5, after=cos)
    lrs, _ = _trace(opt, sched, 9)
    want = [0.5, 0.75, 1.0] + [(1 + math.cos(math.pi * t / 6)) / 2 for t in range(1, 7)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_state_dict_resumes(name):
    build = BUILDERS[name][0]
    opt = _opt()
    sched = build(opt)
    for _ in range(5):
        sched.step()
    state = sched.state_dict()
    opt2 = _opt()
    sched2 = build(opt2)
    sched2.load_state_dict(state)
    assert opt2.lr == opt.lr
    for _ in range(5):
        sched.step()
        sched2.step()
        assert opt2.lr == opt.lr


def test_bad_arguments():
    opt = _opt()
    with pytest.raises(ValueError, match="StepLR: step_size must be >= 1, got 0"):
        S.StepLR(opt, 0)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max must be >= 1"):
        S.CosineAnnealingLR(opt, 0)
    with pytest.raises(ValueError, match="OneCycleLR: give total_steps"):
        S.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match=r"OneCycleLR: pct_start must lie in \(0, 1\)"):
        S.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(TypeError, match="StepLR: optimizer must be a tapegrad Optimizer"):
        S.StepLR(object(), 2)
    sched = S.OneCycleLR(_opt(), max_lr=0.1, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="OneCycleLR: stepped 4 times, total_steps is 3"):
        sched.step()


def test_reachable_as_optim_lr_scheduler():
    import tapegrad.optim.lr_scheduler as OS
    from tapegrad.optim.lr_scheduler import ReduceLROnPlateau

    assert OS.StepLR is S.StepLR and ReduceLROnPlateau is S.ReduceLROnPlateau
    assert tg.optim.lr_scheduler is OS


def _two_groups(lib, torch=None):
    if torch is None:
        a = tg.Tensor(np.zeros(2), requires_grad=True)
        b = tg.Tensor(np.zeros(3), requires_grad=True)
    else:
        a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    return lib.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["step", "cosine", "multistep", "exponential", "warmup"])
def test_every_group_follows_its_own_base_lr(name):
    torch = pytest.importorskip("torch")
    build, tname, kwargs = BUILDERS[name]
    opt, topt = _two_groups(optim), _two_groups(torch.optim, torch)
    sched = build(opt)
    tsched = getattr(torch.optim.lr_scheduler, tname)(topt, **kwargs)
    for _ in range(12):
        topt.step()
        sched.step()
        tsched.step()
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_lambda_lr_one_function_per_group():
    opt = _two_groups(optim)
    sched = S.LambdaLR(opt, [lambda t: 1.0, lambda t: 0.5**t])
    for _ in range(3):
        sched.step()
    assert sched.get_last_lr() == [0.1, 0.5 * 0.5**3]
    with pytest.raises(ValueError, match="LambdaLR: expected 2 lr_lambda functions, got 3"):
        S.LambdaLR(_two_groups(optim), [_decay] * 3)
    with pytest.raises(TypeError, match="LambdaLR: lr_lambda must be callable"):
        S.LambdaLR(_opt(), 0.5)


PLATEAU_METRICS = [5, 4, 4, 4.2, 4, 4, 3.9996, 3.99, 3.99, 3.99, 3.99, 3.99, 3.99, 2, 2, 2, 2, 2]


@pytest.mark.torch
@pytest.mark.parametrize(
    "kwargs",
    [
        {"patience": 1},
        {"patience": 2, "factor": 0.5, "cooldown": 2, "min_lr": [0.02, 0.2]},
        {"mode": "max", "patience": 0, "threshold": 0.1, "threshold_mode": "abs"},
    ],
)
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    opt, topt = _two_groups(optim), _two_groups(torch.optim, torch)
    sched = S.ReduceLROnPlateau(opt, **kwargs)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    for i, m in enumerate(PLATEAU_METRICS):
        topt.step()
        sched.step(tg.tensor(m) if i % 2 else m)
        tsched.step(m)
        want = [g["lr"] for g in topt.param_groups]
        assert sched.get_last_lr() == pytest.approx(want, rel=1e-12), f"step {i}"
    state = sched.state_dict()
    opt2 = _two_groups(optim)
    opt2.load_state_dict(opt.state_dict())
    sched2 = S.ReduceLROnPlateau(opt2, **kwargs)
    sched2.load_state_dict(state)
    for m in [2, 2, 2, 1]:
        sched.step(m)
        sched2.step(m)
        assert sched2.get_last_lr() == sched.get_last_lr()


def test_new_schedulers_bad_arguments():
    with pytest.raises(ValueError, match="MultiStepLR: milestones must be increasing"):
        S.MultiStepLR(_opt(), [5, 2])
    with pytest.raises(ValueError, match="MultiStepLR: milestones must be non-negative integers"):
        S.MultiStepLR(_opt(), [1.5])
    with pytest.raises(ValueError, match="ExponentialLR: gamma must be positive"):
        S.ExponentialLR(_opt(), 0)
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau: factor must lie in \[0, 1\)"):
        S.ReduceLROnPlateau(_opt(), factor=1.0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: mode must be 'min' or 'max'"):
        S.ReduceLROnPlateau(_opt(), mode="up")
    with pytest.raises(ValueError, match="ReduceLROnPlateau: expected 1 min_lr values, got 2"):
        S.ReduceLROnPlateau(_opt(), min_lr=[0, 0])
    with pytest.raises(TypeError, match="ReduceLROnPlateau.step: give the monitored metric"):
        S.ReduceLROnPlateau(_opt()).step()
    with pytest.raises(ValueError, match="StepLR: last_epoch=3 needs 'initial_lr'"):
        S.StepLR(_opt(), 2, last_epoch=3)
