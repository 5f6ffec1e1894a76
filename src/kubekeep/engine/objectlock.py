"""Object Lock: which objects kubekeep locks, until when, and the record of the dates it set.

A repository created with ``init --object-lock`` records a :class:`LockPolicy` in its config
(format version 3, docs/format.md). Then:

- every object kubekeep writes, except the repository lock files under ``locks/``, is stored
  with a retention date ``now + period + margin`` (:class:`RetainingBackend` wraps the storage
  backend, so no writer can forget it);
- a snapshot taken at ``T`` needs its packs, the ``config`` and the key files locked until at
  least ``T + period`` (the invariant, checked by ``check``). Before a snapshot file is written,
  the objects it needs whose recorded date is below ``T + period + margin/2`` are extended to
  ``T + period + margin`` (:func:`extend_needed`); the others cost nothing;
- the dates kubekeep set are kept in sealed *retention records* (``retention/<id>``), so a
  backup knows which reused packs are near their date without asking the server per pack. The
  server's dates stay the authority: an object the records do not know is asked about once;
- deletions of objects whose date is not reached are refused here, before the server is asked
  (:class:`errors.DeleteRefused`); prune and forget report and skip them.

Index files are not extended: they can be rebuilt from the packs' headers (``repair index``),
and extending them would keep every old index file, and the packs it lists, alive for ever.
Index files, snapshot files and records keep the date they were written with.

This module sits beside the writer and the locks: it names the repository only in annotations.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubekeep import errors
from kubekeep.engine import format as fmt
from kubekeep.engine import objects
from kubekeep.engine.pack import pack_name
from kubekeep.engine.tree import DIR, FILE
from kubekeep.storage.base import RETENTION_MODES, Backend, LockSupport, Retention, WrappingBackend

if TYPE_CHECKING:
    from kubekeep.engine.repository import Repository

#: names rewritten or deleted in normal operation: never given a retention date
MUTABLE_PREFIXES = ("locks/",)
#: where the retention records live
RECORD_PREFIX = "retention"
#: a record larger than this is not read (hostile storage)
MAX_RECORD_SIZE = 256 * 1024 * 1024
#: retention requests (HEAD / PutObjectRetention) in flight at once
PARALLEL_REQUESTS = 8
#: the margin when none is given: a fifth of the period, at most this
MAX_DEFAULT_MARGIN = dt.timedelta(days=7)
#: prefixes whose objects carry a retention date (check asks the server about each)
LOCKED_PREFIXES = ("keys/", "data/", "index/", "snapshots/", "runs/", "drills/", f"{RECORD_PREFIX}/")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _epoch(when: dt.datetime) -> int:
    """Whole seconds, rounded down: servers keep retention dates to the second (or finer), so a
    date recorded is never later than the server's."""
    return int(when.timestamp())


def _date(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def show(when: dt.datetime | float) -> str:
    """A date as reports print it."""
    if not isinstance(when, dt.datetime):
        when = _date(when)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class LockPolicy:
    """How long objects stay locked. ``period``: how long each snapshot is kept at least (from its
    time); ``margin``: added to each date kubekeep sets, so that extensions are rare and clock
    skew is absorbed; ``mode``: ``governance`` or ``compliance`` (docs/immutability.md)."""

    period: dt.timedelta
    mode: str = "governance"
    margin: dt.timedelta | None = None

    def __post_init__(self) -> None:
        if self.mode not in RETENTION_MODES:
            raise errors.UsageError(f"lock mode must be one of {', '.join(RETENTION_MODES)}, not {self.mode!r}")
        if self.period.total_seconds() < 1:
            raise errors.UsageError("an Object Lock period must be at least one second")
        if self.margin is None:
            object.__setattr__(self, "margin", min(self.period / 5, MAX_DEFAULT_MARGIN))
        if self.margin_s < 0:
            raise errors.UsageError("an Object Lock margin cannot be negative")

    @property
    def margin_s(self) -> float:
        assert self.margin is not None
        return self.margin.total_seconds()

    @property
    def period_s(self) -> float:
        return self.period.total_seconds()

    def target(self, time: dt.datetime) -> dt.datetime:
        """The date set for what a snapshot taken at ``time`` needs (and for new objects)."""
        return time + self.period + dt.timedelta(seconds=self.margin_s)

    def threshold(self, time: dt.datetime) -> dt.datetime:
        """Below this date, what a snapshot taken at ``time`` needs is extended."""
        return time + self.period + dt.timedelta(seconds=self.margin_s / 2)

    def to_config(self) -> fmt.ObjectLockParams:
        return {"period": int(self.period_s), "mode": self.mode, "margin": int(self.margin_s)}

    @classmethod
    def from_config(cls, params: object) -> LockPolicy:
        if (
            not isinstance(params, dict)
            or not all(
                isinstance(params.get(k), int) and not isinstance(params.get(k), bool) for k in ("period", "margin")
            )
            or params.get("mode") not in RETENTION_MODES
        ):
            raise errors.IntegrityError("config: the object_lock settings are malformed")
        return cls(dt.timedelta(seconds=params["period"]), params["mode"], dt.timedelta(seconds=params["margin"]))


def require_support(backend: Backend) -> None:
    """Refuse, with one line, a location that cannot hold kubekeep's retention dates."""
    support: LockSupport = backend.lock_support()
    where = backend.location
    if support.why_not:
        raise errors.UsageError(f"--object-lock: {where}: {support.why_not}")
    if not support.object_lock:
        raise errors.UsageError(
            f"--object-lock: bucket of {where} does not have Object Lock enabled; create it with Object Lock "
            "(e.g. 'aws s3api create-bucket --object-lock-enabled-for-bucket'; see docs/immutability.md)"
        )
    if not support.versioning:
        raise errors.UsageError(f"--object-lock: bucket of {where} does not have versioning enabled")
    if support.default_retention:
        raise errors.UsageError(
            f"--object-lock: bucket of {where} has a default retention rule ({support.default_retention}): it "
            "would lock the repository lock files too, which must stay deletable; remove the rule "
            "(kubekeep sets a date on every other object itself; see docs/immutability.md)"
        )


class RetainingBackend(WrappingBackend):
    """The repository's backend in a repository with Object Lock: every store outside ``locks/``
    carries ``policy.target(now)``, every date set is noted for the next retention record, and a
    deletion before an object's date is refused without asking the server to delete."""

    def __init__(self, inner: Backend, policy: LockPolicy, clock: Callable[[], dt.datetime] = utcnow) -> None:
        super().__init__(inner)
        self.policy = policy
        self.clock = clock
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self.extensions = 0  # extend_retention calls made by this process

    def note(self, name: str, until: dt.datetime) -> None:
        with self._lock:
            self._pending[name] = max(self._pending.get(name, 0), _epoch(until))

    def take_pending(self) -> dict[str, int]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def store(
        self, name: str, data: bytes | memoryview, *, exclusive: bool = False, retention: Retention | None = None
    ) -> None:
        if name.startswith(MUTABLE_PREFIXES):
            self.inner.store(name, data, exclusive=exclusive)
            return
        if retention is None:
            retention = Retention(self.policy.mode, self.policy.target(self.clock()))
        self.inner.store(name, data, exclusive=exclusive, retention=retention)
        if not name.startswith(f"{RECORD_PREFIX}/"):  # a record does not record itself (check asks)
            self.note(name, retention.until)

    def locked_until(self, name: str) -> dt.datetime | None:
        """The object's retention date on the server if not yet reached, else None."""
        try:
            retention = self.inner.retention(name)
        except errors.ObjectNotFound:
            return None
        if retention is not None and retention.until > self.clock():
            return retention.until
        return None

    def delete(self, name: str) -> None:
        if not name.startswith(MUTABLE_PREFIXES):
            until = self.locked_until(name)
            if until is not None:
                raise errors.DeleteRefused(f"{name} is locked until {show(until)}", until)
        self.inner.delete(name)

    def extend_retention(self, name: str, retention: Retention) -> None:
        self.inner.extend_retention(name, retention)
        with self._lock:
            self.extensions += 1
        self.note(name, retention.until)


# -- retention records -----------------------------------------------------------------------


def _parse_record(body: object, what: str) -> dict[str, int]:
    if not isinstance(body, dict) or body.get("v") != 1 or not isinstance(body.get("objects"), list):
        raise errors.IntegrityError(f"{what}: malformed retention record")
    out: dict[str, int] = {}
    for row in body["objects"]:
        if (
            not isinstance(row, list)
            or len(row) != 2
            or not isinstance(row[0], str)
            or not isinstance(row[1], int)
            or isinstance(row[1], bool)
        ):
            raise errors.IntegrityError(f"{what}: malformed retention record")
        out[row[0]] = max(out.get(row[0], 0), row[1])
    return out


def load_records(repo: Repository) -> tuple[dict[str, int], list[str]]:
    """The latest date recorded for each object (epoch seconds) over every readable retention
    record, and the names of the records read; a damaged record is warned about and skipped."""
    dates: dict[str, int] = {}
    names: list[str] = []
    for info in repo.backend.list(f"{RECORD_PREFIX}/"):
        if info.size > MAX_RECORD_SIZE:
            repo.warn(info.name, f"retention record {info.name} is too large and was skipped")
            continue
        try:
            data = repo.backend.load(info.name)
            if objects.content_name(data) != info.name.split("/", 1)[1]:
                raise errors.IntegrityError(f"{info.name}: content does not match its name")
            body = objects.unseal(repo.cipher, data, fmt.AAD_RETENTION, info.name)
            found = _parse_record(body, info.name)
        except errors.ObjectNotFound:
            continue
        except errors.IntegrityError as exc:
            repo.warn(info.name, f"retention record {info.name} is damaged and was skipped: {exc}")
            continue
        names.append(info.name)
        for name, until in found.items():
            dates[name] = max(dates.get(name, 0), until)
    return dates, names


def save_record(repo: Repository, dates: dict[str, int]) -> str | None:
    """Store ``dates`` as one retention record; returns its name (None when there is nothing)."""
    if not dates:
        return None
    body = {"v": 1, "objects": [[name, until] for name, until in sorted(dates.items())]}
    sealed = objects.seal(repo.cipher, body, fmt.AAD_RETENTION)
    name = f"{RECORD_PREFIX}/{objects.content_name(sealed)}"
    repo.backend.store(name, sealed)
    return name


class Ledger:
    """The dates kubekeep set: what the records say, plus what this process set since."""

    def __init__(self, repo: Repository, retaining: RetainingBackend) -> None:
        self.repo = repo
        self.retaining = retaining
        self._dates: dict[str, int] | None = None
        self._unrecorded: dict[str, int] = {}
        self.record_names: list[str] = []

    def _absorb(self) -> None:
        for name, until in self.retaining.take_pending().items():
            self._unrecorded[name] = max(self._unrecorded.get(name, 0), until)

    @property
    def dates(self) -> dict[str, int]:
        """Object name -> the latest date set on it (epoch seconds), as far as kubekeep knows."""
        self._absorb()
        if self._dates is None:
            self._dates, self.record_names = load_records(self.repo)
        for name, until in self._unrecorded.items():
            self._dates[name] = max(self._dates.get(name, 0), until)
        return self._dates

    def consolidate(self) -> tuple[str | None, list[errors.DeleteRefused]]:
        """Replace the records by one holding the date of every object still stored (prune's
        last step); the old records whose date is reached are deleted, the others stay (the
        refusals are returned). A crash in between leaves duplicate entries, which are harmless."""
        dates = self.dates
        old = [o.name for o in self.repo.backend.list(f"{RECORD_PREFIX}/")]
        present = set(lockable_names(self.repo))
        self._unrecorded = {}
        new = save_record(self.repo, {n: u for n, u in dates.items() if n in present})
        refused: list[errors.DeleteRefused] = []
        kept = [new] if new else []
        for name in old:
            if name == new:
                continue
            try:
                self.repo.backend.delete(name)
            except errors.DeleteRefused as exc:
                refused.append(exc)
                kept.append(name)
        self.record_names = kept
        return new, refused

    def flush(self) -> str | None:
        """Write what this process set since the last flush as one retention record."""
        self._absorb()
        pending, self._unrecorded = self._unrecorded, {}
        name = save_record(self.repo, pending)
        if self._dates is not None:
            for obj, until in pending.items():
                self._dates[obj] = max(self._dates.get(obj, 0), until)
            if name is not None:
                self.record_names.append(name)
        return name


# -- what a snapshot needs -------------------------------------------------------------------


def needed_packs(repo: Repository, tree_id: bytes) -> set[str]:
    """The names of the packs holding every tree and data blob below ``tree_id``."""
    index = repo.index
    seen: set[bytes] = set()
    packs: set[str] = set()
    stack = [tree_id]
    while stack:
        tid = stack.pop()
        if tid in seen:
            continue
        seen.add(tid)
        loc = repo.locate(tid)
        if loc is None:
            raise errors.IntegrityError(f"tree {tid.hex()[:16]} is missing; run 'kubekeep check'")
        packs.add(pack_name(loc.pack_id))
        content: list[bytes] = []
        for node in repo.load_tree(tid):
            if node.type == DIR and node.subtree is not None:
                stack.append(node.subtree)
            elif node.type == FILE:
                content.extend(node.content)
        if content:
            locs = index.lookup_many(content)
            if None in locs:
                repo.read_uncovered_pack_headers()
                locs = index.lookup_many(content)
            for blob_id, found in zip(content, locs, strict=True):
                if found is None:
                    raise errors.IntegrityError(f"data blob {blob_id.hex()[:16]} is missing; run 'kubekeep check'")
                packs.add(pack_name(found.pack_id))
    return packs


def always_needed(repo: Repository) -> set[str]:
    """The objects every snapshot needs besides its packs: the config and the key files."""
    return {"config", *(o.name for o in repo.backend.list("keys/"))}


@dataclass
class ExtendReport:
    """What an extension pass did: objects considered, asked about, extended."""

    objects: int = 0
    asked: int = 0
    extended: int = 0
    earliest: str | None = None  # the earliest date among the objects considered, after the pass
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "asked": self.asked,
            "extended": self.extended,
            "earliest": self.earliest,
            "failures": list(self.failures),
        }


def extend_needed(repo: Repository, needs: dict[str, dt.datetime], *, verify: bool = False) -> ExtendReport:
    """Make each object of ``needs`` (name -> the time of the newest snapshot needing it) locked
    until at least ``policy.threshold(time)``: objects recorded below it are extended to
    ``policy.target(time)``; an object the records do not know is asked about first. ``verify``
    asks the server about every object instead of trusting the records (one HEAD each)."""
    policy, retaining, ledger = _parts(repo)
    dates = ledger.dates
    report = ExtendReport(objects=len(needs))
    todo = [(n, t) for n, t in needs.items() if verify or dates.get(n, 0) < _epoch(policy.threshold(t))]
    lock = threading.Lock()

    def one(item: tuple[str, dt.datetime]) -> None:
        name, time = item
        if verify or name not in dates:
            with lock:
                report.asked += 1
            current = retaining.retention(name)
            if current is not None and current.until >= policy.threshold(time):
                retaining.note(name, current.until)
                return
        # through repo.backend: the lock guard, when a lock is held, checks the lock is alive
        repo.backend.extend_retention(name, Retention(policy.mode, policy.target(time)))
        with lock:
            report.extended += 1

    with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
        for item, future in [(item, pool.submit(one, item)) for item in todo]:
            try:
                future.result()
            except errors.ObjectNotFound:
                report.failures.append(f"{item[0]} is missing")
            except errors.StorageError as exc:
                report.failures.append(str(exc))
    dates = ledger.dates
    known = [dates[n] for n in needs if n in dates]
    report.earliest = show(min(known)) if known else None
    return report


def extend_for_snapshot(repo: Repository, tree_id: bytes, time: dt.datetime) -> ExtendReport:
    """Before a snapshot of ``tree_id`` taken at ``time`` is written: extend what it needs."""
    needs = dict.fromkeys(needed_packs(repo, tree_id) | always_needed(repo), time)
    report = extend_needed(repo, needs)
    if report.failures:
        raise errors.StorageError(
            f"could not extend the retention of {len(report.failures)} object(s) the snapshot needs: "
            f"{report.failures[0]} (nothing was written for this snapshot)"
        )
    return report


def snapshot_needs(repo: Repository, now: dt.datetime) -> dict[str, dt.datetime]:
    """For every snapshot still within its lock period at ``now``: the objects it needs, each
    with the time of the newest such snapshot needing it (its own file included)."""
    policy, _, _ = _parts(repo)
    needs: dict[str, dt.datetime] = {}
    for snap in repo.snapshots(skip_damaged=True):
        time = parse_time(snap.time)
        if time + policy.period <= now:
            continue
        for name in (*needed_packs(repo, bytes.fromhex(snap.tree)), *always_needed(repo), f"snapshots/{snap.id}"):
            if name not in needs or needs[name] < time:
                needs[name] = time
    return needs


def extend_for_keep_within(
    repo: Repository, kept: Iterable[tuple[str, str, str]], within: dt.timedelta
) -> ExtendReport | None:
    """``forget --keep-within D``: the policy says each kept snapshot (``(id, tree, time)``)
    stays at least until its time + D; where that is past its lock period, extend what it
    needs (only what is recorded short of it) to time + D + margin. None when D is not longer
    than the lock period (the lock already covers it)."""
    policy, _, _ = _parts(repo)
    if within <= policy.period:
        return None
    needs: dict[str, dt.datetime] = {}
    for snap_id, tree, time_text in kept:
        # extend_needed locks until policy.target(t) = t + period + margin: shift t so that this
        # is the snapshot's time + within + margin
        shifted = parse_time(time_text) + within - policy.period
        for name in (*needed_packs(repo, bytes.fromhex(tree)), *always_needed(repo), f"snapshots/{snap_id}"):
            if name not in needs or needs[name] < shifted:
                needs[name] = shifted
    report = extend_needed(repo, needs)
    flush(repo)
    return report


def extend_all(repo: Repository, now: dt.datetime | None = None, *, verify: bool = False) -> ExtendReport:
    """``kubekeep locks extend``: every object a snapshot within its lock period needs is made
    locked as that snapshot requires (snapshot files keep the date they were written with unless
    it falls short); then the dates set are recorded. ``verify``: ask the server about every
    object rather than trust the records (after ``check`` found a date shortened)."""
    needs = snapshot_needs(repo, now or utcnow())
    report = extend_needed(repo, needs, verify=verify)
    flush(repo)
    return report


def flush(repo: Repository) -> str | None:
    """Record the dates this process set (a retention record), if any."""
    if repo.ledger is None:
        return None
    return repo.ledger.flush()


def parse_time(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _parts(repo: Repository) -> tuple[LockPolicy, RetainingBackend, Ledger]:
    if repo.object_lock is None or repo.retaining is None or repo.ledger is None:
        raise errors.UsageError(f"the repository at {repo.backend.location} does not use Object Lock")
    return repo.object_lock, repo.retaining, repo.ledger


# -- check ----------------------------------------------------------------------------------


@dataclass
class LockCheck:
    """What ``check`` found about retention dates."""

    objects: int = 0
    errors: list[str] = field(default_factory=list)
    earliest: str | None = None


def check_locks(repo: Repository, names: Iterable[str], now: dt.datetime | None = None) -> LockCheck:
    """Compare the server's retention date of each object of ``names`` (every stored object but
    the lock files) with the date kubekeep recorded and with what the snapshots within their
    lock period need (the invariant of docs/format.md)."""
    policy, retaining, ledger = _parts(repo)
    now = now or utcnow()
    dates = ledger.dates
    needs = snapshot_needs(repo, now)
    names = sorted(set(names))
    result = LockCheck(objects=len(names))

    def one(name: str) -> tuple[str, Retention | None | str]:
        try:
            return name, retaining.retention(name)
        except errors.ObjectNotFound:
            return name, "missing"
        except errors.StorageError as exc:
            return name, str(exc)

    earliest: dt.datetime | None = None
    with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
        for name, found in pool.map(one, names):
            if isinstance(found, str):
                if found != "missing":
                    result.errors.append(f"{name}: cannot read its retention date: {found}")
                continue
            if found is None:
                result.errors.append(f"{name} has no retention date: anyone with write access can delete it")
                continue
            if found.mode != policy.mode:
                result.errors.append(f"{name} is locked in {found.mode} mode, the repository uses {policy.mode}")
            recorded = dates.get(name)
            if recorded is not None and found.until.timestamp() + 1 < recorded:
                result.errors.append(
                    f"{name} is locked until {show(found.until)}, but kubekeep set {show(recorded)}: "
                    "its retention was shortened ('kubekeep locks extend --verify' restores it)"
                )
            need = needs.get(name)
            if need is not None and found.until < need + policy.period:
                result.errors.append(
                    f"{name} is needed by a snapshot of {show(need)} until {show(need + policy.period)} but locked "
                    f"only until {show(found.until)}; 'kubekeep locks extend --verify' extends it"
                )
            if earliest is None or found.until < earliest:
                earliest = found.until
    result.earliest = show(earliest) if earliest is not None else None
    return result


def lockable_names(repo: Repository) -> list[str]:
    """Every stored object that should carry a retention date."""
    names = ["config"] if repo.backend.exists("config") else []
    for prefix in LOCKED_PREFIXES:
        names.extend(o.name for o in repo.backend.list(prefix))
    return names
