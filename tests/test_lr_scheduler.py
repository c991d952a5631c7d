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
        if torch_side:
            g = opt.param_groups[0]
            lrs.append(g["lr"])
            moms.append(g["betas"][0] if "betas" in g else g["momentum"])
            opt.step()
        else:
            lrs.append(opt.lr)
            moms.append(opt.betas[0] if hasattr(opt, "betas") else opt.momentum)
        sched.step()
    return np.array(lrs), np.array(moms)


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
