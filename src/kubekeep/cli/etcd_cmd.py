"""``kubekeep etcd status|restore-dir``: inspect a stored etcd snapshot, turn it into a data dir."""

from __future__ import annotations

import shlex
from typing import Any

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, human_size, info, settings, with_repository


@click.group(short_help="Inspect and restore etcd snapshots.")
def command() -> None:
    """Work with etcd snapshots stored by `kubekeep backup etcd://...` (or any stored snapshot
    file, named as SNAPSHOT:PATH)."""


@command.command("status", short_help="Report hash, revision, keys and size of a stored etcd snapshot.")
@click.argument("ref", metavar="SNAPSHOT[:PATH]")
@global_options
@with_repository
def status(repo: api.Repository, ref: str) -> None:
    """Read the stored etcd snapshot in place (no restore, no copy on disk): verify its SHA-256,
    and report its revision, key counts, size and members, with what was recorded at backup
    time. SNAPSHOT[:PATH]: an etcd:// snapshot (its /etcd/snapshot.db), or any stored snapshot
    file at PATH."""
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


@command.command("restore-dir", short_help="Create an etcd data directory from a stored snapshot.")
@click.argument("ref", metavar="SNAPSHOT[:PATH]")
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
) -> None:
    """Write the stored etcd snapshot out and run `etcdutl snapshot restore` on it, creating
    a data directory for a new member, as etcdutl does. For a Kubernetes cluster use
    --bump-revision (e.g. 1000000000) with --mark-compacted. SNAPSHOT[:PATH]: an etcd://
    snapshot (its /etcd/snapshot.db), or any stored snapshot file at PATH."""
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
