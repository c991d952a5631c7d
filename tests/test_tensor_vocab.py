"""PyTorch's tensor vocabulary: every op against PyTorch (forward and every gradient,
float32 and float64), float64 gradchecks, in-place updates and their version check, the
size()/numel() decision, creation functions, bad arguments."""

from __future__ import annotations

import inspect
import pickle
import re

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tests._oracle import check_against_torch, gradcheck64

DTYPES = ["float32", "float64"]
rng = np.random.default_rng(0)


def _x(*shape):
    return rng.standard_normal(shape)


def _torch():
    return pytest.importorskip("torch")


# (name, ours, theirs(torch), input arrays, which need grad) -- all differentiable ops
def _cases(torch):
    idx = np.array([[0, 2, 1], [1, 0, 0]])
    sel = np.array([2, 0, 2])
    cond = rng.random((3, 4)) > 0.5
    tf = torch.nn.functional
    return {
        "cat": (
            lambda a, b: tg.cat([a, b], 1),
            lambda a, b: torch.cat([a, b], 1),
            [_x(2, 3), _x(2, 2)],
        ),
        "cat_neg": (
            lambda a, b: tg.cat((a, b), -3),
            lambda a, b: torch.cat((a, b), -3),
            [_x(1, 2, 3), _x(2, 2, 3)],
        ),
        "stack": (
            lambda a, b: tg.stack([a, b], 1),
            lambda a, b: torch.stack([a, b], 1),
            [_x(2, 3), _x(2, 3)],
        ),
        "split": (lambda a: a.split(2, 1), lambda a: a.split(2, 1), [_x(2, 5)]),
        "split_sizes": (
            lambda a: tg.split(a, [1, 3, 1], 1),
            lambda a: torch.split(a, [1, 3, 1], 1),
            [_x(2, 5)],
        ),
        "chunk": (lambda a: a.chunk(3, 0), lambda a: a.chunk(3, 0), [_x(7, 2)]),
        "where": (
            lambda a, b: tg.where(tg.tensor(cond), a, b),
            lambda a, b: torch.where(torch.tensor(cond), a, b),
            [_x(3, 4), _x(4)],
        ),
        "where_scalar": (
            lambda a: tg.where(tg.tensor(cond), a, 0.5),
            lambda a: torch.where(torch.tensor(cond), a, 0.5),
            [_x(3, 4)],
        ),
        "clamp": (lambda a: a.clamp(-0.5, 0.7), lambda a: a.clamp(-0.5, 0.7), [_x(3, 4)]),
        "clamp_min": (
            lambda a: tg.clamp(a, min=0.1),
            lambda a: torch.clamp(a, min=0.1),
            [_x(3, 4)],
        ),
        "clip_max": (lambda a: a.clip(max=0.2), lambda a: a.clip(max=0.2), [_x(3, 4)]),
        "maximum": (tg.maximum, torch.maximum, [_x(3, 4), _x(4)]),
        "minimum": (tg.minimum, torch.minimum, [_x(3, 4), _x(3, 1)]),
        "max_dim": (lambda a: a.max(1), lambda a: a.max(1), [_x(3, 4)]),
        "max_dim_keep": (
            lambda a: tg.max(a, 0, keepdim=True),
            lambda a: torch.max(a, 0, True),
            [_x(3, 4)],
        ),
        "min_dim": (lambda a: a.min(dim=-1), lambda a: a.min(dim=-1), [_x(3, 4)]),
        "min_all": (lambda a: a.min(), lambda a: a.min(), [_x(3, 4)]),
        "max_all": (lambda a: tg.max(a), lambda a: torch.max(a), [_x(3, 4)]),
        "abs": (lambda a: abs(a), lambda a: abs(a), [_x(3, 4)]),
        "pow_tensor": (
            lambda a, b: tg.pow(a.abs() + 0.5, b),
            lambda a, b: torch.pow(a.abs() + 0.5, b),
            [_x(3, 4), _x(3, 4)],
        ),
        "pow_method": (
            lambda a, b: (a.abs() + 0.5).pow(b),
            lambda a, b: (a.abs() + 0.5).pow(b),
            [_x(3, 4), _x(4)],
        ),
        "rpow": (lambda b: 2.0**b, lambda b: 2.0**b, [_x(3, 4)]),
        "flip": (lambda a: a.flip(0, 2), lambda a: a.flip((0, 2)), [_x(2, 3, 4)]),
        "flip_fn": (lambda a: tg.flip(a, [-1]), lambda a: torch.flip(a, [-1]), [_x(2, 3)]),
        "roll": (lambda a: a.roll(2, 1), lambda a: a.roll(2, 1), [_x(3, 5)]),
        "roll_multi": (
            lambda a: tg.roll(a, (1, -2), (0, 1)),
            lambda a: torch.roll(a, (1, -2), (0, 1)),
            [_x(3, 5)],
        ),
        "roll_flat": (lambda a: a.roll(4), lambda a: a.roll(4), [_x(3, 5)]),
        "gather": (
            lambda a: a.gather(1, tg.tensor(idx)),
            lambda a: a.gather(1, torch.tensor(idx)),
            [_x(2, 4)],
        ),
        "gather_small": (
            lambda a: tg.gather(a, 0, idx[:, :2]),
            lambda a: torch.gather(a, 0, torch.tensor(idx[:, :2])),
            [_x(3, 3)],
        ),
        "scatter_add": (
            lambda a, s: a.scatter_add(1, idx, s),
            lambda a, s: a.scatter_add(1, torch.tensor(idx), s),
            [_x(2, 4), _x(2, 3)],
        ),
        "scatter_add0": (
            lambda a, s: tg.scatter_add(a, 0, idx, s),
            lambda a, s: torch.scatter_add(a, 0, torch.tensor(idx), s),
            [_x(3, 3), _x(2, 3)],
        ),
        "index_select": (
            lambda a: a.index_select(1, sel),
            lambda a: a.index_select(1, torch.tensor(sel)),
            [_x(2, 3)],
        ),
        "expand": (lambda a: a.expand(2, 3, -1), lambda a: a.expand(2, 3, -1), [_x(3, 1)]),
        "expand_as": (
            lambda a, b: a.expand_as(b),
            lambda a, b: a.expand_as(b),
            [_x(1, 4), _x(3, 4)],
        ),
        "repeat": (lambda a: a.repeat(2, 1, 3), lambda a: a.repeat(2, 1, 3), [_x(2, 3)]),
        "tile": (lambda a: a.tile((2,)), lambda a: a.tile((2,)), [_x(2, 3)]),
        "tile_fn": (
            lambda a: tg.tile(a, (2, 1, 2)),
            lambda a: torch.tile(a, (2, 1, 2)),
            [_x(2, 3)],
        ),
        "view_as": (lambda a, b: a.view_as(b), lambda a, b: a.view_as(b), [_x(2, 6), _x(3, 4)]),
        "flatten": (lambda a: tg.flatten(a, 1), lambda a: torch.flatten(a, 1), [_x(2, 3, 4)]),
        "unbind": (lambda a: a.unbind(1), lambda a: a.unbind(1), [_x(2, 3)]),
        "pad_const": (
            lambda a: F.pad(a, (1, 2), value=0.5),
            lambda a: tf.pad(a, (1, 2), value=0.5),
            [_x(2, 3, 4)],
        ),
        "pad_const4": (
            lambda a: F.pad(a, (1, 0, 2, 1)),
            lambda a: tf.pad(a, (1, 0, 2, 1)),
            [_x(1, 2, 3, 4)],
        ),
        "pad_reflect": (
            lambda a: F.pad(a, (2, 1, 1, 2), mode="reflect"),
            lambda a: tf.pad(a, (2, 1, 1, 2), mode="reflect"),
            [_x(1, 2, 4, 5)],
        ),
        "pad_replicate": (
            lambda a: F.pad(a, (3, 1), mode="replicate"),
            lambda a: tf.pad(a, (3, 1), mode="replicate"),
            [_x(2, 2, 4)],
        ),
        "pad_circular": (
            lambda a: F.pad(a, (1, 2), mode="circular"),
            lambda a: tf.pad(a, (1, 2), mode="circular"),
            [_x(2, 2, 4)],
        ),
        "cast_up": (lambda a: a.double() * 2, lambda a: a.double() * 2, [_x(2, 3)]),
        "cast_to": (lambda a: a.to(tg.float32) + 1, lambda a: a.to(torch.float32) + 1, [_x(2, 3)]),
        "repeat_interleave": (
            lambda a: tg.repeat_interleave(a, 2, 1),
            lambda a: torch.repeat_interleave(a, 2, 1),
            [_x(2, 3)],
        ),
    }


def _names():
    """The case names, read from the table's source (torch is imported only by the tests)."""
    src = inspect.getsource(_cases)
    return re.findall(r'^        "(\w+)": \(', src, re.M)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", _names())
def test_matches_torch(name, dtype):
    torch = _torch()
    ours, theirs, arrays = _cases(torch)[name]
    if name.startswith("cast"):
        # the cast changes dtype: compare in the output dtype's tolerance
        check_against_torch(ours, theirs, arrays, dtype, tol={"rtol": 1e-6, "atol": 1e-6})
        return
    check_against_torch(ours, theirs, arrays, dtype)


@pytest.mark.parametrize("name", [n for n in _names() if not n.startswith("cast")])
def test_gradcheck(name):
    torch = pytest.importorskip("torch")  # only to build the case table
    ours, _, arrays = _cases(torch)[name]

    def fn(*xs):
        out = ours(*xs)
        if isinstance(out, (tuple, list)):
            out = [o for o in out if o.dtype.kind == "f"]
            total = out[0].sum() * 1.0
            for k, o in enumerate(out[1:]):
                total = total + o.sum() * (k + 2.0)
            return total
        return out

    gradcheck64(fn, arrays)


def test_cast_gradient_dtype_and_int_casts():
    x = tg.Tensor(np.array([1.5, -2.5]), requires_grad=True)
    y = x.float()
    assert y.dtype == np.float32 and y.requires_grad
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64 and x.grad.numpy().tolist() == [2.0, 2.0]
    for method, dt in [("long", np.int64), ("int", np.int32), ("bool", np.bool_)]:
        z = getattr(x, method)()
        assert z.dtype == dt and not z.requires_grad
    assert x.long().numpy().tolist() == [1, -2]
    assert x.to(np.float64) is x
    with pytest.raises(ValueError, match="Tensor.to: tapegrad runs on the CPU only"):
        x.to("cuda:0")
    assert x.to("cpu") is x and x.to(tg.device("cpu")) is x


def test_size_numel_and_dim():
    x = tg.zeros(2, 3, 4)
    assert x.size == 24  # NumPy's attribute still works
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.numel() == 24 and tg.numel(x) == 24 and x.dim() == 3
    with pytest.raises(ValueError, match="size: dim 3 is out of range for a 3-d tensor"):
        x.size(3)


def test_comparisons_argmax_and_max_dim_for_the_mnist_idiom():
    out = tg.tensor(np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]]))
    target = tg.tensor(np.array([1, 0, 0]))
    pred = out.argmax(dim=1, keepdim=True)
    assert pred.shape == (3, 1) and pred.dtype == np.int64
    assert pred.eq(target.view_as(pred)).sum().item() == 2
    vals, idx = out.max(dim=1)
    assert idx.numpy().tolist() == [1, 0, 2] and vals.numpy().tolist() == pytest.approx(
        [0.9, 0.8, 0.5]
    )
    a, b = tg.tensor([1.0, 2.0, 3.0]), tg.tensor([3.0, 2.0, 1.0])
    for name, want in [
        ("eq", [0, 1, 0]),
        ("ne", [1, 0, 1]),
        ("lt", [1, 0, 0]),
        ("le", [1, 1, 0]),
        ("gt", [0, 0, 1]),
        ("ge", [0, 1, 1]),
    ]:
        got = getattr(a, name)(b)
        assert got.dtype == np.bool_ and got.numpy().astype(int).tolist() == want, name
    assert a.argmin().item() == 0 and a.argmax(0).item() == 2
    # NumPy-style calls keep their old meaning
    assert a.max(axis=0).item() == 3.0 and out.max(1, keepdims=True).shape == (3, 1)


def test_creation_functions():
    a = np.arange(6.0).reshape(2, 3)
    t = tg.from_numpy(a)
    a[0, 0] = 42
    assert t.numpy()[0, 0] == 42 and t.dtype == np.float64  # shares memory, keeps dtype
    assert tg.full((2, 2), 1.5).dtype == np.float32 and tg.full((2,), 3).dtype == np.int64
    assert tg.full_like(t, 7).numpy().tolist() == [[7.0] * 3] * 2
    np.testing.assert_allclose(tg.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1])
    assert tg.eye(3).numpy().tolist() == np.eye(3).tolist() and tg.eye(2, 3).shape == (2, 3)
    assert tg.zeros_like(t).dtype == np.float64 and tg.ones_like(t).shape == (2, 3)
    assert tg.arange(5).dtype == np.int64 and tg.arange(0.0, 1.0, 0.5).dtype == np.float32


@pytest.mark.torch
def test_creation_matches_torch():
    torch = _torch()
    pairs = [
        (tg.linspace(-1, 2, 7), torch.linspace(-1, 2, 7)),
        (tg.eye(3, 4), torch.eye(3, 4)),
        (tg.full((2, 3), 2.5), torch.full((2, 3), 2.5)),
        (tg.arange(1, 7, 2), torch.arange(1, 7, 2)),
        (tg.arange(0.5, 2.0, 0.25), torch.arange(0.5, 2.0, 0.25)),
    ]
    for ours, theirs in pairs:
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_allclose(ours.numpy(), theirs.numpy())


# --- in-place updates ----------------------------------------------------------------------


def test_inplace_on_plain_tensors_writes_through():
    x = tg.zeros(2, 3)
    x[0, 1] = 5
    x[1] = tg.tensor([1.0, 2.0, 3.0])
    x.add_(1).mul_(2)
    x.clamp_(max=10)
    assert x.numpy().tolist() == [[2, 10, 2], [4, 6, 8]]
    assert x.zero_().numpy().sum() == 0
    x.fill_(3).sub_(tg.ones(3), alpha=2)
    assert x.numpy().tolist() == [[1, 1, 1]] * 2
    x.copy_(np.arange(3.0))
    assert x.numpy().tolist() == [[0, 1, 2]] * 2


def test_inplace_change_of_a_saved_tensor_raises_at_backward():
    w = tg.Tensor(np.ones(3), requires_grad=True)
    x = tg.Tensor(np.arange(3.0))
    y = (w * x).sum()
    x.add_(1)  # Mul saved x for w's gradient
    with pytest.raises(RuntimeError, match=r"backward: a tensor saved by Mul .* modified in place"):
        y.backward()
    # a view of the saved tensor counts too
    x2 = tg.Tensor(np.arange(3.0))
    y2 = (w * x2).sum()
    x2[1:].mul_(3)
    with pytest.raises(RuntimeError, match="modified in place"):
        y2.backward()
    # an output saved for backward (exp), changed under no_grad
    z = w.exp()
    with tg.no_grad():
        z.mul_(2)
    with pytest.raises(RuntimeError, match="a tensor saved by Exp"):
        z.sum().backward()
    # untouched: fine
    x3 = tg.Tensor(np.arange(3.0))
    (w * x3).sum().backward()
    assert w.grad.numpy().tolist() == [0, 1, 2]


def test_inplace_on_the_tape_matches_torch():
    torch = _torch()
    a = _x(3, 4)
    w, tw = tg.Tensor(a.copy(), requires_grad=True), torch.tensor(a.copy(), requires_grad=True)
    v = _x(4)
    vv, tv = tg.Tensor(v.copy(), requires_grad=True), torch.tensor(v.copy(), requires_grad=True)

    def run(lib, w, vv):
        h = w * 2
        h[1] = vv
        h.add_(vv)
        h[:, 0] = 0.0
        h.mul_(3.0)
        h.clamp_(max=3.0)
        return h

    h, th = run(tg, w, vv), run(torch, tw, tv)
    np.testing.assert_allclose(h.numpy(), th.detach().numpy(), rtol=1e-12)
    g = _x(3, 4)
    h.backward(g)
    th.backward(torch.tensor(g))
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(vv.grad.numpy(), tv.grad.numpy(), rtol=1e-12)


def test_inplace_after_a_recorded_use_keeps_that_use_s_gradient():
    # ops recorded before an in-place update took the old value: their gradients still
    # reach the graph behind it (PyTorch allows this when the old value was not saved)
    torch = _torch()
    a = _x(3, 4)
    w, tw = tg.Tensor(a.copy(), requires_grad=True), torch.tensor(a.copy(), requires_grad=True)

    def run(lib, w):
        h = w * 2
        u = (h * 3.0).tanh()
        s = h.sum(1)
        h.add_(1.0)
        h[0] = 0.5
        h.mul_(2.0)
        return (u * h).sum() + (s * s).sum()

    y, ty = run(tg, w), run(torch, tw)
    h = w * 2
    _ = h * 3.0
    assert pickle.loads(pickle.dumps(h)).numpy().tolist() == h.numpy().tolist()
    y.backward()
    ty.backward()
    np.testing.assert_allclose(y.item(), ty.item(), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-12)


def test_inplace_on_a_leaf_that_requires_grad_is_refused():
    w = tg.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="add_: a leaf tensor that requires grad"):
        w.add_(1)
    with pytest.raises(RuntimeError, match="setitem: a leaf tensor that requires grad"):
        w[0] = 2.0
    with tg.no_grad():
        w.add_(1)
        w[0] = 5.0
    assert w.numpy().tolist() == [5, 2, 2]


# --- bad arguments -------------------------------------------------------------------------


def test_bad_arguments():
    a, b = tg.randn(2, 3), tg.randn(3, 3)
    with pytest.raises(ValueError, match=r"cat: tensors\[1\] has shape \(3, 2\)"):
        tg.cat([a, tg.randn(3, 2)], 0)
    with pytest.raises(TypeError, match=r"cat: tensors\[1\] is a ndarray"):
        tg.cat([a, np.ones((2, 3))])
    with pytest.raises(TypeError, match="cat: tensors have different dtypes"):
        tg.cat([a, a.double()])
    with pytest.raises(ValueError, match="stack: tensors.1. has shape .3, 3., tensors.0. has"):
        tg.stack([a, b])
    with pytest.raises(ValueError, match=r"cat: dim 2 is out of range for a 2-d tensor"):
        tg.cat([a, a], 2)
    with pytest.raises(TypeError, match="where: condition must be a bool tensor"):
        tg.where(a, a, b)
    with pytest.raises(ValueError, match="where: condition, input and other could not be"):
        tg.where(a > 0, a, tg.randn(4))
    with pytest.raises(ValueError, match="clamp: give min, max or both"):
        a.clamp()
    with pytest.raises(IndexError, match=r"gather: index values must lie in \[-3, 2\]"):
        a.gather(1, np.array([[0, 3], [0, 0]]))
    with pytest.raises(ValueError, match="gather: index must have as many dimensions"):
        a.gather(1, np.array([0, 1]))
    with pytest.raises(TypeError, match="index_select: index must hold integers"):
        a.index_select(0, np.array([0.0]))
    with pytest.raises(ValueError, match=r"expand: the size of dimension 1 \(3\) must be 1 or 4"):
        a.expand(2, 4)
    with pytest.raises(ValueError, match="repeat: give at least 2 repeats"):
        a.repeat(2)
    with pytest.raises(ValueError, match=r"split: sections \[1, 1\] must be non-negative"):
        a.split([1, 1], 1)
    with pytest.raises(ValueError, match="chunk: chunks must be a positive int"):
        a.chunk(0)
    with pytest.raises(ValueError, match="flip: dims .* repeat a dimension"):
        a.flip(0, 0)
    with pytest.raises(ValueError, match="roll: shifts .* and dims .* differ in length"):
        a.roll((1, 2), 0)
    with pytest.raises(ValueError, match="pad: mode must be 'constant', 'reflect', 'replicate'"):
        F.pad(a, (1, 1), mode="wrap")
    with pytest.raises(ValueError, match=r"pad: padding \(1, 1, 1\) must have an even length"):
        F.pad(a, (1, 1, 1))
    with pytest.raises(ValueError, match="pad: reflect padding 3 must be smaller than"):
        F.pad(a, (3, 0), mode="reflect")
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray, got list"):
        tg.from_numpy([1, 2])
    with pytest.raises(ValueError, match=r"setitem: .*tensor of shape \(2, 3\)"):
        a[0] = np.ones(4)
    with pytest.raises(ValueError, match="max: dim 2 is out of range"):
        a.max(2)


def test_device_and_cuda_for_cpu_scripts():
    dev = tg.device("cuda" if tg.cuda.is_available() else "cpu")
    assert str(dev) == "cpu" and dev == "cpu" and tg.cuda.device_count() == 0
    x = tg.randn(2, 2)
    assert x.to(dev) is x and x.cpu() is x
    with pytest.raises(ValueError, match="tapegrad.device: tapegrad runs on the CPU only"):
        tg.device("cuda")
    with pytest.raises(ValueError, match="tapegrad.device: tapegrad runs on the CPU only"):
        tg.device("mps")


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "full_like"])
def test_like_constructors_take_a_dtype(name):
    torch = _torch()
    a = _x(2, 3).astype(np.float32)
    extra = (2.5,) if name == "full_like" else ()
    for dtype, tdtype in ((None, None), (tg.float64, torch.float64), (np.int64, torch.int64)):
        got = getattr(tg, name)(tg.Tensor(a), *extra, dtype=dtype)
        want = getattr(torch, name)(torch.tensor(a), *extra, dtype=tdtype)
        assert got.dtype == want.numpy().dtype
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_python_scalar_conversions_follow_pytorch():
    torch = _torch()
    for v in (2.5, -3.7, 0.0):
        t, tt = tg.tensor([[v]]), torch.tensor([[v]])
        assert float(t) == float(tt) and int(t) == int(tt) and bool(t) == bool(tt)
    assert bool(tg.tensor([1])) and not bool(tg.tensor(False))
    for bad in (tg.tensor([0.0, 0.0]), tg.zeros(0)):
        with pytest.raises(ValueError, match=r"bool: .*ambiguous"):
            bool(bad)
        with pytest.raises(ValueError, match="float: only a one-element tensor"):
            float(bad)
    with pytest.raises(ValueError, match="int: only a one-element tensor"):
        int(tg.ones(2, 2))
