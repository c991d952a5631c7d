"""Parametrisation shared by the pytest-benchmark suites: every compiled variant of an op,
so that pytest-benchmark's table for one case lines them up.

PyTorch is not a row here: these suites time everything in one process, and a comparison
with PyTorch runs each framework in its own process at its own defaults (OpenMP teams,
allocator and BLAS threads of one would otherwise slow the other). Those comparisons are
``benchmarks/conv_targets.py``, ``norm_vs_torch.py``, ``train_vs_torch.py`` and
``python -m tapegrad bench --compare torch``."""

from __future__ import annotations

import pytest

import tapegrad.kernels as K


def compared(op: str) -> list[str]:
    """The variants a suite times for ``op``: each compiled one (not the NumPy reference)."""
    return [n for n in K.variants(op) if n != "reference"]


def case_params(cases: list[tuple], directions: tuple[str, ...] = ("forward", "both")) -> list:
    """``pytest.param(case, variant, direction)`` for cases whose first two items are the
    op and the label."""
    return [
        pytest.param(case, v, d, id=f"{case[1]}-{d}-{v}")
        for case in cases
        for d in directions
        for v in compared(case[0])
    ]
