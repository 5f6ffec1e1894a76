"""Snapshot content as HTML: highlighted YAML and JSON (Pygments, on the server), plain text,
hidden Secret values, and side-by-side versions of an object."""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import JsonLexer, TextLexer, YamlLexer

from kubekeep import api

#: Files up to this size are shown in the page; larger ones are offered as a download.
SHOW_LIMIT = 2 * 1024 * 1024
#: Files up to this size are highlighted; larger ones are shown as plain text.
HIGHLIGHT_LIMIT = 512 * 1024
_FORMATTER = HtmlFormatter(cssclass="hl", linenos="table", wrapcode=True)
_SECRET_FIELDS = ("data", "stringData")
#: the annotation in which ``kubectl apply`` keeps a copy of the whole object, values included
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def pygments_css() -> str:
    return str(_FORMATTER.get_style_defs(".hl"))  # type: ignore[no-untyped-call]  # unannotated in types-Pygments


def human_size(n: float) -> str:
    return api.human_size(n, decimals=1)


def timestamp(value: str | int) -> str:
    """An RFC 3339 time or nanoseconds since the epoch as ``YYYY-MM-DD HH:MM:SSZ`` (UTC)."""
    if isinstance(value, int):
        t = dt.datetime.fromtimestamp(value / 1e9, dt.UTC)
    else:
        t = dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class Content:
    """How a file is shown: ``kind`` is yaml, json, text or binary; ``html`` is set for the first three."""

    kind: str
    html: Markup | None
    truncated: bool = False
    hidden_secrets: int = 0


def classify(name: str, data: bytes) -> str:
    if b"\0" in data[:8192]:
        return "binary"
    try:
        data[:65536].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data[:65536]) - 4:  # a cut multi-byte character at the end is fine
            return "binary"
    lower = name.lower()
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    if lower.endswith(".json"):
        return "json"
    return "text"


def render_file(
    name: str, data: bytes, *, truncated: bool = False, secret: bool = False, reveal: bool = False
) -> Content:
    """``data`` (the start of file ``name``) for display; a Secret's values are hidden unless ``reveal``."""
    kind = classify(name, data)
    if kind == "binary":
        return Content(kind, None, truncated)
    hidden = 0
    if secret and not reveal and kind == "yaml" and not truncated:
        data, hidden = hide_secret_values(data)
    text = data.decode("utf-8", "replace")
    lexer: Lexer = {"yaml": YamlLexer, "json": JsonLexer}.get(kind, TextLexer)()
    if len(data) > HIGHLIGHT_LIMIT:
        lexer = TextLexer()
    return Content(kind, Markup(highlight(text, lexer, _FORMATTER)), truncated, hidden)


def hide_secret_values(data: bytes) -> tuple[bytes, int]:
    """A Secret's YAML with the values of ``data`` and ``stringData`` replaced by their sizes."""
    obj = api.load_object(data)
    hidden = 0
    if isinstance(obj, dict):
        for key in _SECRET_FIELDS:
            values = obj.get(key)
            if isinstance(values, dict):
                for k, v in values.items():
                    values[k] = f"<hidden: {len(str(v))} characters>"
                    hidden += 1
        annotations = (obj.get("metadata") or {}).get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:  # kubectl's copy of the values
            annotations[LAST_APPLIED] = f"<hidden: {len(str(annotations[LAST_APPLIED]))} characters>"
            hidden += 1
    return (api.dump_object(obj) if hidden else data), hidden


def is_secret_field(kind: str | None, path: str) -> bool:
    """Whether field ``path`` (``data.password``) of a ``kind`` object holds a Secret's values."""
    return kind == "Secret" and (path.split(".", 1)[0] in _SECRET_FIELDS or LAST_APPLIED in path)


def hidden(value: Any) -> Any:
    """A Secret value (or a map of them) replaced by its size, as the file view shows it."""
    if isinstance(value, dict):
        return {k: hidden(v) for k, v in value.items()}
    return f"<hidden: {len(str(value))} characters>"


def hide_secret_fields(kind: str | None, fields: Sequence[api.FieldChange]) -> tuple[tuple[api.FieldChange, ...], int]:
    """Field changes of an object with a Secret's values hidden, and how many were."""
    out, count = [], 0
    for f in fields:
        if is_secret_field(kind, f.path):
            f = api.FieldChange(
                f.path, f.op, hidden(f.old) if f.old is not None else None, hidden(f.new) if f.new is not None else None
            )
            count += 1
        out.append(f)
    return tuple(out), count


def secret_value(value: Any, kind: str | None, path: str) -> Any:
    """Jinja filter: ``value`` of field ``path``, hidden when it is a Secret's."""
    return hidden(value) if is_secret_field(kind, path) else value


def seconds(value: float | None) -> str:
    """A duration of a report: ``1.25 s``, ``3 min 5 s``; ``-`` for none."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def value_text(value: Any) -> str:
    """A field value, compact: scalars as JSON, containers as YAML."""
    if isinstance(value, dict | list) and value:
        return api.dump_object(value).decode().rstrip("\n")
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class SideBySideLine:
    old_no: int | None
    old: str
    new_no: int | None
    new: str
    change: str  # "", "changed", "added", "removed"


def side_by_side(old: str, new: str) -> list[SideBySideLine]:
    """Two versions of a text aligned line by line, with the differing lines marked."""
    a, b = old.splitlines(), new.splitlines()
    out: list[SideBySideLine] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out += [
                SideBySideLine(i + 1, a[i], j + 1, b[j], "") for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            has_old, has_new = i < i2, j < j2
            change = "changed" if has_old and has_new else ("removed" if has_old else "added")
            out.append(
                SideBySideLine(
                    i + 1 if has_old else None,
                    a[i] if has_old else "",
                    j + 1 if has_new else None,
                    b[j] if has_new else "",
                    change,
                )
            )
    return out
