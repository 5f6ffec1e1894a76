"""A holder whose lock went unrefreshed for most of the stale window stops before it writes
(issue #11): a prune elsewhere may already consider it dead."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine import locks
from kubekeep.engine.repository import Repository
from kubekeep.storage.base import Backend

START = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(locks, "clock", c)
    return c


def test_writes_stop_once_the_lock_is_too_old(repo: Repository, clock: Clock) -> None:
    with repo.lock():
        repo.backend.store("data/00/fresh", b"x")  # refreshed just now: fine
        clock.now += locks.SAFE_S + 1
        with pytest.raises(errors.LockLost):
            repo.backend.store("data/00/late", b"x")
        with pytest.raises(errors.LockLost):
            repo.backend.delete("data/00/fresh")
        repo.backend.store("locks/own-refresh", b"x")  # the lock's own files still go
    assert repo.backend.exists("data/00/fresh") and not repo.backend.exists("data/00/late")
    assert not isinstance(repo.backend, locks.LockGuard)  # released: the plain backend again


def test_a_successful_refresh_keeps_writes_going(
    repo: Repository, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locks, "REFRESH_S", 0.02)
    with repo.lock() as lock:
        clock.now += locks.SAFE_S + 1
        _wait_for(lambda: lock._refreshed == clock.now)
        repo.backend.store("data/00/after-refresh", b"x")


def test_failed_refreshes_stop_writes(repo: Repository, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "REFRESH_S", 0.02)
    monkeypatch.setattr(locks, "RETRY_S", 0.02)
    attempts: list[str] = []
    with repo.lock() as lock:
        inner: Backend = lock._guard.inner  # type: ignore[union-attr]
        real_store = inner.store

        def failing_store(name: str, data: bytes | memoryview, *, exclusive: bool = False) -> None:
            if name.startswith("locks/"):
                attempts.append(name)
                raise errors.StorageError("storage unreachable")
            real_store(name, data, exclusive=exclusive)

        monkeypatch.setattr(inner, "store", failing_store)
        clock.now += locks.SAFE_S + 1
        _wait_for(lambda: len(attempts) >= 3)  # retried, never succeeded
        with pytest.raises(errors.LockLost):
            repo.backend.store("data/00/x", b"x")


def test_a_backup_whose_lock_lapsed_writes_no_snapshot(
    repo: Repository, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data" * 1000)
    real_acquire = locks.RepositoryLock.acquire

    def acquire_then_stall(self: locks.RepositoryLock) -> None:
        real_acquire(self)
        clock.now += locks.SAFE_S + 1  # suspended (or cut off) right after taking the lock

    monkeypatch.setattr(locks.RepositoryLock, "acquire", acquire_then_stall)
    with pytest.raises(errors.LockLost) as exc:
        api.backup(repo, str(src))
    assert "stopping before writing" in str(exc.value)
    monkeypatch.undo()
    assert repo.snapshot_ids() == []
    assert api.check(repo, read_data=True).ok


def _wait_for(condition: object) -> None:
    deadline = time.monotonic() + 10
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
