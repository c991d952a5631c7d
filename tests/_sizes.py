"""How much the property tests and grids run: sized for the default run, more under ``-m slow``
and the long hypothesis profile.

* ``examples(n)``: a property test's ``max_examples``; ``n`` in the default run, 20 times
  ``n`` under ``TAPEGRAD_HYPOTHESIS_PROFILE=long`` (the profile's own tests read it too).
* ``covering(grid, keep)``: a parametrised grid whose rows ``keep(*row)`` selects run by
  default (a covering subset: every value of every axis at least once), the others are
  marked ``slow`` (``pytest -m slow`` runs them; ``-m "slow or not slow"`` runs everything).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

import pytest

LONG = os.environ.get("TAPEGRAD_HYPOTHESIS_PROFILE", "default") == "long"


def examples(n: int) -> int:
    """``max_examples`` for a property test: ``n`` by default, ``20 * n`` in the long profile."""
    return 20 * n if LONG else n


def covering(grid: Iterable[Sequence], keep: Callable[..., bool]) -> list:
    """The rows of ``grid`` as ``pytest.param``s; those ``keep(*row)`` rejects marked slow."""
    rows = [tuple(r) for r in grid]
    kept = [r for r in rows if keep(*r)]
    for axis in range(len(rows[0])):  # every value of every axis stays in the default run
        missing = {repr(r[axis]) for r in rows} - {repr(r[axis]) for r in kept}
        assert not missing, f"covering(): axis {axis} loses {sorted(missing)}"
    return [
        pytest.param(*r) if keep(*r) else pytest.param(*r, marks=pytest.mark.slow) for r in rows
    ]
