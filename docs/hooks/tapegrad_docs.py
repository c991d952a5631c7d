"""MkDocs hook: the CLI reference page, generated from tapegrad's argument parsers.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; at build time it is replaced by
the ``--help`` text of ``tapegrad`` and of each subcommand, taken from the same parsers the
command line uses, so the page cannot drift from the code. ``tests/test_docs.py`` checks
that every subcommand and option appears. The hook also lays out the package for the API
reference (:func:`lay_out_api_package`).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import shutil
from pathlib import Path
from typing import Any

MARKER = "<!-- cli-reference -->"
WIDTH = 100


def _help(parser: argparse.ArgumentParser) -> str:
    cls = parser.formatter_class
    parser.formatter_class = functools.partial(cls, width=WIDTH)  # fixed width: no terminal
    try:
        return parser.format_help().rstrip()
    finally:
        parser.formatter_class = cls


def parsers() -> list[tuple[str, argparse.ArgumentParser, str]]:
    """``(command, parser, summary)`` for ``tapegrad`` and each subcommand, in order."""
    from tapegrad import cli

    main = cli.build_parser()
    out: list[tuple[str, argparse.ArgumentParser, str]] = [
        ("tapegrad", main, main.description or "")
    ]
    sub = next(a for a in main._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help or "" for a in sub._choices_actions}
    for name, p in sub.choices.items():
        delegate = p.get_default("_delegate")
        if delegate:  # bench / experiment: the subcommand builds its own parser
            p = argparse.ArgumentParser(prog=f"tapegrad {name}")
            importlib.import_module(delegate).add_arguments(p)
        out.append((f"tapegrad {name}", p, summaries.get(name, "")))
    return out


def render() -> str:
    """The generated Markdown: one section per command with its ``--help`` text."""
    parts = []
    for command, parser, summary in parsers():
        parts.append(f"## `{command}`\n")
        if summary:
            text = summary[0].upper() + summary[1:]
            parts.append(text if text.endswith(".") else text + ".")
            parts.append("")
        parts.append(f"```text\n{_help(parser)}\n```\n")
    return "\n".join(parts)


def lay_out_api_package(root: Path) -> Path:
    """Lay out ``build/docs-api/tapegrad`` for the API reference and return it.

    The package as setup.py installs it: the files of ``src/tapegrad`` with the top-level
    ``kernels/`` folder as ``tapegrad.kernels`` (symbolic links). mkdocs.yml points
    mkdocstrings there.
    """
    pkg = root / "build" / "docs-api" / "tapegrad"
    if pkg.exists():
        shutil.rmtree(pkg)
    pkg.mkdir(parents=True)
    for entry in (root / "src" / "tapegrad").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry.resolve())
    (pkg / "kernels").symlink_to((root / "kernels").resolve())
    return pkg


def on_startup(command: str, dirty: bool, **kwargs: Any) -> None:
    """Before the build (and before mkdocstrings reads its paths): lay out the package."""
    lay_out_api_package(Path(__file__).resolve().parents[2])


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Replace the marker on the CLI page with the generated reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
