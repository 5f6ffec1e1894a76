"""The ``k8s://[CONTEXT]`` URI, shared by the importer and the exporters."""

from __future__ import annotations

from kubekeep import errors

SCHEME = "k8s"


def parse_uri(uri: str) -> str | None:
    """The context named by ``k8s://[CONTEXT]`` (None for the current context)."""
    if not uri.lower().startswith("k8s:"):
        raise errors.UsageError(f"bad Kubernetes URI {uri!r}: expected k8s://[CONTEXT]")
    return uri[4:].removeprefix("//").rstrip("/") or None
