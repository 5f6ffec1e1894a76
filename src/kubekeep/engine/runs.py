"""Run records: what each backup, forget, prune and check did, success or failure.

A scheduled run that fails often writes no snapshot; its record (``runs/<id>``, sealed like a
snapshot, docs/format.md "Run records") is how ``kubekeep metrics`` and the alerts built on it
see the failure. Records are written without a lock (an append, like a pack) and never read by
backups; ``prune`` keeps the newest :data:`RUNS_KEPT` of each command, source and tags.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from kubekeep import __version__, errors
from kubekeep.engine import format as fmt
from kubekeep.engine import host, records
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import now_rfc3339

PREFIX = "runs"
#: the version of the record's body (``v``)
RUN_BODY_VERSION = 1
#: records kept per (command, source) by prune; older ones are deleted
RUNS_KEPT = 50

Command = Literal["backup", "forget", "prune", "check", "drill"]
Outcome = Literal["success", "warning", "failure"]


class RunBody(TypedDict):
    """A record as stored (msgpack), docs/format.md "Run records"."""

    v: int
    command: str
    source: str
    kind: str
    tags: list[str]
    started: str
    finished: str
    duration_s: float
    outcome: str
    error: str
    snapshot: str
    stats: dict[str, int | float]
    hostname: str
    username: str
    program: str


@dataclass
class RunRecord:
    command: str
    outcome: str = "success"
    #: backups: the source URI and snapshot kind; empty for other commands
    source: str = ""
    kind: str = ""
    #: a backup's snapshot tags (the chart tags each job's snapshots: "manifests", "volumes", ...)
    tags: list[str] = field(default_factory=list)
    started: str = ""
    finished: str = ""
    duration_s: float = 0.0
    #: the one-line message of a failure (or of the warnings of a "warning" run)
    error: str = ""
    #: the snapshot a backup wrote
    snapshot: str = ""
    #: command figures: a backup's files and bytes added, a check's errors and packs read, ...
    stats: dict[str, int | float] = field(default_factory=dict)
    hostname: str = field(default_factory=host.hostname)
    username: str = field(default_factory=host.username)
    program: str = f"kubekeep {__version__}"
    id: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "failure"

    def to_wire(self) -> RunBody:
        return RunBody(
            v=RUN_BODY_VERSION,
            command=self.command,
            source=self.source,
            kind=self.kind,
            tags=list(self.tags),
            started=self.started,
            finished=self.finished,
            duration_s=self.duration_s,
            outcome=self.outcome,
            error=self.error,
            snapshot=self.snapshot,
            stats=dict(self.stats),
            hostname=self.hostname,
            username=self.username,
            program=self.program,
        )

    @classmethod
    def from_wire(cls, body: object, run_id: str) -> RunRecord:
        if not isinstance(body, dict) or body.get("v") != RUN_BODY_VERSION:
            raise errors.IntegrityError(f"run record {run_id[:8]}: not a version-{RUN_BODY_VERSION} record")
        known = set(cls.__dataclass_fields__) - {"id"}
        try:
            record = cls(**{k: v for k, v in body.items() if k in known})
        except TypeError:
            raise errors.IntegrityError(f"run record {run_id[:8]}: malformed") from None
        record.id = run_id
        return record


def save(repo: Repository, record: RunRecord) -> str:
    record.id = repo.save_object(PREFIX, record.to_wire(), fmt.AAD_RUN)
    return record.id


def load_all(repo: Repository) -> tuple[list[RunRecord], list[str]]:
    """Every readable record, oldest first, and a line for each one that is not."""
    found, damaged = records.load_all(repo, PREFIX, fmt.AAD_RUN, "run record", RunRecord.from_wire)
    found.sort(key=lambda r: (r.finished, r.id))
    return found, damaged


def prune(repo: Repository, *, keep: int = RUNS_KEPT, dry_run: bool = False) -> int:
    """Delete all but the newest ``keep`` records of each command, source and tags; returns how many."""
    found, _ = load_all(repo)
    return records.prune(
        repo, PREFIX, found, lambda r: (r.command, r.source, tuple(sorted(r.tags))), keep=keep, dry_run=dry_run
    )


@contextmanager
def recorded(repo: Repository, record: RunRecord) -> Iterator[RunRecord]:
    """Time the block and save ``record`` after it: a failure (a kubekeep error) as such, with
    its message, re-raised. Saving never hides the run's own outcome: if the record cannot be
    written, the repository's warning hook hears of it."""
    started = time.time()
    record.started = now_rfc3339()
    try:
        yield record
    except errors.KubekeepError as exc:
        record.outcome, record.error = "failure", str(exc)
        _finish(repo, record, started)
        raise
    _finish(repo, record, started)


def _finish(repo: Repository, record: RunRecord, started: float) -> None:
    record.finished = now_rfc3339()
    record.duration_s = round(time.time() - started, 3)
    try:
        save(repo, record)
    except errors.KubekeepError as exc:
        repo.warn(
            f"run record {record.started}", f"the record of this {record.command} run could not be written: {exc}"
        )
