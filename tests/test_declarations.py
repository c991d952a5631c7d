"""Every registered kernel op gets its rows in the derived tables from its call record.

A kernel family declares, in its ``kernels/<family>/__init__.py``, its ops' call records
with their example calls and bench case (``tapegrad.kernels.examples``); the bench case
table, the fuzz tests, the hardening layout table and the determinism table build their
rows from those declarations. This walks every registered op and fails when one of them
would be missing from any table, so a family added without its declarations is caught here
rather than silently left out.
"""

from __future__ import annotations

import pytest

import tapegrad as tg
import tapegrad.bench.cases as C

from . import test_fuzz, test_hardening_inputs, test_reproducibility

# registered ops that are not tensor ops, with where they are tested instead
NOT_TENSOR_OPS = {
    "philox": "the counter-based generator the dropout families draw from "
    "(tests/test_fuzz.py::test_fuzz_philox_streams)",
}


def _fuzzed() -> set[str]:
    return {*test_fuzz.DECLARED, *test_fuzz.ELEMENTWISE}


def _layout_rows() -> set[str]:
    kernel_of = test_hardening_inputs.KERNEL_OF
    names = {name.split("-")[0] for name, _, _ in test_hardening_inputs.LAYOUT_CASES}
    return {kernel_of[n] for n in names if n in kernel_of}


@pytest.mark.parametrize("op", tg.kernels.ops())
def test_every_registered_kernel_op_has_every_derived_row(op):
    if op in NOT_TENSOR_OPS:
        assert tg.kernels.declared(op) is None, f"{op} declares a call record: give it rows"
        return
    rec = tg.kernels.declared(op)
    assert rec is not None, f"{op}: registered without a call record (kernels/calls.py)"
    missing = []
    if op not in C.SPECS:
        missing.append("a bench case (its record's bench, kernels/examples.py BenchCase)")
    if op not in _fuzzed():
        missing.append("a fuzz case (its record's examples)")
    if op not in _layout_rows():
        missing.append("a hardening layout row (its record's examples)")
    if op not in test_reproducibility._op_cases():
        missing.append("a determinism row (its record's determinism or examples)")
    assert not missing, f"{op} ({rec.__name__}) lacks " + "; ".join(missing)


def test_every_example_names_its_functional():
    """Each declared example runs its op: the call made under kernels.record() includes
    the op the example belongs to (an example of the wrong op would leave its own op
    untested)."""
    import numpy as np

    import tapegrad.nn.functional as F

    rng = np.random.default_rng(0)
    for op, rec in tg.kernels.declarations().items():
        for example in rec.examples:
            ts = [tg.tensor(rng.standard_normal(s).astype(np.float32)) for s in example.shapes]
            with tg.kernels.record() as calls:
                example.call(F, *ts)
            assert op in {o for o, _ in calls}, (op, example.name)
