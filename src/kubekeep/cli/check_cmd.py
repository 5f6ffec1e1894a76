"""``kubekeep check``: verify the repository."""

from __future__ import annotations

import click

from kubekeep import api, errors
from kubekeep.cli._common import emit_json, global_options, info, settings, show_progress, with_repository
from kubekeep.cli.progress import CountProgress


@click.command(short_help="Verify the repository's structure (and data).")
@click.option("--read-data", is_flag=True, help="Also read and verify every pack and blob.")
@click.option(
    "--read-data-subset",
    metavar="N/T|P%",
    help="Read and verify a part of the packs: group N of T (run 1/T .. T/T to cover all) or P% at random.",
)
@global_options
@with_repository
def command(repo: api.Repository, read_data: bool, read_data_subset: str | None) -> None:
    """Check that every snapshot's trees and blobs are present and intact. With --read-data,
    download and verify all data (--read-data-subset: a part of it). Exits 13 if any problem
    is found."""
    subset = api.DataSubset.parse(read_data_subset) if read_data_subset else None
    if subset is not None and read_data:
        raise errors.UsageError("give --read-data or --read-data-subset, not both")
    read_data = read_data or subset is not None
    with CountProgress("reading packs", enabled=show_progress() and read_data) as bar:
        report = api.check(repo, read_data=read_data, subset=subset, progress=bar.update, record=True)
    if settings().json:
        emit_json(report.to_dict())
    else:
        for note in report.notes:
            info(note)
        for err in report.errors:
            click.secho(f"error: {err}", err=True, fg="red")
        info(
            f"checked {report.snapshots} snapshots, {report.trees} trees, {report.packs} packs"
            + (f", read {report.packs_read} packs and {report.blobs_read} blobs" if read_data else "")
            + (
                f"; retention dates of {report.locked_objects} objects checked"
                + (f" (earliest {report.locked_until_earliest})" if report.locked_until_earliest else "")
                if report.locked_objects
                else ""
            )
        )
    if not report.ok:
        raise errors.IntegrityError(f"{len(report.errors)} problem(s) found in the repository")
    if not settings().json:
        click.echo("no errors were found")
