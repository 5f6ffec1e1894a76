"""``kubekeep ls SNAP[:PATH]``: list what a snapshot holds."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, local_time, mode_string, settings, with_repository
from kubekeep.cli.terminal import safe


@click.command(short_help="List files in a snapshot.")
@click.argument("ref", metavar="SNAPSHOT[:PATH]")
@click.option("-l", "--long", "long_", is_flag=True, help="Show mode, size and modification time.")
@click.option("-R", "--recursive", is_flag=True, help="List everything below PATH.")
@global_options
@with_repository
def command(repo: api.Repository, ref: str, long_: bool, recursive: bool) -> None:
    """List the entries under PATH (default: the root) of a snapshot (an id prefix or 'latest')."""
    entries = api.ls(repo, ref, recursive=recursive)
    if settings().json:
        emit_json(
            [
                {
                    "path": p,
                    "type": n.type,
                    "mode": n.mode,
                    "size": n.size,
                    "mtime_ns": n.mtime_ns,
                    "uid": n.uid,
                    "gid": n.gid,
                    "target": n.target or None,
                    "attrs": n.attrs,
                }
                for p, n in entries
            ]
        )
        return
    for path, node in entries:
        suffix = f" -> {safe(node.target)}" if node.type == "symlink" else ("/" if node.type == "dir" else "")
        path = safe(path)
        if long_:
            click.echo(
                f"{mode_string(node.type, node.mode)} {node.uid:>5} {node.gid:>5} {node.size:>12} "
                f"{local_time(node.mtime_ns)} {path}{suffix}"
            )
        else:
            click.echo(f"{path}{suffix}")
