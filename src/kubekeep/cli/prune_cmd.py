"""``kubekeep prune``: delete data no snapshot references."""

from __future__ import annotations

import click

from kubekeep import api, errors
from kubekeep.cli._common import emit_json, global_options, human_size, info, settings, with_repository


def _fraction(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise errors.UsageError(f"--max-unused: expected a percentage such as 10%, got {text!r}") from None
    if not 0 <= value <= 1:
        raise errors.UsageError("--max-unused must be between 0% and 100%")
    return value


def prune_and_report(repo: api.Repository, *, max_unused: float, dry_run: bool) -> None:
    report = api.prune(repo, max_unused=max_unused, dry_run=dry_run, progress=info, record=True)
    if settings().json:
        emit_json(report.to_dict())
        return
    prefix = "would " if dry_run else ""
    info(
        f"{prefix}delete {report.packs_deleted} pack(s), {prefix}repack {report.packs_repacked}, "
        f"keep {report.packs_kept}; {report.blobs_removed} unused blob(s); "
        f"{prefix}free {human_size(report.bytes_freed)}"
    )
    if report.reclaimed_later and report.bytes_freed and not dry_run:
        info(f"{human_size(report.bytes_freed)} to reclaim: {report.reclaimed_later}")
    if report.objects_locked:
        until = f" until {report.locked_until}" if report.locked_until else ""
        info(f"{report.objects_locked} object(s) still locked{until}, left for a later prune")


@click.command(short_help="Remove unreferenced data from the repository.")
@click.option("--max-unused", default="10%", show_default=True, help="Repack packs whose unused share exceeds this.")
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would be done.")
@global_options
@with_repository
def command(repo: api.Repository, max_unused: str, dry_run: bool) -> None:
    """Delete packs that no snapshot needs, and repack mostly-unused ones. Takes an exclusive lock."""
    prune_and_report(repo, max_unused=_fraction(max_unused), dry_run=dry_run)
