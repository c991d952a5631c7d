"""tapegrad.kernels: compiled kernels behind a registry (arrays in, arrays out).

Each family is a subpackage (``conv``, ``pool``, ...) holding one module per variant:
``reference.py`` (NumPy), ``<algorithm>_numba.py`` and ``<algorithm>_cy.pyx``. The
family's ``__init__`` registers its variants; nothing is imported or compiled until used.
"""

from . import activation, conv, conv_transpose, depthwise, dropout, norm, pool, rng  # noqa: F401  (registration side effects)
from .conv.im2col import clear_workspace
from .memory import available_bytes, retain_freed_memory
from .registry import (
    autotune,
    autotune_cache_path,
    autotune_enabled,
    cache_dir,
    clear_autotune_cache,
    clear_tuning,
    disk_cache,
    disk_cache_enabled,
    get,
    ops,
    record,
    resolve,
    resolved_name,
    selected,
    unavailable,
    use,
    variants,
)
from .threads import get_num_threads, set_num_threads

__all__ = [
    "autotune",
    "autotune_cache_path",
    "autotune_enabled",
    "available_bytes",
    "cache_dir",
    "clear_autotune_cache",
    "clear_tuning",
    "clear_workspace",
    "disk_cache",
    "disk_cache_enabled",
    "get",
    "get_num_threads",
    "ops",
    "record",
    "resolve",
    "resolved_name",
    "retain_freed_memory",
    "selected",
    "set_num_threads",
    "unavailable",
    "use",
    "variants",
]
