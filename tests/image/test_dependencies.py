"""The Dockerfile and the daemonless build (scripts/image/) make the same image: both install
kubekeep with exactly the dependencies pyproject.toml lists (no list of their own), into the
same venv, with the same user, environment and entrypoint. Reads the files; builds nothing."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from scripts.image.requirements import requirements

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()
HOOK = (REPO / "scripts/image/install-kubekeep.sh").read_text()
BUILD = (REPO / "scripts/image/build.sh").read_text()


def _logical_lines(text: str) -> list[str]:
    return [line.strip() for line in re.sub(r"\\\n\s*", " ", text).splitlines() if line.strip()]


def _pip_installs(commands: list[str]) -> list[list[str]]:
    """The arguments of every ``pip install`` in ``commands`` (shell lines, split at ``&&``)."""
    found = []
    for command in commands:
        for part in re.split(r"&&|;", command):
            if " install " not in part:
                continue
            words = shlex.split(part.replace('"${pip[@]}"', "pip"))
            if "install" in words and any(w.endswith("pip") or "/pip" in w for w in words[: words.index("install")]):
                found.append(words[words.index("install") + 1 :])
    return found


def test_both_install_kubekeep_with_pyprojects_dependencies_only() -> None:
    docker = _pip_installs([line for line in _logical_lines(DOCKERFILE) if line.startswith("RUN")])
    assert docker == [["--no-cache-dir", "."]]  # the project, its dependencies resolved from pyproject.toml

    hook = _pip_installs(_logical_lines(HOOK))
    assert len(hook) == 1
    packages = [word for word in hook[0] if not word.startswith("-")]
    assert packages == ["/tmp/dist/$kubekeep_whl"] and "--no-deps" not in hook[0]
    # what the hook downloads for the image's platform: pyproject.toml's lists, read by requirements.py
    assert '-r <("$PYTHON" "$here/requirements.py")' in HOOK
    assert '-r <("$PYTHON" "$here/requirements.py" --build)' in HOOK
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert requirements(REPO / "pyproject.toml") == pyproject["project"]["dependencies"]
    assert requirements(REPO / "pyproject.toml", build=True) == pyproject["build-system"]["requires"]


def test_both_run_kubekeep_as_the_same_user_with_the_same_environment() -> None:
    lines = _logical_lines(DOCKERFILE)
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    env_line = next(line for line in final_stage if line.startswith("ENV "))  # the image's, not a build stage's
    docker_env = dict(word.split("=", 1) for word in shlex.split(env_line)[1:])
    image_env = dict(
        line.split("=", 1) for line in (REPO / "scripts/image/env").read_text().splitlines() if line.strip()
    )
    assert docker_env == image_env
    assert "USER 65532:65532" in lines and "--config.user=65532:65532" in BUILD
    assert 'ENTRYPOINT ["/opt/kubekeep/bin/kubekeep"]' in lines
    assert "--config.entrypoint=/opt/kubekeep/bin/kubekeep" in BUILD
    assert "python -m venv /opt/kubekeep" in DOCKERFILE and "venv --without-pip /opt/kubekeep" in HOOK
