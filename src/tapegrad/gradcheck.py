"""Numerical gradient check: central differences in float64 against the tape's backward."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with central differences."""

    pass


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Compare ``fn``'s analytic gradients with central differences.

    Every input that requires grad must be float64. The output is contracted with a fixed
    random tensor, so every output element's gradient is checked. Returns True, or raises
    GradcheckError naming the input, the worst element and its relative error.
    """
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} must be float64, got {t.dtype}")
    out = fn(*inputs)
    proj = np.random.default_rng(seed).standard_normal(out.shape)
    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    out.backward(proj)

    def scalar() -> float:
        return float((fn(*inputs).data * proj).sum())

    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = np.zeros_like(t.data) if t.grad_data is None else t.grad_data
        numeric = np.zeros_like(t.data)
        flat = t.data.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            up = scalar()
            flat[k] = old - eps
            down = scalar()
            flat[k] = old
            numeric.reshape(-1)[k] = (up - down) / (2 * eps)
        err = np.abs(analytic - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any():
            rel = err / np.maximum(np.abs(numeric), 1e-12)
            k = int(np.argmax(np.where(bad, err, -1)))
            idx = np.unravel_index(k, t.shape)
            raise GradcheckError(
                f"gradcheck: input {i} (shape {t.shape}) element {idx}: analytic "
                f"{analytic[idx]:.6g} vs numeric {numeric[idx]:.6g} (abs error "
                f"{err[idx]:.3g}, relative error {rel[idx]:.3g}); {int(bad.sum())} of "
                f"{t.size} elements out of tolerance"
            )
    return True


def gradgradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    grad_outputs: Sequence[Any] | None = None,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Check second-order gradients: :func:`gradcheck` of the recorded first-order
    gradient (``autograd.grad(..., create_graph=True)``) against central differences.

    The first-order gradient is taken of ``fn(*inputs)`` contracted with ``grad_outputs``
    (a fixed random tensor per output when None, itself a differentiated input, as in
    PyTorch); the resulting gradients with respect to every input that requires grad are
    contracted with another random tensor and checked by :func:`gradcheck`. Every input that
    requires grad must be float64.

    Returns
    -------
    bool
        True.

    Raises
    ------
    GradcheckError
        Naming the input, the worst element and its relative error.
    TypeError
        If an input that requires grad is not float64.
    tapegrad.autograd.DoubleBackwardError
        If an op on the way has no double backward (the message names it).
    """
    from . import autograd

    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradgradcheck: input {i} must be float64, got {t.dtype}")
    diff = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    rng = np.random.default_rng(seed + 1)
    if grad_outputs is None:
        gos = [Tensor(rng.standard_normal(o.shape), requires_grad=True) for o in outs]
    else:
        gos = [
            g if isinstance(g, Tensor) else Tensor(np.asarray(g, dtype=np.float64))
            for g in grad_outputs
        ]
    n = len(inputs)

    def first_order(*args: Tensor) -> Tensor:
        xs, gs = list(args[:n]), list(args[n:])
        o = fn(*xs)
        os_ = list(o) if isinstance(o, (tuple, list)) else [o]
        wrt = [t for t in xs if isinstance(t, Tensor) and t.requires_grad]
        grads = autograd.grad(os_, wrt, grad_outputs=gs, create_graph=True, allow_unused=True)
        parts = [g.reshape(-1) for g in grads if g is not None]
        if not parts:
            raise GradcheckError("gradgradcheck: no input received a gradient")
        return parts[0] if len(parts) == 1 else _cat(parts)

    del diff
    return gradcheck(first_order, [*inputs, *gos], eps=eps, atol=atol, rtol=rtol, seed=seed)


def _cat(parts: list[Tensor]) -> Tensor:
    from .ops.shape import Concat

    return Concat.apply(*parts, axis=0)
