"""Autograd API: grad modes, inference mode, tensor hooks, retain_grad, the non-leaf
``.grad`` warning, module hooks and ``autograd.grad`` (PyTorch is the oracle)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import nn


def f64(*shape, rng, requires_grad=True):
    return tg.tensor(rng.standard_normal(shape), requires_grad=requires_grad, dtype=np.float64)


# --- grad modes -------------------------------------------------------------------------------


def test_set_grad_enabled_as_function_and_context(rng):
    x = f64(3, rng=rng)
    assert tg.is_grad_enabled()
    with tg.set_grad_enabled(False):
        assert not tg.is_grad_enabled()
        assert not (x * 2).requires_grad
        with tg.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    tg.set_grad_enabled(False)
    try:
        assert not tg.is_grad_enabled()
        assert not (x * 2).requires_grad
    finally:
        tg.set_grad_enabled(True)
    assert tg.is_grad_enabled()

    @tg.set_grad_enabled(False)
    def f(t):
        return t * 2

    assert tg.is_grad_enabled()  # decorating does not switch the mode
    assert not f(x).requires_grad
    with pytest.raises(TypeError, match="set_grad_enabled: mode must be a bool"):
        tg.set_grad_enabled("no")


def test_inference_mode(rng):
    x = f64(3, rng=rng)
    with tg.inference_mode():
        assert tg.is_inference_mode_enabled() and not tg.is_grad_enabled()
        y = x * 2
        with tg.inference_mode(False):
            assert (x * 2).requires_grad
    assert not tg.is_inference_mode_enabled() and tg.is_grad_enabled()
    assert y.is_inference() and not y.requires_grad and not (x * 2).is_inference()
    with pytest.raises(RuntimeError, match="inference tensor"):
        y.requires_grad_()
    # used later, an inference tensor is a constant
    (x * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.numpy())

    @tg.inference_mode()
    def f(t):
        return t + 1

    assert f(x).is_inference()


# --- tensor hooks, retain_grad, the non-leaf warning --------------------------------------------


def test_hooks_and_retain_grad_match_torch(rng):
    import torch

    a = rng.standard_normal(4)
    x = tg.tensor(a, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    out = []
    for t in (x, tx):
        y = t * 2
        y.retain_grad()
        y.register_hook(lambda g: g * 3)
        h = t.register_hook(lambda g: g + 1)
        (y * y).sum().backward()
        out.append((np.array(y.grad.numpy()), np.array(t.grad.numpy())))
        h.remove()
        t.grad = None
        (t * 1).sum().backward()  # removed: no +1
        out.append(np.array(t.grad.numpy()))
    np.testing.assert_allclose(out[0][0], out[2][0])
    np.testing.assert_allclose(out[0][1], out[2][1])
    np.testing.assert_allclose(out[1], out[3])


def test_hook_errors_and_observation(rng):
    x = f64(3, rng=rng)
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.tensor([1.0]).register_hook(lambda g: None)
    with pytest.raises(TypeError, match="callable"):
        x.register_hook(3)
    seen = []
    y = x.exp()
    y.register_hook(lambda g: seen.append(g.shape))
    y.register_hook(lambda g: np.ones(5))
    with pytest.raises(RuntimeError, match="hook: the gradient a hook returned has shape"):
        y.sum().backward()
    assert seen == [(3,)]


def test_nonleaf_grad_warns():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.sum().backward(retain_graph=True)
    with pytest.warns(UserWarning, match="not a leaf Tensor"):
        assert y.grad is None
    y.retain_grad()
    y.sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(y.grad.numpy(), [1.0, 1.0])
        assert x.grad is not None and y.retains_grad and not x.retains_grad


# --- module hooks -----------------------------------------------------------------------------


def test_module_hooks_match_torch(rng):
    import torch

    w = rng.standard_normal((2, 3))
    b = rng.standard_normal(2)
    xa = rng.standard_normal((4, 3))
    results = []
    for lib, nnl in (("tg", nn), ("torch", torch.nn)):
        m = nnl.Linear(3, 2).double()
        m.weight.data[...] = torch.tensor(w) if lib == "torch" else w
        m.bias.data[...] = torch.tensor(b) if lib == "torch" else b
        log = []
        h1 = m.register_forward_pre_hook(lambda mod, a: (a[0] * 2,))
        h2 = m.register_forward_hook(lambda mod, a, o: o + 1)
        h3 = m.register_full_backward_hook(
            lambda mod, gi, go, log=log: (
                log.append((np.array(gi[0].numpy()), np.array(go[0].numpy()))),
                (gi[0] * 5,),
            )[1]
        )
        x = (
            tg.tensor(xa, requires_grad=True)
            if lib == "tg"
            else torch.tensor(xa, requires_grad=True)
        )
        y = m(x)
        (y * y).sum().backward()
        results.append((np.array(y.detach().numpy()), np.array(x.grad.numpy()), log))
        for h in (h1, h2, h3):
            h.remove()
        y2 = m(x)
        results[-1] += (np.array(y2.detach().numpy()),)
    (y_a, g_a, log_a, y2_a), (y_b, g_b, log_b, y2_b) = results
    np.testing.assert_allclose(y_a, y_b, rtol=1e-12)
    np.testing.assert_allclose(g_a, g_b, rtol=1e-12)
    np.testing.assert_allclose(y2_a, y2_b, rtol=1e-12)
    assert len(log_a) == len(log_b) == 1
    for u, v in zip(log_a[0], log_b[0]):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_full_backward_hook_without_input_grad():
    m = nn.Linear(3, 2)
    log = []
    m.register_full_backward_hook(lambda mod, gi, go: log.append((gi, go[0].shape)))
    m(tg.ones(4, 3)).sum().backward()
    assert log == [((None,), (4, 2))]
    with pytest.raises(TypeError, match="callable"):
        m.register_forward_hook(None)


# --- autograd.grad ----------------------------------------------------------------------------


def test_grad_matches_torch_and_leaves_grad_alone(rng):
    import torch

    a, c = rng.standard_normal((3, 4)), rng.standard_normal(4)
    x, w = tg.tensor(a, requires_grad=True), tg.tensor(c, requires_grad=True)
    tx, tw = torch.tensor(a, requires_grad=True), torch.tensor(c, requires_grad=True)
    h, th = (x * w).tanh(), (tx * tw).tanh()
    go = rng.standard_normal((3, 4))
    ours = tg.autograd.grad([(h * h).sum(), h], [x, w, h], grad_outputs=[None, go])
    theirs = torch.autograd.grad([(th * th).sum(), th], [tx, tw, th], [None, torch.tensor(go)])
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.numpy(), t.numpy(), rtol=1e-12)
    assert x.grad is None and w.grad is None
    assert not ours[0].requires_grad


def test_grad_errors_and_unused(rng):
    x, y = f64(3, rng=rng), f64(2, rng=rng)
    out = (x * 2).sum()
    with pytest.raises(RuntimeError, match="element 1 of inputs .* not used"):
        tg.autograd.grad(out, [x, y], retain_graph=True)
    gx, gy = tg.autograd.grad(out, [x, y], allow_unused=True, retain_graph=True)
    assert gy is None
    np.testing.assert_allclose(gx.numpy(), 2.0)
    _, gy = tg.autograd.grad(out, [x, y], materialize_grads=True)
    np.testing.assert_array_equal(gy.numpy(), 0.0)
    with pytest.raises(RuntimeError, match="element 0 of outputs does not require grad"):
        tg.autograd.grad(tg.tensor(1.0), [x])
    with pytest.raises(RuntimeError, match="element 0 of inputs does not require grad"):
        tg.autograd.grad((x * 2).sum(), [tg.tensor([1.0])])
    with pytest.raises(RuntimeError, match="one-element outputs"):
        tg.autograd.grad(x * 2, [x])
    with pytest.raises(ValueError, match=r"grad_outputs\[0\] has shape"):
        tg.autograd.grad(x * 2, [x], grad_outputs=[np.ones(4)])
    z = (x * 2).sum()
    tg.autograd.grad(z, [x])
    with pytest.raises(RuntimeError, match="second time"):
        tg.autograd.grad(z, [x])


def test_backward_inputs_accumulates_only_there(rng):
    x, w = f64(3, rng=rng), f64(3, rng=rng)
    (x * w).sum().backward(inputs=[w])
    assert x.grad is None
    np.testing.assert_allclose(w.grad.numpy(), x.numpy())
