"""Griffe extension: Sphinx cross-reference roles in docstrings rendered as code.

tapegrad's docstrings name other objects with ``:func:`name```, ``:class:`~mod.Name```
and the like; mkdocstrings (Markdown) would print the role verbatim. This turns each into
inline code, keeping only the last component for ``~`` targets, as Sphinx shows them.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`<]+?)`")


def plain(text: str) -> str:
    """``:func:`x.y``` -> ```x.y```; ``:class:`~x.Y``` -> ```Y```."""

    def repl(m: re.Match) -> str:
        target = m.group(2).strip()
        return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"

    return ROLE.sub(repl, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the roles in every docstring of each module once it is loaded."""

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        """Called by griffe once a module's members are loaded: their docstrings and its own."""
        stack: list[Any] = [mod]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None:
                obj.docstring.value = plain(obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias and not m.is_module)
