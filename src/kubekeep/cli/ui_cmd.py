"""``kubekeep ui``: serve the web interface over a repository (docs/ui.md)."""

from __future__ import annotations

import html
import os
import secrets
import shutil
import tempfile
import webbrowser
from pathlib import Path

import click

from kubekeep import api
from kubekeep.cli._common import global_options, info, settings, warn, with_repository


@click.command(short_help="Open a local web interface over the repository.")
@click.option(
    "--listen",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST[:PORT]",
    help="Address to serve on; without a port, 8737 or, if that is taken, a free one.",
)
@click.option(
    "--allow-restore",
    is_flag=True,
    help="Allow restores into a cluster (each one after a dry run and an explicit confirmation).",
)
@click.option("--context", help="Default kubeconfig context restores go to (default: the snapshot's cluster).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="kubeconfig for restores (default: KUBECONFIG).")
@click.option("--open", "open_browser", is_flag=True, help="Open the URL in a web browser.")
@global_options
@with_repository
def command(
    repo: api.Repository,
    listen: str,
    allow_restore: bool,
    context: str | None,
    kubeconfig: str | None,
    open_browser: bool,
) -> None:
    """Serve a web interface over the repository: snapshots, their files, the cluster at the
    time of a manifests snapshot, diffs between snapshots, and restore dry runs. Every request
    needs the random access token in the printed URL. Stop with Ctrl-C."""
    from kubekeep.ui import Server, bind, create_app
    from kubekeep.ui.server import listens_on_loopback, url_of

    location = settings().repo or ""
    sock = bind(listen)
    token = secrets.token_urlsafe(32)
    port = sock.getsockname()[1]
    loopback = listens_on_loopback(sock)
    if not loopback:
        warn(
            f"serving on {sock.getsockname()[0]} over plain HTTP: anyone who can reach it and sees the URL "
            "can read the repository's snapshots"
        )
    app = create_app(
        repo,
        token=token,
        location=location,
        allow_restore=allow_restore,
        kubeconfig=kubeconfig,
        context=context,
        cookie=f"kubekeep_ui_{port}",
        loopback_only=loopback,
    )
    url = url_of(sock, token)
    info(
        f"kubekeep ui: repository {location}, restores "
        + ("ENABLED (each after a dry run and a confirmation)" if allow_restore else "disabled (--allow-restore)")
    )
    click.echo(f"open {url}" if not settings().quiet else url)
    info("press Ctrl-C to stop")
    page_dir = None
    if open_browser:
        page_dir = Path(tempfile.mkdtemp(prefix="kubekeep-ui-"))  # 0700
        webbrowser.open(_forwarding_page(page_dir, url).as_uri())
    server = Server(app, sock)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        app.state.ui.catalog.close()
        sock.close()
        if page_dir is not None:
            shutil.rmtree(page_dir, ignore_errors=True)
    info("stopped")


def _forwarding_page(directory: Path, url: str) -> Path:
    """A page, readable by this user only, that sends the browser on to ``url``: a browser's
    command line is visible to every local user (``ps``), so it must not carry the token."""
    page = directory / "open.html"
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            f'<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            f'<meta http-equiv="refresh" content="0;url={html.escape(url)}">'
            f'<a href="{html.escape(url)}">open kubekeep ui</a>\n'
        )
    return page
