"""``kubekeep repair index|snapshots``: rebuild the index from pack headers; rewrite snapshots
without the data that is gone."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, info, settings, warn, with_repository


@click.group(short_help="Repair a damaged index or damaged snapshots.")
def command() -> None:
    """Repair what 'kubekeep check' reports: first the index, then the snapshots."""


@command.command("index", short_help="Rebuild the index from the packs' headers.")
@click.option("--dry-run", "-n", is_flag=True, help="Only report what would be done.")
@global_options
@with_repository
def index(repo: api.Repository, dry_run: bool) -> None:
    """Rebuild the index from the headers every pack carries: write new index files, then delete
    the old ones (damaged ones included). Takes an exclusive lock."""
    report = api.repair_index(repo, dry_run=dry_run, progress=info)
    if settings().json:
        emit_json(report.to_dict())
        return
    for name in report.damaged_index_files:
        info(f"damaged index file: {name}")
    for name in report.packs_unreadable:
        kept = "indexed as the old index had it" if name in report.packs_from_old_index else "not indexed"
        warn(f"pack header unreadable (truncated or damaged): {name}; {kept}")
    if report.packs_missing:
        info(f"{len(report.packs_missing)} pack(s) the old index listed are missing from storage")
    prefix = "would " if dry_run else ""
    info(
        f"read {report.packs_read} of {report.packs} pack header(s), {report.blobs} blob(s); "
        f"{prefix}write {report.index_files_written if not dry_run else 'new'} index file(s), "
        f"{prefix}delete {report.index_files_deleted if not dry_run else 'the old'} index file(s)"
    )


@command.command("snapshots", short_help="Rewrite snapshots without the data that is gone.")
@click.argument("snapshots", nargs=-1)
@click.option("--forget", is_flag=True, help="Remove the original of each repaired snapshot.")
@click.option("--dry-run", "-n", is_flag=True, help="Only report what would be done.")
@global_options
@with_repository
def snapshots(repo: api.Repository, snapshots: tuple[str, ...], forget: bool, dry_run: bool) -> None:
    """Rewrite SNAPSHOTS (default: all) whose trees name data that is gone: files missing data
    are removed, unreadable directories become empty. The new snapshot keeps the original's time,
    gains the tag 'repaired' and names the original in its metadata. Run 'repair index' first.
    Takes an exclusive lock."""
    report = api.repair_snapshots(repo, snapshots, forget=forget, dry_run=dry_run, progress=info)
    if settings().json:
        emit_json(report.to_dict())
        return
    for name in report.damaged:
        warn(f"snapshot {name[:8]}: the snapshot file is damaged; 'kubekeep forget {name[:12]}' removes it")
    for entry in report.snapshots:
        if entry.status == "unrepairable":
            warn(f"snapshot {entry.id[:8]} cannot be repaired: {entry.error}")
        elif entry.status == "already repaired":
            info(
                f"snapshot {entry.id[:8]}: already repaired as {str(entry.new_id)[:8]}"
                + ("; removed" if entry.forgotten else "")
            )
        elif entry.forgotten:
            info(f"snapshot {entry.id[:8]}: removed")
    counts: dict[str, int] = {}
    for entry in report.snapshots:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    info("snapshots: " + (", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"))
