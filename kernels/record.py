"""Recording the calls ops resolve: ``with record() as calls: model(x)``.

``bench`` uses it to learn a model's layer shapes (the zoo presets) and to key the
generated rules. Each entry is ``(op, call record)``; recorders are per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class _Local(threading.local):
    # a class-level default: read on every resolved call, found without a missing attribute
    recorders: list[list[tuple[str, Hashable]]] | None = None


_local = _Local()


def _recorders() -> list[list[tuple[str, Hashable]]]:
    if _local.recorders is None:
        _local.recorders = []
    return _local.recorders


@contextmanager
def record() -> Iterator[list[tuple[str, Hashable]]]:
    """Collect ``(op, signature)`` of every kernel call resolved inside the block.

    ``with record() as calls: model(x)`` lists the kernel calls a forward pass makes;
    ``bench`` uses it for the zoo presets and to key the generated rules.
    """
    log: list[tuple[str, Hashable]] = []
    _recorders().append(log)
    try:
        yield log
    finally:
        stack = _recorders()
        # by identity: two logs with the same calls compare equal
        stack[:] = [r for r in stack if r is not log]


def note(op: str, signature: Hashable) -> None:
    """Append ``(op, signature)`` to every open recorder of this thread."""
    for log in _recorders():
        log.append((op, signature))
