"""``kubekeep key list|add|remove``: manage the passwords that open a repository."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, info, local_time, password, settings, with_repository


@click.group(short_help="Manage repository keys (passwords).")
def command() -> None:
    """Each key is the repository's master key wrapped by one password."""


@command.command("list")
@global_options
@with_repository
def list_keys(repo: api.Repository) -> None:
    """List keys; * marks the one used now."""
    keys = api.list_keys(repo)
    if settings().json:
        emit_json(keys)
        return
    for k in keys:
        mark = "*" if k["current"] else " "
        if k["damaged"]:
            click.echo(f"{mark}{k['id'][:8]}  damaged: {k['damaged']}")
        elif k["created"] is None:
            click.echo(f"{mark}{k['id'][:8]}  (no details)")
        else:
            click.echo(f"{mark}{k['id'][:8]}  {k['username']}@{k['hostname']}  {local_time(k['created'])}")


@command.command("add")
@click.option("--new-password-file", help="Read the new password from this file.")
@global_options
@with_repository
def add_key(repo: api.Repository, new_password_file: str | None) -> None:
    """Add a key for a new password."""
    new = password(
        password_file=new_password_file,
        environment=False,
        prompt="new password",
        confirm=True,
        missing="give the new password with --new-password-file (or run on a terminal to type it)",
    )
    key_id = api.add_key(repo, new)
    if settings().json:
        emit_json({"id": key_id})
    else:
        info(f"added key {key_id[:8]}")


@command.command("remove")
@click.argument("key_id")
@global_options
@with_repository
def remove_key(repo: api.Repository, key_id: str) -> None:
    """Remove the key KEY_ID (not the one in use)."""
    api.remove_key(repo, key_id)
    info(f"removed key {key_id}")
