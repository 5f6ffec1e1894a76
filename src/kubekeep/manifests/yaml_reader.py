"""A reader for exactly the YAML that ``serialization.dump`` writes.

libyaml parses fast, but PyYAML builds the Python values in Python (about 0.3 ms per object),
which made reading a 10,000-object snapshot for a restore take longer than creating half of
it. Snapshot files are written by ``dump``, whose output is a small, regular subset of YAML:
block mappings and indentless sequences indented by two spaces, keys and values that are plain
words, JSON strings, ``|`` blocks, integers, floats, ``true``/``false``/``null``, ``{}`` and
``[]``. This reader accepts only that subset, with the meaning YAML gives it, and raises
``NotOurs`` on anything else, so that ``serialization.load`` falls back to libyaml for files
written by other tools.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
#: Escapes JSON and YAML read differently (``dump`` never writes them).
_AMBIGUOUS_ESCAPE = re.compile(r"\\(?:/|u[dD][89a-fA-F])")
#: Plain (unquoted) strings: start with a letter, ``_`` or ``/``; a conservative character set;
#: single spaces between words (``dump`` quotes everything else).
PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@=+:-]*(?: [A-Za-z0-9_./@=+:-]+)*\Z")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+(?:e[-+][0-9]+)?\Z")
#: YAML 1.1 booleans and nulls that match ``PLAIN`` (``dump`` quotes them).
RESERVED = frozenset(
    (
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "null",
        "Null",
        "NULL",
    )
)
_CONSTANTS: dict[str, Any] = {
    "null": None,
    "true": True,
    "false": False,
    ".inf": float("inf"),
    "-.inf": float("-inf"),
    ".nan": float("nan"),
}
_BLOCK_HEADERS = {"|": True, "|-": False, "|2": True, "|2-": False}  # header -> keeps the final newline


class NotOurs(ValueError):
    """The text is not in the subset ``dump`` writes."""


def read(text: str) -> Any:
    """The value of a document ``dump`` wrote; raises ``NotOurs`` otherwise."""
    lines = text.split("\n")
    if not lines or lines[-1] != "":
        raise NotOurs("no final newline")
    lines.pop()
    if not lines:
        raise NotOurs("empty")
    first = lines[0]
    value: Any
    if first.startswith("- "):
        value, i = _sequence(lines, 0, "")
    elif _entry_key(first) is not None:
        value, i = _mapping(lines, 0, "")
    else:
        raise NotOurs("a top-level scalar")
    if i != len(lines):
        raise NotOurs(f"unexpected line {i + 1}")
    return value


def _scalar(text: str) -> Any:
    if text.startswith('"'):
        if not _JSON_STRING.fullmatch(text) or _AMBIGUOUS_ESCAPE.search(text):
            raise NotOurs(f"bad quoted scalar {text[:40]!r}")
        return orjson.loads(text)
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if PLAIN.match(text) and text not in RESERVED and not text.endswith(":") and ": " not in text:
        return text
    raise NotOurs(f"unexpected scalar {text[:40]!r}")


def _entry_key(line: str) -> tuple[str, str] | None:
    """``(key, rest after the colon)`` if ``line`` (indentation removed) is a mapping entry."""
    if line.startswith('"'):
        m = _JSON_STRING.match(line)
        if m is None or line[m.end() : m.end() + 1] != ":":
            return None
        if _AMBIGUOUS_ESCAPE.search(m.group()):
            raise NotOurs("an escape JSON and YAML read differently")
        key: str = orjson.loads(m.group())
        return key, line[m.end() + 1 :]
    cut = line.find(": ")
    if cut < 0:
        if not line.endswith(":"):
            return None
        cut = len(line) - 1
    key = line[:cut]
    if not PLAIN.match(key) or key in RESERVED:
        raise NotOurs(f"unexpected key {key[:40]!r}")
    return key, line[cut + 1 :]


def _mapping(lines: list[str], i: int, ind: str) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    n = len(lines)
    width = len(ind)
    while i < n:
        line = lines[i]
        if not line.startswith(ind) or line[width : width + 1] in (" ", "-", "?", ""):
            break
        entry = _entry_key(line[width:])
        if entry is None:
            raise NotOurs(f"line {i + 1} is not a mapping entry")
        key, rest = entry
        i += 1
        if rest == "":
            if i < n and lines[i].startswith(ind + "  ") and lines[i][width + 2 : width + 3] not in (" ", ""):
                out[key], i = _mapping(lines, i, ind + "  ")
            elif i < n and lines[i].startswith(ind + "- "):
                out[key], i = _sequence(lines, i, ind)
            else:
                raise NotOurs(f"line {i}: a key without a value")
        elif rest[0] != " ":
            raise NotOurs(f"line {i}: no space after the colon")
        else:
            out[key], i = _value(rest[1:], lines, i, ind)
    return out, i


def _value(text: str, lines: list[str], i: int, ind: str) -> tuple[Any, int]:
    """An inline value; ``|`` blocks take the following lines indented by ``ind`` + 2."""
    keep = _BLOCK_HEADERS.get(text)
    if keep is None:
        return _scalar(text), i
    block_ind = ind + "  "
    width = len(block_ind)
    content: list[str] = []
    n = len(lines)
    while i < n and (lines[i] == "" or lines[i].startswith(block_ind)):
        content.append(lines[i][width:])
        i += 1
    while content and content[-1] == "":
        content.pop()
    if not content:
        raise NotOurs("an empty block")
    return "\n".join(content) + ("\n" if keep else ""), i


def _sequence(lines: list[str], i: int, ind: str) -> tuple[list[Any], int]:
    out: list[Any] = []
    n = len(lines)
    width = len(ind)
    prefix = ind + "- "
    inner = ind + "  "
    while i < n and lines[i].startswith(prefix):
        item = lines[i][width + 2 :]
        value: Any
        if item.startswith("- "):
            lines[i] = inner + item
            value, i = _sequence(lines, i, inner)
        elif item[:1] in (" ", "?", ""):
            raise NotOurs(f"line {i + 1}: unexpected sequence item")
        elif _entry_key(item) is not None:
            lines[i] = inner + item
            value, i = _mapping(lines, i, inner)
        else:
            value, i = _value(item, lines, i + 1, ind)
        out.append(value)
    return out, i
