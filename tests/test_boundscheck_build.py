"""The Cython kernels, built once with bounds and wraparound checks, run every Cython
variant against ``reference``: an out-of-bounds index raises IndexError there instead
of silently corrupting memory.

The build copies ``setup.py`` and the sources into a private directory (so the
checked ``.c`` files never mix with the in-tree build), sets
``TAPEGRAD_CYTHON_BOUNDSCHECK=1`` and compiles at ``-O0`` (quick to build; the checks
are the point, not speed). The result is cached under the temp directory, keyed by a
hash of every ``.pyx``/``.pxi``/``.pxd`` and ``setup.py``, so only a changed kernel is
rebuilt. A fresh subprocess then loads the checked extension modules in place of the
regular ones (before anything imports those) and runs ``tests/test_fuzz.py`` with
``TAPEGRAD_FUZZ_BACKEND=cython``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def _sources() -> list[Path]:
    files = [ROOT / "setup.py"]
    for pat in ("*.pyx", "*.pxi", "*.pxd"):
        files += sorted((ROOT / "kernels").rglob(pat))
    return files


def _modules() -> list[str]:
    """Dotted names of the extension modules setup.py builds (one per .pyx)."""
    out = []
    for pyx in sorted((ROOT / "kernels").rglob("*.pyx")):
        rel = pyx.relative_to(ROOT / "kernels").with_suffix("")
        out.append("tapegrad.kernels." + ".".join(rel.parts))
    return out


def _key() -> str:
    import Cython

    h = hashlib.sha256(f"{sys.version}|{Cython.__version__}|{SUFFIX}".encode())
    for f in _sources():
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _build(dest: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="tapegrad-checked-src-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.html", "*.pyd")
        shutil.copytree(ROOT / "kernels", work / "kernels", ignore=ignore)
        shutil.copytree(ROOT / "src" / "tapegrad", work / "src" / "tapegrad", ignore=ignore)
        # the copy compiles at -O0 and cythonizes in parallel: quick to build, same checks
        setup = (ROOT / "setup.py").read_text().replace('"-O3"', '"-O0"')
        setup = setup.replace("cythonize(exts,", "cythonize(exts, nthreads=2,")
        (work / "setup.py").write_text(setup)
        lib = work / "lib"
        env = {**os.environ, "TAPEGRAD_CYTHON_BOUNDSCHECK": "1"}
        env.pop("TAPEGRAD_NO_CYTHON", None)
        proc = subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "-j", "2"]
            + ["--build-lib", str(lib), "--build-temp", str(work / "tmp")],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        # every module must have compiled: setup.py marks them optional, so check here
        missing = [m for m in _modules() if not _so_path(lib, m).exists()]
        assert not missing, f"checked build did not produce {missing}:\n{proc.stderr[-4000:]}"
        # the generated C really carries the checks
        c_text = (work / "kernels" / "pool" / "max_cy.c").read_text()
        assert "__Pyx_RaiseBufferIndexError" in c_text
        tmp = dest.with_name(dest.name + f".{os.getpid()}")
        shutil.copytree(lib, tmp)
        try:
            os.rename(tmp, dest)  # atomic: a concurrent run sees all or nothing
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another run finished first
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _so_path(lib: Path, module: str) -> Path:
    return lib.joinpath(*module.split(".")).with_name(module.rsplit(".", 1)[1] + SUFFIX)


@pytest.fixture(scope="module")
def checked_lib() -> Path:
    pytest.importorskip("Cython")
    dest = Path(tempfile.gettempdir()) / f"tapegrad-checked-{_key()}"
    if not dest.exists():
        _build(dest)
        # drop the builds of older kernel sources (one cache entry per source state)
        for old in dest.parent.glob("tapegrad-checked-*"):
            if old != dest and len(old.name) == len(dest.name):
                shutil.rmtree(old, ignore_errors=True)
    return dest


PRELOAD = textwrap.dedent(
    """
    import importlib, importlib.util, sys
    lib, modules = sys.argv[1], sys.argv[2].split(",")
    import tapegrad, tapegrad.kernels as K
    loaded = [m for m in modules if m in sys.modules]
    assert not loaded, f"regular builds already imported: {loaded}"
    for name in modules:
        parent, leaf = name.rsplit(".", 1)
        pkg = importlib.import_module(parent)
        path = lib + "/" + name.replace(".", "/") + sys.argv[3]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        setattr(pkg, leaf, mod)
    # every Cython variant the registry hands out is a checked module, or a Python
    # driver whose compiled functions come from checked modules
    n = 0
    for op in K.ops():
        for v in K.variants(op):
            if not v.endswith("-cython"):
                continue
            mod = K.get(op, v)
            if not mod.__file__.startswith(lib):
                compiled = [f for f in vars(mod).values() if "cython_function" in type(f).__name__]
                owners = {sys.modules[f.__module__].__file__ for f in compiled}
                assert owners and all(o.startswith(lib) for o in owners), (op, v, owners)
            n += 1
    print("checked cython variants:", n, flush=True)
    """
)

PROBE = textwrap.dedent(
    """
    # deliberately wrong buffers: the checked build must raise, not write past the end
    import numpy as np
    from tapegrad.kernels.conv import im2col_cy
    from tapegrad.kernels.pool import max_cy
    x = np.ones((1, 2, 5, 5), np.float32)
    cols = np.zeros((2 * 3 * 3, 4), np.float32)   # needs 9 columns for a 3x3 output
    try:
        im2col_cy.im2col(x, cols, 3, 3, 1, 1, 0, 0, 1, 1, 3, 3)
    except IndexError as e:
        print("im2col IndexError:", e)
    else:
        raise SystemExit("im2col wrote out of bounds without an IndexError")
    y = np.zeros((1, 2, 2, 2), np.float32)
    idx = np.zeros((1, 1, 2, 2), np.int32)        # one channel short
    try:
        max_cy._forward(x, y, idx, 2, 2, 2, 2, 0, 0, 1, 1)
    except IndexError as e:
        print("max_pool IndexError:", e)
    else:
        raise SystemExit("max_pool wrote out of bounds without an IndexError")
    """
)


def _python(code: str, lib: Path, *extra: str, env: dict | None = None, timeout: int = 600):
    args = [sys.executable, "-c", code, str(lib), ",".join(_modules()), SUFFIX, *extra]
    e = {**os.environ, **(env or {})}
    return subprocess.run(args, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)


def test_checked_build_raises_index_error_on_out_of_bounds(checked_lib):
    proc = _python(PRELOAD + PROBE, checked_lib)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "im2col IndexError: Out of bounds on buffer access" in proc.stdout, proc.stdout
    assert "max_pool IndexError: Out of bounds on buffer access" in proc.stdout, proc.stdout


def test_every_cython_variant_agrees_with_reference_under_bounds_checks(checked_lib):
    run = PRELOAD + textwrap.dedent(
        """
        import pytest
        code = pytest.main(["tests/test_fuzz.py", "-q", "-p", "no:cacheprovider",
                            "-m", "not slow", "-k", "not torch", "-x"])
        sys.exit(int(code))
        """
    )
    env = {"TAPEGRAD_FUZZ_BACKEND": "cython", "TAPEGRAD_FUZZ_SHORT_EXAMPLES": "8"}
    proc = _python(run, checked_lib, env=env)
    out = proc.stdout + proc.stderr[-3000:]
    assert proc.returncode == 0, out[-6000:]
    n = int(out.split("checked cython variants:")[1].split()[0])
    assert n >= 10, out[:2000]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.split("fuzz total")[-1]
