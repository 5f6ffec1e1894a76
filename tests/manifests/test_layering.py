"""manifests/ is pure logic: no I/O libraries, only a short list of standard modules, and of
kubekeep only the errors (the layer order itself is .importlinter's)."""

from __future__ import annotations

import ast
from pathlib import Path

import kubekeep

SRC = Path(kubekeep.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_manifests_is_pure_logic() -> None:
    allowed = {"orjson", "yaml", "jsonpatch", "jsonpointer"}  # the last two: transforms (RFC 6902)
    for path in (SRC / "manifests").glob("*.py"):
        for name in _imports(path):
            if name.startswith("kubekeep"):
                assert name == "kubekeep.errors" or name.startswith("kubekeep.manifests"), (path.name, name)
            else:
                assert name.split(".")[0] in allowed or name.split(".")[0] in {
                    "__future__",
                    "collections",
                    "dataclasses",
                    "typing",
                    "re",
                    "math",
                    "fnmatch",
                    "copy",
                    "datetime",
                }, (path.name, name)
