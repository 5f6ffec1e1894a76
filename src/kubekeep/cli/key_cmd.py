"""``kubekeep key list|add|remove``: manage the passwords that open a repository."""

from __future__ import annotations

import click

from kubekeep import api, errors
from kubekeep.cli._common import ask_password, emit_json, global_options, info, local_time, settings, with_repository
from kubekeep.engine.repository import Repository


@click.group(short_help="Manage repository keys (passwords).")
def command() -> None:
    """Each key is the repository's master key wrapped by one password."""


@command.command("list")
@global_options
@with_repository
def list_keys(repo: Repository) -> None:
    """List keys; * marks the one used now."""
    keys = repo.list_keys()
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
def add_key(repo: Repository, new_password_file: str | None) -> None:
    """Add a key for a new password."""
    if new_password_file:
        new = api.read_password(password_file=new_password_file)
    elif click.get_text_stream("stdin").isatty():
        new = ask_password("new password", confirm=True)
    else:
        raise errors.UsageError("give the new password with --new-password-file (or run on a terminal to type it)")
    if not new:
        raise errors.UsageError("give the new password with --new-password-file")
    key_id = repo.add_key(new)
    if settings().json:
        emit_json({"id": key_id})
    else:
        info(f"added key {key_id[:8]}")


@command.command("remove")
@click.argument("key_id")
@global_options
@with_repository
def remove_key(repo: Repository, key_id: str) -> None:
    """Remove the key KEY_ID (not the one in use)."""
    repo.remove_key(key_id)
    info(f"removed key {key_id}")
