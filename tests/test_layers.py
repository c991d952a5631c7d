"""Imports run downward: kernels -> tape (autograd) -> ops -> tensor -> nn/optim/data -> the rest.

Read from the source (no import): a module may import its own layer and the layers below
at its top; an import of a higher layer is allowed only inside a function and only where
listed in ``UPWARD`` with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the lowest layers first
LAYERS = ("kernels", "tape", "ops", "tensor", "nn/optim/data", "top")

# module (or package) name below tapegrad -> layer; anything else is "top"
_OF = {
    "kernels": "kernels",
    "autograd": "tape",
    "device": "tape",
    "ops": "ops",
    "tensor": "tensor",
    "_torch_methods": "tensor",
    "tensor_functions": "tensor",
    "creation": "tensor",
    "gradcheck": "tensor",
    "nn": "nn/optim/data",
    "optim": "nn/optim/data",
    "lr_scheduler": "nn/optim/data",
    "data": "nn/optim/data",
    "utils": "nn/optim/data",
    "checkpoint": "nn/optim/data",
    "init": "nn/optim/data",
}

# (importing module, imported module) -> why the upward import is there (inside functions)
UPWARD = {
    ("tapegrad.autograd", "tapegrad.tensor"): "the tape wraps op outputs in Tensors",
    ("tapegrad.autograd", "tapegrad.ops.tensor_ops"): "a gradient cast to its leaf's dtype",
    ("tapegrad.autograd", "tapegrad.gradcheck"): "autograd.gradgradcheck re-exports it",
    ("tapegrad.nn.module", "tapegrad.inference"): "Module.fuse() is inference.optimize(self)",
}


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return _OF.get(parts[1], "top") if len(parts) > 1 else "top"


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["tapegrad", *rel.parts] if rel.parts[0] == "kernels" else list(rel.parts[1:])
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def _imports(path: Path):
    """(line, imported module, at module top?) for every tapegrad import of a file."""
    mod, is_pkg = _module_name(path)
    tree = ast.parse(path.read_text())

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (x for c in child.orelse for x in walk_one(c, in_function))
                continue  # `if TYPE_CHECKING:` never runs
            yield from walk_one(child, in_function)

    def walk_one(node, in_function):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        elif isinstance(node, (ast.expr, ast.Constant)):
            return
        else:
            fn = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from walk(node, fn)

    for node, in_function in walk(tree, False):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
        else:
            names = [a.name for a in node.names]
        for n in names:
            if n.startswith("tapegrad"):
                yield node.lineno, n, not in_function


def _files():
    return sorted((ROOT / "src" / "tapegrad").rglob("*.py")) + sorted(
        (ROOT / "kernels").rglob("*.py")
    )


def test_imports_run_downward():
    bad = []
    for path in _files():
        mod, _ = _module_name(path)
        here = LAYERS.index(_layer(mod))
        for line, target, at_top in _imports(path):
            if LAYERS.index(_layer(target)) <= here:
                continue
            key = (mod, ".".join(target.split(".")[:3]))
            if at_top or not any(key[1].startswith(t) and key[0] == m for m, t in UPWARD):
                where = "at the top" if at_top else "not listed in UPWARD"
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({where})")
    assert not bad, "\n".join(bad)


def test_the_walk_sees_the_imports():
    # the checker reads what it should: ops import the tape, the tape imports Tensor late
    ops_conv = ROOT / "src" / "tapegrad" / "ops" / "conv.py"
    assert any(t == "tapegrad.autograd" for _, t, _ in _imports(ops_conv))
    tape = ROOT / "src" / "tapegrad" / "autograd.py"
    late = [t for _, t, top in _imports(tape) if not top]
    assert "tapegrad.tensor" in late
    assert _layer("tapegrad.kernels.conv") == "kernels" and _layer("tapegrad.zoo") == "top"
