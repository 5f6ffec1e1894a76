"""``kubekeep etcd restore-dir --at TIME | --revision REV``: a data directory at any point.

The point is found on the cluster's timeline (api.etcd_timeline): the newest full snapshot
before it whose delta segments reach it without a gap is written out, the segments' events are
replayed onto it up to the point (kubekeep.etcd.replay), and the result becomes the member's
data directory through ``etcdutl snapshot restore``, with the revision bump and compaction
marking a Kubernetes cluster needs.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubekeep import errors
from kubekeep.api.etcd_timeline import FullPoint, Segment, Timeline, rfc3339, timelines
from kubekeep.connectors.etcd_delta import DELTA_PATH
from kubekeep.engine.repository import Repository
from kubekeep.etcd import segment

#: a segment file larger than this is not a segment follow wrote (it cuts at 8 MiB by default)
MAX_SEGMENT = 1 << 30


@dataclass(frozen=True, slots=True)
class Target:
    revision: int
    time_ns: int | None  # the time asked for, if any


def _one_timeline(repo: Repository, cluster: str | None) -> Timeline:
    found = timelines(repo, cluster)
    if not found:
        raise errors.SnapshotNotFound("the repository holds no etcd snapshot")
    if len(found) > 1:
        ids = ", ".join(tl.cluster_id for tl in found)
        raise errors.UsageError(f"the repository holds {len(found)} etcd clusters ({ids}): name one with --cluster")
    return found[0]


def segment_records(repo: Repository, seg: Segment) -> Iterator[segment.Record]:
    node = repo.resolve(seg.snapshot, DELTA_PATH)
    if node.type != "file" or node.size > MAX_SEGMENT:
        raise errors.IntegrityError(f"delta segment {seg.snapshot.short_id} has no segment file of a sane size")
    data = b"".join(repo.read_file(node))
    what = f"delta segment {seg.snapshot.short_id}"
    records = list(segment.decode(data, after=seg.after, upto=seg.upto, what=what))
    if len(records) != seg.meta["events"]:
        raise errors.IntegrityError(f"{what} holds {len(records)} events, its metadata says {seg.meta['events']}")
    yield from records


def resolve_time(repo: Repository, tl: Timeline, at_ns: int) -> int:
    """The revision the cluster was at, as the follower saw it, at ``at_ns``."""
    windows = tl.windows()
    if not windows:
        raise errors.SnapshotNotFound(f"cluster {tl.cluster_id} has no full etcd snapshot")
    if at_ns < windows[0][0].time_ns:
        raise errors.UsageError(
            f"{rfc3339(at_ns)} is before the earliest recoverable point ({rfc3339(windows[0][0].time_ns)})"
        )
    if at_ns > windows[-1][1].time_ns:
        raise errors.UsageError(
            f"{rfc3339(at_ns)} is after the latest recoverable point ({rfc3339(windows[-1][1].time_ns)})"
        )
    covering = [s for s in tl.segments if s.since_ns <= at_ns <= s.until_ns]
    if not covering:
        raise errors.UsageError(
            f"{rfc3339(at_ns)} falls in a gap of the timeline: no delta segment covers it "
            "(kubekeep etcd timeline shows the recoverable stretches)"
        )
    revision = max([s.upto for s in tl.segments if s.until_ns <= at_ns] + [s.after for s in covering])
    for seg in covering:
        if seg.until_ns <= at_ns:
            continue
        outage = seg.outage
        if outage is not None and outage[0] < at_ns < outage[1]:
            raise errors.UsageError(
                f"{rfc3339(at_ns)} falls in a follow outage ({rfc3339(outage[0])} to {rfc3339(outage[1])}): the "
                f"events of revisions {seg.after + 1}..{seg.upto} were caught up afterwards without their times; "
                "choose a time outside it or a --revision"
            )
        caught_up_by = outage[1] if outage is not None else seg.since_ns  # when untimed events were in
        for rec in segment_records(repo, seg):
            if (rec.received_ns or caught_up_by) <= at_ns:
                revision = max(revision, rec.revision)
    return revision


def choose_full(tl: Timeline, revision: int) -> tuple[FullPoint, list[Segment]]:
    """The newest full snapshot surely at or before ``revision`` with gapless segments up to
    it, and those segments in revision order."""
    runs = tl.runs()
    for full in sorted(tl.fulls, key=lambda f: (f.revision_after, f.time_ns), reverse=True):
        if full.revision_after > revision:
            continue
        if full.revision_after == revision == full.revision:
            return full, []
        for run in runs:
            if run.after <= full.revision and run.upto >= revision:
                segs = sorted(
                    (s for s in run.segments if s.upto > full.revision and s.after < revision),
                    key=lambda s: (s.after, s.upto),
                )
                return full, segs
    earliest = min((f.revision_after for f in tl.fulls), default=None)
    if earliest is not None and revision < earliest:
        raise errors.UsageError(f"revision {revision} is before the earliest full snapshot (revision {earliest})")
    raise errors.UsageError(
        f"no full snapshot of cluster {tl.cluster_id} reaches revision {revision} through gapless delta segments"
    )


def _records(repo: Repository, segs: list[Segment]) -> Iterator[segment.Record]:
    """The events of overlapping segments once each, in revision order."""
    done = 0  # every revision up to here came from an earlier segment, whole
    for seg in segs:
        for rec in segment_records(repo, seg):
            if rec.revision > done:
                yield rec
        done = max(done, seg.upto)


def etcd_restore_point(
    repo: Repository,
    data_dir: str | os.PathLike[str],
    *,
    name: str,
    at: dt.datetime | None = None,
    revision: int | None = None,
    cluster: str | None = None,
    initial_cluster: str | None = None,
    initial_advertise_peer_urls: str | None = None,
    initial_cluster_token: str | None = None,
    bump_revision: int | None = None,
    mark_compacted: bool = False,
    etcdutl: str | os.PathLike[str] | None = None,
    etcd: str | os.PathLike[str] | None = None,
    lease_ttl: int = 3600,
) -> dict[str, Any]:
    """Create ``data_dir`` for member ``name`` with the cluster as it was ``at`` a time or at a
    ``revision``; returns a report of what was replayed."""
    from kubekeep.api.etcd import checked_member
    from kubekeep.etcd.replay import find_etcd, replay_to_file
    from kubekeep.etcd.restore import restore_data_dir

    if (at is None) == (revision is None):
        raise errors.UsageError("name the point to restore: --at TIME or --revision REV")
    target, members, peer_urls, token, tool = checked_member(
        data_dir, name, initial_cluster, initial_advertise_peer_urls, initial_cluster_token,
        bump_revision, mark_compacted, etcdutl,
    )  # fmt: skip
    etcd_path = find_etcd(etcd, beside=tool.path)
    with repo.lock():
        tl = _one_timeline(repo, cluster)
        at_ns = None
        if at is not None:
            if at.tzinfo is None:
                at = at.astimezone()  # a time without zone is local time, as `date` prints it
            at_ns = int(at.timestamp() * 1e9)
            revision = resolve_time(repo, tl, at_ns)
        assert revision is not None
        full, segs = choose_full(tl, revision)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.UsageError(f"cannot create {target.parent}: {exc.strerror}") from None
        with tempfile.TemporaryDirectory(prefix=".kubekeep-etcd-restore-", dir=target.parent) as tmp:
            base_file = Path(tmp) / "full.db"
            node = repo.resolve(full.snapshot, "etcd/snapshot.db")
            with open(base_file, "wb") as out:
                for piece in repo.read_file(node):
                    out.write(piece)
            replayed_file = Path(tmp) / "replayed.db"
            result = replay_to_file(
                base_file,
                _records(repo, segs),
                revision,
                replayed_file,
                etcd=etcd_path,
                etcdutl=tool.path,
                lease_ttl=lease_ttl,
            )
            restored = restore_data_dir(
                replayed_file, target, name, members, peer_urls, token, bump_revision, mark_compacted, tool.path
            )
    return {
        "cluster_id": tl.cluster_id,
        "target": {"revision": revision, "time": rfc3339(at_ns) if at_ns is not None else None},
        "full_snapshot": {"id": full.id, "short_id": full.snapshot.short_id, "revision": result.base_revision},
        "segments": [s.snapshot.id for s in segs],
        "replayed": {
            "revisions": result.revisions,
            "events": result.events,
            "from_revision": result.base_revision + 1 if result.revisions else None,
            "to_revision": result.revision,
            "leases_granted": result.leases_granted,
            "seconds": result.seconds,
        },
        "data_dir": restored.data_dir,
        "tool": restored.tool,
        "tool_version": restored.tool_version,
        "etcd": etcd_path,
        "revision": restored.snapshot_revision,
        "bump_revision": bump_revision,
        "mark_compacted": mark_compacted,
    }
