"""The recovery timeline of each etcd cluster: full snapshots and the delta segments between.

Every ``etcd`` snapshot (from ``kubekeep backup etcd://`` or ``kubekeep etcd follow``) is a full
snapshot of its cluster; every ``etcd-delta`` snapshot (written by ``follow``) holds the watch
events of a revision range, ``(after, upto]``, received between two instants, ``since`` and
``until``. A point is recoverable when a full snapshot precedes it and delta segments cover
every revision from that full snapshot to it without a gap (docs/etcd.md, "Point in time").

Nothing here trusts the snapshot metadata further than its shape: numbers are checked to be
numbers in order, and a segment's events are checked against its range when it is read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.connectors.etcd_delta import DELTA_FORMAT, DeltaMeta
from kubekeep.engine.entries import SnapshotKind
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot

#: the snapshot kind of a delta segment
DELTA_KIND = SnapshotKind.ETCD_DELTA.value


@dataclass(frozen=True, slots=True)
class FullPoint:
    """A full snapshot: its state is one revision in ``[revision, revision_after]``."""

    snapshot: Snapshot
    revision: int
    revision_after: int
    time_ns: int

    @property
    def id(self) -> str:
        return self.snapshot.id


@dataclass(frozen=True, slots=True)
class Segment:
    snapshot: Snapshot
    meta: DeltaMeta

    @property
    def after(self) -> int:
        return self.meta["after_revision"]

    @property
    def upto(self) -> int:
        return self.meta["upto_revision"]

    @property
    def since_ns(self) -> int:
        return self.meta["since_ns"]

    @property
    def until_ns(self) -> int:
        return self.meta["until_ns"]

    @property
    def outage(self) -> tuple[int, int] | None:
        a, b = self.meta["outage_from_ns"], self.meta["outage_until_ns"]
        return (a, b) if a is not None and b is not None else None


@dataclass(slots=True)
class Run:
    """Delta segments that together cover revisions ``(after, upto]`` and instants
    ``[since_ns, until_ns]`` without a gap."""

    after: int
    upto: int
    since_ns: int
    until_ns: int
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Point:
    revision: int
    time_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "time": rfc3339(self.time_ns)}


@dataclass(slots=True)
class Timeline:
    cluster_id: str
    fulls: list[FullPoint] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    def runs(self) -> list[Run]:
        """The segments merged into gapless runs, oldest first (overlaps are harmless)."""
        out: list[Run] = []
        for seg in sorted(self.segments, key=lambda s: (s.after, s.upto)):
            last = out[-1] if out else None
            if last is not None and seg.after <= last.upto:
                last.upto = max(last.upto, seg.upto)
                last.until_ns = max(last.until_ns, seg.until_ns)
                last.segments.append(seg)
            else:
                out.append(Run(seg.after, seg.upto, seg.since_ns, seg.until_ns, [seg]))
        return out

    def windows(self) -> list[tuple[Point, Point]]:
        """The recoverable stretches, oldest first: each starts at a full snapshot and ends where
        the delta segments after it stop (a full snapshot without segments is a single point)."""
        runs = self.runs()
        out: list[tuple[Point, Point]] = []
        for full in sorted(self.fulls, key=lambda f: (f.revision_after, f.time_ns)):
            start = Point(full.revision_after, full.time_ns)
            end = start
            for run in runs:
                if run.after <= full.revision and run.upto >= full.revision_after:
                    end = max(end, Point(run.upto, run.until_ns), key=lambda p: (p.revision, p.time_ns))
            if out and start.revision <= out[-1][1].revision:
                if end.revision > out[-1][1].revision:
                    out[-1] = (out[-1][0], end)
                continue
            out.append((start, end))
        return out

    def window(self) -> tuple[Point, Point] | None:
        """The earliest and the latest recoverable point."""
        ws = self.windows()
        return (ws[0][0], ws[-1][1]) if ws else None


def rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _snapshot_ns(snap: Snapshot) -> int:
    return int(snap.datetime.timestamp() * 1e9)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def full_point(snap: Snapshot) -> FullPoint | None:
    """The full-snapshot facts of an etcd snapshot, or None when its metadata lacks them."""
    meta = snap.metadata.get("etcd")
    if snap.kind != SnapshotKind.ETCD.value or not isinstance(meta, dict):
        return None
    before = _int(meta.get("revision"))
    after = _int(meta.get("revision_after"))
    if before is None:
        return None
    if after is None or after < before:
        after = before
    return FullPoint(snap, before, after, _snapshot_ns(snap))


def delta_meta(snap: Snapshot) -> DeltaMeta | None:
    """A delta segment's metadata, or None when it is missing or malformed."""
    raw = snap.metadata.get("etcd_delta")
    if snap.kind != DELTA_KIND or not isinstance(raw, dict):
        return None
    nums = {
        k: _int(raw.get(k)) for k in ("format", "after_revision", "upto_revision", "since_ns", "until_ns", "events")
    }
    outage = (raw.get("outage_from_ns"), raw.get("outage_until_ns"))
    if any(v is None for v in nums.values()) or not isinstance(raw.get("cluster_id"), str):
        return None
    if nums["format"] != DELTA_FORMAT or nums["upto_revision"] < nums["after_revision"]:  # type: ignore[operator]
        return None
    if nums["until_ns"] < nums["since_ns"]:  # type: ignore[operator]
        return None
    if outage != (None, None) and (_int(outage[0]) is None or _int(outage[1]) is None):
        return None
    return DeltaMeta(
        format=DELTA_FORMAT,
        cluster_id=str(raw["cluster_id"]),
        after_revision=int(nums["after_revision"] or 0),
        upto_revision=int(nums["upto_revision"] or 0),
        since_ns=int(nums["since_ns"] or 0),
        until_ns=int(nums["until_ns"] or 0),
        events=int(nums["events"] or 0),
        outage_from_ns=_int(outage[0]),
        outage_until_ns=_int(outage[1]),
        endpoint=str(raw.get("endpoint") or ""),
    )


def cluster_of(snap: Snapshot) -> str:
    """The etcd cluster id a full snapshot or segment belongs to ("" when unknown)."""
    if snap.kind == DELTA_KIND:
        meta = delta_meta(snap)
        return meta["cluster_id"] if meta else ""
    meta_full = snap.metadata.get("etcd")
    cid = meta_full.get("cluster_id") if isinstance(meta_full, dict) else None
    return cid if isinstance(cid, str) and cid not in ("", "0") else ""


def build(snaps: Iterable[Snapshot]) -> dict[str, Timeline]:
    """The timeline of each cluster found among ``snaps``, by cluster id."""
    out: dict[str, Timeline] = {}
    for snap in snaps:
        cid = cluster_of(snap)
        if not cid:
            continue
        if snap.kind == DELTA_KIND:
            meta = delta_meta(snap)
            if meta is not None:
                out.setdefault(cid, Timeline(cid)).segments.append(Segment(snap, meta))
        else:
            full = full_point(snap)
            if full is not None:
                out.setdefault(cid, Timeline(cid)).fulls.append(full)
    for tl in out.values():
        tl.fulls.sort(key=lambda f: (f.time_ns, f.revision))
        tl.segments.sort(key=lambda s: (s.after, s.upto, s.until_ns))
    return out


def timelines(repo: Repository, cluster: str | None = None) -> list[Timeline]:
    """Every cluster's timeline (or the one whose id starts with ``cluster``), by cluster id."""
    found = build(repo.snapshots(skip_damaged=True))
    if cluster is not None:
        found = {k: v for k, v in found.items() if k.startswith(cluster.lower())}
        if not found:
            raise errors.SnapshotNotFound(f"no etcd snapshot of a cluster with id {cluster!r} in the repository")
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True, slots=True)
class RecoveryWindow:
    """One cluster's recovery window, for ``etcd status`` and the UI."""

    cluster_id: str
    earliest: Point | None
    latest: Point | None
    full_snapshots: int
    delta_segments: int
    gaps: int  # recoverable stretches beyond the first: the window has holes between them
    latest_full: str | None  # id of the newest full snapshot

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "earliest": self.earliest.to_dict() if self.earliest else None,
            "latest": self.latest.to_dict() if self.latest else None,
            "full_snapshots": self.full_snapshots,
            "delta_segments": self.delta_segments,
            "gaps": self.gaps,
            "latest_full": self.latest_full,
        }


def recovery_window(tl: Timeline) -> RecoveryWindow:
    ws = tl.windows()
    return RecoveryWindow(
        cluster_id=tl.cluster_id,
        earliest=ws[0][0] if ws else None,
        latest=ws[-1][1] if ws else None,
        full_snapshots=len(tl.fulls),
        delta_segments=len(tl.segments),
        gaps=max(0, len(ws) - 1),
        latest_full=tl.fulls[-1].id if tl.fulls else None,
    )


def recovery_windows(repo: Repository) -> list[RecoveryWindow]:
    return [recovery_window(tl) for tl in timelines(repo)]
