"""Normalisation layers: BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm.

Parameter and buffer names follow PyTorch (``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``), so state dicts move between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ops.norm import _check_eps, _normalized_shape
from ..tensor import Tensor
from . import functional as F
from .module import Module, Parameter


class _NormBase(Module):
    """What batch and instance norm share (PyTorch's ``_NormBase``): the constructor's
    checks, ``weight``/``bias``, the running-statistics buffers, the channel check of the
    input and the repr."""

    def __init__(
        self,
        num_features: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        track_running_stats: bool,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        _check_eps(name, eps)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        c = num_features
        self.weight = Parameter(np.ones(c, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(c, np.float32)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(c, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(c, np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches counted (with tracked stats)."""
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def _check_channels(self, x) -> None:
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} channels (dim 1), got "
                f"input {x.shape}"
            )

    def extra_repr(self) -> str:
        """Text shown inside the parentheses of the module's repr."""
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class _BatchNorm(_NormBase):
    _ndims: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        normalize_variance: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(
                f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum!r}"
            )
        self.normalize_variance = normalize_variance

    def forward(self, x):
        """Normalise ``x`` per sample and channel."""
        return self._normalize(x, F.batch_norm)

    def forward_relu(self, x):
        """``relu(self(x))`` as one fused op (:func:`tapegrad.nn.functional.batch_norm_relu`);
        :class:`tapegrad.nn.Sequential` calls it where a ReLU layer follows this one."""
        return self._normalize(x, F.batch_norm_relu)

    def _normalize(self, x, fn):
        if x.ndim not in self._ndims:
            name = type(self).__name__
            raise ValueError(f"{name}: expected {self._layout} input, got shape {x.shape}")
        self._check_channels(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return fn(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            training=use_batch,
            momentum=factor,
            eps=self.eps,
            normalize_variance=self.normalize_variance,
        )


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) input, statistics per channel.

    Parameters, attributes and errors as :class:`BatchNorm2d`'s; ``forward`` raises on
    input that is not (N, C) or (N, C, L) or has another channel count.
    """

    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Spatial batch norm over (N, C, H, W) input, statistics per channel over (N, H, W).

    Parameters
    ----------
    num_features : int
        C, the channel count (positive).
    eps : float, default 1e-5
    momentum : float or None, default 0.1
        Weight of the batch statistics in the running averages; None keeps a cumulative
        average.
    affine : bool, default True
        Learn ``weight`` (ones) and ``bias`` (zeros) of shape (C,).
    track_running_stats : bool, default True
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked`` buffers (used in
        eval mode); without them eval mode uses batch statistics.
    normalize_variance : bool, default True
        False only subtracts the mean.

    Raises
    ------
    ValueError
        On a bad argument; ``forward`` raises on input that is not (N, C, H, W) or has
        another channel count.
    """

    _ndims = (4,)
    _layout = "(N, C, H, W)"


class LayerNorm(Module):
    """Normalises the trailing ``normalized_shape`` axes of each sample.

    Parameters
    ----------
    normalized_shape : int or sequence of int
        S, the trailing dimensions normalised over.
    eps : float, default 1e-5
    elementwise_affine : bool, default True
        Learn ``weight`` (ones) of shape S.
    bias : bool, default True
        With ``elementwise_affine``, also learn ``bias`` (zeros) of shape S.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.normalized_shape = _normalized_shape("LayerNorm", normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = (
            Parameter(np.ones(self.normalized_shape, np.float32)) if elementwise_affine else None
        )
        self.bias = (
            Parameter(np.zeros(self.normalized_shape, np.float32))
            if elementwise_affine and bias
            else None
        )

    def forward(self, x):
        """Normalise ``x`` (..., *normalized_shape) over its trailing dimensions."""
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        """The normalised shape, eps and affine flag, as shown in the repr."""
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class GroupNorm(Module):
    """Normalises each sample over groups of num_channels / num_groups channels.

    Parameters
    ----------
    num_groups : int
        Must divide ``num_channels``.
    num_channels : int
    eps : float, default 1e-5
    affine : bool, default True
        Learn ``weight`` (ones) and ``bias`` (zeros) of shape (C,).

    Raises
    ------
    ValueError
        If ``num_groups`` does not divide ``num_channels``.
    """

    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True
    ) -> None:
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_groups={num_groups} must divide num_channels={num_channels}"
            )
        self.num_groups, self.num_channels, self.eps, self.affine = (
            num_groups,
            num_channels,
            eps,
            affine,
        )
        self.weight = Parameter(np.ones(num_channels, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, np.float32)) if affine else None

    def forward(self, x):
        """Normalise ``x`` (N, C, ...) per sample over groups of channels."""
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        """Groups, channels, eps and affine flag, as shown in the repr."""
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(_NormBase):
    """Instance norm over (N, C, H, W) (or unbatched (C, H, W)): statistics per sample and
    channel. PyTorch's defaults: ``affine=False``, ``track_running_stats=False``; with
    running statistics, eval mode normalises by them."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def forward(self, x):
        """Normalise ``x`` per sample and channel."""
        if x.ndim not in (3, 4):
            raise ValueError(
                f"InstanceNorm2d: expected (N, C, H, W) or (C, H, W) input, got shape {x.shape}"
            )
        unbatched = x.ndim == 3
        if unbatched:
            x = x.unsqueeze(0)
        self._check_channels(x)
        use_input = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
        y = F.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats=use_input,
            momentum=self.momentum,
            eps=self.eps,
        )
        return y.squeeze(0) if unbatched else y
