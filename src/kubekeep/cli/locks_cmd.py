"""``kubekeep locks``: Object Lock retention dates (docs/immutability.md)."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, info, settings, with_repository


@click.group(short_help="Object Lock retention dates (extend).")
def command() -> None:
    """Retention dates of a repository created with 'init --object-lock' (docs/immutability.md)."""


@command.command("extend", short_help="Extend the retention of what kept snapshots need.")
@click.option("--verify", is_flag=True, help="Ask the storage for every date instead of trusting the records.")
@global_options
@with_repository
def extend(repo: api.Repository, verify: bool) -> None:
    """Make every object a snapshot within its lock period needs locked at least until that
    snapshot's time plus the period (plus the margin), extending only those that fall short.
    backup does this for what the new snapshot needs; this does it for all of them."""
    report = api.extend_locks(repo, verify=verify)
    if settings().json:
        emit_json(report.to_dict())
        return
    info(
        f"{report.objects} object(s) needed by snapshots within their lock period: {report.extended} extended, "
        f"{report.asked} asked about"
        + ("" if verify else " (not in the retention records)")
        + (f"; earliest date now {report.earliest}" if report.earliest else "")
    )
