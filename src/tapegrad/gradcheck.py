"""Numerical gradient check: central differences in float64 against the tape's backward."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
