"""Benchmarking kernel variants: ``python -m tapegrad bench`` (or ``python -m tapegrad.bench``).

- :mod:`.cases`: the case table (inputs, FLOPs / bytes, tapegrad and PyTorch calls per op);
- :mod:`.machine`: the measured GEMM rate and copy bandwidth, CPU model, versions;
- :mod:`.runner`: warm-up, JIT time apart, medians, agreement with ``reference``;
- :mod:`.report`: terminal table, JSON, PNG roofline and bars, comparison of two runs;
- :mod:`.rules`: the shape rules ``auto`` uses, regenerated from a bench JSON;
- :mod:`.cli`: ``add_arguments(parser)`` and ``main(args)``.
"""

from __future__ import annotations

from .cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
