"""``kubekeep cat SNAP:PATH``: print a file from a snapshot."""

from __future__ import annotations

import sys

import click

from kubekeep import api
from kubekeep.cli._common import global_options, with_repository


@click.command(short_help="Print a file from a snapshot.")
@click.argument("ref", metavar="SNAPSHOT:PATH")
@global_options
@with_repository
def command(repo: api.Repository, ref: str) -> None:
    """Write the content of the file at PATH in a snapshot to standard output."""
    out = sys.stdout.buffer
    for piece in api.cat(repo, ref):
        out.write(piece)
    out.flush()
