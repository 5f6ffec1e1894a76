"""The delta segment file: etcd watch events in revision order, with the time each arrived.

Layout (docs/format.md, "etcd delta segments"), all integers big-endian::

    b"KKETCDS1"                      magic and version
    repeated:
        int64  received_ns           Unix ns the follower received the event; 0: unknown
                                     (caught up from etcd's history after a follow outage)
        uint32 length
        bytes  event                 mvccpb.Event protobuf (type, kv; prev_kv never stored)

The engine stores the file like any other (chunked, compressed, encrypted). A segment read
back is still checked here: its revisions must rise, lie in the range the snapshot metadata
names, and each event must be a put or delete of a non-empty key at its revision.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from kubekeep.errors import IntegrityError

from ._proto import kv_pb2

MAGIC = b"KKETCDS1"
_RECORD = struct.Struct(">qI")
#: etcd refuses requests over --max-request-bytes (1.5 MiB by default, at most a few MiB in
#: practice); an event far beyond that is damage, not data
MAX_EVENT = 64 * 1024 * 1024
PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE


@dataclass(frozen=True, slots=True)
class Record:
    received_ns: int  # 0: unknown (caught up after an outage)
    event: kv_pb2.Event

    @property
    def revision(self) -> int:
        return int(self.event.kv.mod_revision)


def encode(records: Iterable[Record]) -> bytes:
    parts = [MAGIC]
    for rec in records:
        ev = kv_pb2.Event(type=rec.event.type, kv=rec.event.kv)  # without prev_kv
        body = ev.SerializeToString()
        parts.append(_RECORD.pack(rec.received_ns, len(body)))
        parts.append(body)
    return b"".join(parts)


def decode(data: bytes, *, after: int, upto: int, what: str = "delta segment") -> Iterator[Record]:
    """Yield the records of ``data``, checking each; revisions must lie in ``(after, upto]``."""
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise IntegrityError(f"{what} does not start with {MAGIC.decode()}: not a kubekeep etcd delta segment")
    pos = len(MAGIC)
    last = after
    while pos < len(view):
        if pos + _RECORD.size > len(view):
            raise IntegrityError(f"{what} is cut short at byte {pos}")
        received_ns, length = _RECORD.unpack_from(view, pos)
        pos += _RECORD.size
        if length > MAX_EVENT or pos + length > len(view):
            raise IntegrityError(f"{what} has a record of {length} bytes at byte {pos} that does not fit")
        try:
            event = kv_pb2.Event.FromString(bytes(view[pos : pos + length]))
        except DecodeError as exc:
            raise IntegrityError(f"{what} has an undecodable event at byte {pos}: {exc}") from None
        pos += length
        rev = event.kv.mod_revision
        if event.type not in (PUT, DELETE) or not event.kv.key:
            raise IntegrityError(f"{what} has an event that is neither a put nor a delete of a key at revision {rev}")
        if rev < last or rev <= after or rev > upto:
            raise IntegrityError(f"{what} has revision {rev} out of order or outside its range {after + 1}..{upto}")
        if received_ns < 0:
            raise IntegrityError(f"{what} has a negative time at revision {rev}")
        last = rev
        yield Record(received_ns, event)
