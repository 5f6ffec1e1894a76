"""Repository locks: shared for backup, restore and check; exclusive for prune and forget.

A lock is an encrypted record under ``locks/``. It is refreshed every 5 minutes while held and
considered stale after 30 minutes without a refresh, or at once when it belongs to a process on
this host that no longer exists. Taking a lock writes it, then looks again, so two writers that
race both see each other (and the later exclusive one backs off).

A holder whose lock could not be refreshed for most of the stale window (storage unreachable,
the process suspended) may already be judged dead by a prune elsewhere, which then deletes what
this holder is writing or still needs. So while a lock is held, every store and delete through
the repository's backend first checks that the lock was refreshed recently enough
(:class:`LockGuard`), and stops the command with :class:`errors.LockLost` before writing if not.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from kubekeep import errors
from kubekeep.engine import format as fmt
from kubekeep.engine import host, objects
from kubekeep.engine.snapshot import now_rfc3339
from kubekeep.storage.base import Backend, Retention, WrappingBackend

if TYPE_CHECKING:
    from kubekeep.engine.repository import Repository

REFRESH_S = 300
STALE_AFTER_S = 1800
#: a holder writes only while its last refresh is younger than this: a third of the stale
#: window is left for clocks that disagree and for a write already under way
SAFE_S = STALE_AFTER_S * 2 // 3
#: after a failed refresh, the next try comes sooner
RETRY_S = 30


def clock() -> float:
    """Seconds on a clock that goes on while the machine is suspended (others' clocks do)."""
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


class LockBody(TypedDict):
    """A lock record (sealed under ``locks/``)."""

    exclusive: bool
    hostname: str
    pid: int
    time: str  # RFC 3339, refreshed
    username: str


@dataclass
class LockInfo:
    name: str
    exclusive: bool
    hostname: str
    pid: int
    time: str
    username: str

    @property
    def age_s(self) -> float:
        t = dt.datetime.fromisoformat(self.time.replace("Z", "+00:00"))
        return (dt.datetime.now(dt.UTC) - t).total_seconds()

    def is_stale(self) -> bool:
        if self.age_s > STALE_AFTER_S:
            return True
        if self.hostname == host.hostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return f"{kind} lock by {self.username}@{self.hostname} pid {self.pid} since {self.time}"


def list_locks(repo: Repository) -> list[LockInfo]:
    out = []
    for info in repo.backend.list("locks/"):
        try:
            body: LockBody = objects.unseal(repo.cipher, repo.backend.load(info.name), fmt.AAD_LOCK, info.name)
        except (errors.IntegrityError, errors.ObjectNotFound):
            continue  # vanished or foreign; not ours to judge
        out.append(
            LockInfo(
                info.name,
                bool(body["exclusive"]),
                body["hostname"],
                int(body["pid"]),
                body["time"],
                body.get("username", ""),
            )
        )
    return out


class RepositoryLock:
    def __init__(self, repo: Repository, *, exclusive: bool) -> None:
        self.repo = repo
        self.exclusive = exclusive
        self.name = f"locks/{secrets.token_hex(16)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refreshed = 0.0  # clock() of the last write that succeeded
        self._guard: LockGuard | None = None

    def _write(self) -> None:
        body: LockBody = {
            "exclusive": self.exclusive,
            "hostname": host.hostname(),
            "pid": os.getpid(),
            "time": now_rfc3339(),
            "username": host.username(),
        }
        started = clock()
        self._backend().store(self.name, objects.seal(self.repo.cipher, body, fmt.AAD_LOCK))
        self._refreshed = started

    def _backend(self) -> Backend:
        return self._guard.inner if self._guard is not None else self.repo.backend

    def check_alive(self) -> None:
        """Raise :class:`errors.LockLost` if the last refresh is too old to write safely."""
        age = clock() - self._refreshed
        if age > SAFE_S:
            raise errors.LockLost(
                f"the repository lock could not be refreshed for {age / 60:.0f} minutes; stopping before "
                f"writing, as another process may consider this one gone (nothing half-written is visible)"
            )

    def _conflicts(self) -> list[LockInfo]:
        return [
            lk
            for lk in list_locks(self.repo)
            if lk.name != self.name and (self.exclusive or lk.exclusive) and not lk.is_stale()
        ]

    def acquire(self) -> None:
        conflicts = self._conflicts()
        if not conflicts:
            self._write()
            conflicts = self._conflicts()
            if conflicts:
                self.repo.backend.delete(self.name)
        if conflicts:
            raise errors.RepositoryLocked(
                f"repository is locked: {conflicts[0].describe()} (wait, or run 'kubekeep unlock' if that process is gone)"
            )
        self._guard = LockGuard(self.repo.backend, self)
        self.repo.backend = self._guard
        self._thread = threading.Thread(target=self._refresh, name="kubekeep-lock", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        wait = REFRESH_S
        while not self._stop.wait(wait):
            try:
                self._write()
                wait = REFRESH_S
            except errors.KubekeepError:
                wait = RETRY_S  # writes stop by themselves once the last refresh is too old

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._guard is not None:
            if self.repo.backend is self._guard:
                self.repo.backend = self._guard.inner
            self._guard = None
        try:
            self.repo.backend.delete(self.name)
        except errors.KubekeepError:
            pass

    def __enter__(self) -> RepositoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockGuard(WrappingBackend):
    """The repository's backend while a lock is held: stores and deletes (other than of lock
    files) first check that the lock is still safely alive."""

    def __init__(self, inner: Backend, lock: RepositoryLock) -> None:
        super().__init__(inner)
        self.lock = lock

    def _check(self, name: str) -> None:
        if not name.startswith("locks/"):
            self.lock.check_alive()

    def store(
        self, name: str, data: bytes | memoryview, *, exclusive: bool = False, retention: Retention | None = None
    ) -> None:
        self._check(name)
        super().store(name, data, exclusive=exclusive, retention=retention)

    def delete(self, name: str) -> None:
        self._check(name)
        self.inner.delete(name)

    def extend_retention(self, name: str, retention: Retention) -> None:
        self._check(name)
        self.inner.extend_retention(name, retention)


def remove_stale_locks(repo: Repository, *, everything: bool = False) -> int:
    removed = 0
    for lk in list_locks(repo):
        if everything or lk.is_stale():
            repo.backend.delete(lk.name)
            removed += 1
    return removed
