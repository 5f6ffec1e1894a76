"""Exclude patterns (``--exclude``): restic's syntax, matched against paths relative to the root."""

from __future__ import annotations

import re
from collections.abc import Iterable


class ExcludeRules:
    """Glob patterns as restic takes them: patterns match whole path components (``*``, ``?``
    and ``[...]`` never cross ``/``; ``**`` matches any number of directories); a pattern matches
    at any depth unless a leading ``/`` anchors it at the backup root; a trailing ``/`` is
    ignored. A matching directory is skipped with everything below it."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [p.rstrip("/") for p in patterns if p.strip() and not p.startswith("#")]
        self._regexes = [_pattern_regex(p) for p in self.patterns if p.strip("/")]

    def __bool__(self) -> bool:
        """Whether any pattern is set (a walk without patterns skips the matching)."""
        return bool(self._regexes)

    def excluded(self, rel: str, name: str) -> bool:
        return any(r.fullmatch(rel) for r in self._regexes)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/")
    parts = [p for p in pattern.strip("/").split("/") if p]
    out = "" if anchored else "(?:[^/]+/)*"
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]+/)*"
        else:
            out += _component_regex(part) + ("" if last else "/")
    return re.compile(out, re.DOTALL)


def _component_regex(part: str) -> str:
    """fnmatch syntax for one path component, with wildcards that stop at ``/``."""
    out, i = "", 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = i + 1
            if part[j : j + 1] == "!":
                j += 1
            if part[j : j + 1] == "]":
                j += 1
            j = part.find("]", j)
            if j < 0:
                out += re.escape(c)  # no closing bracket: a literal "["
            else:
                body = part[i + 1 : j].replace("\\", "\\\\")
                out += "[^/" + body[1:] + "]" if body.startswith("!") else "[" + body + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return out
