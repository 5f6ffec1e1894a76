"""The blob index: where every blob lives (pack, offset, length), so a lookup needs no scan.

In memory the index is a set of numpy arrays sorted by the first 8 bytes of the blob id, plus
a small dict of blobs added since the last merge. That costs about 57 bytes per blob: some
570 MB at 10 million blobs (about 10 TB of 1 MiB chunks), against several GB for a dict of
Python objects. On storage it is a set of encrypted ``index/<id>`` files, each listing some packs
and their blobs; backups add files, prune rewrites them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from kubekeep import errors
from kubekeep.engine.pack import BlobEntry

_ROW = np.dtype([("pack", "<u4"), ("offset", "<u4"), ("length", "<u4"), ("raw", "<u4"), ("type", "u1")])
#: blobs added since the last merge are a dict of Python objects (~400 bytes each, against 57 in
#: the arrays): merged into the arrays once they are this many, or 1/64 of the arrays if more
#: (each merge sorts the whole index; a fixed 8,192 would sort a 10-million-blob index every
#: 8 GB backed up)
_MERGE_MIN = 8_192
_MERGE_MAX = 100_000
#: the version of the index file body
INDEX_VERSION = 1

#: a blob's row in an index file, ``[type, id, offset, length, raw length]``: as msgpack decoded
#: it, of unchecked element types (hence Any)
BlobRow = Sequence[Any]


class IndexBody(TypedDict):
    """An index file's body (sealed by ``objects.seal``): ``packs`` is ``[[pack id, [row, ...]], ...]``."""

    v: int
    packs: list[list[object]]


@dataclass(frozen=True, slots=True)
class Location:
    pack_id: bytes
    type: int
    offset: int
    length: int
    raw_length: int


def _key(blob_id: bytes) -> int:
    return int.from_bytes(blob_id[:8], "big")


class Index:
    """Thread-safe map from blob id to its location."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pack_ids: list[bytes] = []
        self._pack_no: dict[bytes, int] = {}
        # (keys, ids, rows) swapped as one tuple so lock-free readers never see a torn update
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] = (
            np.empty(0, np.uint64),
            np.empty((0, 32), np.uint8),
            np.empty(0, _ROW),
        )
        self._pending: dict[bytes, tuple[int, int, int, int, int]] = {}
        self._pending_list: list[tuple[bytes, tuple[int, int, int, int, int]]] = []

    # -- building -------------------------------------------------------------------------
    def _pack_number(self, pack_id: bytes) -> int:
        no = self._pack_no.get(pack_id)
        if no is None:
            no = self._pack_no[pack_id] = len(self._pack_ids)
            self._pack_ids.append(pack_id)
        return no

    def add_pack(self, pack_id: bytes, entries: Iterable[BlobEntry]) -> None:
        with self._lock:
            no = self._pack_number(pack_id)
            for e in entries:
                row = (no, e.offset, e.length, e.raw_length, e.type)
                self._pending.setdefault(e.id, row)
                self._pending_list.append((e.id, row))
            if len(self._pending_list) >= min(_MERGE_MAX, max(_MERGE_MIN, len(self._arrays[0]) // 64)):
                self._merge()

    def add_bulk(self, packs: Iterable[tuple[bytes, Iterable[BlobRow]]]) -> None:
        """Add many packs at once (index loading): ``(pack_id, [[type, id, off, len, raw], ...])``."""
        ids: list[bytes] = []
        rows: list[tuple[int, int, int, int, int]] = []
        with self._lock:
            for pack_id, blobs in packs:
                no = self._pack_number(pack_id)
                for t, i, o, n, r in blobs:
                    ids.append(i)
                    rows.append((no, o, n, r, t))
            self._merge_arrays(ids, rows)

    def _merge(self) -> None:
        ids = [i for i, _ in self._pending_list]
        rows = [r for _, r in self._pending_list]
        self._merge_arrays(ids, rows)
        self._pending.clear()
        self._pending_list.clear()

    def _merge_arrays(self, ids: list[bytes], rows: list[tuple[int, int, int, int, int]]) -> None:
        if not ids:
            return
        new_ids = np.frombuffer(b"".join(ids), np.uint8).reshape(-1, 32)
        new_keys = new_ids[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        new_rows = np.array(rows, _ROW)
        old_keys, old_ids, old_rows = self._arrays
        keys = np.concatenate([old_keys, new_keys])
        order = np.argsort(keys, kind="stable")
        self._arrays = (
            keys[order],
            np.concatenate([old_ids, new_ids])[order],
            np.concatenate([old_rows, new_rows])[order],
        )

    # -- lookups --------------------------------------------------------------------------
    def _find_row(self, blob_id: bytes) -> tuple[int, int, int, int, int] | None:
        row = self._pending.get(blob_id)
        if row is not None:
            return row
        keys, ids, rows = self._arrays
        if not len(keys):
            return None
        key = _key(blob_id)
        i = int(np.searchsorted(keys, np.uint64(key), side="left"))
        n = len(keys)
        while i < n and int(keys[i]) == key:
            if ids[i].tobytes() == blob_id:
                r = rows[i]
                return (int(r["pack"]), int(r["offset"]), int(r["length"]), int(r["raw"]), int(r["type"]))
            i += 1
        return None

    def _search(self, blob_ids: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One binary search for all ``blob_ids`` in the merged arrays: ``(hit, positions, rows)``.
        ``hit[i]`` says that row ``positions[i]`` of ``rows`` is id i's; misses are pending blobs,
        ids sharing their 8-byte key with an earlier one, and absent ids. ``rows`` is the array
        searched, taken with the keys in one read, so a concurrent merge cannot tear the two."""
        keys, ids, rows = self._arrays
        hit = np.zeros(len(blob_ids), bool)
        pos = np.zeros(len(blob_ids), np.intp)
        if blob_ids and len(keys):
            want = np.frombuffer(b"".join(blob_ids), np.uint8).reshape(-1, 32)
            want_keys = want[:, :8].copy().view(">u8").ravel().astype(np.uint64)
            pos = np.searchsorted(keys, want_keys, side="left")
            inside = pos < len(keys)
            hit[inside] = (ids[pos[inside]] == want[inside]).all(axis=1)
        return hit, pos, rows

    def contains_all(self, blob_ids: list[bytes]) -> np.ndarray:
        """Vectorised membership: a bool array, one per id (one binary search for all of them)."""
        found, _, _ = self._search(blob_ids)
        for i in np.flatnonzero(~found):  # pending blobs, and ids sharing an 8-byte prefix
            found[i] = self._find_row(blob_ids[i]) is not None
        return found

    def lookup_many(self, blob_ids: list[bytes]) -> list[Location | None]:
        """:meth:`lookup` for many ids with one vectorised search (a restore's run of blobs)."""
        out: list[Location | None] = [None] * len(blob_ids)
        hit, pos, rows = self._search(blob_ids)
        found = np.flatnonzero(hit)
        if len(found):
            r = rows[pos[found]]
            pack_ids = self._pack_ids
            for i, pack, off, length, raw, typ in zip(
                found.tolist(),
                r["pack"].tolist(),
                r["offset"].tolist(),
                r["length"].tolist(),
                r["raw"].tolist(),
                r["type"].tolist(),
                strict=True,
            ):
                out[i] = Location(pack_ids[pack], typ, off, length, raw)
        for i in np.flatnonzero(~hit).tolist():  # pending blobs, and ids sharing an 8-byte prefix
            out[i] = self.lookup(blob_ids[i])
        return out

    def __contains__(self, blob_id: bytes) -> bool:
        return self._find_row(blob_id) is not None

    def lookup(self, blob_id: bytes) -> Location | None:
        row = self._find_row(blob_id)
        if row is None:
            return None
        return Location(self._pack_ids[row[0]], row[4], row[1], row[2], row[3])

    def __len__(self) -> int:
        return len(self._arrays[0]) + len(self._pending_list)

    # -- iteration (check, prune, copy) ----------------------------------------------------
    def pack_ids(self) -> set[bytes]:
        with self._lock:
            used = set(np.unique(self._arrays[2]["pack"]).tolist()) | {r[0] for _, r in self._pending_list}
            return {self._pack_ids[i] for i in used}

    def entries(self) -> Iterator[tuple[bytes, Location]]:
        """Every (blob id, location) row, duplicates included."""
        with self._lock:
            self._merge()
        pack_ids = self._pack_ids
        _, ids, rows = self._arrays
        for i in range(len(ids)):
            r = rows[i]
            yield (
                ids[i].tobytes(),
                Location(pack_ids[int(r["pack"])], int(r["type"]), int(r["offset"]), int(r["length"]), int(r["raw"])),
            )

    def by_pack(self) -> dict[bytes, list[BlobEntry]]:
        """Blobs grouped by pack, each pack's blobs sorted by offset."""
        out: dict[bytes, list[BlobEntry]] = {}
        for blob_id, loc in self.entries():
            out.setdefault(loc.pack_id, []).append(BlobEntry(loc.type, blob_id, loc.offset, loc.length, loc.raw_length))
        for entries in out.values():
            entries.sort(key=lambda e: e.offset)
        return out


def index_body(packs: Iterable[tuple[bytes, Iterable[BlobEntry]]]) -> IndexBody:
    """The body of an index file listing ``packs`` (sealed by ``objects.seal``)."""
    return {
        "v": INDEX_VERSION,
        "packs": [[pid, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in ents]] for pid, ents in packs],
    }


def decode_index_body(body: Any, what: str) -> list[tuple[bytes, list[BlobRow]]]:
    """Validate a decoded index file (msgpack of any shape, hence Any) and return its
    ``(pack_id, blobs)`` rows."""
    try:
        if body.get("v") != INDEX_VERSION:
            raise errors.IntegrityError(f"{what}: unsupported index version {body.get('v')!r}")
        return [(bytes(pid), blobs) for pid, blobs in body["packs"]]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise errors.IntegrityError(f"{what}: index file is malformed") from None
