"""Build script: packages plus the Cython (OpenMP) kernels.

Every ``kernels/**/*.pyx`` becomes an optional extension ``tapegrad.kernels.<family>.<name>``.
A failed compile is a warning, not an error: ``import tapegrad`` still works and the
Cython variants report themselves unavailable (``tapegrad.kernels.variants``).

The extensions link a private copy of GCC's OpenMP runtime, ``kernels/_omp/libtg-omp.so``
(libgomp with its soname renamed), so their thread team is tapegrad's own whichever other
library started an OpenMP runtime first (PyTorch ships its own libgomp; if it is loaded
first, a plain ``-lgomp`` would bind tapegrad's kernels to it and to its thread policy).
Where no libgomp can be copied the extensions link the system one as before.

Environment:
  TAPEGRAD_CYTHON_BOUNDSCHECK=1   build with boundscheck/wraparound on (used by the tests)
  TAPEGRAD_NO_CYTHON=1            skip the extensions altogether
  TAPEGRAD_SHARED_OPENMP=1        link the system libgomp instead of a private copy
  TAPEGRAD_PORTABLE_BUILD=1       compile for the compiler's default target instead of
                                  ``-march=native`` (for binaries copied to other machines)
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
OMP_DIR = HERE / "kernels" / "_omp"
OMP_NAME = "libtg-omp.so"  # as long as "libgomp.so.1", so the soname is patched in place


def _private_openmp() -> Path | None:
    """Copy the compiler's libgomp to kernels/_omp/ under its own soname; None if we cannot."""
    if sys.platform != "linux" or os.environ.get("TAPEGRAD_SHARED_OPENMP") == "1":
        return None
    cc = (sysconfig.get_config_var("CC") or "gcc").split()[0]
    try:
        found = subprocess.run(
            [cc, "-print-file-name=libgomp.so.1"], capture_output=True, text=True, check=True
        ).stdout.strip()
        data = Path(found).read_bytes()
    except (OSError, subprocess.CalledProcessError):
        return None
    old, new = b"\0libgomp.so.1\0", b"\0" + OMP_NAME.encode() + b"\0"
    if data[:4] != b"\x7fELF" or data.count(old) != 1:
        return None
    OMP_DIR.mkdir(exist_ok=True)
    out = OMP_DIR / OMP_NAME
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data.replace(old, new))
    tmp.chmod(0o755)
    os.replace(tmp, out)
    return out


class _BuildExt(build_ext):
    """Also place the private OpenMP runtime beside the built extensions, and build again
    an extension whose existing binary links the other OpenMP runtime.

    build_ext skips an extension whose binary is newer than its sources, whatever its link
    flags; a binary built before the private runtime existed (or with
    TAPEGRAD_SHARED_OPENMP=1) would otherwise stay bound to libgomp.so.1, which is
    PyTorch's copy when PyTorch is imported first.
    """

    def _remove_other_runtime_binaries(self):
        """Remove each extension's binary, in build/ and in place, that links the OpenMP
        runtime its link flags do not name, so that it is built (or copied) again."""
        inplace = self.inplace
        try:
            for self.inplace in sorted({0, inplace}):
                for ext in self.extensions:
                    target = Path(self.get_ext_fullpath(ext.name))
                    private = f"-l:{OMP_NAME}" in ext.extra_link_args
                    if target.exists() and (OMP_NAME.encode() in target.read_bytes()) != private:
                        target.unlink()
        finally:
            self.inplace = inplace

    def run(self):
        self._remove_other_runtime_binaries()
        super().run()
        src = OMP_DIR / OMP_NAME
        if src.exists() and not self.inplace:
            dest = Path(self.build_lib) / "tapegrad" / "kernels" / "_omp"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / OMP_NAME)


def _arch_flags(cc: str) -> list[str]:
    """``-march=native`` (the build machine's vector units: AVX2 / AVX-512 and FMA) unless
    TAPEGRAD_PORTABLE_BUILD=1 or the compiler refuses the flag."""
    if os.environ.get("TAPEGRAD_PORTABLE_BUILD") == "1":
        return []
    try:
        probe = subprocess.run(
            [cc, "-march=native", "-x", "c", "-c", "-o", os.devnull, "-"],
            input="int main(void) { return 0; }\n",
            capture_output=True,
            text=True,
        )
        ok = probe.returncode == 0
    except OSError:
        ok = False
    return ["-march=native"] if ok else []


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
    private = _private_openmp() if openmp else None
    arch = _arch_flags((sysconfig.get_config_var("CC") or "gcc").split()[0])
    exts = []
    for pyx in sorted((HERE / "kernels").rglob("*.pyx")):
        rel = pyx.relative_to(HERE / "kernels").with_suffix("")
        name = "tapegrad.kernels." + ".".join(rel.parts)
        link = openmp
        if private is not None:  # -fopenmp would add -lgomp: link the copy by name instead
            up = "/".join([".."] * (len(rel.parts) - 1)) or "."
            link = ["-pthread", f"-L{OMP_DIR}", f"-l:{OMP_NAME}", f"-Wl,-rpath,$ORIGIN/{up}/_omp"]
        exts.append(
            Extension(
                name,
                [str(pyx.relative_to(HERE))],
                include_dirs=[np.get_include()],
                extra_compile_args=["-O3", *arch, *openmp],
                extra_link_args=link,
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
    cmdclass={"build_ext": _BuildExt},
)
