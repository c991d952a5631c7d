"""Where tapegrad's Numba kernels keep their compiled cache: the user's cache folder.

Numba's default (``cache=True``) writes ``__pycache__/*.nbi, *.nbc`` next to the source,
i.e. inside the installed package. Those folders outlive ``pip uninstall`` and then shadow
a later (editable) install of tapegrad as a namespace package. So every module of
tapegrad that compiles with ``cache=True`` imports this one before defining its
functions, which installs (once) a cache locator that Numba asks first for each
``cache=True`` function. It answers only for source files inside tapegrad (the
``tapegrad`` and ``tapegrad.kernels`` folders, apart in a source checkout) and puts their
cache under::

    $XDG_CACHE_HOME/tapegrad/numba/<family>_<hash>/   (default ~/.cache/tapegrad/numba/...)

(``TAPEGRAD_NUMBA_CACHE_DIR``, when set, replaces ``$XDG_CACHE_HOME/tapegrad/numba``: for a
read-only home, or to share one compiled cache between runs that keep other caches apart)

where ``<family>`` is the source's folder (``conv``, ``pool``, ...) and ``<hash>`` the SHA-1
of its absolute path, so that two installations (a venv's and a source checkout) never
overwrite each other's entries. Functions outside
tapegrad keep Numba's own locators; ``NUMBA_CACHE_DIR``, when the user sets it, wins for
tapegrad too. No environment variable or process-wide Numba setting is changed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from numba.core import caching as _caching

# tapegrad.kernels' folder and tapegrad's (the parent package is imported before this one)
_PACKAGE_DIRS = tuple(
    {
        os.path.dirname(os.path.abspath(__file__)),
        os.path.dirname(os.path.abspath(sys.modules["tapegrad"].__file__ or "")),
    }
)


def cache_root() -> Path:
    """``$TAPEGRAD_NUMBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/tapegrad/numba`` (or
    ``~/.cache/tapegrad/numba``); read at every call.
    """
    own = os.environ.get("TAPEGRAD_NUMBA_CACHE_DIR")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tapegrad" / "numba"


def _inside_package(py_file: str) -> bool:
    path = os.path.abspath(py_file)
    return any(os.path.commonpath([path, d]) == d for d in _PACKAGE_DIRS)


class TapegradCacheLocator(_caching._SourceFileBackedLocatorMixin, _caching._CacheLocator):
    """Numba cache locator for tapegrad's sources: the per-user cache folder.

    Freshness is judged as for Numba's own source-file locators (the source file's
    contents), and functions are told apart by their first line number.
    """

    def __init__(self, py_func, py_file: str) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(cache_root() / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self) -> str:
        """The folder this function's compiled code is cached in."""
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file: str):
        """This locator for a function defined in tapegrad, else None."""
        from numba.core import config

        if config.CACHE_DIR or not os.path.exists(py_file) or not _inside_package(py_file):
            return None
        return super().from_function(py_func, py_file)


def _cache_impl_classes() -> list[type]:
    """Numba's cache implementation base (``CacheImpl``; ``_CacheImpl`` before 0.61)."""
    base = getattr(_caching, "CacheImpl", None) or _caching._CacheImpl
    return [base]


def install() -> None:
    """Put :class:`TapegradCacheLocator` first in Numba's list of locators (idempotent)."""
    for impl in _cache_impl_classes():
        classes = impl._locator_classes
        if TapegradCacheLocator not in classes:
            classes.insert(0, TapegradCacheLocator)


install()
