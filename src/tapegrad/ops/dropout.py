"""Dropout ops and the counter-based generator state they draw from.

Each call takes the next ``step`` of the dropout stream; element ``i`` of its mask is a
function of (seed, step, i) only (Philox-4x32-10, ``tapegrad.kernels.rng``), so
``tapegrad.manual_seed`` reproduces masks bit for bit on any thread count and backend.
Bernoulli masks are kept as uint8 for the backward; Gaussian noise is regenerated from
(seed, step) in the backward instead of being stored.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from tapegrad.kernels.dropout import Dropout2dCall, DropoutCall, GaussianDropoutCall

from ..autograd import Context, Function, linear_backward_graph
from . import tuning
from .checks import check_float, contiguous, fail

_lock = threading.Lock()
_state = {"seed": 0, "step": 0}


def reset_rng(seed: int) -> None:
    """Set the dropout stream's seed and restart its call counter (``manual_seed`` does)."""
    with _lock:
        _state["seed"] = int(seed)
        _state["step"] = 0


def rng_state() -> tuple[int, int]:
    """(seed, step) the next dropout call will use."""
    with _lock:
        return _state["seed"], _state["step"]


def set_rng_state(seed: int, step: int) -> None:
    """Put the dropout stream at ``(seed, step)``, as :func:`rng_state` returned it (a
    resumed run continues the stream where the interrupted one stopped)."""
    if int(step) < 0:
        raise ValueError(f"set_rng_state: step must be >= 0, got {step}")
    with _lock:
        _state["seed"] = int(seed)
        _state["step"] = int(step)


def next_key() -> tuple[int, int]:
    """Take one step of the stream: the (seed, step) for one dropout call."""
    with _lock:
        key = (_state["seed"], _state["step"])
        _state["step"] += 1
        return key


def check_p(fn: str, p) -> float:
    if type(p) is float and 0.0 <= p <= 1.0:  # the common call
        return p
    if not isinstance(p, (int, float, np.floating)) or isinstance(p, bool):
        fail(fn, f"p must be a float in [0, 1], got {p!r}", TypeError)
    if not 0.0 <= p <= 1.0:
        fail(fn, f"p must be in [0, 1], got {p!r}")
    return float(p)


def check_sigma(fn: str, sigma) -> float:
    if not isinstance(sigma, (int, float, np.floating)) or isinstance(sigma, bool):
        fail(fn, f"sigma must be a non-negative float, got {sigma!r}", TypeError)
    if not sigma >= 0.0 or math.isinf(sigma):
        fail(fn, f"sigma must be a finite non-negative float, got {sigma!r}")
    return float(sigma)


def keep_scale(p: float, scale: bool) -> float:
    """The factor on kept elements: 1/(1-p) (inverted dropout), 1 unscaled, 0 when p=1."""
    if p >= 1.0:
        return 0.0
    return 1.0 / (1.0 - p) if scale else 1.0


class Dropout(Function):
    """``apply(x, p=, scale=)``: zero each element with probability p; kept ones times
    ``keep_scale(p, scale)``. Saves the uint8 keep-mask."""

    @staticmethod
    def check(x, p=0.5, scale=True) -> tuple:
        """Float input, p in [0, 1]; returns forward's arguments."""
        p = check_p("dropout", p)
        check_float("dropout", input=x)
        return x, p, bool(scale)

    @staticmethod
    def forward(ctx: Context, x, p=0.5, scale=True):
        x = contiguous(x)
        seed, step = next_key()
        f = keep_scale(p, scale)
        # kernels are pure functions of (seed, step): autotune's trials draw no numbers
        call = DropoutCall.of(x)
        mod = tuning.resolve(ctx, call, x, seed, step, p, f)
        y, keep = call.forward(mod, x, seed, step, p, f)
        ctx.save_for_backward(keep)
        ctx.mod, ctx.call, ctx.f = mod, call, f
        return y

    @staticmethod
    def backward(ctx: Context, gy):
        (keep,) = ctx.saved_arrays
        return ctx.call.backward(ctx.mod, np.ascontiguousarray(gy), keep, ctx.f)

    backward_graph = linear_backward_graph(backward)  # a mask times a scale: its own transpose


class Dropout2d(Function):
    """``apply(x, p=, scale=)``: x (..., H, W); each (H, W) plane (a channel of one sample)
    is kept or zeroed whole. Saves one uint8 per plane."""

    @staticmethod
    def check(x, p=0.5, scale=True) -> tuple:
        """Float input (N, C, H, W) or (C, H, W), p in [0, 1]; returns forward's arguments."""
        fn = "dropout2d"
        p = check_p(fn, p)
        check_float(fn, input=x)
        if x.ndim not in (3, 4):
            fail(fn, f"input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}")
        return x, p, bool(scale)

    @staticmethod
    def forward(ctx: Context, x, p=0.5, scale=True):
        s = x.shape[-2] * x.shape[-1]
        planes = x.size // s if s else 0
        x2 = contiguous(x).reshape(planes, s)
        seed, step = next_key()
        f = keep_scale(p, scale)
        call = Dropout2dCall.of(x2)
        mod = tuning.resolve(ctx, call, x2, seed, step, p, f)
        y, keep = call.forward(mod, x2, seed, step, p, f)
        ctx.save_for_backward(keep)
        ctx.mod, ctx.call, ctx.f, ctx.shape = mod, call, f, x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx: Context, gy):
        (keep,) = ctx.saved_arrays
        gy2 = np.ascontiguousarray(gy).reshape(keep.shape[0], gy.size // max(keep.shape[0], 1))
        return ctx.call.backward(ctx.mod, gy2, keep, ctx.f).reshape(ctx.shape)

    backward_graph = linear_backward_graph(backward)  # a mask times a scale: its own transpose


class GaussianDropout(Function):
    """``apply(x, sigma=)``: y = x * R with R ~ N(1, sigma^2) per element (seed problem 8).
    The backward regenerates R from the call's (seed, step)."""

    @staticmethod
    def check(x, sigma=0.5) -> tuple:
        """Float input, sigma finite and >= 0; returns forward's arguments."""
        sigma = check_sigma("gaussian_dropout", sigma)
        check_float("gaussian_dropout", input=x)
        return x, sigma

    @staticmethod
    def forward(ctx: Context, x, sigma=0.5):
        x = contiguous(x)
        seed, step = next_key()
        call = GaussianDropoutCall.of(x)
        mod = tuning.resolve(ctx, call, x, seed, step, sigma)
        ctx.mod, ctx.call, ctx.key, ctx.sigma = mod, call, (seed, step), sigma
        return call.forward(mod, x, seed, step, sigma)

    @staticmethod
    def backward(ctx: Context, gy):
        seed, step = ctx.key
        return ctx.call.backward(ctx.mod, np.ascontiguousarray(gy), seed, step, ctx.sigma)

    backward_graph = linear_backward_graph(backward)  # a mask times a scale: its own transpose
