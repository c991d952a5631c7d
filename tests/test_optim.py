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
    ("RMSprop", {"lr": 1e-2, "centered": True, "momentum": 0.3}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.05}),
    ("AdamW", {"lr": 1e-2, "amsgrad": True, "maximize": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.05, "initial_accumulator_value": 1}),
    ("Adagrad", {"lr": 0.05, "eps": 1e-6, "maximize": True}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1}),
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
    with pytest.raises(TypeError, match="SGD: params must be an iterable of Tensors or of dicts"):
        optim.SGD(w, lr=0.1)
    with pytest.raises(TypeError, match="SGD: parameter 1 of a group is a ndarray, not a Tensor"):
        optim.SGD([w, np.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="SGD: some parameters appear in more than one"):
        optim.SGD([{"params": [w]}, {"params": [w]}], lr=0.1)
    with pytest.raises(ValueError, match=r"unknown hyper-parameters \['betas'\]"):
        optim.SGD([{"params": [w], "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(ValueError, match="Adagrad: hyper-parameters must be non-negative"):
        optim.Adagrad([w], lr_decay=-1)
    with pytest.raises(ValueError, match=r"Adadelta: rho must lie in \[0, 1\]"):
        optim.Adadelta([w], rho=1.5)
    with pytest.raises(TypeError, match="Adam: can only optimise floating tensors"):
        optim.Adam([tg.Tensor(np.ones(2, np.int64))])
    v = tg.Tensor(np.ones(4), requires_grad=True)
    with pytest.raises(ValueError, match="SGD.add_param_group: the group has no 'params' entry"):
        opt.add_param_group({"lr": 0.1})
    opt.add_param_group({"params": v})
    with pytest.raises(ValueError, match="the state has 1 parameter groups, the optimizer 2"):
        opt.load_state_dict({"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]})
    bad = {
        "state": {0: {"momentum_buffer": np.zeros(5)}},
        "param_groups": [{"lr": 0.1, "params": [0]}, {"lr": 0.1, "params": [1]}],
    }
    with pytest.raises(ValueError, match=r"'momentum_buffer' of parameter 0 has shape \(5,\)"):
        opt.load_state_dict(bad)


def _groups(lib, params):
    """Three groups: decayed weights, undecayed biases at their own rate, then one added."""
    return [
        {"params": [params[0]]},
        {"params": [params[1]], "weight_decay": 0.0, "lr": 0.03},
    ]


GROUP_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}, {"momentum": 0.5}),
    ("Adam", {"lr": 1e-2, "weight_decay": 0.1}, {"betas": (0.5, 0.9)}),
    ("AdamW", {"lr": 1e-2}, {"amsgrad": True}),
    ("RMSprop", {"lr": 1e-2, "weight_decay": 0.1}, {"centered": True}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1}, {"lr_decay": 0.2}),
    ("Adadelta", {"weight_decay": 0.1}, {"rho": 0.5}),
]


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kwargs,extra", GROUP_CASES)
def test_param_groups_match_torch(name, kwargs, extra, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    shapes = [(4, 3), (3,), (2, 2)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ours = [tg.Tensor(a.copy(), requires_grad=True) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = getattr(optim, name)(_groups(optim, ours), **kwargs)
    topt = getattr(torch.optim, name)(_groups(torch.optim, theirs), **kwargs)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}
    for step in range(6):
        if step == 2:  # a group added mid-run, with its own hyper-parameters
            opt.add_param_group({"params": [ours[2]], **extra})
            topt.add_param_group({"params": [theirs[2]], **extra})
        grads = [g.astype(dtype) for g in _grads(step, shapes)]
        for p, tp, g in zip(ours, theirs, grads):
            p.grad = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(ours, theirs):
            assert p.dtype == np.dtype(dtype)
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), **tol, err_msg=f"{step}")
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert list(sd["state"]) == list(tsd["state"]) == [0, 1, 2]
    for k, st in tsd["state"].items():
        assert set(sd["state"][k]) == set(st), k
        for b, v in st.items():
            np.testing.assert_allclose(np.asarray(sd["state"][k][b]), v.numpy(), **tol)
    for g, tg_ in zip(sd["param_groups"], tsd["param_groups"]):
        assert g["params"] == tg_["params"]
        for k, v in g.items():
            assert (list(tg_[k]) if isinstance(tg_[k], tuple) else tg_[k]) == v, k


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs,extra", GROUP_CASES)
def test_loads_torch_state_dict_and_continues_like_torch(name, kwargs, extra):
    """A state dict written by torch.optim (tensors turned to arrays) resumes here exactly."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    shapes = [(4, 3), (3,)]
    init = [rng.standard_normal(s) for s in shapes]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    topt = getattr(torch.optim, name)(_groups(torch.optim, theirs), **kwargs)
    for step in range(3):
        for tp, g in zip(theirs, _grads(step, shapes)):
            tp.grad = torch.tensor(g)
        topt.step()
    tsd = topt.state_dict()
    as_numpy = {
        "state": {
            k: {b: (v.numpy().copy() if torch.is_tensor(v) else v) for b, v in st.items()}
            for k, st in tsd["state"].items()
        },
        "param_groups": tsd["param_groups"],
    }
    ours = [tg.Tensor(tp.detach().numpy().copy(), requires_grad=True) for tp in theirs]
    opt = getattr(optim, name)(_groups(optim, ours), lr=123.0)
    opt.load_state_dict(as_numpy)
    for step in range(3, 6):
        for p, tp, g in zip(ours, theirs, _grads(step, shapes)):
            p.grad, tp.grad = g, torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_no_decay_on_biases_in_three_lines():
    w = tg.Tensor(np.ones((2, 2)), requires_grad=True)
    b = tg.Tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], lr=0.1, weight_decay=1)
    w.grad, b.grad = np.zeros((2, 2)), np.zeros(2)
    opt.step()
    np.testing.assert_allclose(w.numpy(), 0.9)
    np.testing.assert_array_equal(b.numpy(), 1.0)
    opt.lr = 0.5  # the compatibility setter reaches every group
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]


def test_old_state_dict_layout_still_loads():
    """Checkpoints written before parameter groups: {"lr", "step_count", "state": [...]}."""
    rng = np.random.default_rng(5)
    a = tg.Tensor(rng.standard_normal(3), requires_grad=True)
    b = tg.Tensor(a.numpy().copy(), requires_grad=True)
    opt_a = optim.Adam([a], lr=0.05)
    for step in range(2):
        a.grad = _grads(step, [(3,)])[0]
        opt_a.step()
    st = opt_a.state[a]
    old = {
        "lr": 0.05,
        "step_count": 2,
        "state": [{"exp_avg": st["exp_avg"].copy(), "exp_avg_sq": st["exp_avg_sq"].copy()}],
    }
    b.data[...] = a.data
    opt_b = optim.Adam([b], lr=1.0)
    opt_b.load_state_dict(old)
    assert opt_b.lr == 0.05 and opt_b.state[b]["step"] == 2
    for step in range(2, 4):
        g = _grads(step, [(3,)])[0]
        a.grad, b.grad = g, g
        opt_a.step()
        opt_b.step()
    np.testing.assert_array_equal(a.numpy(), b.numpy())
