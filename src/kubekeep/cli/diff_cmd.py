"""``kubekeep diff SNAP1 SNAP2 [PATH]``: what changed between two snapshots."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, settings, with_repository
from kubekeep.cli._manifests import field_lines
from kubekeep.cli.terminal import safe


@click.command(short_help="Show differences between two snapshots.")
@click.argument("snap1")
@click.argument("snap2")
@click.argument("path", required=False, default="")
@click.option("--metadata/--no-metadata", default=True, help="Report mode/owner/mtime-only changes (U).")
@click.option(
    "--churn", is_flag=True, help="Manifests: also report resourceVersion, managedFields, generation and other churn."
)
@global_options
@with_repository
def command(repo: api.Repository, snap1: str, snap2: str, path: str, metadata: bool, churn: bool) -> None:
    """Compare SNAP1 with SNAP2 (optionally only below PATH). Lines start with + (added),
    - (removed), M (content modified), T (type changed) or U (metadata only).

    Two manifests snapshots are compared object by object: each changed object is followed by
    the fields that changed (+ added, - removed, ~ changed)."""
    if api.is_manifests(repo, snap1, snap2):
        _manifests(repo, snap1, snap2, path, churn)
        return
    changes = api.diff(repo, snap1, snap2, path=path, metadata=metadata)
    if settings().json:
        emit_json(
            [
                {
                    "status": c.status,
                    "path": "/" + c.path,
                    "type": node.type if (node := c.new or c.old) else None,
                    "old_size": c.old.size if c.old else None,
                    "new_size": c.new.size if c.new else None,
                }
                for c in changes
            ]
        )
        return
    counts = dict.fromkeys((api.ADDED, api.REMOVED, api.MODIFIED, api.TYPE_CHANGED, api.METADATA), 0)
    for c in changes:
        counts[c.status] += 1
        node = c.new or c.old
        slash = "/" if node is not None and node.type == "dir" else ""
        click.echo(f"{c.status}    /{safe(c.path)}{slash}")
    click.echo(
        f"\n{counts[api.ADDED]} added, {counts[api.REMOVED]} removed, {counts[api.MODIFIED]} modified, "
        f"{counts[api.TYPE_CHANGED]} changed type, {counts[api.METADATA]} metadata only"
    )


def _manifests(repo: api.Repository, snap1: str, snap2: str, path: str, churn: bool) -> None:
    changes = api.diff_manifests(repo, snap1, snap2, path=path, churn=churn)
    if settings().json:
        emit_json([c.to_dict() for c in changes])
        return
    for c in changes:
        what = f"  ({c.kind} {c.namespace + '/' if c.namespace else ''}{c.name})" if c.kind else ""
        click.echo(safe(f"{c.status}    /{c.path}{what}"))
        for line in field_lines(f.to_dict() for f in c.fields):
            click.echo(safe(line))
    counts = {s: sum(1 for c in changes if c.status == s) for s in ("+", "-", "M")}
    click.echo(f"\n{counts['+']} added, {counts['-']} removed, {counts['M']} changed")
