"""Helpers for the end-to-end tests: run the real ``kubekeep`` command in a subprocess, build
source trees with awkward content and metadata, and compare trees by what ``lstat`` sees."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubekeep.storage import open_backend

KUBEKEEP = [sys.executable, "-m", "kubekeep.cli.main"]

#: a cheap Argon2id profile for repositories the tests create through the API (the CLI's own
#: ``init`` uses the real default); opening reads the parameters from the key file
FAST_KDF: dict[str, int | str] = {"algorithm": "argon2id", "time_cost": 1, "memory_kib": 8192, "parallelism": 1}


def clean_env() -> dict[str, str]:
    """The test process's environment without anything that would steer kubekeep or boto3."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KUBEKEEP_", "AWS_", "XDG_CACHE"))}


@dataclass
class RepoSpec:
    """One repository as the CLI sees it: a location plus what it needs in the environment."""

    location: str
    env: dict[str, str] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def backend(self) -> Any:
        return open_backend(self.location, **self.backend_options)

    def objects(self, prefix: str = "") -> dict[str, int]:
        """Every stored object (name -> size); temp files of the local backend are not objects."""
        backend = self.backend()
        try:
            return {o.name: o.size for o in backend.list(prefix)}
        finally:
            backend.close()

    def size(self, prefix: str = "") -> int:
        return sum(self.objects(prefix).values())

    def read(self, name: str) -> bytes:
        backend = self.backend()
        try:
            return backend.load(name)
        finally:
            backend.close()

    def write(self, name: str, data: bytes) -> None:
        """Overwrite an object in place (to simulate storage damage)."""
        backend = self.backend()
        try:
            backend.store(name, data)
        finally:
            backend.close()


class KK:
    """Runs ``kubekeep`` against one repository with a fixed environment."""

    def __init__(
        self,
        repo: RepoSpec,
        *,
        password: str = "correct horse",
        cache_dir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.repo = repo
        self.password = password
        self.cache_dir = cache_dir
        self.env = clean_env()
        self.env.update(repo.env)
        self.env.update(
            {"KUBEKEEP_REPOSITORY": repo.location, "KUBEKEEP_PASSWORD": password, "KUBEKEEP_CACHE_DIR": str(cache_dir)}
        )
        self.env.update(extra_env or {})

    def run(
        self, *args: str, expect: int | None = 0, env: dict[str, str | None] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``kubekeep ARGS``; ``env`` adds variables to the runner's (None removes one)."""
        full_env = dict(self.env)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        t0 = time.monotonic()
        proc = subprocess.run(
            [*KUBEKEEP, *args], env=full_env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if os.environ.get("KK_TIMING"):
            print(f"{time.monotonic() - t0:6.2f}s kubekeep {' '.join(args)[:100]}", file=sys.stderr)
        if expect is not None and proc.returncode != expect:
            raise AssertionError(
                f"kubekeep {' '.join(args)} exited {proc.returncode}, expected {expect}\n"
                f"stdout: {proc.stdout.decode(errors='replace')[-3000:]}\n"
                f"stderr: {proc.stderr.decode(errors='replace')[-3000:]}"
            )
        return proc

    def json(self, *args: str, expect: int | None = 0, env: dict[str, str | None] | None = None) -> Any:
        return json.loads(self.run("--json", *args, expect=expect, env=env).stdout)

    def out(self, *args: str, expect: int | None = 0) -> str:
        return self.run(*args, expect=expect).stdout.decode()

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full_env = dict(self.env)
        full_env.update(env or {})
        return subprocess.Popen(
            [*KUBEKEEP, *args], env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def backup(self, source: Path | str, *extra: str, expect: int = 0) -> str:
        """Back up and return the new snapshot's full id."""
        result = self.json("backup", str(source), *extra, expect=expect)
        return str(result["id"])


def stderr_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The failure message; asserts it is one line and no traceback."""
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line message, got: {err!r}"
    return lines[0]


# -- source trees -------------------------------------------------------------------------------

BASE_NS = 1_600_000_000_123_456_789


def write(path: Path, data: bytes | str, mode: int | None = None, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def set_tree_times(root: Path, seed: int = 0) -> None:
    """Give every entry under ``root`` a distinct, specific mtime (ns precision): files and
    symlinks first, then directories deepest first so that nothing disturbs them again."""
    entries = sorted(root.rglob("*"), key=lambda p: (-len(p.parts), str(p)))
    for i, p in enumerate(entries):
        if p.is_symlink() or not p.is_dir():
            t = BASE_NS + seed * 1_000_000_007 + i * 1_000_003_001
            os.utime(p, ns=(t, t), follow_symlinks=False)
    for i, p in enumerate(entries):
        if p.is_dir() and not p.is_symlink():
            t = BASE_NS + seed * 1_000_000_007 + 500_000_000_000 + i * 999_999_937
            os.utime(p, ns=(t, t))


def make_rich_tree(root: Path, *, big_mib: int = 5, small_files: int = 150, seed: int = 1) -> None:
    """A tree with nested directories, a multi-chunk random file, many small files, an empty
    file, relative/absolute/dangling symlinks, unusual modes and owners, and unicode names."""
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    write(root / "big.bin", rnd.randbytes(big_mib * 1024 * 1024))
    for i in range(small_files):
        write(root / "small" / f"file_{i:03d}.txt", f"small file {i}\n" * rnd.randint(1, 40))
    write(root / "empty", b"")
    write(root / "a" / "b" / "c" / "d" / "deep.txt", "deep down\n")
    write(root / "a" / "sibling.txt", "next to b\n")
    write(root / "secret.key", "-----BEGIN NOTHING-----\n", mode=0o600)
    write(root / "script.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    write(root / "readonly.txt", "ro\n", mode=0o444)
    if os.geteuid() == 0:
        write(root / "setuid-bin", "#!/bin/sh\n", mode=0o4755)
        write(root / "owned.txt", "owned by someone else\n")
        os.chown(root / "owned.txt", 1234, 5678)
    write(root / "naïve café.txt", "accents\n")
    write(root / "日本語" / "ファイル.txt", "unicode dir\n")
    write(root / "emoji_😀.txt", "emoji\n")
    os.symlink("a/b/c/d/deep.txt", root / "link_rel")
    os.symlink("/etc/hostname", root / "link_abs")
    os.symlink("does/not/exist", root / "link_dangling")
    os.symlink("a/b", root / "link_dir")
    (root / "emptydir").mkdir()
    (root / "private").mkdir()
    write(root / "private" / "inner.txt", "inner\n")
    os.chmod(root / "private", 0o700)
    (root / "shared").mkdir()
    os.chmod(root / "shared", 0o1777)
    set_tree_times(root)


@dataclass(frozen=True)
class Meta:
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int
    digest: str  # sha256 of a file's content, a symlink's target, "" for directories


def manifest(root: Path) -> dict[str, Meta]:
    """Everything below ``root`` (not ``root`` itself) as ``lstat`` and the content show it."""
    out: dict[str, Meta] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                kind, digest = "symlink", os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                kind, digest = "dir", ""
            else:
                kind, digest = "file", hashlib.sha256(p.read_bytes()).hexdigest()
            out[rel] = Meta(
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
                st.st_size if kind == "file" else 0,
                digest,
            )
    return out


def assert_same_tree(expected: dict[str, Meta], actual: dict[str, Meta]) -> None:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    wrong = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    details = [f"{p}: expected {expected[p]}, got {actual[p]}" for p in wrong[:10]]
    assert not (missing or extra or wrong), (
        f"missing: {missing[:10]} extra: {extra[:10]} differing: {wrong[:10]}\n" + "\n".join(details)
    )


def subtree(m: dict[str, Meta], prefix: str) -> dict[str, Meta]:
    """Entries of a manifest below ``prefix``, relative to it."""
    p = prefix.strip("/") + "/"
    return {k[len(p) :]: v for k, v in m.items() if k.startswith(p)}


# -- processes ----------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process we started (by its pid) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def init_fast(repo: RepoSpec, password: str = "correct horse") -> str:
    """Create a repository through the API with a cheap key derivation; return its id."""
    from kubekeep.engine.repository import Repository

    r = Repository.init(repo.backend(), password, kdf=FAST_KDF, no_cache=True)
    try:
        return r.id
    finally:
        r.close()


def open_api(repo: RepoSpec, password: str = "correct horse") -> Any:
    """The repository opened through the API, without a cache."""
    from kubekeep.engine.repository import Repository

    return Repository.open(repo.backend(), password, no_cache=True)


def backup_api(kk: KK, source: Path) -> str:
    """Back up ``source`` in-process (set-up steps that are not what a test is about), with the
    runner's password and cache directory; return the snapshot id."""
    from kubekeep import api
    from kubekeep.engine.repository import Repository

    repo = Repository.open(kk.repo.backend(), kk.password, cache_root=kk.cache_dir)
    try:
        return api.backup(repo, str(source)).id
    finally:
        repo.close()
