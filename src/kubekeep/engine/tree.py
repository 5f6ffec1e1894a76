"""Trees: one msgpack blob per directory, listing its nodes sorted by name.

A node is a directory (pointing at its subtree blob), a file (pointing at its data blobs in
order) or a symlink. Identical directories encode to identical bytes and so are stored once.

Names and symlink targets are ``str``; bytes that are not UTF-8 are carried as surrogate
escapes (as ``os.fsdecode`` makes them) and stored as msgpack bin. Decoding checks every node,
and that no name is empty, ``.``, ``..``, holds ``/`` or NUL, or appears twice: a tree that
does not pass was written by a hostile or broken writer (``errors.UnsafeTree``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, cast

import msgpack

from kubekeep import errors
from kubekeep.engine.entries import Entry, EntryType
from kubekeep.engine.format import PageChunking

DIR = "dir"
FILE = "file"
SYMLINK = "symlink"
_TYPES = frozenset((DIR, FILE, SYMLINK))
#: the version of a tree blob's body
TREE_VERSION = 1


class WireNode(TypedDict):
    """A node as stored in a tree: name, type, mode, mtime; owner and group when not 0; a
    file's size, content and reuse key, a directory's subtree, a symlink's target; attributes
    when there are any. A name or target that is not UTF-8 is stored as its bytes."""

    n: str | bytes
    t: str
    m: int
    mt: int
    u: NotRequired[int]
    g: NotRequired[int]
    s: NotRequired[int]
    c: NotRequired[list[bytes]]
    rk: NotRequired[bytes]
    st: NotRequired[bytes | None]
    l: NotRequired[str | bytes]  # noqa: E741 - the wire name
    a: NotRequired[dict[str, Any]]
    ck: NotRequired[dict[str, Any]]


@dataclass(slots=True)
class Node:
    name: str
    type: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0
    content: list[bytes] = field(default_factory=list)
    subtree: bytes | None = None
    target: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    reuse_key: bytes | None = None
    #: how a file's content was cut when not by the repository's chunker (paged content)
    chunking: PageChunking | None = None

    def to_wire(self) -> WireNode:
        d: WireNode = {"n": self.name, "t": self.type, "m": self.mode, "mt": self.mtime_ns}
        if self.uid:
            d["u"] = self.uid
        if self.gid:
            d["g"] = self.gid
        if self.type == FILE:
            d["s"] = self.size
            d["c"] = self.content
            if self.reuse_key is not None:
                d["rk"] = self.reuse_key
            if self.chunking is not None:
                d["ck"] = self.chunking.to_wire()
        elif self.type == DIR:
            d["st"] = self.subtree
        else:
            d["l"] = self.target
        if self.attrs:
            d["a"] = self.attrs
        return d

    @classmethod
    def from_wire(cls, d: WireNode) -> Node:
        """The node ``d`` describes; raises ``TypeError``, ``ValueError`` or ``KeyError`` for a
        malformed one (``d`` is as decoded: its shape is checked here). Restores and listings
        decode every node of every tree they read, so the checks are written for speed."""
        name = d["n"]
        if type(name) is not str:
            name = _text(name)
        kind = d["t"]
        if kind not in _TYPES:
            raise ValueError(f"unknown node type {kind!r}")
        get = cast(dict[str, Any], d).get
        mode, uid, gid, mtime_ns, size = get("m", 0o644), get("u", 0), get("g", 0), get("mt", 0), get("s", 0)
        if not (type(mode) is type(uid) is type(gid) is type(mtime_ns) is type(size) is int):
            raise TypeError("a numeric field is not an integer")
        content = list(get("c", ()))
        for c in content:
            if type(c) is not bytes:
                raise TypeError("a field has the wrong type")
        subtree, reuse_key, attrs = get("st"), get("rk"), get("a") or {}
        if (
            type(attrs) is not dict
            or (subtree is not None and type(subtree) is not bytes)
            or (reuse_key is not None and type(reuse_key) is not bytes)
        ):
            raise TypeError("a field has the wrong type")
        target = get("l", "")
        if type(target) is not str:
            target = _text(target)
        if kind == SYMLINK and (not target or "\0" in target):
            raise ValueError("a symlink target is empty or holds NUL")
        return cls(
            name,
            kind,
            mode,
            uid,
            gid,
            mtime_ns,
            size,
            content,
            subtree,
            target,
            attrs,
            reuse_key,
            chunking_of(get("ck")),
        )

    def to_entry(self, path: str) -> Entry:
        return Entry(
            path=path,
            type=EntryType(self.type),
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
            mtime_ns=self.mtime_ns,
            size=self.size,
            target=self.target,
            attrs=self.attrs,
        )

    @classmethod
    def from_entry(cls, entry: Entry, name: str) -> Node:
        return cls(
            name=name,
            type=entry.type.value,
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            mtime_ns=entry.mtime_ns,
            size=entry.size,
            target=entry.target,
            attrs=entry.attrs,
            reuse_key=entry.reuse_key,
        )


def chunking_of(record: object) -> PageChunking | None:
    """A node's ``ck``: informational only (reading a file never needs it), so a record this
    program does not know (a later chunking) or cannot parse reads as none."""
    if record is None:
        return None
    try:
        return PageChunking.from_wire(record)
    except (TypeError, ValueError):
        return None


def name_bytes(name: str) -> bytes:
    """A name as the file system has it (trees are sorted by these bytes)."""
    return name.encode("utf-8", "surrogateescape")


def is_text(value: str) -> bool:
    """Whether ``value`` is UTF-8 text (no surrogate escapes of other bytes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_printable(*parts: str) -> str:
    """A path for a message, bytes that are not UTF-8 shown as ``\\xNN``."""
    return name_bytes("/".join(p for p in parts if p)).decode("utf-8", "backslashreplace")


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if not isinstance(value, str):
        raise TypeError("a name or target is not text")
    return value


def _wire_text(value: str) -> str | bytes:
    """``value`` as stored: text when it is UTF-8, its bytes (msgpack bin) when it is not."""
    return value if is_text(value) else name_bytes(value)


def unsafe_names(nodes: list[Node]) -> str | None:
    """Why ``nodes`` cannot be the entries of one directory, or None if they can."""
    seen: set[str] = set()
    for node in nodes:
        name = node.name
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            return f"it names an entry {name!r}, which no directory can hold"
        if name in seen:
            return f"it names {name!r} twice"
        seen.add(name)
    return None


def encode_tree(nodes: list[Node]) -> bytes:
    problem = unsafe_names(nodes)
    if problem is not None:
        raise errors.ConnectorError(f"cannot store a directory: {problem}")
    nodes = sorted(nodes, key=lambda n: name_bytes(n.name))
    wire = [n.to_wire() for n in nodes]
    try:
        return msgpack.packb({"v": TREE_VERSION, "nodes": wire}, use_bin_type=True)
    except UnicodeEncodeError:  # a name or target that is not UTF-8: the rare case, done again
        for node, d in zip(nodes, wire, strict=True):
            d["n"] = _wire_text(node.name)
            if "l" in d:
                d["l"] = _wire_text(node.target)
        return msgpack.packb({"v": TREE_VERSION, "nodes": wire}, use_bin_type=True)


def wire_nodes(data: bytes, what: str) -> list[dict[str, Any]]:
    """A tree's nodes as decoded, each a dict whose fields are NOT checked: for readers that
    look at a few fields of many nodes and check those themselves (a re-backup's parent
    snapshot). Anything else uses :func:`decode_tree`."""
    try:
        body = msgpack.unpackb(data, raw=False)
        version, nodes = body.get("v"), body["nodes"]
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
        raise errors.IntegrityError(f"{what}: tree is malformed") from None
    if version != TREE_VERSION:
        raise errors.IntegrityError(f"{what}: unsupported tree version {version!r}")
    if type(nodes) is not list or not all(type(d) is dict for d in nodes):
        raise errors.IntegrityError(f"{what}: tree is malformed")
    return nodes


def decode_tree(data: bytes, what: str) -> list[Node]:
    try:
        nodes = [Node.from_wire(d) for d in wire_nodes(data, what)]  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise errors.IntegrityError(f"{what}: tree is malformed") from None
    problem = unsafe_names(nodes)
    if problem is not None:
        raise errors.UnsafeTree(f"{what}: {problem}")
    return nodes
