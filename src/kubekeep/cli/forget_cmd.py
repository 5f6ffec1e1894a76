"""``kubekeep forget``: remove snapshots, by id or by a retention policy."""

from __future__ import annotations

import click

from kubekeep import api, errors
from kubekeep.cli import prune_cmd
from kubekeep.cli._common import emit_json, global_options, info, local_time, settings, with_repository


@click.command(short_help="Remove snapshots (by id or retention policy).")
@click.argument("ids", nargs=-1)
@click.option("--keep-last", "-l", type=int, default=0, help="Keep the N most recent snapshots.")
@click.option("--keep-hourly", "-H", type=int, default=0, help="Keep the last snapshot of each of N hours.")
@click.option("--keep-daily", "-d", type=int, default=0, help="... of each of N days.")
@click.option("--keep-weekly", "-w", type=int, default=0, help="... of each of N weeks.")
@click.option("--keep-monthly", "-m", type=int, default=0, help="... of each of N months.")
@click.option("--keep-yearly", "-y", type=int, default=0, help="... of each of N years.")
@click.option("--keep-within", help="Keep snapshots within this duration of the newest (e.g. 7d, 1y6m).")
@click.option("--keep-tag", multiple=True, help="Keep snapshots with this tag.")
@click.option("--tag", "tags", multiple=True, help="Only consider snapshots with this tag.")
@click.option(
    "--group-by",
    default="host,source",
    show_default=True,
    help="Apply the policy per group of: host, source, kind, tags (comma-separated).",
)
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would be removed.")
@click.option("--prune", "then_prune", is_flag=True, help="Run prune afterwards.")
@global_options
@with_repository
def command(
    repo: api.Repository,
    ids: tuple[str, ...],
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_within: str | None,
    keep_tag: tuple[str, ...],
    tags: tuple[str, ...],
    group_by: str,
    dry_run: bool,
    then_prune: bool,
) -> None:
    """Remove the snapshots IDS, or those a --keep-* policy does not keep. Data is deleted only
    by prune (or --prune)."""
    within = api.parse_period(keep_within) if keep_within else None
    groups = tuple(g.strip() for g in group_by.split(",") if g.strip())
    bad = set(groups) - {"host", "source", "kind", "tags"}
    if bad:
        raise errors.UsageError(f"--group-by: unknown field(s) {', '.join(sorted(bad))}")
    policy = api.Policy(
        keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, within, list(keep_tag)
    )
    report = api.forget(repo, policy, ids=ids, group_by=groups, tags=tags, dry_run=dry_run, record=True)
    if settings().json:
        emit_json(
            [
                {
                    "id": d.snapshot.id,
                    "time": d.snapshot.time,
                    "keep": d.keep,
                    "reasons": d.reasons,
                    **({"locked_until": report.locked[d.snapshot.id]} if d.snapshot.id in report.locked else {}),
                }
                for d in report.decisions
            ]
            + [
                {"id": d.id, "time": None, "keep": False, "reasons": ["named"], "damaged": True, "error": d.reason}
                for d in report.damaged_removed
            ]
            + [
                {"id": d.id, "time": None, "keep": True, "reasons": ["damaged"], "damaged": True, "error": d.reason}
                for d in report.damaged_kept
            ]
        )
    else:
        for d in report.decisions:
            verb = "keep  " if d.keep else ("would remove" if dry_run else "remove")
            info(
                f"{verb} {d.snapshot.short_id} {local_time(d.snapshot.time)} {d.snapshot.uri} "
                f"{'(' + ', '.join(d.reasons) + ')' if d.keep else ''}"
            )
        for damaged in report.damaged_removed:
            verb = "would remove" if dry_run else "remove"
            info(f"{verb} {damaged.short_id} (damaged snapshot file, removed unread)")
        for damaged in report.damaged_kept:
            info(f"keep   {damaged.short_id} (damaged: a policy never removes a snapshot it cannot read)")
        for snap_id, until in report.locked.items():
            why = (
                f"its retention date {until} is not reached"
                if until
                else "the storage refused to delete it: a retention date, or credentials that may not delete"
            )
            info(f"locked {snap_id[:8]} ({why}: left for a later forget)")
        if report.extended is not None:
            info(
                f"--keep-within outlasts the lock period: retention of {report.extended.extended} of "
                f"{report.extended.objects} object(s) the kept snapshots need extended"
                + (
                    f"; {len(report.extended.failures)} failed: {report.extended.failures[0]}"
                    if report.extended.failures
                    else ""
                )
            )
        info(f"{report.removed} snapshot(s) {'would be ' if dry_run else ''}removed, {report.kept} kept")
    if then_prune and not dry_run:
        prune_cmd.prune_and_report(repo, max_unused=0.1, dry_run=False)
