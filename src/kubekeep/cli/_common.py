"""What every command shares: repository options, opening the repository, output, errors."""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from kubekeep import api, errors
from kubekeep.cli.terminal import safe_lines

human_size = api.human_size

F = TypeVar("F", bound=Callable[..., Any])

#: exit code when a backup finished but some source data could not be read (as restic)
EXIT_INCOMPLETE = 3


@dataclass
class Settings:
    repo: str | None = None
    password_file: str | None = None
    cache_dir: str | None = None
    no_cache: bool = False
    json: bool = False
    quiet: bool = False
    s3: dict[str, Any] = field(default_factory=dict)
    oci: dict[str, Any] = field(default_factory=dict)


def settings() -> Settings:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


def _store(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False, ()):
            s = settings()
            if attr.startswith("s3."):
                s.s3[attr[3:]] = value
            elif attr.startswith("oci."):
                s.oci[attr[4:]] = value
            else:
                setattr(s, attr, value)
        return value

    return callback


def global_options(f: F) -> F:
    """Options accepted before or after the verb (``kubekeep -r R backup`` and ``kubekeep backup -r R``)."""
    opts = [
        click.option(
            "-r",
            "--repo",
            envvar="KUBEKEEP_REPOSITORY",
            show_envvar=True,
            expose_value=False,
            callback=_store("repo"),
            help="api.Repository: a path, fs:PATH, s3://BUCKET/PREFIX or oci://REGISTRY/REPOSITORY.",
        ),
        click.option(
            "--password-file",
            "-p",
            envvar="KUBEKEEP_PASSWORD_FILE",
            show_envvar=True,
            expose_value=False,
            callback=_store("password_file"),
            help="Read the repository password from this file.",
        ),
        click.option(
            "--cache-dir",
            envvar="KUBEKEEP_CACHE_DIR",
            show_envvar=True,
            expose_value=False,
            callback=_store("cache_dir"),
            help="Local cache directory (default: $XDG_CACHE_HOME/kubekeep).",
        ),
        click.option(
            "--no-cache",
            is_flag=True,
            expose_value=False,
            callback=_store("no_cache"),
            help="Do not use a local cache.",
        ),
        click.option(
            "--json",
            "json_",
            is_flag=True,
            expose_value=False,
            callback=_store("json"),
            help="Print machine-readable JSON.",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            expose_value=False,
            callback=_store("quiet"),
            help="Print only errors (and requested output).",
        ),
        click.option(
            "--s3-endpoint",
            envvar="KUBEKEEP_S3_ENDPOINT",
            expose_value=False,
            callback=_store("s3.endpoint_url"),
            help="S3 endpoint URL (for S3-compatible servers).",
        ),
        click.option("--s3-region", expose_value=False, callback=_store("s3.region"), help="S3 region."),
        click.option(
            "--registry-ca",
            envvar="KUBEKEEP_REGISTRY_CA",
            type=click.Path(dir_okay=False),
            expose_value=False,
            callback=_store("oci.ca_file"),
            help="CA bundle that signed an oci:// registry's certificate.",
        ),
        click.option(
            "--insecure-registry",
            is_flag=True,
            envvar="KUBEKEEP_INSECURE_REGISTRY",
            expose_value=False,
            callback=_store("oci.insecure"),
            help="Reach an oci:// registry over plain HTTP (no TLS).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


_NO_PASSWORD = "no password given: use --password-file, KUBEKEEP_PASSWORD or KUBEKEEP_PASSWORD_FILE"


def password(
    *,
    password_file: str | None = None,
    own_file: bool = True,
    environment: bool = True,
    confirm: bool = False,
    prompt: str = "repository password",
    missing: str = _NO_PASSWORD,
) -> str:
    """The one place the CLI gets a password: from ``password_file`` (default: --password-file,
    unless not ``own_file``), else the environment (``KUBEKEEP_PASSWORD[_FILE]``, unless not
    ``environment``), else typed at the terminal; ``missing`` is the error without one."""
    file = password_file or (settings().password_file if own_file and environment else None)
    pw = api.read_password(password_file=file) if file or environment else None
    if pw:
        return pw
    if sys.stdin.isatty():
        return _ask_password(prompt, confirm=confirm)
    raise errors.UsageError(missing)


def _ask_password(prompt: str, *, confirm: bool = False) -> str:
    """A password typed at the terminal (never one from a file or the environment)."""
    pw = getpass.getpass(f"enter {prompt}: ")
    if confirm and getpass.getpass(f"enter {prompt} again: ") != pw:
        raise errors.UsageError("the passwords do not match")
    if not pw:
        raise errors.UsageError("an empty password is not allowed")
    return pw


def repository_options(location: str | None = None, pw: str | None = None) -> api.RepositoryOptions:
    s = settings()
    loc = location or s.repo
    if not loc:
        raise errors.UsageError("no repository given: use -r/--repo or KUBEKEEP_REPOSITORY")
    # S3 settings (often from the environment) apply only to S3 locations: a local repository
    # must stay usable with KUBEKEEP_S3_ENDPOINT set, e.g. as the other side of ``copy``
    # (and registry settings only to registry locations)
    backend_options = dict(s.s3) if loc.startswith("s3://") else dict(s.oci) if loc.startswith("oci://") else {}
    return api.RepositoryOptions(
        location=loc,
        password=pw if pw is not None else password(),
        cache_dir=Path(s.cache_dir) if s.cache_dir else None,
        no_cache=s.no_cache,
        backend_options=backend_options,
    )


def with_repository(f: F) -> F:
    """Open the repository and pass it as ``repo``; locking is the API's business."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        repo = api.open_repository(repository_options())
        repo.on_warning = warn  # damage skipped over (a snapshot or index file) is said on stderr
        try:
            return f(*args, repo=repo, **kwargs)
        finally:
            repo.close()

    return cast(F, wrapper)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def info(message: str) -> None:
    """Progress and status text: on stderr, and silent with --quiet or --json."""
    s = settings()
    if not s.quiet and not s.json:
        click.echo(safe_lines(message), err=True)


def warn(message: str) -> None:
    click.secho(f"warning: {safe_lines(message)}", err=True, fg="yellow")


def mode_string(node_type: str, mode: int) -> str:
    kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(node_type, stat.S_IFREG)
    return stat.filemode(kind | mode)


def local_time(ns_or_iso: int | str) -> str:
    if isinstance(ns_or_iso, int):
        t = dt.datetime.fromtimestamp(ns_or_iso / 1e9, dt.UTC)
    else:
        t = dt.datetime.fromisoformat(ns_or_iso.replace("Z", "+00:00"))
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def show_progress() -> bool:
    s = settings()
    return not s.quiet and not s.json and sys.stderr.isatty()


def open_repo_quietly(location: str, password_file: str | None) -> api.Repository:
    """Open a second repository (``copy --from-repo``) with its own password source."""
    pw = password(
        password_file=password_file,
        own_file=False,
        prompt="source repository password",
        missing="no password for the source repository: use --from-password-file",
    )
    return api.open_repository(repository_options(location, pw))
