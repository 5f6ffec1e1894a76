"""``kubekeep copy``: copy snapshots from another repository into this one."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, info, open_repo_quietly, settings, with_repository


@click.command(short_help="Copy snapshots from another repository.")
@click.argument("snapshots", nargs=-1)
@click.option("--from-repo", required=True, envvar="KUBEKEEP_FROM_REPOSITORY", help="Source repository.")
@click.option(
    "--from-password-file", envvar="KUBEKEEP_FROM_PASSWORD_FILE", help="Password file of the source repository."
)
@global_options
@with_repository
def command(repo: api.Repository, snapshots: tuple[str, ...], from_repo: str, from_password_file: str | None) -> None:
    """Copy SNAPSHOTS (default: all) from --from-repo into --repo. Data already in the
    destination is not stored again; snapshots copied before are skipped."""
    src = open_repo_quietly(from_repo, from_password_file)
    try:
        results = api.copy(src, repo, snapshots, progress=lambda s, msg: info(f"snapshot {s.short_id}: {msg}"))
    finally:
        src.close()
    if settings().json:
        emit_json([{"source": s.id, "copy": c.id if c else None} for s, c in results])
    else:
        info(f"{sum(1 for _, c in results if c)} snapshot(s) copied")
