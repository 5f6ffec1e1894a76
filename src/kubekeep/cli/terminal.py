"""Names from a repository or a cluster, made safe to show on a terminal.

File names, object names, tags and hosts come from whoever wrote the snapshot (or owns the
cluster): a name holding escape sequences could recolour, retitle or rewrite the terminal of the
person reading ``ls`` or ``diff`` output, and bidirectional-override characters can make a name
read as another. Human output shows such characters escaped (``\\x1b``, ``\\u202e``) and bytes
that are not UTF-8 as ``\\xNN``; ``--json`` output stays exact.
"""

from __future__ import annotations

import re

#: C0 controls (newline and tab included: a name must not start a line of its own), DEL, C1,
#: and the bidirectional formatting characters
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object) -> str:
    """``text`` as it may be shown on a terminal."""
    s = str(text)
    try:
        raw = s.encode("utf-8", "surrogateescape")  # names that are not UTF-8 (os.fsdecode)
    except UnicodeEncodeError:
        raw = s.encode("utf-8", "backslashreplace")
    return _UNSAFE.sub(_escape, raw.decode("utf-8", "backslashreplace"))


def safe_lines(text: str) -> str:
    """Each line of a message of ours made safe, the line breaks kept."""
    return "\n".join(safe(line) for line in text.split("\n"))
