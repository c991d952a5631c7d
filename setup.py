"""Build script: packages plus the Cython (OpenMP) kernels.

Every ``kernels/**/*.pyx`` becomes an optional extension ``tapegrad.kernels.<family>.<name>``.
A failed compile is a warning, not an error: ``import tapegrad`` still works and the
Cython variants report themselves unavailable (``tapegrad.kernels.variants``).

Environment:
  TAPEGRAD_CYTHON_BOUNDSCHECK=1   build with boundscheck/wraparound on (used by the tests)
  TAPEGRAD_NO_CYTHON=1            skip the extensions altogether
"""

import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _packages() -> list[str]:
    pkgs = find_packages("src")
    pkgs += ["tapegrad.kernels"] + ["tapegrad.kernels." + p for p in find_packages("kernels")]
    return pkgs


def _extensions() -> list:
    if os.environ.get("TAPEGRAD_NO_CYTHON"):
        return []
    try:
        import numpy as np
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:  # pragma: no cover - build-time only
        print(f"tapegrad: building without Cython kernels ({exc})", file=sys.stderr)
        return []
    checked = os.environ.get("TAPEGRAD_CYTHON_BOUNDSCHECK") == "1"
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    exts = []
    for pyx in sorted((HERE / "kernels").rglob("*.pyx")):
        rel = pyx.relative_to(HERE / "kernels").with_suffix("")
        name = "tapegrad.kernels." + ".".join(rel.parts)
        exts.append(
            Extension(
                name,
                [str(pyx.relative_to(HERE))],
                include_dirs=[np.get_include()],
                extra_compile_args=["-O3", *openmp],
                extra_link_args=openmp,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                optional=True,
            )
        )
    directives = {
        "language_level": 3,
        "boundscheck": checked,
        "wraparound": checked,
        "cdivision": True,
        "initializedcheck": checked,
    }
    return cythonize(exts, compiler_directives=directives, quiet=True)


setup(
    packages=_packages(),
    package_dir={"": "src", "tapegrad.kernels": "kernels"},
    package_data={"tapegrad.kernels": ["*.pxi", "**/*.pyx", "**/*.pxi", "*.json"]},
    ext_modules=_extensions(),
)
