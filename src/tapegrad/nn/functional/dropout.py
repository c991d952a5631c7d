"""Dropout: dropout, dropout2d, gaussian_dropout (identity when not training).

Masks come from a counter-based generator: ``tapegrad.manual_seed(s)`` makes every
later call's mask reproducible, whatever the thread count or kernel backend.
"""

from __future__ import annotations

from ...ops.dropout import Dropout, Dropout2d, GaussianDropout
from ...tensor import Tensor
from ._common import _t, check_inplace


def dropout(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    scale: bool = True,
    *,
    inplace: bool = False,
) -> Tensor:
    """Zero each element of input (any shape) with probability p -> same shape.

    ``scale=True`` (PyTorch's inverted dropout) multiplies kept elements by 1/(1-p) so
    the expectation is unchanged and inference needs no change. ``scale=False`` keeps
    them as they are (the seed's problem 4: at inference multiply weights by 1-p).
    p=1 gives zeros; p outside [0, 1] is a ValueError.

    Parameters
    ----------
    input : Tensor
        Any shape, float32 or float64.
    p : float, default 0.5
        Probability of zeroing an element.
    training : bool, default True
        False returns ``input`` unchanged.
    scale : bool, default True
    inplace : bool, default False
        Keyword only; accepted for PyTorch compatibility, the output is always a new tensor.

    Returns
    -------
    Tensor
        The input's shape and dtype. Masks come from tapegrad's counter-based generator
        (seeded by ``tapegrad.manual_seed``): the same for every kernel variant and thread count.

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1].
    TypeError
        If ``inplace`` is not a bool.
    """
    x = _t(input, "dropout")
    check_inplace("dropout", inplace)
    if not training or p == 0.0:
        Dropout.check(x.data, p, scale)  # the op's own check: bad arguments fail in eval too
        return x
    return Dropout.apply(x, p, scale)


def dropout2d(
    input: Tensor,
    p: float = 0.5,
    training: bool = True,
    scale: bool = True,
    *,
    inplace: bool = False,
) -> Tensor:
    """Spatial dropout: zero whole channels. input (N, C, H, W) or (C, H, W) -> same shape;
    each (H, W) plane is kept (times 1/(1-p) when ``scale``) or zeroed with probability p.

    Parameters
    ----------
    input : Tensor
        (N, C, H, W) or (C, H, W), float32 or float64.
    p : float, default 0.5
    training : bool, default True
    scale : bool, default True
    inplace : bool, default False
        Keyword only; accepted for PyTorch compatibility, the output is always a new tensor.

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1] or ``input`` is not 3-D or 4-D.
    TypeError
        If ``inplace`` is not a bool.
    """
    x = _t(input, "dropout2d")
    check_inplace("dropout2d", inplace)
    if not training or p == 0.0:
        Dropout2d.check(x.data, p, scale)
        return x
    return Dropout2d.apply(x, p, scale)


def gaussian_dropout(input: Tensor, sigma: float = 0.5, training: bool = True) -> Tensor:
    """Multiplicative Gaussian noise: input * R with R ~ N(1, sigma^2) per element (the
    seed's problem 8); the expectation is unchanged, so eval is the identity.

    Parameters
    ----------
    input : Tensor
        Any shape, float32 or float64.
    sigma : float, default 0.5
        Standard deviation of the noise.
    training : bool, default True
        False returns ``input`` unchanged.

    Raises
    ------
    ValueError
        If ``sigma`` is negative or not finite.
    """
    x = _t(input, "gaussian_dropout")
    if not training or sigma == 0.0:
        GaussianDropout.check(x.data, sigma)
        return x
    return GaussianDropout.apply(x, sigma)
