"""``kubekeep unlock``: remove stale locks."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import global_options, info, with_repository


@click.command(short_help="Remove stale locks.")
@click.option("--remove-all", is_flag=True, help="Remove every lock, also those of running processes.")
@global_options
@with_repository
def command(repo: api.Repository, remove_all: bool) -> None:
    """Remove locks left by processes that no longer run (or all of them)."""
    n = api.unlock(repo, remove_all=remove_all)
    info(f"removed {n} lock(s)")
