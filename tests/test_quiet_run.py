"""A default ``pytest -q`` run is quiet: tables that tests can print appear only with
``--tables``, and no test writes to the terminal behind pytest's capture."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
REPO = TESTS.parent


def test_report_fixture_prints_only_with_tables(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_addoption, report\n")
    (tmp_path / "test_table.py").write_text(
        "def test_table(report):\n    report('| a | b |', '| 1 | 2 |')\n"
    )
    outputs = {}
    for flag in ([], ["--tables"]):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *flag, "."],
            cwd=tmp_path,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs[bool(flag)] = proc.stdout
    assert "| 1 | 2 |" not in outputs[False], outputs[False]
    assert "| a | b |" in outputs[True] and "| 1 | 2 |" in outputs[True], outputs[True]


def test_no_test_prints_past_the_capture():
    """Printing to the terminal goes through the ``report`` fixture (``--tables``)."""
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("disabled", "__stdout__"):
                raise AssertionError(f"{path.relative_to(REPO)}:{node.lineno} bypasses capture")
