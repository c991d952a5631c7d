"""Fused ReLU ops (conv2d + bias + ReLU, batch norm + ReLU, add + ReLU): every kernel variant
against ``reference`` bit for bit, each op against its unfused composition and PyTorch,
gradcheck and gradgradcheck in float64, bad input, and Sequential / the zoo running them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
import tapegrad.nn.module as M
from tapegrad import nn, zoo
from tapegrad.gradcheck import gradcheck, gradgradcheck
from tapegrad.kernels.fused import reference as R
from tapegrad.ops import fused
from tapegrad.profiler import profile
from tests._sizes import examples

COMPILED = [v for v in K.variants("bias_relu") if v != "reference"]
SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0]


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view({1: np.uint8, 4: np.uint32, 8: np.uint64}[a.itemsize])


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(_bits(a), _bits(b))  # -0.0 and NaN too


def _data(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, size=min(flat.size, 5))] = np.resize(
        np.array(SPECIAL, dtype), min(flat.size, 5)
    )
    return x


@pytest.mark.parametrize("variant", COMPILED)
@settings(max_examples=examples(12), deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=2, max_size=4).map(tuple),
    dtype=st.sampled_from([np.float32, np.float64]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernels_match_reference_bit_for_bit(variant, shape, dtype, bias, seed):
    rng = np.random.default_rng(seed)
    mod = K.get("bias_relu", variant)
    y = _data(rng, shape, dtype)
    b = rng.standard_normal(shape[1]).astype(dtype) if bias else None
    y1, y2 = y.copy(), y.copy()
    _same(mod.bias_relu_forward(y1, b), R.bias_relu_forward(y2, b))
    _same(y1, y2)
    g = _data(rng, shape, dtype)
    m = R.bias_relu_forward(y.copy(), b)
    for channel_sum in (False, True):
        got, want = mod.masked_backward(g, m, channel_sum), R.masked_backward(g, m, channel_sum)
        _same(got[0], want[0])
        if channel_sum:
            _same(got[1], want[1])
        else:
            assert got[1] is None and want[1] is None
    a, c = _data(rng, shape, dtype), _data(rng, shape, dtype)
    for p, q in zip(mod.add_relu_forward(a, c), R.add_relu_forward(a, c)):
        _same(p, q)


@pytest.mark.parametrize("variant", COMPILED)
def test_threaded_path_matches_reference(variant):
    """Past the kernels' serial threshold (the rows split over two threads; a ragged last
    block)."""
    from tapegrad.kernels.fused import SERIAL_BELOW

    rng = np.random.default_rng(3)
    mod = K.get("bias_relu", variant)
    y = _data(rng, (3, 8, 299, 293), np.float32)
    assert y.size > SERIAL_BELOW
    b = rng.standard_normal(8).astype(np.float32)
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(2)
        y1, y2 = y.copy(), y.copy()
        _same(mod.bias_relu_forward(y1, b), R.bias_relu_forward(y2, b))
        _same(y1, y2)
        m = R.bias_relu_forward(y.copy(), b)
        got, want = mod.masked_backward(y, m, True), R.masked_backward(y, m, True)
        _same(got[0], want[0])
        _same(got[1], want[1])
        for p, q in zip(mod.add_relu_forward(y, y1), R.add_relu_forward(y, y1)):
            _same(p, q)
    finally:
        tg.set_num_threads(before)


def _t(rng, *shape, dtype=np.float64):
    return tg.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)


def _grads(out, g, leaves):
    for t in leaves:
        t.grad = None
    out.backward(g)
    return [t.grad.data.copy() for t in leaves]


CONV_CASES = [
    # x shape, w shape, bias, stride, padding, groups
    ((2, 3, 7, 6), (4, 3, 3, 3), True, 1, 1, 1),
    ((1, 4, 6, 6), (4, 1, 3, 3), True, 2, 1, 4),  # depthwise
    ((2, 2, 5, 5), (3, 2, 1, 1), False, 1, 0, 1),
]


@pytest.mark.parametrize("variant", K.variants("bias_relu"))
@pytest.mark.parametrize("shape", [(5, 3, 7, 6), (1, 4, 9), (6, 5)])
def test_fused_bias_gradient_has_the_unfused_sums_bits(variant, shape):
    # the fused backward's bias gradient is the unfused convolution's channel sum of the
    # masked gradient, bit for bit (same order of additions)
    from tapegrad.ops.conv import channel_sum

    rng = np.random.default_rng(7)
    g = (rng.standard_normal(shape) * 1e3).astype(np.float32)
    mask = (rng.random(shape) < 0.6).astype(np.uint8)
    gx, gb = K.get("bias_relu", variant).masked_backward(g, mask, True)
    want = channel_sum(np.where(mask.view(bool), g, np.float32(0)))
    assert gb.dtype == np.float32 and gb.shape == (shape[1],)
    np.testing.assert_array_equal(gb.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("variant", K.variants("bias_relu"))
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_relu_is_relu_of_conv2d(variant, case):
    xs, ws, has_b, stride, pad, groups = case
    rng = np.random.default_rng(0)
    x, w = _t(rng, *xs, dtype=np.float32), _t(rng, *ws, dtype=np.float32)
    b = _t(rng, ws[0], dtype=np.float32) if has_b else None
    leaves = [t for t in (x, w, b) if t is not None]
    with K.use(bias_relu=variant):
        y = F.conv2d_relu(x, w, b, stride, pad, 1, groups)
    want = F.relu(F.conv2d(x, w, b, stride, pad, 1, groups))
    assert y._node.fn in (fused.Conv2dReLU, fused.DepthwiseConv2dReLU)
    np.testing.assert_allclose(y.data, want.data, rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(y.shape).astype(np.float32)
    for p, q in zip(_grads(y, g, leaves), _grads(want, g, leaves)):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_relu_gradcheck_and_gradgradcheck(case):
    xs, ws, has_b, stride, pad, groups = case
    rng = np.random.default_rng(1)
    x, w = _t(rng, *xs), _t(rng, *ws)
    args = [x, w] + ([_t(rng, ws[0])] if has_b else [])

    def f(x, w, *b):
        return F.conv2d_relu(x, w, b[0] if b else None, stride, pad, 1, groups)

    assert gradcheck(f, args)
    assert gradgradcheck(f, args)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_is_relu_of_batch_norm(training):
    rng = np.random.default_rng(2)
    x, w, b = _t(rng, 4, 3, 5, 5, dtype=np.float32), _t(rng, 3, dtype=np.float32), _t(rng, 3)
    b = tg.tensor(b.data.astype(np.float32), requires_grad=True)
    stats = [np.zeros(3, np.float32), np.ones(3, np.float32)]
    stats2 = [s.copy() for s in stats]
    y = F.batch_norm_relu(x, *stats, w, b, training=training)
    want = F.relu(F.batch_norm(x, *stats2, w, b, training=training))
    assert y._node.fn is fused.BatchNormReLU
    np.testing.assert_array_equal(y.data, want.data)
    for s, s2 in zip(stats, stats2):
        np.testing.assert_array_equal(s, s2)  # running statistics updated alike
    g = rng.standard_normal(y.shape).astype(np.float32)
    for p, q in zip(_grads(y, g, [x, w, b]), _grads(want, g, [x, w, b])):
        np.testing.assert_array_equal(p, q)


def test_batch_norm_relu_gradcheck_and_gradgradcheck():
    rng = np.random.default_rng(4)
    args = [_t(rng, 3, 2, 3, 2), _t(rng, 2), _t(rng, 2)]

    def f(x, w, b):
        return F.batch_norm_relu(x, None, None, w, b, training=True)

    assert gradcheck(f, args)
    assert gradgradcheck(f, args)


@pytest.mark.parametrize("other_shape", [(2, 3, 4), (3, 4), (1, 3, 1)])
def test_add_relu_is_relu_of_sum(other_shape):
    rng = np.random.default_rng(5)
    a, c = _t(rng, 2, 3, 4), _t(rng, *other_shape)
    y = F.add_relu(a, c)
    want = F.relu(a + c)
    _same(y.data, want.data)
    g = rng.standard_normal(y.shape)
    for p, q in zip(_grads(y, g, [a, c]), _grads(want, g, [a, c])):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-12)
    assert gradcheck(F.add_relu, [a, c])
    assert gradgradcheck(lambda a, c: F.add_relu(a, c) * a, [a, c])


def test_bad_input_names_the_function():
    x = tg.tensor(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_relu: .*input channels.*\(1, 3, 5, 5\)"):
        F.conv2d_relu(x, tg.tensor(np.zeros((4, 2, 3, 3), np.float32)))
    with pytest.raises(TypeError, match="conv2d_relu: .*dtype"):
        F.conv2d_relu(x, tg.tensor(np.zeros((4, 3, 3, 3), np.float64)))
    with pytest.raises(ValueError, match=r"add_relu: input \(1, 3, 5, 5\) and other \(2,\)"):
        F.add_relu(x, tg.tensor(np.zeros(2, np.float32)))
    with pytest.raises(TypeError, match="add_relu: .*float32 or float64"):
        F.add_relu(x, tg.tensor(np.zeros((1, 3, 5, 5), np.int64)))
    with pytest.raises(ValueError, match="batch_norm_relu: "):
        F.batch_norm_relu(x, None, None, tg.tensor(np.ones(2, np.float32)), training=True)


@pytest.mark.torch
def test_fused_ops_match_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(6)
    x, w, b = _t(rng, 2, 3, 6, 6), _t(rng, 4, 3, 3, 3), _t(rng, 4)
    xt, wt, bt = (torch.tensor(t.data, requires_grad=True) for t in (x, w, b))
    y = F.conv2d_relu(x, w, b, 1, 1)
    yt = tf.relu(tf.conv2d(xt, wt, bt, 1, 1))
    g = rng.standard_normal(y.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    for ours, theirs in [(y, yt), (x, xt), (w, wt), (b, bt)]:
        got = ours.data if ours is y else ours.grad.data
        want = theirs.detach().numpy() if ours is y else theirs.grad.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)
    gam, bet = _t(rng, 3), _t(rng, 3)
    y = F.batch_norm_relu(x, None, None, gam, bet, training=True)
    gt, bt2 = (torch.tensor(t.data, requires_grad=True) for t in (gam, bet))
    yt = tf.relu(tf.batch_norm(xt, None, None, gt, bt2, training=True))
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-9, atol=1e-10)
    a, c = _t(rng, 2, 5), _t(rng, 2, 5)
    y = F.add_relu(a, c)
    np.testing.assert_allclose(y.data, torch.relu(torch.tensor(a.data + c.data)).numpy())


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3), nn.ReLU()
        )

    def forward(self, x):
        return self.body(x)


def test_sequential_runs_fused_ops_with_the_same_results(monkeypatch):
    tg.manual_seed(0)
    net = _Block()
    x = tg.tensor(np.random.default_rng(7).standard_normal((2, 2, 5, 5)).astype(np.float32))
    y = net(x)
    assert y._node.fn is fused.BatchNormReLU
    assert y._node.inputs[0]._node.fn is fused.Conv2dReLU
    y.sum().backward()
    got = {k: p.grad.data.copy() for k, p in net.named_parameters()}
    net.zero_grad()
    monkeypatch.setattr(M, "_fuses_with_relu", lambda a, b: False)
    want_y = net(x)
    assert want_y._node.fn.__name__ == "ReLU"
    want_y.sum().backward()
    np.testing.assert_allclose(y.data, want_y.data, rtol=1e-6, atol=1e-6)
    for k, p in net.named_parameters():
        np.testing.assert_allclose(got[k], p.grad.data, rtol=1e-5, atol=1e-6, err_msg=k)


def test_sequential_keeps_layers_with_hooks_apart():
    tg.manual_seed(0)
    net = _Block()
    seen = []
    handle = net.body[1].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    x = tg.tensor(np.ones((1, 2, 4, 4), np.float32))
    y = net(x)
    assert seen == [(1, 3, 4, 4)]  # the ReLU ran as its own layer, its hook saw it
    assert y._node.fn is fused.BatchNormReLU  # the other pair still fused
    handle.remove()
    assert net(x)._node.inputs[0]._node.fn is fused.Conv2dReLU


def test_resnet8_blocks_fuse_batch_norm_and_relu():
    tg.manual_seed(0)
    model = zoo.get_model("resnet8")
    x = tg.tensor(np.random.default_rng(8).standard_normal((2, 1, 32, 32)).astype(np.float32))
    with profile() as prof:
        model(x)
    names = [r.name for r in prof.ops]
    assert names.count("BatchNormReLU") == 7 and "ReLU" not in names
