"""``kubekeep etcd status|timeline|follow|restore-dir``: stored etcd snapshots, their timeline,
continuous deltas, and data directories at a snapshot or at any recoverable point."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import click

from kubekeep import api, errors, units
from kubekeep.cli._common import emit_json, global_options, human_size, info, settings, with_repository


@click.group(short_help="Inspect and restore etcd snapshots.")
def command() -> None:
    """Work with etcd snapshots stored by `kubekeep backup etcd://...` (or any stored snapshot
    file, named as SNAPSHOT:PATH)."""


@command.command("status", short_help="Show each cluster's recovery window, or check one stored snapshot.")
@click.argument("ref", metavar="[SNAPSHOT[:PATH]]", required=False)
@global_options
@with_repository
def status(repo: api.Repository, ref: str | None) -> None:
    """Without SNAPSHOT: the recovery window of each etcd cluster in the repository (its
    earliest and latest recoverable point). With SNAPSHOT: read that stored etcd snapshot in
    place (no restore, no copy on disk), verify its SHA-256, and report its revision, key
    counts, size and members, with what was recorded at backup time. SNAPSHOT[:PATH]: an
    etcd:// snapshot (its /etcd/snapshot.db), or any stored snapshot file at PATH."""
    if ref is None:
        _windows(repo)
        return
    report = api.etcd_status(repo, ref)
    if settings().json:
        emit_json(report)
        return
    f = report["file"]
    rec: dict[str, Any] | None = report["recorded"]
    checks = []
    if f["has_hash"]:
        checks.append("trailer ok")
    else:
        checks.append("no trailer (a copied member/snap/db?)")
    if report["matches_recorded"]:
        checks.append("matches the backup")
    compacted = f" (compacted at {f['compact_revision']})" if f["compact_revision"] else ""
    lines = [
        f"snapshot {report['short_id']}:{report['path']}",
        f"  sha256      {f['sha256']} ({', '.join(checks)})",
        f"  revision    {f['revision']}{compacted}",
        f"  keys        {f['live_keys']} live, {f['deleted_keys']} deleted, {f['revisions']} revisions",
        f"  size        {human_size(f['size'])} ({f['size']} bytes; database {f['db_size']}, "
        f"page size {f['page_size']})",
        f"  version     storage {f['storage_version'] or '-'}, cluster {f['cluster_version'] or '-'}",
    ]
    lines += [f"  member      {m['name'] or '-'} ({m['id']}) {','.join(m['peer_urls'])}" for m in f["members"]]
    if rec:
        after = rec.get("revision_after")
        span = f"{rec['revision']}" if after in (None, rec["revision"]) else f"{rec['revision']}..{after}"
        lines += [
            "recorded at backup time:",
            f"  etcd        {rec.get('version') or '-'} at {rec.get('endpoint') or '-'}, "
            f"cluster id {rec.get('cluster_id') or '-'}, member id {rec.get('member_id') or '-'}",
            f"  revision    {span}",
        ]
        lines += [
            f"  member      {m['name'] or '-'} ({m['id']}) {','.join(m['client_urls'])}"
            for m in rec.get("members") or []
        ]
    click.echo("\n".join(lines))


@command.command("restore-dir", short_help="Create an etcd data directory from a snapshot or at a point in time.")
@click.argument("ref", metavar="[SNAPSHOT[:PATH]]", required=False)
@click.option("--at", "at_text", metavar="TIME", help="The cluster as it was at TIME (ISO 8601; no zone: local).")
@click.option("--revision", "at_revision", type=click.IntRange(min=1), help="The cluster as it was at revision REV.")
@click.option("--cluster", help="With --at/--revision: the etcd cluster id, when the repository holds several.")
@click.option(
    "--etcd", "etcd_bin", help="With --at/--revision: the etcd that replays deltas (default: beside etcdutl)."
)
@click.option("--data-dir", required=True, help="New data directory (must not exist or be empty).")
@click.option("--name", required=True, help="Name of the new member (etcd --name).")
@click.option("--initial-cluster", help="NAME=PEER_URL,... of the new cluster (default: NAME=PEER_URLS).")
@click.option("--initial-advertise-peer-urls", help="This member's peer URLs (default: http://localhost:2380).")
@click.option("--initial-cluster-token", help="Token of the new cluster (default: etcd-cluster).")
@click.option(
    "--bump-revision",
    type=click.IntRange(min=1),
    help="Raise the revision by N (with --mark-compacted), so watchers never see it go back.",
)
@click.option("--mark-compacted", is_flag=True, help="Mark the bumped revision compacted (with --bump-revision).")
@click.option("--etcdutl", help="etcdutl to run (default: etcdutl on PATH, then etcd 3.4/3.5's etcdctl).")
@global_options
@with_repository
def restore_dir(
    repo: api.Repository,
    ref: str,
    data_dir: str,
    name: str,
    initial_cluster: str | None,
    initial_advertise_peer_urls: str | None,
    initial_cluster_token: str | None,
    bump_revision: int | None,
    mark_compacted: bool,
    etcdutl: str | None,
    at_text: str | None,
    at_revision: int | None,
    cluster: str | None,
    etcd_bin: str | None,
) -> None:
    """Write the stored etcd snapshot out and run `etcdutl snapshot restore` on it, creating
    a data directory for a new member, as etcdutl does. For a Kubernetes cluster use
    --bump-revision (e.g. 1000000000) with --mark-compacted. SNAPSHOT[:PATH]: an etcd://
    snapshot (its /etcd/snapshot.db), or any stored snapshot file at PATH.

    With --at TIME or --revision REV instead of SNAPSHOT: the newest full snapshot before that
    point, with the delta segments of `kubekeep etcd follow` replayed onto it up to the point
    (in a temporary etcd on loopback), then restored as above."""
    if at_text is not None or at_revision is not None:
        if ref is not None:
            raise errors.UsageError("give SNAPSHOT or --at/--revision, not both")
        if at_text is not None and at_revision is not None:
            raise errors.UsageError("give --at or --revision, not both")
        _restore_point(
            repo,
            data_dir,
            name,
            units.parse_instant(at_text) if at_text is not None else None,
            at_revision,
            cluster,
            initial_cluster,
            initial_advertise_peer_urls,
            initial_cluster_token,
            bump_revision,
            mark_compacted,
            etcdutl,
            etcd_bin,
        )
        return
    if ref is None:
        raise errors.UsageError("name a SNAPSHOT, or a point with --at TIME or --revision REV")
    if cluster is not None or etcd_bin is not None:
        raise errors.UsageError("--cluster and --etcd go with --at/--revision")
    report = api.etcd_restore_dir(
        repo,
        ref,
        data_dir,
        name=name,
        initial_cluster=initial_cluster,
        initial_advertise_peer_urls=initial_advertise_peer_urls,
        initial_cluster_token=initial_cluster_token,
        bump_revision=bump_revision,
        mark_compacted=mark_compacted,
        etcdutl=etcdutl,
    )
    if settings().json:
        emit_json(report)
        return
    info(f"ran: {shlex.join(report['command'])}")
    click.echo(
        f"restored {report['short_id']}:{report['path']} (revision {report['snapshot_revision']}) "
        f"into {report['data_dir']} with {report['tool']} {report['tool_version']}"
    )


def _restore_point(
    repo: api.Repository,
    data_dir: str,
    name: str,
    at: Any,
    revision: int | None,
    cluster: str | None,
    initial_cluster: str | None,
    initial_advertise_peer_urls: str | None,
    initial_cluster_token: str | None,
    bump_revision: int | None,
    mark_compacted: bool,
    etcdutl: str | None,
    etcd_bin: str | None,
) -> None:
    report = api.etcd_restore_point(
        repo,
        data_dir,
        name=name,
        at=at,
        revision=revision,
        cluster=cluster,
        initial_cluster=initial_cluster,
        initial_advertise_peer_urls=initial_advertise_peer_urls,
        initial_cluster_token=initial_cluster_token,
        bump_revision=bump_revision,
        mark_compacted=mark_compacted,
        etcdutl=etcdutl,
        etcd=etcd_bin,
    )
    if settings().json:
        emit_json(report)
        return
    r, full = report["replayed"], report["full_snapshot"]
    when = f" ({report['target']['time']})" if report["target"]["time"] else ""
    info(
        f"full snapshot {full['short_id']} at revision {full['revision']}, then {r['events']} event(s) of "
        f"{r['revisions']} revision(s) from {len(report['segments'])} delta segment(s) replayed in {r['seconds']}s"
        + (f", {r['leases_granted']} lease(s) granted again" if r["leases_granted"] else "")
    )
    click.echo(
        f"restored cluster {report['cluster_id']} at revision {report['target']['revision']}{when} "
        f"into {report['data_dir']} with {report['tool']} {report['tool_version']}"
    )


def _when(point: dict[str, Any] | None) -> str:
    if point is None:
        return "-"
    return f"revision {point['revision']} at {point['time']}"


def _windows(repo: api.Repository) -> None:
    windows = [w.to_dict() for w in api.recovery_windows(repo)]
    if settings().json:
        emit_json(windows)
        return
    if not windows:
        click.echo("no etcd snapshots in the repository")
        return
    for w in windows:
        gaps = f", {w['gaps']} gap(s) inside" if w["gaps"] else ""
        click.echo(
            f"cluster {w['cluster_id']}: {w['full_snapshots']} full snapshot(s), "
            f"{w['delta_segments']} delta segment(s){gaps}"
        )
        click.echo(f"  earliest  {_when(w['earliest'])}")
        click.echo(f"  latest    {_when(w['latest'])}")


@command.command("timeline", short_help="List each cluster's full snapshots and delta segments.")
@click.option("--cluster", help="Only the etcd cluster with this id (a prefix will do).")
@click.option("--segments", "show_segments", is_flag=True, help="One line per delta segment (default: runs).")
@global_options
@with_repository
def timeline(repo: api.Repository, cluster: str | None, show_segments: bool) -> None:
    """The recovery timeline of each etcd cluster: its full snapshots, the delta segments that
    `kubekeep etcd follow` stored after them (as gapless runs of revisions and times), and the
    stretches a point can be restored from (`kubekeep etcd restore-dir --at/--revision`)."""
    report = [_timeline_dict(tl) for tl in api.timelines(repo, cluster)]
    if settings().json:
        emit_json(report)
        return
    if not report:
        click.echo("no etcd snapshots in the repository")
        return
    for tl in report:
        click.echo(f"cluster {tl['cluster_id']}")
        rows: list[tuple[int, str]] = []
        for f in tl["full_snapshots"]:
            span = (
                f"{f['revision']}"
                if f["revision"] == f["revision_after"]
                else f"{f['revision']}..{f['revision_after']}"
            )
            rows.append((f["revision"], f"  full     {f['short_id']}  {f['time']}  revision {span}"))
        items = tl["segments"] if show_segments else tl["runs"]
        for r in items:
            label = f"segment  {r['short_id']}" if show_segments else f"deltas   {r['segments']:>4} segment(s)"
            outage = "  (outage)" if r.get("outage") else ""
            rows.append(
                (
                    r["after_revision"],
                    f"  {label}  {r['since']} .. {r['until']}  revisions "
                    f"{r['after_revision'] + 1}..{r['upto_revision']}, {r['events']} event(s){outage}",
                )
            )
        for _rev, line in sorted(rows, key=lambda row: row[0]):
            click.echo(line)
        for start, end in tl["windows"]:
            click.echo(f"  recoverable  {_when(start)}  ..  {_when(end)}")


def _timeline_dict(tl: api.Timeline) -> dict[str, Any]:
    from kubekeep.api.etcd_timeline import rfc3339

    return {
        "cluster_id": tl.cluster_id,
        "full_snapshots": [
            {
                "id": f.id,
                "short_id": f.snapshot.short_id,
                "time": rfc3339(f.time_ns),
                "revision": f.revision,
                "revision_after": f.revision_after,
            }
            for f in tl.fulls
        ],
        "segments": [
            {
                "id": s.snapshot.id,
                "short_id": s.snapshot.short_id,
                "after_revision": s.after,
                "upto_revision": s.upto,
                "since": rfc3339(s.since_ns),
                "until": rfc3339(s.until_ns),
                "events": s.meta["events"],
                "outage": [rfc3339(t) for t in s.outage] if s.outage else None,
            }
            for s in tl.segments
        ],
        "runs": [
            {
                "after_revision": r.after,
                "upto_revision": r.upto,
                "since": rfc3339(r.since_ns),
                "until": rfc3339(r.until_ns),
                "segments": len(r.segments),
                "events": sum(s.meta["events"] for s in r.segments),
                "outage": any(s.outage for s in r.segments),
            }
            for r in tl.runs()
        ],
        "windows": [(a.to_dict(), b.to_dict()) for a, b in tl.windows()],
    }


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    return None if value is None else units.parse_timeout(value)


@command.command("follow", short_help="Store full snapshots and continuous deltas of an etcd cluster.")
@click.argument("uri", metavar="ETCD_URI")
@click.option("--cacert", help="CA certificate that signed etcd's server certificate (as etcdctl).")
@click.option("--cert", help="Client certificate (as etcdctl).")
@click.option("--key", help="Client certificate's private key (as etcdctl).")
@click.option("--etcd-server-name", help="Name to check the server certificate against.")
@click.option(
    "--interval", default="10s", show_default=True, callback=_duration, help="Store a delta segment this often."
)
@click.option("--segment-size", default="8MiB", show_default=True, help="Or as soon as this much has gathered.")
@click.option(
    "--full-every", default="1h", show_default=True, callback=_duration, help="Take a full snapshot this often."
)
@click.option(
    "--full-ratio",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Or when the deltas since the last one exceed this multiple of the database size.",
)
@click.option(
    "--idle-every",
    default="5m",
    show_default=True,
    callback=_duration,
    help="Without writes, store an empty segment this often (it extends the recovery window).",
)
@click.option("--tag", "tags", multiple=True, help="Tag every snapshot stored (repeatable).")
@click.option("--for", "run_for", callback=_duration, help="Stop after this long (default: until SIGTERM/SIGINT).")
@global_options
@with_repository
def follow(
    repo: api.Repository,
    uri: str,
    cacert: str | None,
    cert: str | None,
    key: str | None,
    etcd_server_name: str | None,
    interval: float,
    segment_size: str,
    full_every: float,
    full_ratio: float,
    idle_every: float,
    tags: tuple[str, ...],
    run_for: float | None,
) -> None:
    """Follow the etcd cluster at ETCD_URI (etcd://HOST:PORT[,HOST:PORT...]): a full snapshot,
    then every change as delta segments, and new full snapshots on schedule, so that
    `kubekeep etcd restore-dir --at TIME` can bring the cluster back to any second of the
    window. Restarted, it goes on from the last stored revision; if etcd has compacted that
    revision away it takes a new full snapshot. SIGTERM or SIGINT stores what was received and
    stops."""
    if interval <= 0 or full_every <= 0 or idle_every <= 0:
        raise errors.UsageError("durations must be positive")
    options = api.FollowOptions(
        interval=interval,
        segment_bytes=max(1, units.parse_size(segment_size)),
        full_every=full_every,
        full_ratio=full_ratio,
        idle_every=idle_every,
        tags=tags,
        run_for=run_for,
    )
    source = api.EtcdSourceOptions(cacert=cacert, cert=cert, key=key, server_name=etcd_server_name)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log(f"{signal.Signals(signum).name}: storing what was received, then stopping")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = api.etcd_follow(repo, uri, source, options, stop=stop, log=_log)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if settings().json:
        emit_json({**report.__dict__})
        return
    click.echo(
        f"followed cluster {report.cluster_id}: {len(report.full_snapshots)} full snapshot(s), "
        f"{report.segments} delta segment(s) with {report.events} event(s)"
    )


def _log(line: str) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    print(f"{stamp} {line}", file=sys.stderr, flush=True)
