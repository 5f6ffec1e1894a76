"""``kubekeep.api`` is the whole surface of the CLI and the web UI (the import contracts keep the
shells from importing anything else): its ``__all__`` is exactly what it offers, every name in
it resolves, and the shells use nothing outside it."""

from __future__ import annotations

import re
import types
from pathlib import Path

import kubekeep.api as api

SHELLS = Path(api.__file__).parent.parent
#: names the module holds for its own use, not offered
_PLUMBING = {"annotations", "importlib", "TYPE_CHECKING", "Any"}


def test_every_exported_name_resolves() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    missing = [name for name in api.__all__ if getattr(api, name, None) is None]
    assert not missing


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(api).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name not in _PLUMBING
    }
    assert public - set(api.__all__) == set()


def test_the_shells_use_only_exported_names() -> None:
    used: dict[str, set[str]] = {}
    for path in sorted([*SHELLS.glob("cli/*.py"), *SHELLS.glob("ui/*.py")]):
        for name in re.findall(r"(?<![\w.])api\.([A-Za-z_]\w*)", path.read_text()):
            used.setdefault(name, set()).add(path.name)
    assert used, "the shells call the API"
    outside = {name: files for name, files in used.items() if name not in api.__all__}
    assert not outside, f"names the shells use that kubekeep.api does not export: {outside}"


def test_option_types_load_the_cluster_clients_only_when_used() -> None:
    import subprocess
    import sys

    code = "import sys, kubekeep.api; print(sorted(m for m in ('kubernetes', 'grpc', 'boto3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_restore_drills_are_offered() -> None:
    assert {"drill", "drills", "drill_report", "DrillOptions", "DrillRecord", "DrillObject"} <= set(api.__all__)


def test_no_offered_name_is_also_a_submodule() -> None:
    """Names resolve on first use (PEP 562): importing a submodule of the same name would set
    the package attribute to the module and shadow the offered function for good."""
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(api.__path__)}
    assert submodules & set(api.__all__) == set()


def test_a_backup_loads_no_restore_cluster_or_manifests_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, kubekeep.api as api; api.backup; api.open_repository; "
        "print(sorted(m for m in sys.modules if m.startswith(('kubekeep.manifests', 'kubekeep.api.cluster', "
        "'kubekeep.api.restore_drills', 'kubekeep.engine.restore', 'kubekeep.connectors.k8s', 'rich', 'yaml'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
