"""Parametrisation shared by the pytest-benchmark suites: every compiled variant of an op,
then PyTorch, so that pytest-benchmark's table for one case lines them up."""

from __future__ import annotations

import pytest

import tapegrad.kernels as K


def compared(op: str) -> list[str]:
    """The variants a suite times for ``op``: each compiled one, then ``"torch"``."""
    return [*(n for n in K.variants(op) if n != "reference"), "torch"]


def case_params(cases: list[tuple], directions: tuple[str, ...] = ("forward", "both")) -> list:
    """``pytest.param(case, variant, direction)`` for cases whose first two items are the
    op and the label."""
    return [
        pytest.param(case, v, d, id=f"{case[1]}-{d}-{v}")
        for case in cases
        for d in directions
        for v in compared(case[0])
    ]
