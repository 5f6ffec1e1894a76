"""``kubekeep init``: create a repository."""

from __future__ import annotations

import click

from kubekeep import api, errors
from kubekeep.cli._common import emit_json, global_options, info, password, repository_options, settings


@click.command(short_help="Create a new repository.")
@click.option(
    "--object-lock",
    "lock_period",
    metavar="DAYS",
    help="Lock every object for this long (30 = 30 days; also 12h, 1y, 5s) in an S3 bucket with "
    "Object Lock on: see docs/immutability.md.",
)
@click.option(
    "--lock-mode",
    type=click.Choice(["governance", "compliance"]),
    default="governance",
    show_default=True,
    help="Object Lock mode of the retention dates (with --object-lock).",
)
@click.option("--lock-margin", help="Added to each date set (default: a fifth of the period, at most 7d).")
@global_options
def command(lock_period: str | None, lock_mode: str, lock_margin: str | None) -> None:
    """Create a new, empty, encrypted repository at --repo."""
    if lock_period is None and (lock_margin is not None or lock_mode != "governance"):
        raise errors.UsageError("--lock-mode and --lock-margin need --object-lock DAYS")
    lock = api.ObjectLockOptions(lock_period, lock_mode, lock_margin) if lock_period is not None else None
    opts = repository_options(pw=password(confirm=True, prompt="new repository password"))
    repo = api.init_repository(opts, object_lock=lock)
    if settings().json:
        emit_json({"id": repo.id, "location": repo.backend.location})
    else:
        info(f"created kubekeep repository {repo.id[:10]} at {repo.backend.location}")
        info("keep the password safe: without it the data cannot be read back")
        settings_ = api.object_lock_settings(repo)
        if settings_ is not None:
            info(
                f"every object is locked ({settings_.mode} mode) for {api.human_duration(settings_.period_s)} "
                f"plus a margin of {api.human_duration(settings_.margin_s)}; see docs/immutability.md"
            )
