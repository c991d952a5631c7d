"""Compare a tapegrad function with its PyTorch counterpart: forward and every gradient."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import tapegrad as tg

TOL = {"float32": {"rtol": 2e-5, "atol": 2e-6}, "float64": {"rtol": 1e-10, "atol": 1e-12}}


def _as_tuple(x):
    return x if isinstance(x, (tuple, list)) else (x,)


def check_against_torch(
    ours: Callable,
    theirs: Callable,
    arrays: Sequence[np.ndarray],
    dtype: str,
    grad: Sequence[bool] | None = None,
    seed: int = 0,
    tol: dict | None = None,
) -> None:
    """``ours(*tensors)`` and ``theirs(*torch_tensors)`` agree on the output(s) and on the
    gradient of a random weighted sum of the floating outputs w.r.t. each input in ``grad``."""
    import torch

    grad = [a.dtype.kind == "f" for a in arrays] if grad is None else list(grad)
    cast = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    xs = [tg.Tensor(a.copy(), requires_grad=g) for a, g in zip(cast, grad)]
    ts = [torch.tensor(a.copy(), requires_grad=g) for a, g in zip(cast, grad)]
    outs, touts = _as_tuple(ours(*xs)), _as_tuple(theirs(*ts))
    assert len(outs) == len(touts)
    tol = tol or TOL[dtype]
    rng = np.random.default_rng(seed)
    loss, tloss = None, None
    for o, to in zip(outs, touts):
        tnp = to.detach().numpy()
        assert o.shape == tuple(tnp.shape), (o.shape, tnp.shape)
        assert o.dtype == tnp.dtype, (o.dtype, tnp.dtype)
        np.testing.assert_allclose(o.numpy(), tnp, **tol)
        if o.requires_grad and o.dtype.kind == "f":
            w = rng.standard_normal(o.shape).astype(o.dtype)
            term, tterm = (o * tg.Tensor(w)).sum(), (to * torch.tensor(w)).sum()
            loss = term if loss is None else loss + term
            tloss = tterm if tloss is None else tloss + tterm
    if loss is None:
        return
    loss.backward()
    tloss.backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        if not grad[i]:
            continue
        tg_ = t.grad.numpy() if t.grad is not None else np.zeros(t.shape, dtype=x.dtype)
        got = x.grad.numpy() if x.grad is not None else np.zeros(x.shape, dtype=x.dtype)
        np.testing.assert_allclose(got, tg_, err_msg=f"gradient of input {i}", **tol)


def gradcheck64(fn: Callable, arrays: Sequence[np.ndarray], grad: Sequence[bool] | None = None):
    """Float64 central differences for every floating input in ``grad``."""
    grad = [a.dtype.kind == "f" for a in arrays] if grad is None else list(grad)
    xs = [
        tg.Tensor(a.astype(np.float64) if a.dtype.kind == "f" else a, requires_grad=g)
        for a, g in zip(arrays, grad)
    ]
    assert tg.gradcheck(fn, xs)
