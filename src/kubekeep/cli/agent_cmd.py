"""``kubekeep agent``: serve a mounted volume to one kubekeep run (the helper pods run this)."""

from __future__ import annotations

import sys

import click

from kubekeep import api


@click.command(short_help="Serve a volume to kubekeep (runs in helper pods).")
@click.option("--root", type=click.Path(file_okay=False), help="Directory to serve (the mounted volume).")
@click.option("--device", type=click.Path(dir_okay=False), help="Block device to serve (a raw block volume).")
@click.option("--listen", default=api.AGENT_LISTEN, show_default=True, help="HOST:PORT to listen on.")
@click.option("--write", is_flag=True, help="Also accept a restore session (writes into the volume).")
@click.option(
    "--idle-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Exit if no session started within this many seconds.",
)
@click.option(
    "--handshake-timeout",
    type=float,
    default=api.AGENT_HANDSHAKE_TIMEOUT,
    show_default=True,
    help="Seconds a connection has to authenticate.",
)
def command(
    root: str | None, device: str | None, listen: str, write: bool, idle_timeout: float, handshake_timeout: float
) -> None:
    """Serve ROOT (or DEVICE) to the first client that proves it holds the session secret in
    $KUBEKEEP_AGENT_SECRET, for one backup (or, with --write, restore) session; then exit.
    kubekeep starts this itself in a helper pod; see docs/volumes.md."""
    if (root is None) == (device is None):
        raise click.UsageError("give exactly one of --root and --device")
    sys.exit(
        api.serve_agent(
            root or device or "",
            block=device is not None,
            write=write,
            listen=listen,
            idle_timeout=idle_timeout,
            handshake_timeout=handshake_timeout,
        )
    )
