"""Print kubekeep's requirements from pyproject.toml, one a line: the runtime dependencies
(default) or, with ``--build``, the build system's. The image build downloads these for the
image's platform; pyproject.toml stays the one place that lists them (the Dockerfile installs
the same with ``pip install .``; tests/image/test_dependencies.py checks both)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, *, build: bool = False) -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    listed: list[str] = data["build-system"]["requires"] if build else data["project"]["dependencies"]
    return listed


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    print("\n".join(requirements(root / "pyproject.toml", build="--build" in sys.argv[1:])))
