"""What a call record declares about its op's example calls, for the tables that are
derived from the records instead of listing every op by hand.

A kernel family's record (:class:`~tapegrad.kernels.calls.KernelCall`) sets:

``examples``
    a tuple of :class:`Example`: small calls of the op through its functional. The fuzz
    test runs each one over random data in both float dtypes through every variant
    against ``reference``; the hardening table runs each one over five memory layouts
    (strided, negative strides, Fortran order, read-only); the first one is also compared
    with PyTorch, since the same call through ``torch.nn.functional`` is the oracle.
``determinism``
    an :class:`Example` large enough to reach the kernels' threaded path, for the table
    of per-variant determinism (same thread count bit-identical, 1 vs 2 threads); the
    first example when unset.
``bench``
    a :class:`BenchCase`: how ``python -m tapegrad bench`` builds, calls, counts and
    labels the op's cases, and the short names ``--ops`` accepts.

The calls receive the functional module as their first argument (``tapegrad.nn.functional``
or ``torch.nn.functional``), so one declaration serves both frameworks and the family's
package never imports the layers above it.

The helpers below (``F32``, :func:`prod`, :func:`per_direction`, :func:`nchw_label`,
:func:`x_input`) are the pieces most bench declarations share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DIRECTIONS = ("forward", "backward", "both")
F32 = 4  # bytes per float32 element


@dataclass(frozen=True)
class Example:
    """A small example call of an op.

    Parameters
    ----------
    call : callable
        ``call(F, *inputs)`` runs the op through the functional module ``F``
        (``tapegrad.nn.functional`` or ``torch.nn.functional``) on Tensors of ``shapes``.
    shapes : tuple of tuples of int
        The shapes of the float inputs, in ``call``'s order; each input gets a gradient.
    name : str
        Told apart from the op's other examples in table ids (``"ceil"``).
    seed : int or None
        The op draws random numbers: the tables seed tapegrad with it before each run.
    torch : bool
        Whether the same call through ``torch.nn.functional`` is the oracle (False where
        PyTorch has no such function or draws other random numbers).
    """

    call: Callable[..., Any]
    shapes: tuple[tuple[int, ...], ...]
    name: str = ""
    seed: int | None = None
    torch: bool = True


@dataclass(frozen=True)
class BenchCase:
    """How ``bench`` runs one op (``tapegrad.bench.cases`` turns it into an ``OpSpec``).

    A case's parameters are a dict ``p`` (``N``, ``C``, ``H``, ``W``, kernel, ...).

    Parameters
    ----------
    kind : {"flops", "bytes"}
        Rate column: GFLOP/s against the GEMM peak, or GB/s against the copy bandwidth.
    standard : tuple of dict
        The standard cases (``--quick`` divides their batch ``N`` by ``quick_scale``).
    label : callable
        ``label(p) -> str``, the case's column text.
    build : callable
        ``build(p, rng, dtype) -> (arrays, grad_names)``: input arrays by name and the
        names that get gradients.
    call : callable
        ``call(F, T, p)``: the op through functional module ``F`` on the dict of Tensors
        ``T`` (the same names as ``build``'s arrays).
    flops, bytes : callable
        ``flops(p, direction)`` and ``bytes(p, direction)`` for a direction of
        ``DIRECTIONS``: the exact work and the bytes that must move.
    torch_call : callable or None
        ``torch_call(tF, T, p)`` where PyTorch's computation is not ``call`` itself.
    directions : callable or None
        ``directions(p)``: the directions a case has (all three when None).
    seeded : bool
        The op draws random numbers: seed before each checked run.
    quick_scale : int
        ``--quick`` divides the batch of the standard cases by this.
    aliases : tuple of str
        Short names ``--ops`` accepts for the op.
    """

    kind: str
    standard: tuple[dict[str, Any], ...]
    label: Callable[[dict], str]
    build: Callable[[dict, np.random.Generator, Any], tuple[dict[str, np.ndarray], tuple]]
    call: Callable[[Any, dict, dict], Any]
    flops: Callable[[dict, str], int]
    bytes: Callable[[dict, str], int]
    torch_call: Callable[[Any, dict, dict], Any] | None = None
    directions: Callable[[dict], tuple[str, ...]] | None = None
    seeded: bool = False
    quick_scale: int = 8
    aliases: tuple[str, ...] = field(default=())


def prod(*xs: int) -> int:
    """The product of ints, as a Python int."""
    return int(math.prod(xs))


def per_direction(fwd: int, bwd: int, direction: str) -> int:
    """``fwd``, ``bwd`` or their sum for ``direction`` forward, backward or both."""
    return {"forward": fwd, "backward": bwd, "both": fwd + bwd}[direction]


def elems(p: dict) -> int:
    """``N * C * H * W`` of a case."""
    return prod(p["N"], p["C"], p["H"], p["W"])


def nchw_label(p: dict) -> str:
    """``N64 C64 32x32``, then the case's ``mode``, ``groups`` (``G8``) and ``p`` (``p0.5``)
    when it has them."""
    s = f"N{p['N']} C{p['C']} {p['H']}x{p['W']}"
    if "mode" in p:
        s += f" {p['mode']}"
    if "groups" in p:
        s += f" G{p['groups']}"
    if "p" in p:
        s += f" p{p['p']}"
    return s


def x_input(p: dict, rng: np.random.Generator, dtype: Any):
    """One input ``x`` of shape (N, C, H, W), standard normal, with a gradient."""
    x = rng.standard_normal((p["N"], p["C"], p["H"], p["W"])).astype(dtype)
    return {"x": x}, ("x",)


def one_pass_bytes(p: dict, direction: str) -> int:
    """float32 x read and y written forward; gy and x read, gx written backward."""
    n = F32 * elems(p)
    return per_direction(2 * n, 3 * n, direction)


def mask_bytes(p: dict, direction: str) -> int:
    """float32 in and out each way, plus a one-byte mask written forward and read backward
    (ReLU, dropout)."""
    n = elems(p)
    return per_direction(2 * F32 * n + n, 2 * F32 * n + n, direction)


def one_per_element(p: dict, direction: str) -> int:
    """One operation per element each way."""
    n = elems(p)
    return per_direction(n, n, direction)
