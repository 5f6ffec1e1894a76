"""``kubekeep snapshots``: list snapshots."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, human_size, local_time, settings, with_repository
from kubekeep.cli.terminal import safe


@click.command(short_help="List snapshots.")
@click.option("--tag", "tags", multiple=True, help="Only snapshots with this tag (repeatable: all must match).")
@click.option("--source", help="Only snapshots of this source URI or path.")
@click.option("--kind", help="Only snapshots of this layer (fs, manifests, etcd, volume).")
@click.option("--host", help="Only snapshots from this host or cluster.")
@click.option("--latest", type=int, default=0, help="Only the N most recent.")
@click.option(
    "--all", "show_all", is_flag=True, help="Also list attached snapshots (etcd delta segments; default: counted only)."
)
@global_options
@with_repository
def command(
    repo: api.Repository,
    tags: tuple[str, ...],
    source: str | None,
    kind: str | None,
    host: str | None,
    latest: int,
    show_all: bool,
) -> None:
    """List the repository's snapshots, oldest first. Snapshots attached to another (the delta
    segments of `kubekeep etcd follow`) are counted, not listed, unless --all or their --kind
    is given: `kubekeep etcd timeline` shows them."""
    snaps = api.snapshots(repo, tags=tags, source=source, kind=kind, host=host)
    folded = 0
    if not show_all and kind is None:
        folded = sum(1 for s in snaps if s.extends is not None)
        snaps = [s for s in snaps if s.extends is None]
    if latest:
        snaps = snaps[-latest:]
    if settings().json:
        emit_json([s.to_json() for s in snaps])
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "Time", "Host", "Kind", "Source", "Tags", "Size"):
        table.add_column(
            col, justify="right" if col == "Size" else "left", no_wrap=col not in ("Source", "Tags"), overflow="fold"
        )
    for s in snaps:
        cells = (
            s.short_id,
            local_time(s.time),
            s.source.get("host") or s.hostname,
            s.kind,
            s.uri,
            ",".join(s.tags),
            human_size(s.stats.get("bytes_total", 0)),
        )
        table.add_row(*(Text(safe(c)) for c in cells))  # Text: no rich markup from a tag or host
    # piped output keeps whole lines (like restic); a terminal wraps long sources
    Console(width=None if sys.stdout.isatty() else 400).print(table)
    more = f" (and {folded} attached delta segment(s): kubekeep etcd timeline, or --all)" if folded else ""
    click.echo(f"{len(snaps)} snapshot(s){more}")
