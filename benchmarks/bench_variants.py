"""Every registered op's standard cases in every variant and direction.

    pytest benchmarks/bench_variants.py --benchmark-only
    pytest benchmarks/bench_variants.py --benchmark-only -k conv2d --benchmark-compare

Groups are cases ("conv2d N32 64>64 32x32 k3x3 s1 p1 both"), so pytest-benchmark's
table compares the variants of one case side by side. The same cases, with GFLOP/s,
the roofline and agreement checks, come from ``python -m tapegrad bench``.
"""

from __future__ import annotations

import pytest
from _grid import compared

from tapegrad.bench import cases as C


def _params():
    out = []
    for op in C.registered_ops():
        for case in C.SPECS[op].cases("standard"):
            for d in C.SPECS[op].directions(case.p):
                for v in compared(op):
                    out.append(pytest.param(case, v, d, id=f"{op}-{case.label}-{d}-{v}"))
    return out


@pytest.mark.parametrize("case, variant, direction", _params())
def test_variant(kernel_bench, case, variant, direction):
    kernel_bench(case, variant, direction)
