"""Read an etcd snapshot's metadata straight from its bbolt file, without etcd.

An etcd v3 snapshot (``etcdctl snapshot save``, ``Maintenance.Snapshot``) is a bbolt database
followed by a 32-byte SHA-256 of that database. bbolt layout, as far as we need it (all
integers little-endian; etcd's own keys and values are big-endian where numeric):

* Page header (16 bytes): ``id u64, flags u16, count u16, overflow u32``; a page spans
  ``(overflow + 1) * page_size`` bytes. Flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist.
* Pages 0 and 1 are meta pages; the meta (after the header) is ``magic u32 (0xED0CDAED),
  version u32 (2), page_size u32, flags u32, root bucket {root pgid u64, sequence u64},
  freelist pgid u64, high-water pgid u64, txid u64, checksum u64`` where the checksum is
  FNV-1a/64 of the 56 bytes before it. The valid meta with the higher txid is current.
* Branch element (16 bytes): ``pos u32, ksize u32, pgid u64``; leaf element (16 bytes):
  ``flags u32, pos u32, ksize u32, vsize u32`` with the key at ``element + pos`` and the value
  right after it. Leaf flag 0x01 marks a nested bucket whose value is a bucket header
  ``root pgid u64, sequence u64``; root pgid 0 means an inline bucket: its leaf page follows
  the header inside the value.

etcd buckets read here: ``key`` (revision -> mvccpb.KeyValue; keys are 8-byte main revision,
``_``, 8-byte sub revision, plus ``t`` for a tombstone), ``meta`` (consistent_index, term,
compaction revisions, storageVersion), ``cluster`` (clusterVersion) and ``members``
(hex member id -> JSON).

Pages are read one at a time by offset, so memory stays bounded by the tree height and the
set of distinct user keys (needed to count live keys), not by the file size. The ``key``
bucket, which is most of the file, is read level by level with each level's pages in page-id
order, so its leaves are read in file order: sequential I/O, and at most one pass over each
chunk when the "file" is a view of a chunked repository object.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from kubekeep.errors import IntegrityError, UsageError

from ._proto import kv_pb2

MAGIC = 0xED0CDAED
BOLT_VERSION = 2
HASH_SIZE = 32

_BRANCH = 0x01
_LEAF = 0x02
_META = 0x04
_BUCKET_LEAF = 0x01

_PAGE_HDR = struct.Struct("<QHHI")
_META_FMT = struct.Struct("<IIIIQQQQQQ")
_BRANCH_ELEM = struct.Struct("<IIQ")
_LEAF_ELEM = struct.Struct("<IIII")
_BUCKET_HDR = struct.Struct("<QQ")
_U64BE = struct.Struct(">Q")

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1
_MAX_DEPTH = 64


def _fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


@dataclass(slots=True)
class SnapshotInfo:
    """What a snapshot file says about itself. ``None`` means "not recorded in this file"."""

    size: int  # bytes in the file
    db_size: int  # bytes of bbolt data (size minus the hash trailer, if any)
    page_size: int
    txid: int
    has_hash: bool  # the file ends with a SHA-256 trailer (size % 512 == 32)
    sha256: str | None  # hex SHA-256 of the bbolt data (None if not computed)
    hash_ok: bool | None  # trailer matches the data; None without a trailer/check
    revision: int  # newest revision (max of key revisions and compaction)
    compact_revision: int | None  # finished compaction revision
    revisions: int  # entries in the `key` bucket (one per key revision)
    live_keys: int  # user keys whose newest revision is not a tombstone
    deleted_keys: int  # user keys whose newest revision is a tombstone
    consistent_index: int | None
    term: int | None
    cluster_version: str | None
    storage_version: str | None
    cluster_id: str | None
    members: list[dict[str, Any]] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Reader:
    """Page access over a seekable binary file."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self.fh = fh
        self.size = size
        self.page_size = 0
        self.high_water = 0

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise IntegrityError(
                f"etcd snapshot is truncated or corrupt: read of {length} bytes at offset "
                f"{offset} is past the end of the {self.size}-byte database"
            )
        self.fh.seek(offset)
        data = self.fh.read(length)
        if len(data) != length:
            raise IntegrityError(f"etcd snapshot: short read at offset {offset}")
        return data

    def page(self, pgid: int) -> tuple[int, int, memoryview]:
        """Return ``(flags, count, page bytes)`` of page ``pgid``, overflow pages included."""
        if pgid < 2 or pgid >= self.high_water:
            raise IntegrityError(
                f"etcd snapshot is corrupt: page id {pgid} outside the data pages (2..{self.high_water - 1})"
            )
        ps = self.page_size
        head = self.read_at(pgid * ps, ps)
        pid, flags, count, overflow = _PAGE_HDR.unpack_from(head)
        if pid != pgid:
            raise IntegrityError(f"etcd snapshot is corrupt: page {pgid} is labelled {pid}")
        if overflow:
            if pgid + overflow >= self.high_water:
                raise IntegrityError(f"etcd snapshot is corrupt: page {pgid} overflows the file")
            head += self.read_at((pgid + 1) * ps, overflow * ps)
        return flags, count, memoryview(head)


def _read_meta(buf: bytes, offset: int) -> tuple[int, ...] | None:
    if len(buf) < offset + 16 + _META_FMT.size:
        return None
    _pid, flags, _count, _overflow = _PAGE_HDR.unpack_from(buf, offset)
    meta = _META_FMT.unpack_from(buf, offset + 16)
    magic, version = meta[0], meta[1]
    if not flags & _META or magic != MAGIC or version != BOLT_VERSION:
        return None
    body = bytes(buf[offset + 16 : offset + 16 + _META_FMT.size - 8])
    if _fnv1a64(body) != meta[9]:
        return None
    return meta


#: bytes at the start of a bbolt file that hold the first meta page's fields
META_HEAD = _PAGE_HDR.size + _META_FMT.size


def page_size_of(head: bytes | memoryview) -> int | None:
    """The page size recorded in the first meta page of a bbolt file whose first
    ``META_HEAD`` bytes are ``head``; None when they are not a valid bbolt meta page (magic,
    version, checksum)."""
    meta = _read_meta(bytes(head[:META_HEAD]), 0)
    return None if meta is None else int(meta[2])


def _leaf_items(page: memoryview, count: int, base: int = 0) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield ``(flags, key, value)`` of a leaf page starting at ``base`` inside ``page``."""
    elems = page[base + 16 : base + 16 + count * 16]
    if len(elems) != count * 16:
        raise IntegrityError("etcd snapshot is corrupt: leaf element table runs off its page")
    off = base + 16
    for flags, pos, ksize, vsize in _LEAF_ELEM.iter_unpack(elems):
        k0 = off + pos
        v0 = k0 + ksize
        if v0 + vsize > len(page):
            raise IntegrityError("etcd snapshot is corrupt: leaf element runs off its page")
        yield flags, bytes(page[k0:v0]), bytes(page[v0 : v0 + vsize])
        off += 16


def _iter_tree(r: _Reader, pgid: int, depth: int = 0) -> Iterator[tuple[int, bytes, bytes]]:
    if depth > _MAX_DEPTH:
        raise IntegrityError("etcd snapshot is corrupt: bucket tree deeper than 64 levels")
    flags, count, page = r.page(pgid)
    if flags & _LEAF:
        yield from _leaf_items(page, count)
    elif flags & _BRANCH:
        elems = page[16 : 16 + count * 16]
        children = [child for _pos, _ks, child in _BRANCH_ELEM.iter_unpack(elems)]
        for child in children:
            yield from _iter_tree(r, child, depth + 1)
    else:
        raise IntegrityError(f"etcd snapshot is corrupt: page {pgid} has flags {flags:#x}")


def _iter_tree_file_order(r: _Reader, root: int) -> Iterator[tuple[int, bytes, bytes]]:
    """Like :func:`_iter_tree`, but level by level with pages in page-id order: the items of
    one page stay in key order, the pages come in file order."""
    level = [root]
    for _depth in range(_MAX_DEPTH + 1):
        if not level:
            return
        below: list[int] = []
        for pgid in sorted(level):
            flags, count, page = r.page(pgid)
            if flags & _LEAF:
                yield from _leaf_items(page, count)
            elif flags & _BRANCH:
                elems = page[16 : 16 + count * 16]
                below.extend(child for _pos, _ks, child in _BRANCH_ELEM.iter_unpack(elems))
            else:
                raise IntegrityError(f"etcd snapshot is corrupt: page {pgid} has flags {flags:#x}")
        level = below
    raise IntegrityError("etcd snapshot is corrupt: bucket tree deeper than 64 levels")


def _iter_bucket(r: _Reader, value: bytes, *, file_order: bool = False) -> Iterator[tuple[int, bytes, bytes]]:
    """Iterate a nested bucket given its value in the parent (header + optional inline page).

    ``file_order`` reads the pages in file order instead of key order (see
    :func:`_iter_tree_file_order`).
    """
    if len(value) < _BUCKET_HDR.size:
        raise IntegrityError("etcd snapshot is corrupt: bucket header too short")
    root, _seq = _BUCKET_HDR.unpack_from(value)
    if root:
        yield from (_iter_tree_file_order if file_order else _iter_tree)(r, root)
        return
    inline = memoryview(value)
    if len(value) < _BUCKET_HDR.size + 16:
        return
    _pid, flags, count, _ovf = _PAGE_HDR.unpack_from(inline, _BUCKET_HDR.size)
    if not flags & _LEAF:
        raise IntegrityError("etcd snapshot is corrupt: inline bucket is not a leaf page")
    yield from _leaf_items(inline, count, base=_BUCKET_HDR.size)


def _main_rev(key: bytes) -> int:
    return _U64BE.unpack_from(key)[0] if len(key) >= 8 else 0


def _open(source: str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]) -> tuple[IO[bytes], bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        try:
            return open(source, "rb"), True
        except OSError as exc:
            raise UsageError(f"cannot open etcd snapshot {os.fspath(source)}: {exc.strerror}") from exc
    if not (hasattr(source, "seek") and source.seekable()):
        raise UsageError("read_snapshot_info needs a path, bytes or a seekable binary file")
    return source, False


def _file_size(fh: IO[bytes]) -> int:
    fh.seek(0, os.SEEK_END)
    return fh.tell()


def _sha256_prefix(fh: IO[bytes], length: int) -> bytes:
    h = hashlib.sha256()
    fh.seek(0)
    left = length
    while left:
        block = fh.read(min(left, 1 << 20))
        if not block:
            raise IntegrityError("etcd snapshot: file shrank while being hashed")
        h.update(block)
        left -= len(block)
    return h.digest()


def read_snapshot_info(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes],
    *,
    check_hash: bool = True,
) -> SnapshotInfo:
    """Parse an etcd snapshot (path, bytes or seekable binary file) and report its metadata.

    With ``check_hash`` the SHA-256 trailer is verified and a mismatch raises
    :class:`IntegrityError`; without it, the hash is not computed (``sha256``/``hash_ok`` None).
    A file that is not a bbolt database, or whose pages are inconsistent, raises
    :class:`IntegrityError` too.
    """
    fh, owned = _open(source)
    try:
        return _read_info(fh, check_hash)
    finally:
        if owned:
            fh.close()


def _read_info(fh: IO[bytes], check_hash: bool) -> SnapshotInfo:
    size = _file_size(fh)
    has_hash = size % 512 == HASH_SIZE and size > HASH_SIZE
    db_size = size - HASH_SIZE if has_hash else size
    r = _Reader(fh, db_size)
    if db_size < 1024:
        raise IntegrityError(f"not an etcd snapshot: {size} bytes is too small for a bbolt database")

    first = r.read_at(0, min(db_size, 4096))
    meta0 = _read_meta(first, 0)
    candidates = [meta0[2]] if meta0 else []
    candidates += [ps for ps in (4096, 8192, 16384, 32768, 65536, 1024, 2048) if ps not in candidates]
    meta1 = None
    for ps in candidates:
        if 2 * ps <= db_size:
            meta1 = _read_meta(r.read_at(ps, min(ps, 4096)), 0)
            if meta1 and meta1[2] == ps:
                break
            meta1 = None
    metas = [m for m in (meta0, meta1) if m is not None]
    if not metas:
        raise IntegrityError("not an etcd snapshot: no valid bbolt meta page (bad magic or checksum)")
    meta = max(metas, key=lambda m: m[8])
    _magic, _ver, page_size, _flags, root_pgid, _seq, _freelist, high_water, txid, _sum = meta
    if page_size < 512 or page_size & (page_size - 1):
        raise IntegrityError(f"etcd snapshot is corrupt: implausible page size {page_size}")
    if high_water * page_size > db_size:
        raise IntegrityError(
            f"etcd snapshot is truncated: the database needs {high_water * page_size} bytes, the file holds {db_size}"
        )
    r.page_size = page_size
    r.high_water = high_water

    sha_hex: str | None = None
    hash_ok: bool | None = None
    if check_hash:
        digest = _sha256_prefix(fh, db_size)
        sha_hex = digest.hex()
        if has_hash:
            fh.seek(db_size)
            trailer = fh.read(HASH_SIZE)
            hash_ok = trailer == digest
            if not hash_ok:
                raise IntegrityError(
                    f"etcd snapshot SHA-256 mismatch: trailer says {bytes(trailer).hex()[:16]}..., "
                    f"data hashes to {sha_hex[:16]}..."
                )

    buckets: dict[str, bytes] = {}
    for flags, key, value in _iter_tree(r, root_pgid):
        if flags & _BUCKET_LEAF:
            buckets[key.decode("utf-8", "replace")] = value

    info = SnapshotInfo(
        size=size, db_size=db_size, page_size=page_size, txid=txid, has_hash=has_hash,
        sha256=sha_hex, hash_ok=hash_ok, revision=0, compact_revision=None, revisions=0,
        live_keys=0, deleted_keys=0, consistent_index=None, term=None, cluster_version=None,
        storage_version=None, cluster_id=None, buckets=sorted(buckets),
    )  # fmt: skip
    if "meta" in buckets:
        _read_meta_bucket(r, buckets["meta"], info)
    if "cluster" in buckets:
        for _f, key, value in _iter_bucket(r, buckets["cluster"]):
            if key == b"clusterVersion":
                info.cluster_version = value.decode("utf-8", "replace")
            elif key in (b"clusterID", b"cluster_id"):
                info.cluster_id = _id_text(value)
    if "members" in buckets:
        info.members = [_member(key, value) for _f, key, value in _iter_bucket(r, buckets["members"])]
    if "key" in buckets:
        _read_key_bucket(r, buckets["key"], info)
    if info.compact_revision and info.compact_revision > info.revision:
        info.revision = info.compact_revision
    return info


def _read_meta_bucket(r: _Reader, value: bytes, info: SnapshotInfo) -> None:
    for _f, key, val in _iter_bucket(r, value):
        if key == b"consistent_index" and len(val) == 8:
            info.consistent_index = _U64BE.unpack(val)[0]
        elif key == b"term" and len(val) == 8:
            info.term = _U64BE.unpack(val)[0]
        elif key == b"finishedCompactRev" and len(val) >= 8:
            info.compact_revision = _main_rev(val)
        elif key == b"storageVersion":
            info.storage_version = val.decode("utf-8", "replace")


def _id_text(value: bytes) -> str:
    if len(value) == 8:
        return f"{_U64BE.unpack(value)[0]:x}"
    return value.decode("utf-8", "replace")


def _member(key: bytes, value: bytes) -> dict[str, Any]:
    """One ``members`` bucket entry (key: hex id; value: etcd's Member JSON)."""
    try:
        doc = json.loads(value)
    except ValueError:
        doc = {}
    raw_id = doc.get("id", key.decode("ascii", "replace"))
    member_id = f"{raw_id:x}" if isinstance(raw_id, int) else str(raw_id)
    return {
        "id": member_id,
        "name": doc.get("name", ""),
        "peer_urls": list(doc.get("peerURLs") or []),
        "client_urls": list(doc.get("clientURLs") or []),
        "is_learner": bool(doc.get("isLearner", False)),
    }


def _user_key(value: bytes) -> bytes:
    """The user key of an mvccpb.KeyValue (field 1), read without decoding the whole message."""
    if len(value) >= 2 and value[0] == 0x0A:
        # Fast path: field 1, length-delimited, is always encoded first by etcd.
        length = 0
        shift = 0
        i = 1
        while i < len(value):
            b = value[i]
            length |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                end = i + length
                if end <= len(value):
                    return value[i:end]
                break
            shift += 7
    try:
        return kv_pb2.KeyValue.FromString(value).key
    except Exception as exc:
        raise IntegrityError(f"etcd snapshot is corrupt: undecodable key value ({exc})") from exc


def _read_key_bucket(r: _Reader, value: bytes, info: SnapshotInfo) -> None:
    """Count revisions and live/deleted user keys. Pages come in file order, so each user key
    keeps its newest revision seen so far, as ``(main << 64 | sub) << 1 | tombstone``."""
    latest: dict[bytes, int] = {}
    revisions = 0
    max_rev = 0
    for _f, rev_key, kv in _iter_bucket(r, value, file_order=True):
        revisions += 1
        main = _main_rev(rev_key)
        if main > max_rev:
            max_rev = main
        sub = _U64BE.unpack_from(rev_key, 9)[0] if len(rev_key) >= 17 else 0
        tombstone = len(rev_key) == 18 and rev_key[17] == 0x74  # 't'
        order = ((main << 64 | sub) << 1) | tombstone
        user_key = _user_key(kv)
        if latest.get(user_key, -1) < order:
            latest[user_key] = order
    deleted = sum(v & 1 for v in latest.values())
    info.revisions = revisions
    info.revision = max_rev
    info.live_keys = len(latest) - deleted
    info.deleted_keys = deleted
