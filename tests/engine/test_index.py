"""The in-memory blob index: adds, lookups, duplicates, merges, and its file format."""

from __future__ import annotations

import os
import threading
import time

import pytest

from kubekeep import errors
from kubekeep.engine import index as index_mod
from kubekeep.engine.index import Index, decode_index_body, index_body
from kubekeep.engine.pack import DATA, TREE, BlobEntry


def _pack(n: int, blob_type: int = DATA) -> tuple[bytes, list[BlobEntry]]:
    pack_id = os.urandom(32)
    return pack_id, [BlobEntry(blob_type, os.urandom(32), i * 100, 100, 90 + i) for i in range(n)]


def test_many_entries_lookup_and_merge() -> None:
    idx = Index()
    packs = [_pack(100) for _ in range(1500)]  # 150,000 blobs through add_pack (merges)
    bulk = [_pack(100) for _ in range(1000)]  # 100,000 more through add_bulk
    started = time.monotonic()
    for pack_id, entries in packs:
        idx.add_pack(pack_id, entries)
    idx.add_bulk((pid, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in ents]) for pid, ents in bulk)
    assert len(idx) == 250_000
    for pack_id, entries in packs[::7] + bulk[::7]:
        for e in entries[::3]:
            loc = idx.lookup(e.id)
            assert loc is not None
            assert (loc.pack_id, loc.type, loc.offset, loc.length, loc.raw_length) == (
                pack_id,
                e.type,
                e.offset,
                e.length,
                e.raw_length,
            )
    for _ in range(2000):
        missing = os.urandom(32)
        assert idx.lookup(missing) is None and missing not in idx
    assert time.monotonic() - started < 20  # typically ~2 s
    assert len(idx.pack_ids()) == 2500
    by_pack = idx.by_pack()
    assert len(by_pack) == 2500
    pid, ents = packs[42]
    assert [e.id for e in by_pack[pid]] == [e.id for e in ents]


def test_empty_index_and_pending_lookups() -> None:
    idx = Index()
    assert idx.lookup(os.urandom(32)) is None and len(idx) == 0
    pack_id, entries = _pack(3, TREE)
    idx.add_pack(pack_id, entries)  # below the merge threshold: still pending
    assert all(e.id in idx for e in entries)
    assert idx.lookup(entries[1].id).type == TREE  # type: ignore[union-attr]


def test_duplicates_keep_the_first_location_and_are_all_listed() -> None:
    idx = Index()
    blob = os.urandom(32)
    first, second = os.urandom(32), os.urandom(32)
    idx.add_pack(first, [BlobEntry(DATA, blob, 0, 50, 40)])
    idx.add_pack(second, [BlobEntry(DATA, blob, 500, 50, 40)])
    assert idx.lookup(blob).pack_id == first  # type: ignore[union-attr]
    rows = [(b, loc.pack_id) for b, loc in idx.entries() if b == blob]
    assert sorted(rows) == sorted([(blob, first), (blob, second)])
    assert idx.lookup(blob).pack_id == first  # type: ignore[union-attr]  # also after the merge
    idx.add_bulk([(os.urandom(32), [[DATA, blob, 7, 50, 40]])])
    assert idx.lookup(blob).pack_id == first  # type: ignore[union-attr]


def test_ids_sharing_their_first_eight_bytes() -> None:
    idx = Index()
    prefix = os.urandom(8)
    ids = [prefix + os.urandom(24) for _ in range(20)]
    pack_id = os.urandom(32)
    idx.add_bulk([(pack_id, [[DATA, b, i * 10, 10, 5] for i, b in enumerate(ids)])])
    idx.add_bulk([_row_pack() for _ in range(50)])
    for i, b in enumerate(ids):
        assert idx.lookup(b).offset == i * 10  # type: ignore[union-attr]
    assert idx.lookup(prefix + os.urandom(24)) is None


def _row_pack() -> tuple[bytes, list[list[object]]]:
    pid, ents = _pack(10)
    return pid, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in ents]


def test_lookups_during_concurrent_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_mod, "_MERGE_MIN", 500)  # merge often while readers look up
    monkeypatch.setattr(index_mod, "_MERGE_MAX", 500)
    idx = Index()
    added: list[bytes] = []
    stop = threading.Event()
    misses: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            for b in list(added[-200:]):
                if b not in idx:
                    misses.append(b)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(200):
            pid, ents = _pack(50)
            idx.add_pack(pid, ents)
            added.extend(e.id for e in ents)
    finally:
        stop.set()
        t.join()
    assert misses == []
    assert all(b in idx for b in added)


def test_added_blobs_are_merged_into_the_arrays_early_in_a_small_index() -> None:
    idx = Index()
    added: list[bytes] = []
    for _ in range(90):
        pid, ents = _pack(100)
        idx.add_pack(pid, ents)
        added.extend(e.id for e in ents)
    # 9,000 blobs: merged at 8,192 (not at 100,000), so fewer than that remain as Python objects
    assert len(idx._pending_list) < index_mod._MERGE_MIN
    assert all(b in idx for b in added)


def test_index_file_body_roundtrip_and_validation() -> None:
    pid, ents = _pack(5)
    body = index_body([(pid, ents)])
    rows = decode_index_body(body, "index/x")
    assert rows[0][0] == pid
    assert [BlobEntry(*r) for r in rows[0][1]] == ents  # type: ignore[misc]
    with pytest.raises(errors.IntegrityError, match="unsupported index version"):
        decode_index_body({"v": 2, "packs": []}, "index/x")
    with pytest.raises(errors.IntegrityError, match="malformed"):
        decode_index_body({"v": 1, "packs": 5}, "index/x")


def test_lookup_many_agrees_with_lookup() -> None:
    idx = Index()
    prefix = os.urandom(8)
    twins = [prefix + os.urandom(24) for _ in range(5)]  # share their 8-byte key
    idx.add_bulk([(os.urandom(32), [[DATA, b, i * 10, 10, 5] for i, b in enumerate(twins)])])
    packs = [_pack(50) for _ in range(20)]
    idx.add_bulk((pid, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in ents]) for pid, ents in packs)
    pending_id, pending = _pack(3, TREE)
    idx.add_pack(pending_id, pending)  # not merged yet
    want = (
        [e.id for _, ents in packs for e in ents[::4]]
        + twins[::-1]
        + [e.id for e in pending]
        + [os.urandom(32), prefix + os.urandom(24)]
    )
    assert idx.lookup_many(want) == [idx.lookup(b) for b in want]
    assert idx.lookup_many(want)[-2:] == [None, None]
    assert Index().lookup_many(want[:3]) == [None, None, None] and idx.lookup_many([]) == []
