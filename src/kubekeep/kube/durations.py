"""Durations as people write them on a command line or in an annotation (``30``, ``30s``,
``2m``, ``1h``, ``1m30s``). No Kubernetes client import: the CLI parses options with it."""

from __future__ import annotations

import re

from kubekeep import errors

_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number is seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise errors.UsageError(f"bad duration {text!r}: expected e.g. 30s, 2m or 1m30s")
    return sum(float(n) * _SCALE[u] for n, u in parts)
