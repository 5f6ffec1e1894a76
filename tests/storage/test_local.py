"""LocalBackend specifics: crash atomicity, temp files, permissions and error mapping."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubekeep.errors import ObjectNotFound, RepositoryNotFound, StorageError
from kubekeep.storage.local import LocalBackend

MiB = 1024 * 1024

# Stores one object but dies (SIGKILL from the test) after half the bytes hit the temp file.
_CHILD_KILLED_MID_WRITE = r"""
import os, sys, time
from kubekeep.storage.local import LocalBackend
root, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_write = os.write
def hang(fd, buf):
    print("mid-store", flush=True)
    time.sleep(120)
def half_then_hang(fd, buf):
    os.write = hang
    return real_write(fd, buf[: len(buf) // 2])
os.write = half_then_hang
LocalBackend(root).store(name, os.urandom(size))
print("finished", flush=True)
"""

# Stores objects in a loop until killed.
_CHILD_STORE_LOOP = r"""
import hashlib, sys
from kubekeep.storage.local import LocalBackend
backend = LocalBackend(sys.argv[1])
for i in range(100_000):
    backend.store(f"data/{i % 4:02x}/obj{i}", hashlib.sha256(str(i).encode()).digest() * 65536)
    if i == 0:
        print("started", flush=True)
"""


def loop_payload(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * 65536


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def backend(root: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(root)
    yield b
    b.close()


def temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(".tmp-*"))


def start_child(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.timeout(60)
@pytest.mark.parametrize("had_old_version", [False, True])
def test_kill_during_store_leaves_no_partial_object(root: Path, backend: LocalBackend, had_old_version: bool) -> None:
    name = "data/ab/big"
    if had_old_version:
        backend.store(name, b"old version")
    proc = start_child(_CHILD_KILLED_MID_WRITE, str(root), name, str(32 * MiB))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "mid-store"
    kill(proc)

    leftovers = temp_files(root)
    assert len(leftovers) == 1, "the child should have died with its temp file half written"
    assert leftovers[0].stat().st_size == 16 * MiB
    if had_old_version:
        assert backend.load(name) == b"old version"
        assert {i.name: i.size for i in backend.list("")} == {name: 11}
    else:
        assert not (root / "data" / "ab" / "big").exists()
        assert not backend.exists(name)
        with pytest.raises(ObjectNotFound):
            backend.load(name)
        assert list(backend.list("")) == []

    assert backend.cleanup_temp(older_than_s=3600) == 0  # too young: may be a live writer
    assert backend.cleanup_temp(older_than_s=0) == 1
    assert temp_files(root) == []


@pytest.mark.timeout(60)
def test_kill_at_random_moment_keeps_every_visible_object_whole(root: Path, backend: LocalBackend) -> None:
    proc = start_child(_CHILD_STORE_LOOP, str(root))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.3)
    kill(proc)
    infos = list(backend.list("data/"))
    assert infos, "the child stored at least one object before being killed"
    for info in infos:
        index = int(info.name.rsplit("obj", 1)[1])
        assert backend.load(info.name) == loop_payload(index), f"{info.name} is not whole"
    assert not any(".tmp-" in info.name for info in infos)


def test_temp_files_are_invisible_and_cleaned_by_age(root: Path, backend: LocalBackend) -> None:
    backend.store("index/i1", b"index")
    old = root / "index" / ".tmp-0123456789abcdef"
    young = root / "index" / ".tmp-fedcba9876543210"
    old.write_bytes(b"partial")
    young.write_bytes(b"partial")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))

    assert [i.name for i in backend.list("")] == ["index/i1"]
    assert backend.cleanup_temp(older_than_s=3600) == 1
    assert not old.exists() and young.exists()
    assert backend.load("index/i1") == b"index"


def test_names_that_look_like_temp_files_are_refused(backend: LocalBackend) -> None:
    with pytest.raises(StorageError):
        backend.store("data/.tmp-abc", b"x")


def test_successful_stores_leave_no_temp_files(root: Path, backend: LocalBackend) -> None:
    backend.store("locks/a", b"a", exclusive=True)
    with pytest.raises(StorageError):
        backend.store("locks/a", b"b", exclusive=True)
    backend.store("locks/a", b"c")
    assert temp_files(root) == []


def test_exclusive_store_race_has_exactly_one_winner(root: Path, backend: LocalBackend) -> None:
    barrier = threading.Barrier(8)
    winners: list[int] = []
    losers: list[StorageError] = []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            backend.store("locks/exclusive", f"writer {i}".encode(), exclusive=True)
            winners.append(i)
        except StorageError as exc:
            losers.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 7
    assert all("already exists" in str(e) for e in losers)
    assert backend.load("locks/exclusive") == f"writer {winners[0]}".encode()
    assert temp_files(root) == []


def test_exclusive_store_without_hard_links(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    backend.store("locks/x", b"first", exclusive=True)
    with pytest.raises(StorageError, match="already exists"):
        backend.store("locks/x", b"second", exclusive=True)
    assert backend.load("locks/x") == b"first"


def test_files_and_directories_are_not_group_or_world_writable(root: Path, backend: LocalBackend) -> None:
    backend.store("data/ab/obj", b"x")
    backend.store("config", b"c")
    for path in (root / "data" / "ab" / "obj", root / "config"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o222 == 0, f"{path} is writable: {oct(mode)}"
    for path in (root / "data", root / "data" / "ab"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    backend.store("config", b"overwritten")  # read-only files can still be replaced
    assert backend.load("config") == b"overwritten"
    backend.delete("data/ab/obj")
    assert not backend.exists("data/ab/obj")


def test_missing_root_raises_repository_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    backend = LocalBackend(missing)
    for call in (
        lambda: backend.load("config"),
        lambda: list(backend.list("")),
        lambda: backend.store("data/ab/x", b"x"),
        lambda: backend.delete("config"),
    ):
        with pytest.raises(RepositoryNotFound) as info:
            call()
        assert str(missing) in str(info.value) and "\n" not in str(info.value)
    assert not backend.exists("config")
    assert not missing.exists(), "a store must not create the repository root"
    backend.create()
    assert missing.is_dir()
    backend.store("data/ab/x", b"x")
    assert backend.load("data/ab/x") == b"x"


def test_directories_are_not_objects(root: Path, backend: LocalBackend) -> None:
    backend.store("data/ab/x", b"x")
    assert not backend.exists("data/ab")
    with pytest.raises(ObjectNotFound):
        backend.load("data/ab")
    with pytest.raises(StorageError, match="in the way"):
        backend.store("data/ab/x/y", b"y")


def test_create_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"")
    with pytest.raises(StorageError, match="not a directory"):
        LocalBackend(target).create()


def test_disk_full_is_a_storage_error_and_leaves_nothing(
    root: Path, backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    backend.store("data/ab/first", b"directories exist now")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError) as info:
        backend.store("data/ab/obj", b"x" * 1000)
    monkeypatch.undo()
    message = str(info.value)
    assert "No space left on device" in message and "data/ab/obj" in message
    assert message.startswith(f"cannot write {root}/data/ab/obj:") and "\n" not in message
    assert not backend.exists("data/ab/obj")
    assert temp_files(root) == []


_PERMISSION_CHILD = r"""
import sys
from kubekeep.errors import StorageError
from kubekeep.storage.local import LocalBackend
backend = LocalBackend(sys.argv[1])
for action in (lambda: backend.store("data/ab/new", b"x"), lambda: backend.load("keys/secret")):
    try:
        action()
        print("OK")
    except StorageError as exc:
        print(type(exc).__name__, "|", exc)
"""


def _without_dac_override() -> None:
    """preexec_fn: drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH so file modes bind root too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_permission_errors_are_one_line_storage_errors() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        setup = LocalBackend(root)
        setup.create()
        setup.store("keys/secret", b"key")
        (root / "keys" / "secret").chmod(0o000)
        root.chmod(0o500)
        try:
            try:
                result = subprocess.run(
                    [sys.executable, "-c", _PERMISSION_CHILD, str(root)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
                )
            except subprocess.SubprocessError as exc:
                pytest.skip(f"cannot drop root's file-permission override here: {exc}")
        finally:
            root.chmod(0o700)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    store_line, load_line = lines
    assert store_line.startswith("StorageError | cannot create directory")
    assert str(root / "data") in store_line and "Permission denied" in store_line
    assert load_line.startswith("StorageError | cannot read")
    assert str(root / "keys" / "secret") in load_line and "Permission denied" in load_line
