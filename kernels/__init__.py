"""tapegrad.kernels: compiled kernels behind a registry (arrays in, arrays out).

Each family is a subpackage (``conv``, ``pool``, ...) holding one module per variant:
``reference.py`` (NumPy), ``<algorithm>_numba.py`` and ``<algorithm>_cy.pyx``. The
family's ``__init__`` documents the variant interface, declares each op's call record
(:mod:`.calls`) and registers its variants; nothing is imported or compiled until used.

The middle layer, one concern a module: :mod:`.registry` (which variant runs a call),
:mod:`.tune` (autotune's timing race), :mod:`.store` (tuned winners and generated rules,
per machine, in the user's cache folder), :mod:`.record` (the calls a model makes).

Adding a variant from your own code: :func:`register` (``register("conv2d", "mine",
my_module)``), or an installed package's ``tapegrad.kernels`` entry point; :func:`get`
returns a built-in variant to wrap or compare. See docs/tutorials/kernels.md.

Process settings: :func:`init` applies tapegrad's thread count (``kernels.threads``) and
allocator policy (``kernels.memory``) once; the ops call it before their first kernel,
and selecting or resolving a variant changes nothing process-wide.

Why this folder sits at the repository root and not under ``src/tapegrad``: the kernels
are arrays-in, arrays-out code with their own build (Cython extensions, Numba caches) and
no dependency on the framework above them; keeping them apart makes that boundary
visible. ``setup.py`` maps it into the package (``package_dir={"tapegrad.kernels":
"kernels"}``), so it is imported as ``tapegrad.kernels`` and nothing imports it by path.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .calls import KernelCall, declarations, declared
from .conv.im2col import clear_workspace
from .memory import available_bytes, retain_freed_memory
from .record import record
from .registry import (
    autotune,
    autotune_enabled,
    clear_autotune_cache,
    clear_tuning,
    get,
    load_plugins,
    ops,
    register,
    resolve,
    resolved_name,
    selected,
    unavailable,
    use,
    variants,
)
from .store import (
    autotune_cache_path,
    cache_dir,
    disk_cache,
    disk_cache_enabled,
    rules_path,
)
from .threads import get_num_threads, set_num_threads

# every subpackage is a kernel family: importing it registers its variants and declares its
# call records (cheap: a family's __init__ imports no kernel module). A new family needs no
# line here.
for _family in _pkgutil.iter_modules(__path__):
    if _family.ispkg:
        _importlib.import_module(f"{__name__}.{_family.name}")


def init() -> None:
    """Apply tapegrad's process settings once: the thread count of Numba, OpenMP and
    BLAS (``TAPEGRAD_NUM_THREADS`` or :func:`set_num_threads`) and the allocator policy
    of :mod:`.memory`. Idempotent; ``tapegrad.ops`` calls it before its first kernel."""
    from .threads import ensure_applied

    ensure_applied()


__all__ = [
    "KernelCall",
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
    "declarations",
    "declared",
    "get",
    "get_num_threads",
    "init",
    "load_plugins",
    "ops",
    "record",
    "register",
    "resolve",
    "resolved_name",
    "retain_freed_memory",
    "rules_path",
    "selected",
    "set_num_threads",
    "unavailable",
    "use",
    "variants",
]
