"""The importer of one etcd delta segment: the file ``etcd/delta.kkes`` and its metadata.

``kubekeep etcd follow`` encodes the watch events it received (kubekeep.etcd.segment) and hands
them here; the engine stores them as a snapshot of kind ``etcd-delta`` like any other, so
segments are chunked, compressed, encrypted, checked and copied like every snapshot.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import IO, Any, TypedDict, cast

from kubekeep.engine.entries import Entry, EntryType, Importer, SnapshotKind, SourceInfo

#: where a delta segment's file lives in its snapshot
DELTA_DIR = "etcd"
DELTA_PATH = "etcd/delta.kkes"
#: the version of the ``etcd_delta`` metadata (docs/format.md)
DELTA_FORMAT = 1


class DeltaMeta(TypedDict):
    """``Snapshot.metadata["etcd_delta"]`` of a delta segment (docs/format.md)."""

    format: int
    cluster_id: str
    after_revision: int  # the segment holds the events of the revisions after this one ...
    upto_revision: int  # ... up to and including this one: all of them
    since_ns: int  # the follower knew the store was at after_revision at this instant (Unix ns)
    until_ns: int  # and at upto_revision at this one
    events: int
    #: a follow outage the segment closes: events caught up from etcd's history have no time
    outage_from_ns: int | None
    outage_until_ns: int | None
    endpoint: str


class DeltaImporter(Importer):
    """One encoded segment (``data``) as a snapshot of the cluster ``meta`` names."""

    scheme = "etcd"

    def __init__(self, uri: str, data: bytes, meta: DeltaMeta) -> None:
        self.uri = uri
        self.data = data
        self.meta = meta

    def source(self) -> SourceInfo:
        return SourceInfo(
            uri=self.uri,
            kind=SnapshotKind.ETCD_DELTA.value,
            host=self.meta["cluster_id"],
            extra={"endpoint": self.meta["endpoint"], "cluster_id": self.meta["cluster_id"]},
        )

    def entries(self) -> Iterator[Entry]:
        now = time.time_ns()
        yield Entry(path=DELTA_DIR, type=EntryType.DIR, mode=0o700, mtime_ns=now)
        yield Entry(
            path=DELTA_PATH,
            type=EntryType.FILE,
            mode=0o600,
            mtime_ns=now,
            size=len(self.data),
            opener=lambda: cast(IO[bytes], io.BytesIO(self.data)),
        )

    def metadata(self) -> dict[str, Any]:
        return {"etcd_delta": dict(self.meta)}
