"""Environment variables read on every kernel call, at the cost of a dict lookup.

``os.environ.get`` encodes the name, and for an unset name raises and catches a KeyError
inside ``Mapping.get``: most of a microsecond each, and ``auto``'s dispatch reads several
variables per op. :func:`getenv` reads ``os.environ``'s own table of encoded names, so
every change made through ``os.environ`` (``monkeypatch.setenv``, ``mock.patch.dict``,
plain assignment) is seen by the next call, as with ``os.environ.get``.
"""

from __future__ import annotations

import os

_keys: dict[str, object] = {}  # name -> its encoded key in os.environ's table
_seen: list = [None, None]  # [os.environ object, its table] the encoded keys belong to


def getenv(name: str) -> str | None:
    """``os.environ.get(name)``: the variable's value, or None when it is not set."""
    env = os.environ
    key = _keys.get(name)
    if key is None or env is not _seen[0]:
        return _first_read(name)
    value = _seen[1].get(key)
    return None if value is None else env.decodevalue(value)


def _first_read(name: str) -> str | None:
    """Encode ``name`` for the table of the current ``os.environ`` (after a first read or
    a replaced ``os.environ``); a mapping without such a table is read with ``get``."""
    env = os.environ
    data = getattr(env, "_data", None)
    if data is None or not hasattr(env, "encodekey"):
        _seen[0] = None
        return env.get(name)
    if _seen[0] is not env:
        _seen[0], _seen[1] = env, data
        _keys.clear()
    _keys[name] = env.encodekey(name)
    return getenv(name)
