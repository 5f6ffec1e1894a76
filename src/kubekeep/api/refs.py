"""``SNAPSHOT[:PATH]`` references."""

from __future__ import annotations

from kubekeep import errors


def split_ref(ref: str) -> tuple[str, str]:
    """``SNAP[:PATH]`` -> ``(SNAP, PATH)``."""
    snap, _, path = ref.partition(":")
    if not snap:
        raise errors.UsageError(f"{ref!r}: expected SNAPSHOT[:PATH] (an id prefix or 'latest')")
    return snap, path
