"""Object names as registry tags, and back.

Tags match ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``; kubekeep's names are slash-separated words of
``[A-Za-z0-9._-]``. A tag is ``kk.`` followed by the name with ``_`` written ``_u``, ``.``
written ``_d`` and ``/`` written ``.``: ``data/ab/ab12...`` is ``kk.data.ab.ab12...``, readable in
a registry's UI, reversible (every ``_`` starts a two-character escape), and ``kk.`` sets
kubekeep's tags apart from any other tag in the repository, which listing ignores.
"""

from __future__ import annotations

import re

from kubekeep.errors import StorageError
from kubekeep.storage.local import validate_name

PREFIX = "kk."
MAX_TAG = 128
_NAME_CHARS = re.compile(r"[A-Za-z0-9._/-]+")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_ENCODE = str.maketrans({"_": "_u", ".": "_d", "/": "."})
_ESCAPES = {"u": "_", "d": "."}


def to_tag(name: str) -> str:
    """The tag of object ``name``; ``StorageError`` for a name no tag can carry."""
    validate_name(name)
    if not _NAME_CHARS.fullmatch(name):
        raise StorageError(f"invalid object name {name!r}: a registry tag takes only letters, digits, '.', '_', '-'")
    tag = PREFIX + name.translate(_ENCODE)
    if len(tag) > MAX_TAG:
        raise StorageError(f"object name {name!r} is too long for a registry tag ({len(tag)} > {MAX_TAG} characters)")
    return tag


def to_name(tag: str) -> str | None:
    """The object name a tag carries, or None for a tag that is not kubekeep's."""
    if not tag.startswith(PREFIX) or not _TAG.fullmatch(tag):
        return None
    out: list[str] = []
    body = tag[len(PREFIX) :]
    i = 0
    while i < len(body):
        char = body[i]
        if char == "_":
            plain = _ESCAPES.get(body[i + 1 : i + 2])
            if plain is None:
                return None
            out.append(plain)
            i += 2
            continue
        out.append("/" if char == "." else char)
        i += 1
    name = "".join(out)
    try:
        validate_name(name)
    except StorageError:
        return None
    return name
