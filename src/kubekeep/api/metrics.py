"""What a repository says about the backups in it, for monitoring (``kubekeep metrics``): per
source and tags the newest snapshot, per command and source the runs recorded (failures included), the
newest check, and the space each kind of object takes."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from kubekeep.api.repositories import refresh
from kubekeep.engine import runs
from kubekeep.engine.repository import Repository
from kubekeep.engine.runs import RunRecord
from kubekeep.engine.snapshot import Snapshot

#: the object kinds whose space is reported (prefixes of the repository layout, docs/format.md)
PREFIXES = ("data", "index", "snapshots", "keys", "runs", "drills")


@dataclass
class SourceMetrics:
    """A source's snapshots: how many are kept, and the newest one's figures."""

    source: str
    kind: str
    host: str
    #: the snapshots' tags, sorted and joined by commas
    tags: str
    snapshots: int
    last_time: float  # seconds since the epoch
    duration_s: float
    bytes_added: int
    files: int
    objects: int | None
    warnings: int


@dataclass
class RunMetrics:
    """The recorded runs of one command on one source (the newest ``runs.RUNS_KEPT``)."""

    command: str
    source: str
    kind: str
    tags: str
    runs: int
    failures: int
    last_time: float
    last_ok: bool
    last_duration_s: float
    last_failure_time: float | None


@dataclass
class RepositoryMetrics:
    sources: list[SourceMetrics] = field(default_factory=list)
    runs: list[RunMetrics] = field(default_factory=list)
    #: the newest check run, if any
    last_check: RunRecord | None = None
    #: when it finished (seconds since the epoch)
    last_check_time: float | None = None
    size_bytes: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    damaged_snapshots: int = 0
    damaged_runs: int = 0
    read_time: float = 0.0
    read_duration_s: float = 0.0


def repository_metrics(repo: Repository) -> RepositoryMetrics:
    """Read the repository's snapshot list, run records and object listing (no data), reloading
    the index if other processes changed it since ``repo`` last read it."""
    started = time.monotonic()
    refresh(repo)
    out = RepositoryMetrics()
    for prefix in PREFIXES:
        listed = list(repo.backend.list(f"{prefix}/"))
        out.size_bytes[prefix] = sum(o.size for o in listed)
        out.objects[prefix] = len(listed)
    snaps = repo.snapshots(skip_damaged=True)
    out.damaged_snapshots = len(repo.damaged_snapshots)
    groups: dict[tuple[str, str, str, str], list[Snapshot]] = {}
    for snap in snaps:
        host = str(snap.source.get("host") or snap.hostname)
        groups.setdefault((snap.uri, snap.kind, host, _tags(snap.tags)), []).append(snap)
    for (source, kind, host, tags), group in sorted(groups.items()):
        newest = max(group, key=lambda s: s.time)
        stats = newest.stats
        objects = (newest.metadata.get("manifests") or {}).get("objects")
        out.sources.append(
            SourceMetrics(
                source=source,
                kind=kind,
                host=host,
                tags=tags,
                snapshots=len(group),
                last_time=_epoch(newest.time),
                duration_s=float(stats.get("duration_s", 0.0)),
                bytes_added=int(stats.get("bytes_stored", 0)),
                files=int(stats.get("files", 0)),
                objects=objects if isinstance(objects, int) else None,
                warnings=len(newest.warnings),
            )
        )
    records, damaged = runs.load_all(repo)
    out.damaged_runs = len(damaged)
    by_key: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in records:
        by_key.setdefault((r.command, r.source, _tags(r.tags)), []).append(r)
    for (command, source, tags), recorded in sorted(by_key.items()):
        last = recorded[-1]
        failures = [r for r in recorded if not r.ok]
        out.runs.append(
            RunMetrics(
                command=command,
                source=source,
                kind=next((r.kind for r in reversed(recorded) if r.kind), ""),
                tags=tags,
                runs=len(recorded),
                failures=len(failures),
                last_time=_epoch(last.finished),
                last_ok=last.ok,
                last_duration_s=last.duration_s,
                last_failure_time=_epoch(failures[-1].finished) if failures else None,
            )
        )
    checks = [r for r in records if r.command == "check"]
    if checks:
        out.last_check, out.last_check_time = checks[-1], _epoch(checks[-1].finished)
    out.read_time = time.time()
    out.read_duration_s = time.monotonic() - started
    return out


def _tags(tags: list[str]) -> str:
    return ",".join(sorted(set(tags)))


def _epoch(rfc3339: str) -> float:
    return dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
