"""Repository locks: shared for backup, restore and check; exclusive for prune and forget.

A lock is an encrypted record under ``locks/``. It is refreshed every 5 minutes while held and
considered stale after 30 minutes without a refresh, or at once when it belongs to a process on
this host that no longer exists. Taking a lock writes it, then looks again, so two writers that
race both see each other (and the later exclusive one backs off).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubekeep import errors
from kubekeep.engine import format as fmt
from kubekeep.engine import host, objects
from kubekeep.engine.snapshot import now_rfc3339

if TYPE_CHECKING:
    from kubekeep.engine.repository import Repository

REFRESH_S = 300
STALE_AFTER_S = 1800


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
        return (dt.datetime.now(dt.timezone.utc) - t).total_seconds()

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
            body: dict[str, Any] = objects.unseal(repo.cipher, repo.backend.load(info.name), fmt.AAD_LOCK, info.name)
        except (errors.IntegrityError, errors.ObjectNotFound):
            continue  # vanished or foreign; not ours to judge
        out.append(LockInfo(info.name, bool(body["exclusive"]), body["hostname"], int(body["pid"]),
                            body["time"], body.get("username", "")))
    return out


class RepositoryLock:
    def __init__(self, repo: Repository, *, exclusive: bool) -> None:
        self.repo = repo
        self.exclusive = exclusive
        self.name = f"locks/{secrets.token_hex(16)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        body = {"exclusive": self.exclusive, "hostname": host.hostname(), "pid": os.getpid(),
                "time": now_rfc3339(), "username": host.username()}
        self.repo.backend.store(self.name, objects.seal(self.repo.cipher, body, fmt.AAD_LOCK))

    def _conflicts(self) -> list[LockInfo]:
        return [lk for lk in list_locks(self.repo)
                if lk.name != self.name and (self.exclusive or lk.exclusive) and not lk.is_stale()]

    def acquire(self) -> None:
        conflicts = self._conflicts()
        if not conflicts:
            self._write()
            conflicts = self._conflicts()
            if conflicts:
                self.repo.backend.delete(self.name)
        if conflicts:
            raise errors.RepositoryLocked(
                f"repository is locked: {conflicts[0].describe()} (wait, or run 'kubekeep unlock' if that process is gone)")
        self._thread = threading.Thread(target=self._refresh, name="kubekeep-lock", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self._write()
            except errors.KubekeepError:
                pass  # retried at the next interval; staleness only after 30 minutes

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.repo.backend.delete(self.name)
        except errors.KubekeepError:
            pass

    def __enter__(self) -> RepositoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_locks(repo: Repository, *, everything: bool = False) -> int:
    removed = 0
    for lk in list_locks(repo):
        if everything or lk.is_stale():
            repo.backend.delete(lk.name)
            removed += 1
    return removed
