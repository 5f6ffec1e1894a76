"""The image's root file system, run as its config says (uid 65532, its env and entrypoint) in
a private mount namespace, chrooted, with the root mounted read-only and only a tmpfs at /tmp
writable: ``kubekeep --version``, the CLI against a local repository, and the agent serving a
directory to this process's engine. Needs root (mounts, chroot), as testenv's simulated node."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from kubekeep import __version__
from kubekeep.agent import protocol as p
from kubekeep.engine.backup import run_backup
from kubekeep.engine.repository import Repository
from kubekeep.storage import open_backend
from tests.cli.helpers import FAST_KDF
from tests.volumes.test_agent import Agent, AgentSource

from .conftest import UnpackedImage

pytestmark = pytest.mark.image

#: where a host directory appears in the image when a test mounts one (like a helper pod's volume)
DATA = "/data"


def in_image(image: UnpackedImage, argv: Sequence[str], *, data: Path | None = None) -> list[str]:
    """The command line that runs ``argv`` in the image, read-only, as the image's user."""
    root = shlex.quote(str(image.rootfs))
    steps = [
        f"mount --bind {root} {root}",  # a mount point of its own, so that it can be remounted read-only
        f"mount --rbind /dev {root}/dev",
        f"mount --bind /proc {root}/proc",
        f"mount -t tmpfs -o mode=1777 tmpfs {root}/tmp",
    ]
    if data is not None:
        steps.append(f"mount --bind {shlex.quote(str(data))} {root}{DATA}")
    steps.append(f"mount -o remount,bind,ro {root}")
    user = f"--userspec={image.uid}:{image.gid} --groups={image.gid}"
    steps.append(f"cd / && exec chroot {user} {root} {shlex.join(argv)}")
    for point in ("dev", "proc", "tmp", DATA.lstrip("/")):
        (image.rootfs / point).mkdir(exist_ok=True)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", "; ".join(steps)]


def run(image: UnpackedImage, args: Sequence[str], **kwargs: Path) -> subprocess.CompletedProcess[str]:
    argv = in_image(image, [*image.args[:1], *args], **kwargs)
    return subprocess.run(argv, env=image.env, capture_output=True, text=True, timeout=60)


def test_the_config_runs_kubekeep_as_a_non_root_user(image: UnpackedImage) -> None:
    assert (image.uid, image.gid) == (65532, 65532)
    assert image.args[0] == "/opt/kubekeep/bin/kubekeep"
    assert image.env["KUBEKEEP_CACHE_DIR"].startswith("/tmp/")
    assert image.archive.stat().st_size > 0


def test_kubekeep_version_runs_from_a_read_only_root(image: UnpackedImage) -> None:
    result = run(image, ["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == __version__
    probe = run(image, ["--help"])
    assert probe.returncode == 0, probe.stderr


def test_the_root_is_read_only_and_tmp_is_writable(image: UnpackedImage) -> None:
    result = _python_in_image(image, "import os, sys; open('/tmp/ok', 'w').close(); open('/opt/kubekeep/x', 'w')")
    assert result.returncode != 0 and "Read-only file system" in result.stderr, result.stderr


def test_no_compiler_is_left_and_every_library_resolves(image: UnpackedImage) -> None:
    for tool in ("gcc", "cc", "cpp", "as", "ld"):
        assert not (image.rootfs / "usr/bin" / tool).exists(), f"{tool} is left in the image"
    libraries = [str(p.relative_to(image.rootfs)) for p in (image.rootfs / "opt/kubekeep").rglob("*.so*")]
    assert libraries
    result = subprocess.run(
        ["chroot", str(image.rootfs), "/usr/bin/ldd", *(f"/{p}" for p in libraries)], capture_output=True, text=True
    )
    assert "not found" not in result.stdout, [line for line in result.stdout.splitlines() if "not found" in line]


def test_the_compiled_modules_import_and_no_rust_toolchain_is_left(image: UnpackedImage) -> None:
    """The wheel built in the root file system holds both compiled modules (the C chunker and the
    Rust per-blob path, built with the host's toolchain mounted for that build only)."""
    script = "from kubekeep.engine import _gearcdc, _seal; print(_gearcdc.__file__); print(_seal.__file__)"
    result = _python_in_image(image, script)
    assert result.returncode == 0, result.stderr
    gearcdc, seal = result.stdout.splitlines()
    assert gearcdc.startswith("/opt/kubekeep/lib/") and gearcdc.endswith(".so")
    assert seal.startswith("/opt/kubekeep/lib/") and seal.endswith(".so")
    for left in ("opt/rust", "usr/bin/cargo", "usr/bin/rustc", "root/.cargo", "root/.rustup", "tmp/cargo"):
        assert not (image.rootfs / left).exists(), f"{left} is left in the image"
    rust_tools = [p for p in image.rootfs.rglob("*") if p.name in ("cargo", "rustc", "rustup") and p.is_file()]
    assert not rust_tools, rust_tools


def test_the_cli_backs_up_into_a_repository_under_tmp(image: UnpackedImage, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello from the image\n")
    os.chmod(tmp_path, 0o755)
    script = f"kubekeep init && kubekeep backup {DATA} && kubekeep snapshots && ls /tmp/kubekeep-cache"
    env = {**image.env, "KUBEKEEP_REPOSITORY": "/tmp/repo", "KUBEKEEP_PASSWORD": "pw"}
    result = subprocess.run(
        in_image(image, ["/bin/sh", "-ec", script], data=tmp_path), env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CACHEDIR.TAG" in result.stdout.split()  # the cache went where the image's env says


class ImageAgent(Agent):
    """``kubekeep agent`` from the image, serving ``source`` (mounted at /data) on loopback."""

    def __init__(self, image: UnpackedImage, source: Path) -> None:
        self.secret = p.new_secret()
        argv = [*image.args[:1], "agent", "--root", DATA, "--listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(
            in_image(image, argv, data=source),
            env={**image.env, p.SECRET_ENV: self.secret.hex()},
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r" on 127\.0\.0\.1:(\d+)", line)
        assert match, line + self.proc.stderr.read()
        self.port = int(match.group(1))


def test_the_agent_serves_a_directory_to_a_backup(image: UnpackedImage, tmp_path: Path) -> None:
    source = tmp_path / "volume"
    (source / "sub").mkdir(parents=True)
    (source / "big.bin").write_bytes(os.urandom(3 << 20))
    for i in range(20):
        (source / "sub" / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    for path in [source, *source.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    expected = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())

    repo = Repository.init(open_backend(str(tmp_path / "repo")), "pw", kdf=FAST_KDF, no_cache=True)
    try:
        agent = ImageAgent(image, source)
        importer = AgentSource(agent)
        try:
            with repo.lock(), importer:
                snapshot = run_backup(repo, importer)
        finally:
            agent.stop()
        assert importer.remote is not None
        stats = importer.remote.stats.to_dict()
        assert stats["bytes_total"] == expected and stats["chunks_fetched"] == stats["chunks_total"] > 1
        assert snapshot.tree
    finally:
        repo.close()


def test_the_venv_holds_kubekeep_and_its_dependencies_only(image: UnpackedImage) -> None:
    """What pip installed is exactly kubekeep's requirement closure: no pip, no setuptools, no
    build dependencies, nothing listed anywhere but pyproject.toml."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    [site] = (image.rootfs / "opt/kubekeep/lib").glob("python3.*/site-packages")
    installed = {canonicalize_name(d.metadata["Name"]): d for d in distributions(path=[str(site)])}
    needed: set[str] = set()
    todo = ["kubekeep"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in needed:
            continue
        needed.add(name)
        assert name in installed, f"{name} is required but not installed in the image"
        for spec in installed[name].requires or ():
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    assert set(installed) == needed, f"installed but not required: {sorted(set(installed) - needed)}"


def _python_in_image(image: UnpackedImage, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by the image's Python, as the image runs it (read-only root, its user)."""
    return subprocess.run(
        in_image(image, ["/opt/kubekeep/bin/python", "-c", script]),
        env=image.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
