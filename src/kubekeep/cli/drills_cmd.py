"""``kubekeep drills [DRILL]``: the restore drill reports stored in the repository (docs/drills.md)."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, info, local_time, settings, warn, with_repository
from kubekeep.cli.drill_cmd import print_report
from kubekeep.cli.terminal import safe


@click.command(short_help="List the stored restore drill reports, or show one.")
@click.argument("ref", required=False, metavar="[DRILL]")
@global_options
@with_repository
def command(repo: api.Repository, ref: str | None) -> None:
    """List the reports of 'kubekeep drill' kept in the repository, oldest first (time, id,
    result, snapshot, namespaces, objects, differences, RTO), or show the report DRILL (an id
    prefix) as the drill printed it. --json gives the whole reports."""
    if ref:
        report = api.drill_report(repo, ref)
        if settings().json:
            emit_json(report.to_dict())
        else:
            print_report(report)
        return
    reports, damaged = api.drills(repo)
    for line in damaged:
        warn(line)
    if settings().json:
        emit_json([r.to_dict() for r in reports])
        return
    if not reports:
        info("no drill reports in this repository")
        return
    for r in reports:
        rto = "-" if r.rto_s is None else f"{r.rto_s:.1f} s"
        verdict = click.style("passed", fg="green") if r.ok else click.style("failed", fg="red")
        namespaces = ",".join(n.source for n in r.namespaces)
        click.echo(
            safe(f"{local_time(r.started)}  {r.short_id}  ")
            + verdict
            + safe(
                f"  {r.snapshot[:8]}  {namespaces}  {len(r.objects)} objects  {r.differences} differences  RTO {rto}"
                + (f"  {r.reason}" if r.reason else "")
            )
        )
