"""What kubekeep does in a cluster outside a backup or restore: clean up after killed runs, and
serve a volume as the helper agent (the command helper pods run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubekeep.agent import protocol

if TYPE_CHECKING:
    from kubekeep.kube.cleanup import Leftover

#: seconds a connection to the agent has to authenticate
AGENT_HANDSHAKE_TIMEOUT = protocol.HANDSHAKE_TIMEOUT
#: where the agent listens unless told otherwise
AGENT_LISTEN = f":{protocol.DEFAULT_PORT}"


@dataclass
class CleanupReport:
    """The leftovers of killed runs that were found, and what could not be removed."""

    found: list[Leftover] = field(default_factory=list)
    removed: bool = False
    problems: list[str] = field(default_factory=list)


def cleanup(
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    namespace: str = "",
    run: str = "",
    everything: bool = False,
    older_than: float | None = None,
    dry_run: bool = False,
    wait: float = 60.0,
) -> CleanupReport:
    """Find the helper pods, temporary claims, snapshots and secrets of kubekeep runs that are
    over (their process on this host is gone, older than ``older_than`` seconds, or all with
    ``everything``) and remove them unless ``dry_run``, waiting up to ``wait`` seconds."""
    # the Kubernetes client is slow to import: only when a cleanup runs
    from kubekeep.kube import cleanup as leftovers
    from kubekeep.kube import config
    from kubekeep.kube.requesting import Session

    session = Session(config.connect(context, kubeconfig))
    try:
        found = leftovers.find(session, namespace=namespace, run=run, everything=everything, older_than=older_than)
        problems = [] if dry_run else leftovers.remove(session, found, wait=wait)
    finally:
        session.close()
    return CleanupReport(found, not dry_run, problems)


def serve_agent(
    source: str,
    *,
    block: bool = False,
    write: bool = False,
    listen: str = AGENT_LISTEN,
    idle_timeout: float = 600.0,
    handshake_timeout: float = AGENT_HANDSHAKE_TIMEOUT,
) -> int:
    """Serve a directory (or a block device) to one authenticated kubekeep session, then exit
    (the helper pods' command; docs/volumes.md). Returns the exit status."""
    from kubekeep.agent import server

    return server.run(
        source, block=block, write=write, listen=listen, idle_timeout=idle_timeout, handshake_timeout=handshake_timeout
    )
