"""Trees: one msgpack blob per directory, listing its nodes sorted by name.

A node is a directory (pointing at its subtree blob), a file (pointing at its data blobs in
order) or a symlink. Identical directories encode to identical bytes and so are stored once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from kubekeep import errors
from kubekeep.connectors.base import Entry, EntryType

DIR = "dir"
FILE = "file"
SYMLINK = "symlink"


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

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n": self.name, "t": self.type, "m": self.mode, "mt": self.mtime_ns}
        if self.uid:
            d["u"] = self.uid
        if self.gid:
            d["g"] = self.gid
        if self.type == FILE:
            d["s"] = self.size
            d["c"] = self.content
            if self.reuse_key is not None:
                d["rk"] = self.reuse_key
        elif self.type == DIR:
            d["st"] = self.subtree
        else:
            d["l"] = self.target
        if self.attrs:
            d["a"] = self.attrs
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Node:
        return cls(
            name=d["n"],
            type=d["t"],
            mode=d.get("m", 0o644),
            uid=d.get("u", 0),
            gid=d.get("g", 0),
            mtime_ns=d.get("mt", 0),
            size=d.get("s", 0),
            content=list(d.get("c", ())),
            subtree=d.get("st"),
            target=d.get("l", ""),
            attrs=d.get("a") or {},
            reuse_key=d.get("rk"),
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


def encode_tree(nodes: list[Node]) -> bytes:
    nodes = sorted(nodes, key=lambda n: n.name)
    return msgpack.packb({"v": 1, "nodes": [n.to_wire() for n in nodes]}, use_bin_type=True)


def decode_tree(data: bytes, what: str) -> list[Node]:
    try:
        body = msgpack.unpackb(data, raw=False)
        if body.get("v") != 1:
            raise errors.IntegrityError(f"{what}: unsupported tree version {body.get('v')!r}")
        return [Node.from_wire(d) for d in body["nodes"]]
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
        raise errors.IntegrityError(f"{what}: tree is malformed") from None
