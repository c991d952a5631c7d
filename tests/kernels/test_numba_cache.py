"""Compiled Numba kernels are cached in the user's cache folder, never inside the package
(``__pycache__`` folders left in site-packages shadow a later editable install), and
Numba functions outside tapegrad keep Numba's own cache locations."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import tapegrad
import tapegrad.kernels as K

PACKAGE = Path(K.__file__).parent
SOURCES = sorted({PACKAGE, Path(tapegrad.__file__).parent})  # apart in a source checkout


def _cache_files(root: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.suffix in (".nbi", ".nbc") and p.is_file()
    }


def _run(code: str, env_extra: dict[str, str], cwd: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NUMBA_CACHE") and k != "TAPEGRAD_NUMBA_CACHE_DIR"
    }
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr


def test_kernel_cache_goes_to_the_user_cache_folder(tmp_path):
    before = {k: v for root in SOURCES for k, v in _cache_files(root).items()}
    _run(
        """
        import numpy as np
        import tapegrad as tg
        import tapegrad.kernels as K
        import tapegrad.nn.functional as F

        x = tg.randn(2, 3, 6, 6, requires_grad=True)
        with K.use(relu="fused-numba", max_pool2d="direct-numba"):
            F.max_pool2d(F.relu(x), 2).sum().backward()
        """,
        {"XDG_CACHE_HOME": str(tmp_path / "xdg")},
        tmp_path,
    )
    after = {k: v for root in SOURCES for k, v in _cache_files(root).items()}
    assert after == before, sorted(str(p) for p in set(after.items()) - set(before.items()))
    written = _cache_files(tmp_path / "xdg" / "tapegrad" / "numba")
    for module in ("fused_numba.", "max_numba."):
        assert any(p.name.startswith(module) for p in written), sorted(p.name for p in written)
    assert any(p.suffix == ".nbi" for p in written) and any(p.suffix == ".nbc" for p in written)


def test_tapegrad_numba_cache_dir_replaces_the_xdg_folder(tmp_path):
    _run(
        """
        import tapegrad as tg
        import tapegrad.kernels as K
        import tapegrad.nn.functional as F

        with K.use(relu="fused-numba"):
            F.relu(tg.randn(2, 3, requires_grad=True)).sum().backward()
        """,
        {
            "XDG_CACHE_HOME": str(tmp_path / "xdg"),
            "TAPEGRAD_NUMBA_CACHE_DIR": str(tmp_path / "own"),
        },
        tmp_path,
    )
    written = _cache_files(tmp_path / "own")
    assert any(p.name.startswith("fused_numba.") and p.suffix == ".nbc" for p in written), written
    assert not _cache_files(tmp_path / "xdg" / "tapegrad" / "numba")


def test_other_numba_code_keeps_numba_s_own_cache_location(tmp_path):
    mod = tmp_path / "user_mod.py"
    mod.write_text(
        "from numba import njit\n\n\n@njit(cache=True)\ndef twice(a):\n    return 2 * a\n"
    )
    _run(
        """
        import tapegrad.kernels.activation.fused_numba  # installs tapegrad's locator
        import user_mod
        assert user_mod.twice(3) == 6
        """,
        {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(tmp_path)},
        tmp_path,
    )
    assert any(p.suffix == ".nbi" for p in (tmp_path / "__pycache__").iterdir())
    assert not [p for p in (tmp_path / "xdg").rglob("user_mod*")]


def test_every_cached_numba_module_installs_the_locator_first():
    paths = {p for root in SOURCES for p in root.rglob("*.py")}
    assert any(p.name == "inference.py" for p in paths)  # outside the kernels folder
    for path in sorted(paths):
        tree = ast.parse(path.read_text())
        uses_cache = any(
            isinstance(node, ast.keyword)
            and node.arg == "cache"
            and isinstance(node.value, ast.Constant)
            and node.value.value is True
            for node in ast.walk(tree)
        )
        if not uses_cache:
            continue
        first_def = min(n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Assign)))
        imports = [
            n.lineno
            for n in tree.body
            if isinstance(n, ast.ImportFrom) and any(a.name == "_numba_cache" for a in n.names)
        ]
        assert imports and imports[0] < first_def, f"{path} compiles with cache=True first"


def test_locator_claims_tapegrad_sources_only():
    import numpy as np

    from tapegrad import inference
    from tapegrad.kernels import _numba_cache
    from tapegrad.kernels.conv import direct_numba

    assert _numba_cache._inside_package(inference.__file__)
    assert _numba_cache._inside_package(direct_numba.__file__)
    assert not _numba_cache._inside_package(np.__file__)
    assert (
        _numba_cache.TapegradCacheLocator in _numba_cache._cache_impl_classes()[0]._locator_classes
    )
