"""Rendering for manifests snapshots: restore reports and field changes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import click
import orjson

from kubekeep.cli.terminal import safe

_COLORS = {
    "created": "green",
    "updated": "green",
    "written": "green",
    "failed": "red",
    "would fail": "red",
    "not created": "red",
    "would create": "green",
    "would update": "yellow",
}


def value(v: Any, limit: int = 80) -> str:
    """A field value on one line, shortened."""
    text = orjson.dumps(v).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_lines(changes: Iterable[dict[str, Any]], indent: str = "    ") -> list[str]:
    lines = []
    for c in changes:
        if c["op"] == "added":
            lines.append(f"{indent}+ {c['path']}: {value(c['new'])}")
        elif c["op"] == "removed":
            lines.append(f"{indent}- {c['path']}: {value(c['old'])}")
        else:
            lines.append(f"{indent}~ {c['path']}: {value(c['old'])} -> {value(c['new'])}")
    return lines


def print_report(results: list[dict[str, Any]], *, quiet: bool) -> Counter[str]:
    """One line per object (``quiet``: failures only), field changes under dry-run lines."""
    counts: Counter[str] = Counter(r["action"] for r in results)
    width = max((len(r["action"]) for r in results), default=0)
    for r in results:
        failed = r["action"] in ("failed", "would fail")
        if quiet and not failed:
            continue
        where = f"{r['namespace']}/{r['name']}" if r.get("namespace") else r["name"]
        line = f"{r['action']:<{width}}  {r['kind']} {where}"
        if r.get("transforms"):
            line += f" (transformed: {', '.join(r['transforms'])})"
        if r.get("reason"):
            line += f": {r['reason']}"
        click.secho(safe(line), fg=_COLORS.get(r["action"]))
        for text in field_lines(r.get("diff") or []):
            click.echo(safe(text))
    return counts
