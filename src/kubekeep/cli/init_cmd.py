"""``kubekeep init``: create a repository."""

from __future__ import annotations

import click

from kubekeep import api
from kubekeep.cli._common import emit_json, global_options, info, password, repository_options, settings


@click.command(short_help="Create a new repository.")
@global_options
def command() -> None:
    """Create a new, empty, encrypted repository at --repo."""
    opts = repository_options(pw=password(confirm=True, prompt="new repository password"))
    repo = api.init_repository(opts)
    if settings().json:
        emit_json({"id": repo.id, "location": repo.backend.location})
    else:
        info(f"created kubekeep repository {repo.id[:10]} at {repo.backend.location}")
        info("keep the password safe: without it the data cannot be read back")
