"""Optimizers against torch.optim over several steps, state_dict round trips, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import optim

CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.3}),
    ("RMSprop", {"lr": 1e-2}),
    ("RMSprop", {"lr": 1e-2, "alpha": 0.9, "momentum": 0.5, "weight_decay": 0.01}),
]


def _grads(step, shapes):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs", CASES)
def test_matches_torch_over_steps(name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,)]
    init = [rng.standard_normal(s) for s in shapes]
    ours = [tg.Tensor(a.copy(), requires_grad=True) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = getattr(optim, name)(ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs, **kwargs)
    for step in range(6):
        grads = _grads(step, shapes)
        for p, tp, g in zip(ours, theirs, grads):
            p.grad = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(ours, theirs):
            np.testing.assert_allclose(
                p.numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {step}"
            )


@pytest.mark.parametrize("name,kwargs", CASES)
def test_state_dict_resumes_exactly(name, kwargs):
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((5,))
    a = tg.Tensor(w0.copy(), requires_grad=True)
    opt_a = getattr(optim, name)([a], **kwargs)
    for step in range(3):
        a.grad = _grads(step, [(5,)])[0]
        opt_a.step()
    b = tg.Tensor(a.numpy().copy(), requires_grad=True)
    opt_b = getattr(optim, name)([b], **kwargs)
    opt_b.load_state_dict(opt_a.state_dict())
    for step in range(3, 6):
        g = _grads(step, [(5,)])[0]
        a.grad, b.grad = g, g
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_float32_parameters_stay_float32_and_skip_missing_grads():
    w = tg.Tensor(np.ones(3, np.float32), requires_grad=True)
    v = tg.Tensor(np.ones(2, np.float32), requires_grad=True)
    opt = optim.Adam([w, v], lr=0.1)
    w.grad = np.ones(3, np.float32)
    opt.step()
    assert w.dtype == np.float32 and np.all(w.numpy() < 1)
    np.testing.assert_array_equal(v.numpy(), np.ones(2))  # no grad: untouched
    opt.zero_grad()
    assert w.grad is None


def test_bad_arguments():
    w = tg.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="SGD: lr, momentum and weight_decay must be non-negative"):
        optim.SGD([w], lr=-1)
    with pytest.raises(ValueError, match="SGD: nesterov needs momentum > 0"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"Adam: betas must lie in \[0, 1\)"):
        optim.Adam([w], betas=(1.0, 0.9))
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="state for 2 parameters, optimizer has 1"):
        opt.load_state_dict({"lr": 0.1, "step_count": 0, "state": [{}, {}]})
