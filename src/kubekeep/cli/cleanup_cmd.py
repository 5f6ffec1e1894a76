"""``kubekeep cleanup``: remove what killed kubekeep runs left in a cluster."""

from __future__ import annotations

import click

from kubekeep import api, errors
from kubekeep.cli._common import emit_json, global_options, info, settings, warn


@click.command(short_help="Remove what interrupted runs left in a cluster.")
@click.option("--context", help="Kubeconfig context (default: the current one).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig file (default: KUBECONFIG).")
@click.option("--namespace", "-n", default="", help="Only this namespace (default: all).")
@click.option("--run", "run_id", default="", help="Only the objects of this run (whatever its state).")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Also objects of runs on other hosts created longer ago than this (e.g. 6h).",
)
@click.option("--all", "everything", is_flag=True, help="Every kubekeep object, even of runs still going.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option(
    "--wait",
    "wait_s",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="Wait this long for the objects to be gone (0 to not wait).",
)
@global_options
def command(
    context: str | None,
    kubeconfig: str | None,
    namespace: str,
    run_id: str,
    older_than: str | None,
    everything: bool,
    dry_run: bool,
    wait_s: str,
) -> None:
    """Find the helper pods, temporary claims, snapshots and secrets that volume backups and
    restores create (label kubekeep.io/run) and remove those of runs that are over: their
    process on this host is gone, or (--older-than) they are old. A run in progress cleans up
    after itself; this is for runs that were killed."""
    report = api.cleanup(
        context=context,
        kubeconfig=kubeconfig,
        namespace=namespace,
        run=run_id,
        everything=everything,
        older_than=api.parse_timeout(older_than) if older_than else None,
        dry_run=dry_run,
        wait=api.parse_timeout(wait_s),
    )
    found, problems = report.found, report.problems
    if settings().json:
        emit_json({"objects": [vars(f) for f in found], "removed": not dry_run, "problems": problems})
    else:
        for item in found:
            click.echo(f"{'would remove' if dry_run else 'removed'} {item.describe()}")
        info(f"{len(found)} object(s) {'found' if dry_run else 'removed'}" if found else "nothing to clean up")
        for p in problems:
            warn(p)
    if problems:
        raise errors.ConnectorError(f"{len(problems)} object(s) could not be removed")
