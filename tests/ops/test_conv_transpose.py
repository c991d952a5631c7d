"""conv_transpose2d / conv_transpose1d ops: worked example, gradcheck, PyTorch oracle, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F

VARIANTS = K.variants("conv_transpose2d")


def _rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _t(a, grad=True):
    return tg.Tensor(np.asarray(a), requires_grad=grad)


@pytest.mark.parametrize("variant", VARIANTS)
def test_seed_transpose_example(variant):
    """[[-1, 2], [3, 1]] dragged over [[1, -1], [0, 1]] -> [[-1, 3, -2], [3, -3, 1], [0, 3, 1]]."""
    x = tg.Tensor(np.array([[[[-1.0, 2], [3, 1]]]]))
    w = tg.Tensor(np.array([[[[1.0, -1], [0, 1]]]]))
    with K.use(conv_transpose2d=variant):
        y = F.conv_transpose2d(x, w, stride=1, padding=0)
    np.testing.assert_array_equal(y.data[0, 0], [[-1, 3, -2], [3, -3, 1], [0, 3, 1]])


GRAD_CASES = [
    # x shape, w shape, stride, padding, output_padding, groups, dilation
    ((2, 2, 3, 4), (2, 3, 2, 3), 2, 1, 1, 1, 1),
    ((1, 4, 3, 3), (4, 1, 3, 2), (1, 2), (0, 1), (0, 1), 2, (2, 1)),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", GRAD_CASES)
def test_conv_transpose2d_gradcheck(variant, case):
    xs, ws, *args = case
    groups = args[3]
    x, w, b = _t(_rand(*xs)), _t(_rand(*ws, seed=1)), _t(_rand(ws[1] * groups, seed=2))
    with K.use(conv_transpose2d=variant):
        assert tg.gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, *args), [x, w, b])


def test_conv_transpose1d_gradcheck():
    x, w, b = _t(_rand(2, 2, 5)), _t(_rand(2, 3, 3, seed=1)), _t(_rand(3, seed=2))
    assert tg.gradcheck(lambda x, w, b: F.conv_transpose1d(x, w, b, 2, 1, 1), [x, w, b])


TORCH_CASES = [
    ((2, 3, 5, 4), (3, 2, 3, 3), 1, 0, 0, 1, 1),
    ((2, 4, 6, 6), (4, 2, 4, 4), 2, 1, 0, 1, 1),
    ((1, 4, 5, 3), (4, 3, 3, 2), (2, 3), (1, 0), (1, 2), 2, 1),
    ((2, 3, 4, 4), (3, 2, 3, 3), 1, 2, 1, 3, 2),  # output_padding < dilation
    ((2, 2, 3, 5), (2, 1, 2, 2), 3, 0, 2, 1, (1, 2)),
]


@pytest.mark.torch
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", TORCH_CASES)
def test_conv_transpose2d_matches_torch(variant, case):
    torch = pytest.importorskip("torch")
    xs, ws, *args = case
    groups = args[3]
    x, w, b = _rand(*xs), _rand(*ws, seed=1), _rand(ws[1] * groups, seed=2)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, *args)
    gy = _rand(*ty.shape, seed=3)
    ty.backward(torch.tensor(gy))
    gx, gw, gb = _t(x), _t(w), _t(b)
    with K.use(conv_transpose2d=variant):
        y = F.conv_transpose2d(gx, gw, gb, *args)
        y.backward(gy)
    assert y.shape == tuple(ty.shape)
    for ours, theirs in [(y, ty), (gx.grad, tx.grad), (gw.grad, tw.grad), (gb.grad, tb.grad)]:
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.torch
def test_conv_transpose1d_matches_torch():
    torch = pytest.importorskip("torch")
    x, w, b = _rand(2, 4, 7), _rand(4, 3, 4, seed=1), _rand(6, seed=2)
    args = (3, 1, 2, 2, 1)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv_transpose1d(tx, tw, tb, *args)
    gy = _rand(*ty.shape, seed=3)
    ty.backward(torch.tensor(gy))
    gx, gw, gb = _t(x), _t(w), _t(b)
    y = F.conv_transpose1d(gx, gw, gb, *args)
    y.backward(gy)
    for ours, theirs in [(y, ty), (gx.grad, tx.grad), (gw.grad, tw.grad), (gb.grad, tb.grad)]:
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.torch
def test_conv_transpose2d_float32_matches_torch():
    torch = pytest.importorskip("torch")
    x, w = _rand(2, 8, 6, 6, dtype=np.float32), _rand(8, 4, 4, 4, seed=1, dtype=np.float32)
    ty = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), None, 2, 1)
    y = F.conv_transpose2d(tg.Tensor(x), tg.Tensor(w), None, 2, 1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, ty.numpy(), rtol=1e-4, atol=1e-4)


def _x(*s, dtype=np.float64):
    return tg.Tensor(np.zeros(s, dtype=dtype))


@pytest.mark.parametrize(
    "args, kwargs, exc, words",
    [
        ((_x(1, 3, 4, 4), _x(2, 2, 3, 3)), {}, ValueError, ["conv_transpose2d", "weight", "(3)"]),
        ((_x(3, 4, 4), _x(3, 2, 3, 3)), {}, ValueError, ["conv_transpose2d", "input", "4-D"]),
        ((_x(1, 3, 4, 4), _x(3, 2, 3, 3)), {"groups": 2}, ValueError, ["groups=2", "(3)"]),
        (
            (_x(1, 4, 4, 4), _x(4, 2, 3, 3)),
            {"stride": 2, "output_padding": 2},
            ValueError,
            ["output_padding", "smaller than stride"],
        ),
        ((_x(1, 4, 4, 4), _x(4, 2, 3, 3)), {"output_padding": 1}, ValueError, ["output_padding"]),
        ((_x(1, 4, 1, 1), _x(4, 2, 1, 1)), {"padding": 1}, ValueError, ["output size"]),
        ((_x(1, 4, 4, 4), _x(4, 2, 3, 3)), {"stride": 0}, ValueError, ["stride"]),
        ((_x(1, 4, 4, 4), _x(4, 2, 3, 3)), {"padding": -1}, ValueError, ["padding"]),
        ((_x(1, 4, 4, 4), _x(4, 2, 3, 3), _x(3)), {}, ValueError, ["bias", "(2,)"]),
        (
            (_x(1, 4, 4, 4, dtype=np.int32), _x(4, 2, 3, 3, dtype=np.int32)),
            {},
            TypeError,
            ["conv_transpose2d", "float32"],
        ),
    ],
)
def test_conv_transpose2d_bad_input(args, kwargs, exc, words):
    with pytest.raises(exc) as info:
        F.conv_transpose2d(*args, **kwargs)
    for w in words:
        assert w in str(info.value)


def test_conv_transpose1d_bad_input():
    with pytest.raises(ValueError, match="conv_transpose1d.*input.*3-D"):
        F.conv_transpose1d(_x(1, 3, 4, 4), _x(3, 2, 3))
    with pytest.raises(ValueError, match="conv_transpose1d.*output_padding"):
        F.conv_transpose1d(_x(1, 3, 4), _x(3, 2, 3), stride=2, output_padding=2)


# --- conv_transpose2d + ReLU fused ------------------------------------------------------

RELU_CASES = [
    # x shape, w shape, bias, stride, padding, output_padding
    ((2, 4, 3, 5), (4, 3, 3, 3), True, 2, 1, 1),  # the autoencoder's kind of layer
    ((1, 3, 4, 4), (3, 9, 4, 4), False, 2, 1, 0),  # phase-cython's forward (>= 8 outputs)
    ((2, 2, 3, 3), (2, 1, 2, 3), True, 1, 0, 0),
]


def _grads(out, g, leaves):
    for t in leaves:
        t.grad = None
    out.backward(g)
    return [t.grad.data.copy() for t in leaves]


@pytest.mark.parametrize("variant", ["reference", "phase-cython", "col2im-cython"])
@pytest.mark.parametrize("case", RELU_CASES)
def test_conv_transpose2d_relu_is_relu_of_conv_transpose2d(variant, case):
    from tapegrad.ops.conv_transpose import ConvTranspose2dReLU

    xs, ws, has_b, *args = case
    x = _t(_rand(*xs, dtype=np.float32))
    x.data.reshape(-1)[:3] = [np.nan, np.inf, -0.0]  # NaN passes, its gradient flows
    w = _t(_rand(*ws, seed=1, dtype=np.float32))
    b = _t(_rand(ws[1], seed=2, dtype=np.float32)) if has_b else None
    leaves = [t for t in (x, w, b) if t is not None]
    with K.use(conv_transpose2d=variant):
        y = F.conv_transpose2d_relu(x, w, b, *args)
        want = F.relu(F.conv_transpose2d(x, w, b, *args))
    assert y._node.fn is ConvTranspose2dReLU
    assert np.isnan(want.data).any() and (want.data == 0).any() and (want.data > 0).any()
    np.testing.assert_allclose(y.data, want.data, rtol=1e-5, atol=1e-6)
    g = _rand(*y.shape, seed=4, dtype=np.float32)
    with K.use(conv_transpose2d=variant):
        got, exp = _grads(y, g, leaves), _grads(want, g, leaves)
    for p, q in zip(got, exp):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5)


def test_conv_transpose2d_relu_gradcheck_and_gradgradcheck():
    from tapegrad.gradcheck import gradgradcheck

    x, w, b = _t(_rand(2, 2, 3, 4)), _t(_rand(2, 3, 3, 3, seed=1)), _t(_rand(3, seed=2))
    args = (2, 1, 1)
    assert tg.gradcheck(lambda x, w, b: F.conv_transpose2d_relu(x, w, b, *args), [x, w, b])
    assert gradgradcheck(lambda x, w, b: F.conv_transpose2d_relu(x, w, b, *args), [x, w, b])


@pytest.mark.torch
def test_conv_transpose2d_relu_matches_torch():
    torch = pytest.importorskip("torch")
    x, w, b = _rand(2, 4, 5, 3), _rand(4, 3, 3, 3, seed=1), _rand(3, seed=2)
    args = (2, 1, 1)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.relu(torch.nn.functional.conv_transpose2d(tx, tw, tb, *args))
    gy = _rand(*ty.shape, seed=3)
    ty.backward(torch.tensor(gy))
    gx, gw, gb = _t(x), _t(w), _t(b)
    y = F.conv_transpose2d_relu(gx, gw, gb, *args)
    y.backward(gy)
    for ours, theirs in [(y, ty), (gx.grad, tx.grad), (gw.grad, tw.grad), (gb.grad, tb.grad)]:
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-9, atol=1e-9)


def test_conv_autoencoder_decoder_fuses_conv_transpose_and_relu(monkeypatch):
    import tapegrad.nn.module as M
    from tapegrad import zoo
    from tapegrad.profiler import profile

    tg.manual_seed(0)
    model = zoo.get_model("conv_autoencoder")
    x = tg.tensor(_rand(2, 1, 28, 28, seed=5, dtype=np.float32))
    with profile() as prof:
        y = model(x)
    names = [r.name for r in prof.ops]
    assert "ConvTranspose2dReLU" in names and "ReLU" not in names
    y.sum().backward()
    got = {k: p.grad.data.copy() for k, p in model.named_parameters()}
    model.zero_grad()
    monkeypatch.setattr(M, "_fuses_with_relu", lambda a, b: False)
    want = model(x)
    want.sum().backward()
    np.testing.assert_allclose(y.data, want.data, rtol=1e-6, atol=1e-6)
    for k, p in model.named_parameters():
        np.testing.assert_allclose(got[k], p.grad.data, rtol=1e-5, atol=1e-5, err_msg=k)
