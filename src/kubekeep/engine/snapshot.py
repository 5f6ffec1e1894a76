"""Snapshot metadata: what was backed up, when, from where, and the root tree."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

#: the version of the snapshot file body
SNAPSHOT_VERSION = 1


class SnapshotSource(TypedDict, total=False):
    """What a snapshot was taken from (``entries.SourceInfo``). Every writer writes all four;
    a snapshot file read back is not checked for them, hence none is required."""

    uri: str
    kind: str
    host: str
    extra: dict[str, Any]


@dataclass
class Snapshot:
    time: str  # RFC 3339, UTC
    tree: str  # root tree blob id, hex
    source: SnapshotSource
    hostname: str = ""
    username: str = ""
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    program_version: str = ""
    original: str | None = None  # id in the repository this was copied from
    #: a key naming the chain this snapshot starts (e.g. an etcd full snapshot), and the chain an
    #: attached snapshot extends (e.g. an etcd delta segment): retention keeps and removes an
    #: attached snapshot with the one starting its chain, never by itself (docs/format.md)
    chain: str | None = None
    extends: str | None = None
    id: str = ""  # set on load: the storage name (hash of the stored file)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def datetime(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.time.replace("Z", "+00:00"))

    @property
    def kind(self) -> str:
        return str(self.source.get("kind", ""))

    @property
    def uri(self) -> str:
        return str(self.source.get("uri", ""))

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("id")
        for optional in ("chain", "extends"):  # absent unless set: older bodies stay as they were
            if d[optional] is None:
                del d[optional]
        d["v"] = SNAPSHOT_VERSION
        return d

    @classmethod
    def from_wire(cls, d: dict[str, Any], snap_id: str) -> Snapshot:
        d = dict(d)
        d.pop("v", None)
        known = set(cls.__dataclass_fields__)
        snap = cls(**{k: v for k, v in d.items() if k in known and k != "id"})
        for optional in ("chain", "extends"):
            if not isinstance(getattr(snap, optional), str | None):
                setattr(snap, optional, None)  # a hostile or damaged body: not a chain key
        snap.id = snap_id
        return snap

    def to_json(self) -> dict[str, Any]:
        d = self.to_wire()
        d.pop("v")
        d["id"] = self.id
        d["short_id"] = self.short_id
        return d


@dataclass(frozen=True)
class DamagedSnapshot:
    """A snapshot file that failed verification: known only by its storage name."""

    id: str
    reason: str

    @property
    def short_id(self) -> str:
        return self.id[:8]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
