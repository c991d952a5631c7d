"""pytest-benchmark support for ``benchmarks/`` (not part of the default test run).

``pytest benchmarks/ --benchmark-only`` collects the ``bench_*.py`` files here (pytest's
default pattern only knows ``test_*.py``) and gives them the ``kernel_bench`` fixture: one
op case in one variant and direction, timed by pytest-benchmark, grouped by case so that
pytest-benchmark's comparison table lines up the variants of one case.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def pytest_collect_file(file_path, parent):
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest collects it already
    return pytest.Module.from_parent(parent, path=file_path)


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    """Kernels on 2 threads, as every comparison in the project quotes them."""
    import tapegrad

    tapegrad.set_num_threads(2)


@pytest.fixture
def kernel_bench(benchmark) -> Callable:
    """``kernel_bench(case, variant, direction)``: time ``case`` (a
    ``tapegrad.bench.cases.Case``) in ``variant`` and ``direction``
    (forward, backward, both) after one warm-up call; the benchmark group is the case."""
    import tapegrad.kernels as K
    from tapegrad.bench.runner import _Harness

    def run(case, variant: str, direction: str) -> None:
        rng = np.random.default_rng(0)
        arrays, grads = case.spec.build(case.p, rng, np.float32)
        probe = _Harness(case, arrays, grads, None)
        with K.use(**{case.op: "reference"}):
            shape = probe.forward().shape
        gy = rng.standard_normal(shape).astype(np.float32)
        h = _Harness(case, arrays, grads, gy)
        benchmark.group = f"{case.op} {case.label} {direction}"
        benchmark.name = variant
        benchmark.extra_info.update(
            flops=case.spec.flops(case.p, direction), bytes=case.spec.bytes(case.p, direction)
        )
        with K.use(**{case.op: variant}):
            h.timings(direction, 0)  # warm-up: JIT compile or cache load, never timed
            fn, setup = _calls(h, direction)
            benchmark.pedantic(fn, setup=setup, rounds=10, warmup_rounds=0)

    return run


def _calls(h, direction: str):
    # pytest-benchmark's setup returns (args, kwargs) for the timed call
    if direction == "forward":
        return h.forward, None
    if direction == "backward":
        return h.backward, lambda: ((h.forward_grad(),), {})
    return h.both, lambda: (h.zero_grads(), ((None,), {}))[1]
