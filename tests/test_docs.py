"""The documentation's code runs: every ```python block of docs/ and README.md, the
generated CLI reference, and the examples/ scripts in quick mode.

Each page's blocks run in order in one fresh interpreter (blocks share names, as a
reader's session would), in a temporary directory and with the autotune cache there, so a
page can neither change this process's settings nor leave files behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tapegrad.kernels._numba_cache import cache_root as numba_cache_root

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)

_RUNNER = r"""
import json, sys, traceback
page, blocks = json.load(sys.stdin)
ns = {"__name__": "__main__"}
for line, code in blocks:
    try:
        exec(compile("\n" * (line - 1) + code, page, "exec"), ns)
    except BaseException:
        traceback.print_exc()
        print(f"{page}: the code block at line {line} failed", file=sys.stderr)
        sys.exit(1)
"""


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(first code line, code)`` of each ```python block of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


def test_the_collector_finds_the_code_blocks():
    # the fence pattern must see every ```python block and nothing else
    sample = "text\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
    m = [(m.group(1)) for m in FENCE.finditer(sample)]
    assert m == ["a = 1\n", "b = a + 1\n"]
    total = sum(len(python_blocks(p)) for p in PAGES)
    assert total >= 27, total  # a drop means blocks went missing (a fence typo, say)


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_page_id)
def test_page_code_blocks_run(page: Path, tmp_path: Path):
    # a fresh cache folder, but this session's compiled kernels (no recompiling per page)
    env = dict(
        os.environ,
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        TAPEGRAD_NUMBA_CACHE_DIR=str(numba_cache_root()),
        MPLBACKEND="Agg",
    )
    payload = json.dumps([_page_id(page), python_blocks(page)])
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=payload,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _hook():
    spec = importlib.util.spec_from_file_location(
        "tapegrad_docs_hook", ROOT / "docs" / "hooks" / "tapegrad_docs.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_is_generated_from_every_parser():
    hook = _hook()
    page = (ROOT / "docs" / "cli.md").read_text()
    assert hook.MARKER in page
    text = hook.on_page_markdown(page, page=None)
    assert hook.MARKER not in text
    for command, parser, _ in hook.parsers():
        assert f"## `{command}`" in text
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, (command, option)
    from tapegrad import cli

    sub = next(a for a in cli.build_parser()._actions if hasattr(a, "choices") and a.choices)
    for name in sub.choices:  # a new subcommand appears without editing the page
        assert f"## `tapegrad {name}`" in text


def test_sphinx_roles_render_as_code():
    spec = importlib.util.spec_from_file_location(
        "sphinx_roles", ROOT / "docs" / "hooks" / "sphinx_roles.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "see :func:`tapegrad.gradcheck`, :class:`~tapegrad.nn.Module` and :meth:`step`"
    assert mod.plain(text) == "see `tapegrad.gradcheck`, `Module` and `step`"


def test_every_public_module_has_an_api_page():
    # a module added to nn, nn.functional or optim shows up in the API reference
    pages = "".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    src = ROOT / "src" / "tapegrad"
    missing = []
    for pkg in ("nn", "nn/functional", "optim"):
        for f in sorted((src / pkg).glob("*.py")):
            if f.name.startswith("_"):
                continue
            name = "tapegrad." + str(f.relative_to(src).with_suffix("")).replace("/", ".")
            if f"::: {name}\n" not in pages:
                missing.append(name)
    assert not missing, f"no `::: module` line in docs/api/ for {missing}"
