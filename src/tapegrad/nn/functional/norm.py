"""Normalisation: batch_norm, layer_norm, group_norm, instance_norm (PyTorch signatures)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...ops.norm import (
    BatchNorm,
    GroupNorm,
    LayerNorm,
)
from ...tensor import Tensor
from ._common import _opt, _raw, _t


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    normalize_variance: bool = True,
) -> Tensor:
    """Batch normalisation of input (N, C, *) per channel over (N, *) -> same shape.

    Training normalises with the batch statistics (biased variance) and, when running
    stats are given, updates them in place: ``r = (1 - momentum) * r + momentum * batch``
    with the unbiased variance. Eval normalises with the running statistics.
    ``normalize_variance=False`` only subtracts the mean (no division by the std).
    weight, bias, running_mean, running_var: (C,).

    Parameters
    ----------
    input : Tensor
        (N, C, *), float32 or float64; at least 2-D.
    running_mean, running_var : Tensor or None
        (C,); updated in place in training mode, required in eval mode.
    weight, bias : Tensor, optional
        (C,) scale and shift.
    training : bool, default False
    momentum : float, default 0.1
    eps : float, default 1e-5
        Added to the variance before the square root.
    normalize_variance : bool, default True

    Returns
    -------
    Tensor
        The input's shape and dtype.

    Raises
    ------
    TypeError
        If ``input`` is not a float32/float64 Tensor or ndarray.
    ValueError
        If ``input`` is less than 2-D, a (C,) argument has another shape, eval mode lacks the
        running statistics, or training gets one value per channel.
    """
    # validated by tapegrad.ops.norm.BatchNorm.check
    return _apply_batch_norm(
        BatchNorm, "batch_norm", input, running_mean, running_var, weight, bias,
        training, momentum, eps, normalize_variance,
    )  # fmt: skip


def _apply_batch_norm(
    function, fn, input, running_mean, running_var, weight, bias, training, momentum, eps,
    normalize_variance,
) -> Tensor:  # fmt: skip
    """``function.apply`` on batch norm's functional arguments, converted (``fn`` names the
    public function in conversion errors); shared by ``batch_norm`` and ``batch_norm_relu``."""
    x, w, b = _t(input, fn), _opt(weight, fn, "weight"), _opt(bias, fn, "bias")
    rm, rv = _opt(running_mean, fn, "running_mean"), _opt(running_var, fn, "running_var")
    return function.apply(
        x,
        w,
        b,
        running_mean=_raw(rm),
        running_var=_raw(rv),
        training=training,
        momentum=momentum,
        eps=eps,
        normalize_variance=normalize_variance,
    )


def layer_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer normalisation over the trailing ``normalized_shape`` axes of input (*, *S).

    Each sample's slice of shape S is normalised by its own mean and biased variance,
    then scaled by weight and shifted by bias (both of shape S) elementwise.

    Parameters
    ----------
    input : Tensor
        (*, *S), float32 or float64.
    normalized_shape : int or sequence of int
        S, the trailing dimensions to normalise over.
    weight, bias : Tensor, optional
        Shape S.
    eps : float, default 1e-5

    Returns
    -------
    Tensor
        The input's shape and dtype.

    Raises
    ------
    ValueError
        If ``normalized_shape`` does not match the input's trailing dimensions, or
        ``weight``/``bias`` are not of shape S.
    """
    fn = "layer_norm"
    x, w, b = _t(input, fn), _opt(weight, fn, "weight"), _opt(bias, fn, "bias")
    return LayerNorm.apply(x, w, b, normalized_shape, eps)  # validated by LayerNorm.check


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Group normalisation of input (N, C, *): statistics per sample over each group of
    C / num_groups channels (and all of *); weight, bias (C,) per channel.

    Parameters
    ----------
    input : Tensor
        (N, C, *), float32 or float64.
    num_groups : int
        Must divide C.
    weight, bias : Tensor, optional
        (C,).
    eps : float, default 1e-5

    Returns
    -------
    Tensor
        The input's shape and dtype.

    Raises
    ------
    ValueError
        If ``num_groups`` is not positive or does not divide C, or ``weight``/``bias`` are not
        (C,).
    """
    fn = "group_norm"
    x, w, b = _t(input, fn), _opt(weight, fn, "weight"), _opt(bias, fn, "bias")
    return GroupNorm.apply(x, w, b, num_groups, eps)  # validated by GroupNorm.check


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Instance normalisation of input (N, C, *): statistics per sample and channel.

    With ``use_input_stats`` (training) each (sample, channel) slice is normalised by its
    own mean and biased variance, and ``running_mean``/``running_var`` (C,), if given, move
    towards the batch average of those statistics (the variance unbiased), as PyTorch does.
    Otherwise the running statistics normalise. ``weight``, ``bias`` (C,) scale and shift.
    """
    fn = "instance_norm"
    x = _t(input, fn)
    if x.ndim < 3:
        raise ValueError(
            f"instance_norm: input must be (N, C, *) with a spatial axis, got {x.shape}"
        )
    c = x.shape[1]
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"instance_norm: {name} must have shape ({c},), got {tuple(t.shape)}")
    if not eps > 0:
        raise ValueError(f"instance_norm: eps must be positive, got {eps}")
    shape = (1, c) + (1,) * (x.ndim - 2)
    if use_input_stats:
        y = group_norm(x, c, None, None, eps)
        if running_mean is not None and running_var is not None:
            axes = tuple(range(2, x.ndim))
            m = int(np.prod(x.shape[2:]))
            mean = x.data.mean(axis=axes)
            var = x.data.var(axis=axes) * (m / max(m - 1, 1))
            running_mean.data[...] = (1 - momentum) * running_mean.data + momentum * mean.mean(0)
            running_var.data[...] = (1 - momentum) * running_var.data + momentum * var.mean(0)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "instance_norm: use_input_stats=False needs running_mean and running_var"
            )
        rm = running_mean.data.reshape(shape).astype(x.dtype)
        rv = running_var.data.reshape(shape).astype(x.dtype)
        y = (x - rm) * (1 / np.sqrt(rv + eps)).astype(x.dtype)
    if weight is not None:
        y = y * _t(weight, fn, "weight").reshape(shape)
    if bias is not None:
        y = y + _t(bias, fn, "bias").reshape(shape)
    return y
