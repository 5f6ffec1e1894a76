"""``kubekeep restore SNAP[:PATH] --to DEST``: write a snapshot (or part of it) out."""

from __future__ import annotations

import fnmatch
from typing import Any

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, human_size, info, settings, warn, with_repository
from kubekeep.engine.repository import Repository
from kubekeep.engine.tree import Node


@click.command(short_help="Restore a snapshot to a destination.")
@click.argument("ref", metavar="SNAPSHOT[:PATH]")
@click.option("--to", "--target", "-t", "destination", required=True,
              help="Destination: a directory (or fs:PATH), or a connector URI.")
@click.option("--include", "includes", multiple=True, help="Restore only paths matching this glob (repeatable).")
@click.option("--exclude", "excludes", multiple=True, help="Skip paths matching this glob (repeatable).")
@global_options
@with_repository
def command(repo: Repository, ref: str, destination: str, includes: tuple[str, ...],
            excludes: tuple[str, ...]) -> None:
    """Restore SNAPSHOT (an id prefix or 'latest'), or only PATH within it, to DEST. The
    contents of a directory PATH land directly in DEST."""
    options: dict[str, Any] = {}
    stats = api.restore(repo, ref, destination, include=_filter(includes, excludes), options=options)
    if settings().json:
        emit_json(stats.to_dict())
        return
    for w in stats.warnings:
        warn(w)
    info(f"restored {stats.files} files, {stats.dirs} dirs, {stats.symlinks} symlinks, "
         f"{human_size(stats.bytes)} in {stats.duration_s:.2f} s to {destination}")


def _filter(includes: tuple[str, ...], excludes: tuple[str, ...]) -> Any:
    if not includes and not excludes:
        return None

    def keep(rel: str, node: Node) -> bool:
        if any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(node.name, p) for p in excludes):
            return False
        if includes and node.type != "dir":
            return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(node.name, p) for p in includes)
        return True

    return keep
