"""Object Lock (docs/immutability.md): the settings ``init --object-lock`` takes, extending the
retention dates on demand (``locks extend``), and what a repository's lock settings are."""

from __future__ import annotations

from dataclasses import dataclass

from kubekeep import errors
from kubekeep.engine import objectlock
from kubekeep.engine.objectlock import ExtendReport, LockPolicy
from kubekeep.engine.repository import Repository
from kubekeep.units import parse_lock_period


@dataclass(frozen=True)
class ObjectLockOptions:
    """What ``init --object-lock DAYS --lock-mode MODE [--lock-margin M]`` asks for, as typed."""

    period: str
    mode: str = "governance"
    margin: str | None = None

    def policy(self) -> LockPolicy:
        margin = parse_lock_period(self.margin) if self.margin is not None else None
        return LockPolicy(parse_lock_period(self.period), self.mode, margin)


@dataclass(frozen=True)
class ObjectLockSettings:
    """A repository's Object Lock settings, as the shells show them."""

    period_s: int
    mode: str
    margin_s: int


def object_lock_settings(repo: Repository) -> ObjectLockSettings | None:
    """The repository's Object Lock settings, None if it has none."""
    policy = repo.object_lock
    if policy is None:
        return None
    return ObjectLockSettings(int(policy.period_s), policy.mode, int(policy.margin_s))


def extend_locks(repo: Repository, *, verify: bool = False) -> ExtendReport:
    """Extend the retention of every object a snapshot still within its lock period needs, where
    it falls short of what that snapshot requires (only those: the others cost nothing), and
    record the dates set. ``verify`` asks the server about every such object instead of trusting
    the retention records (one HEAD each). Takes a shared lock: it only adds."""
    if repo.object_lock is None:
        raise errors.UsageError(
            f"the repository at {repo.backend.location} was not created with --object-lock: nothing to extend"
        )
    with repo.lock():
        report = objectlock.extend_all(repo, verify=verify)
    if report.failures:
        raise errors.StorageError(
            f"{len(report.failures)} retention extension(s) failed, the first: {report.failures[0]}"
        )
    return report
