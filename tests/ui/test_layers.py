"""The UI is a thin shell: at run time it reads the repository through ``kubekeep.api`` only
(engine types appear in annotations, as in the CLI), never connectors, Kubernetes or storage."""

from __future__ import annotations

import ast
from pathlib import Path

import kubekeep.ui

ALLOWED = ("kubekeep.api", "kubekeep.errors", "kubekeep.manifests", "kubekeep.ui")


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.extend(f"{node.module}.{a.name}" if node.module == "kubekeep" else node.module for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def test_ui_imports_only_the_api_at_run_time() -> None:
    root = Path(kubekeep.ui.__file__).parent
    wrong = {}
    for path in sorted(root.glob("*.py")):
        bad = [
            m
            for m in _runtime_imports(ast.parse(path.read_text()))
            if m.startswith("kubekeep") and not m.startswith(ALLOWED) and m != "kubekeep.__version__"
        ]
        if bad:
            wrong[path.name] = bad
    assert not wrong, f"the UI must go through kubekeep.api: {wrong}"
