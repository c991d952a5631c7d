"""Higher-order gradients (``create_graph=True``): gradgradcheck per op family in
float64, every conv variant, the missing-rule error, and PyTorch on a gradient penalty and
a Hessian-vector product through a small CNN."""

from __future__ import annotations

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.kernels as K
import tapegrad.nn.functional as F
from tapegrad import nn
from tapegrad.autograd import DoubleBackwardError, Function, gradgradcheck


def _rng():
    return np.random.default_rng(7)


def T(rng, *shape, positive=False):
    a = rng.uniform(0.5, 2.0, shape) if positive else rng.standard_normal(shape)
    return tg.tensor(a, requires_grad=True, dtype=np.float64)


def _seeded_dropout(a):
    tg.manual_seed(3)
    return F.dropout(a * a, 0.5, training=True) * a


TGT = np.array([0, 2, 1, 2])
W3 = np.array([0.5, 2.0, 1.0])


def _setitem_scatter(a, v):
    b = a * 1
    b[0, 1:] = v * v
    idx = tg.tensor(np.array([[0, 2], [1, 0]]))
    return b * a + (a * a).scatter_add(1, idx, (a * b)[:, :2])


# (name, fn, input shapes, positive inputs)
FAMILIES = [
    (
        "elementwise",
        lambda a, b: (a + b) * (a - b) / (b * b + 1) - (-a).exp() * a.tanh(),
        [(3, 4), (4,)],
        False,
    ),
    ("elementwise-2", lambda a: a.sigmoid() * a.abs().log() + a.sqrt() * a, [(5,)], True),
    ("pow", lambda a, b: a**b + a**2.5, [(3,), (3,)], True),
    (
        "maximum-minimum",
        lambda a, b: tg.maximum(a * a, b) * tg.minimum(a, b * b),
        [(3,), (3,)],
        False,
    ),
    (
        "reductions",
        lambda a: a.sum(0) * a.mean(1, keepdims=True) + a.max(axis=1, keepdims=True) * a,
        [(3, 4)],
        False,
    ),
    ("max-dim", lambda a: (a * a).max(1)[0] * a.sum(1), [(3, 4)], False),
    (
        "shape",
        lambda a: a.reshape(4, 3).permute(1, 0)[1:, ::2] * a[:2, 1:3].flatten().reshape(2, 2),
        [(3, 4)],
        False,
    ),
    (
        "cat-stack-where",
        lambda a, b: (
            tg.stack(
                [tg.cat([a * b, b], dim=-1), tg.where(a > 0, a * a, b * b).repeat(1, 2)], dim=1
            )
            ** 2
        ),
        [(2, 3), (2, 3)],
        False,
    ),
    (
        "index",
        lambda a: (
            (a * a).gather(1, tg.tensor(np.array([[0, 2], [1, 0]]))).sum(1)
            * (a * a).index_select(0, tg.tensor(np.array([1, 0]))).sum(1)
        ),
        [(2, 3)],
        False,
    ),
    (
        "pad-flip-roll-clamp",
        lambda a: (
            F.pad(a * a, (1, 1), mode="reflect").flip(0).roll(1, 0).clamp(-0.5, 3.0)
            * F.pad(a, (1, 1))
        ),
        [(3, 3)],
        False,
    ),
    (
        "matmul",
        lambda a, b, v: (a @ b) * (a @ b) + (b.T @ v).sum(),
        [(2, 3, 4), (4, 5), (4,)],
        False,
    ),
    ("linear", lambda x, w, b: F.linear(x, w, b).tanh(), [(3, 4), (2, 4), (2,)], False),
    ("relu-softmax", lambda a: a.relu() * a + a.softmax(1) * a.log_softmax(0), [(3, 4)], False),
    ("dropout", _seeded_dropout, [(3, 4)], False),
    (
        "cross-entropy",
        lambda x: (
            F.cross_entropy(x * x, tg.tensor(TGT), weight=W3, label_smoothing=0.1)
            + F.cross_entropy(x * x, tg.tensor(TGT), reduction="none").sum()
        ),
        [(4, 3)],
        False,
    ),
    (
        "nll-mse",
        lambda x, y: F.nll_loss((x * x).log_softmax(1), tg.tensor(TGT)) + F.mse_loss(x * x, y),
        [(4, 3), (4, 3)],
        False,
    ),
    (
        "max-avg-pool",
        lambda x: (
            F.max_pool2d(x * x, 2) * F.avg_pool2d(x, 3, stride=2, padding=1)[..., :2, :2]
            + F.adaptive_avg_pool2d(x * x, 1)
        ),
        [(1, 2, 4, 4)],
        False,
    ),
    (
        "bce-with-logits",
        lambda x, y: F.binary_cross_entropy_with_logits(
            x * x, y, pos_weight=np.array([1.0, 2.0, 3.0])
        ),
        [(2, 3), (2, 3)],
        True,
    ),
    (
        "bce-kl",
        lambda p, t: (
            F.binary_cross_entropy(p * p / 5, t / 3)
            + F.kl_div(p * p, t, reduction="batchmean")
            + F.kl_div(p, t, log_target=True)
        ),
        [(2, 3), (2, 3)],
        True,
    ),
    (
        "l1-smooth-huber",
        lambda x, y: (
            F.l1_loss(x * x, y)
            + F.smooth_l1_loss(x * x, y, beta=0.7)
            + F.huber_loss(x * x, y, delta=0.7, reduction="none").sum()
        ),
        [(3, 4), (3, 4)],
        False,
    ),
    (
        "embedding-adaptive-max",
        lambda w, x: (
            F.embedding(tg.tensor(np.array([[0, 2], [2, 1]])), w * w).sum()
            * F.adaptive_max_pool2d(x * x, 2)
        ),
        [(3, 2), (1, 2, 5, 5)],
        False,
    ),
    ("setitem-scatter", _setitem_scatter, [(2, 3), (2,)], False),
    (
        "layer-group-instance-norm",
        lambda x, w, b: (
            F.layer_norm(x * x, (2, 2), w, b) + F.group_norm(x * x, 1) + F.instance_norm(x * x)
        ),
        [(2, 2, 2, 2), (2, 2), (2, 2)],
        False,
    ),
    (
        "batch-norm-train",
        lambda x, w, b: F.batch_norm(x * x, None, None, w, b, training=True),
        [(3, 2, 2, 2), (2,), (2,)],
        False,
    ),
    (
        "batch-norm-eval",
        lambda x, w, b: F.batch_norm(x * x, np.zeros(2), np.full(2, 2.0), w, b, training=False),
        [(3, 2, 2, 2), (2,), (2,)],
        False,
    ),
]


@pytest.mark.parametrize("name,fn,shapes,positive", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_gradgradcheck_op_families(name, fn, shapes, positive):
    rng = _rng()
    assert gradgradcheck(fn, [T(rng, *s, positive=positive) for s in shapes])


@pytest.mark.parametrize("variant", K.variants("conv2d"))
def test_gradgradcheck_conv2d_variants(variant):
    rng = _rng()
    x, w, b = T(rng, 1, 2, 4, 4), T(rng, 2, 2, 3, 3), T(rng, 2)
    with K.use(conv2d=variant):
        assert gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b])
        x2, w2 = T(rng, 1, 2, 5, 5), T(rng, 2, 1, 2, 2)
        assert gradgradcheck(lambda x, w: F.conv2d(x, w, stride=2, dilation=2, groups=2), [x2, w2])


@pytest.mark.parametrize("variant", K.variants("depthwise_conv2d"))
def test_gradgradcheck_depthwise_variants(variant):
    rng = _rng()
    x, w = T(rng, 1, 2, 4, 4), T(rng, 4, 1, 3, 3)
    with K.use(depthwise_conv2d=variant):
        assert gradgradcheck(lambda x, w: F.conv2d(x, w, padding=1, groups=2), [x, w])


@pytest.mark.parametrize("variant", K.variants("conv_transpose2d"))
def test_gradgradcheck_conv_transpose_variants(variant):
    rng = _rng()
    x, w, b = T(rng, 1, 2, 3, 3), T(rng, 2, 2, 3, 3), T(rng, 2)
    with K.use(conv_transpose2d=variant):
        f = lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)  # noqa: E731
        assert gradgradcheck(f, [x, w, b])


def test_gradgradcheck_fails_on_a_wrong_rule():
    class BadSquare(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_arrays
            return 2 * a * g

        @staticmethod
        def backward_graph(ctx, g, inputs):
            return g * 2 * inputs[0].detach()  # drops the dependence on a

    x = T(_rng(), 3)
    with pytest.raises(tg.GradcheckError, match="gradcheck: input 0"):
        gradgradcheck(BadSquare.apply, [x])


def test_composite_rule_of_a_fused_op():
    from tapegrad.autograd import composite_backward_graph

    class FusedSoftplus(Function):  # a fused first-order kernel, a composed recorded rule
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return np.logaddexp(0, a)

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_arrays
            return g / (1 + np.exp(-a))

        backward_graph = composite_backward_graph(lambda ctx, ins: (ins[0].exp() + 1).log())

    rng = _rng()
    assert gradgradcheck(lambda a: FusedSoftplus.apply(a * a), [T(rng, 3, 2)])


def test_missing_double_backward_names_the_op():
    class Cube(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a**3

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_arrays
            return 3 * a * a * g

    x = T(_rng(), 2, 3)
    y = (Cube.apply(x) * 2).sum()
    with pytest.raises(DoubleBackwardError, match="Cube: this op has no double backward"):
        tg.autograd.grad(y, x, create_graph=True)
    (g,) = tg.autograd.grad((Cube.apply(x) * 2).sum(), x)  # first order works
    np.testing.assert_allclose(g.numpy(), 6 * x.numpy() ** 2)

    # a subclass that overrides backward does not inherit its parent's recorded rule
    from tapegrad.ops.activation import ReLU

    class Leaky(ReLU):
        @staticmethod
        def backward(ctx, g):
            return g

    z = Leaky.apply(x).sum()
    with pytest.raises(DoubleBackwardError, match="Leaky"):
        tg.autograd.grad(z, x, create_graph=True)
    # first order is unaffected
    (g,) = tg.autograd.grad(Leaky.apply(x).sum(), x)
    np.testing.assert_array_equal(g.numpy(), 1.0)


def test_create_graph_grads_do_not_share_arrays():
    rng = _rng()
    a, b = T(rng, 3), T(rng, 3)
    (a + b).sum().backward(create_graph=True)
    assert not np.shares_memory(a.grad_data, b.grad_data)
    a.grad_data *= 2
    np.testing.assert_array_equal(b.grad.numpy(), 1.0)


def test_backward_create_graph_leaves_a_differentiable_grad():
    x = T(_rng(), 3)
    (x**3).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    np.testing.assert_allclose(g.numpy(), 3 * x.numpy() ** 2)
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


# --- PyTorch: a gradient penalty and a Hessian-vector product through a small CNN ------------


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = F.max_pool2d(self.conv(x).relu(), 2)
        return self.fc(self.bn(h).flatten(1))


def _torch_cnn(model):
    import torch

    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4 * 4 * 4, 3)

        def forward(self, x):
            h = torch.nn.functional.max_pool2d(self.conv(x).relu(), 2)
            return self.fc(self.bn(h).flatten(1))

    t = CNN().double()
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    return t


def _models():
    tg.manual_seed(0)
    model = _CNN().double()
    rng = np.random.default_rng(0)
    with tg.no_grad():
        model.bn.weight.data[...] = rng.uniform(0.5, 1.5, 4)
        model.bn.bias.data[...] = rng.standard_normal(4) * 0.1
    return model, _torch_cnn(model), rng


def _max_rel(ours, theirs):
    assert [a is None for a in ours] == [b is None for b in theirs]
    ours = [a for a in ours if a is not None]
    theirs = [b for b in theirs if b is not None]
    return max(
        float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) for a, b in zip(ours, theirs)
    )


def gradient_penalty_error():
    """Max relative error vs PyTorch of the parameter gradients of a WGAN-GP penalty."""
    import torch

    model, tmodel, rng = _models()
    real, fake = rng.standard_normal((4, 1, 8, 8)), rng.standard_normal((4, 1, 8, 8))
    eps = rng.uniform(size=(4, 1, 1, 1))
    mix = eps * real + (1 - eps) * fake

    xh = tg.tensor(mix, requires_grad=True, dtype=np.float64)
    (g,) = tg.autograd.grad(model(xh).sum(), xh, create_graph=True)
    norm = ((g.reshape(4, -1) ** 2).sum(axis=1) + 1e-12).sqrt()
    gp = ((norm - 1) ** 2).mean()
    gp.backward()
    ours = [gp.numpy()] + [None if p.grad is None else p.grad.numpy() for p in model.parameters()]

    txh = torch.tensor(mix, requires_grad=True)
    (tgr,) = torch.autograd.grad(tmodel(txh).sum(), txh, create_graph=True)
    tnorm = ((tgr.reshape(4, -1) ** 2).sum(dim=1) + 1e-12).sqrt()
    tgp = ((tnorm - 1) ** 2).mean()
    tgp.backward()
    theirs = [tgp.detach().numpy()] + [
        None if p.grad is None else p.grad.numpy() for p in tmodel.parameters()
    ]
    return _max_rel(ours, theirs)


def hvp_error():
    """Max relative error vs PyTorch of a Hessian-vector product of a cross-entropy loss
    with respect to the parameters."""
    import torch

    model, tmodel, rng = _models()
    x, y = rng.standard_normal((4, 1, 8, 8)), np.array([0, 1, 2, 1])
    params = list(model.parameters())
    vs = [rng.standard_normal(p.shape) for p in params]

    loss = F.cross_entropy(model(tg.tensor(x, dtype=np.float64)), tg.tensor(y))
    grads = tg.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * tg.tensor(v)).sum() for g, v in zip(grads, vs))
    ours = [h.numpy() for h in tg.autograd.grad(dot, params)]

    tparams = list(tmodel.parameters())
    tloss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
    tgrads = torch.autograd.grad(tloss, tparams, create_graph=True)
    tdot = sum((g * torch.tensor(v)).sum() for g, v in zip(tgrads, vs))
    theirs = [h.numpy() for h in torch.autograd.grad(tdot, tparams)]
    return _max_rel(ours, theirs)


@pytest.mark.torch
def test_gradient_penalty_matches_torch():
    pytest.importorskip("torch")
    assert gradient_penalty_error() < 1e-9


@pytest.mark.torch
def test_hessian_vector_product_matches_torch():
    pytest.importorskip("torch")
    assert hvp_error() < 1e-9


ACTIVATIONS = [
    ("leaky_relu", lambda a: F.leaky_relu(a * a - 1, 0.1) * a),
    ("elu", lambda a: F.elu(a, 0.7) * a),
    ("gelu", lambda a: F.gelu(a) + F.gelu(a * 0.5, approximate="tanh")),
    ("silu-mish", lambda a: F.silu(a) * F.mish(a)),
    ("hardswish-hardsigmoid", lambda a: (F.hardswish(a) + F.hardsigmoid(a)) * a),
    ("softplus", lambda a: F.softplus(a, beta=2, threshold=3)),
]


@pytest.mark.parametrize("name,fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_gradgradcheck_activation_family(name, fn):
    rng = _rng()
    a = tg.tensor(rng.standard_normal((3, 4)) * 1.5, requires_grad=True, dtype=np.float64)
    assert gradgradcheck(fn, [a])


def test_gradgradcheck_prelu_and_erf():
    from tapegrad.ops.elementwise import Erf

    rng = _rng()
    a, w = T(rng, 2, 3, 2), T(rng, 3)
    assert gradgradcheck(lambda a, w: F.prelu(a * a - 1, w) * a, [a, w])
    assert gradgradcheck(lambda a: Erf.apply(a * a), [T(rng, 5)])


def test_gradgradcheck_interpolate():
    rng = _rng()
    x = T(rng, 1, 2, 3, 3)
    for kw in (
        dict(scale_factor=2, mode="nearest"),
        dict(size=(4, 5), mode="bilinear", align_corners=True),
        dict(scale_factor=2, mode="bilinear", align_corners=False),
    ):
        assert gradgradcheck(lambda a, kw=kw: F.interpolate(a * a, **kw), [x])
