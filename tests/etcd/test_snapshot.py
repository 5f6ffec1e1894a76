"""Maintenance.Snapshot streaming: byte format, hash verification, truncation, corruption."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from kubekeep.errors import IntegrityError
from kubekeep.etcd._proto import rpc_pb2, rpc_pb2_grpc
from kubekeep.etcd.boltmeta import read_snapshot_info
from kubekeep.etcd.snapshot import SnapshotStream

from .conftest import EXPECTED_LIVE, Loaded
from .etcdserver import CuttingProxy


def _responses(loaded: Loaded) -> tuple[Any, Any]:
    """A raw Snapshot call on a fresh client (the caller wraps its iterator)."""
    c = loaded.server.client()
    call = rpc_pb2_grpc.MaintenanceStub(c._chan()).Snapshot(rpc_pb2.SnapshotRequest())
    return c, call


def test_stream_is_etcdctl_format_and_verified(loaded: Loaded, tmp_path: Any) -> None:
    with loaded.server.client() as c:
        stream = c.snapshot()
        pieces = []
        while chunk := stream.read(100_000):
            pieces.append(chunk)
        data = b"".join(pieces)
        assert stream.complete
    db, trailer = data[:-32], data[-32:]
    assert len(data) % 512 == 32  # etcdctl/etcdutl's "has hash" rule
    assert stream.size == len(data) and stream.db_size == len(db)
    assert hashlib.sha256(db).digest() == trailer
    assert stream.sha256 == trailer.hex()
    assert stream.messages > 2  # really streamed, not one blob
    path = tmp_path / "snap.db"
    path.write_bytes(data)
    info = read_snapshot_info(path)
    assert info.hash_ok is True and info.sha256 == stream.sha256
    assert info.revision == loaded.revision
    assert info.live_keys == loaded.live_keys == EXPECTED_LIVE


def test_chunks_iterator_and_short_reads_agree(loaded: Loaded) -> None:
    with loaded.server.client() as c:
        a = b"".join(c.snapshot().chunks())
        s = c.snapshot()
        b = bytearray()
        while piece := s.read(7777):
            b += piece
        s.close()
    # Two snapshots of an idle member hold the same data (the bbolt meta pages may differ).
    assert len(a) == len(b)
    assert read_snapshot_info(a).revision == read_snapshot_info(bytes(b)).revision


def _take_until_bytes(call: Any, limit: int) -> Iterator[Any]:
    got = 0
    for resp in call:
        yield resp
        got += len(resp.blob)
        if got >= limit:
            return


def test_truncated_stream_raises(loaded: Loaded) -> None:
    c, call = _responses(loaded)
    with c:
        stream = SnapshotStream(itertools.islice(call, 3), source="test", cancel=call.cancel)
        with pytest.raises(IntegrityError, match=r"truncated: received \d+ of \d+ bytes"):
            stream.read()
        stream.close()


def test_stream_without_trailer_raises(loaded: Loaded) -> None:
    c, call = _responses(loaded)

    def without_trailer() -> Iterator[Any]:
        for resp in call:
            yield resp
            if resp.remaining_bytes == 0:
                return  # drop the final SHA-256 message

    with c:
        stream = SnapshotStream(without_trailer(), source="test", cancel=call.cancel)
        with pytest.raises(IntegrityError, match="without its SHA-256 trailer"):
            stream.read()
        stream.close()


def test_corrupted_byte_raises_at_end(loaded: Loaded) -> None:
    c, call = _responses(loaded)

    def corrupt() -> Iterator[Any]:
        for n, resp in enumerate(call):
            if n == 1:
                blob = bytearray(resp.blob)
                blob[1234] ^= 0x01
                resp = rpc_pb2.SnapshotResponse(remaining_bytes=resp.remaining_bytes, blob=bytes(blob))
            yield resp

    with c:
        stream = SnapshotStream(corrupt(), source="test")
        first = stream.read(200_000)  # corrupted data is handed out ...
        assert len(first) == 200_000
        with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
            stream.read()  # ... but the stream never ends cleanly
        with pytest.raises(IntegrityError):
            stream.read(10)  # and stays failed


def test_extra_data_after_trailer_raises() -> None:
    msgs = [
        rpc_pb2.SnapshotResponse(remaining_bytes=4, blob=b"abcd"),
        rpc_pb2.SnapshotResponse(remaining_bytes=0, blob=b"efgh"),
        rpc_pb2.SnapshotResponse(remaining_bytes=0, blob=hashlib.sha256(b"abcdefgh").digest() + b"x"),
    ]
    with pytest.raises(IntegrityError, match="more than the 8 announced bytes"):
        SnapshotStream(msgs).read()
    ok = msgs[:2] + [rpc_pb2.SnapshotResponse(blob=hashlib.sha256(b"abcdefgh").digest())]
    s = SnapshotStream(ok)
    assert s.read() == b"abcdefgh" + hashlib.sha256(b"abcdefgh").digest()
    assert s.complete and s.sha256 == hashlib.sha256(b"abcdefgh").hexdigest()


def test_inconsistent_remaining_bytes_raises() -> None:
    msgs = [
        rpc_pb2.SnapshotResponse(remaining_bytes=4, blob=b"abcd"),
        rpc_pb2.SnapshotResponse(remaining_bytes=3, blob=b"efgh"),
    ]
    with pytest.raises(IntegrityError, match="inconsistent"):
        SnapshotStream(msgs).read()


def test_connection_dropped_mid_stream_raises(loaded: Loaded) -> None:
    proxy = CuttingProxy(loaded.server.client_port, cut_after=300_000)
    try:
        c = loaded.server.client(endpoints=f"127.0.0.1:{proxy.port}")
        with c:
            stream = c.snapshot()
            with pytest.raises(IntegrityError, match=r"broke after \d+ of \d+ bytes"):
                while stream.read(65536):
                    pass
            assert 0 < stream.bytes_read < 300_000
    finally:
        proxy.close()


def test_snapshot_on_unreachable_member_is_not_an_integrity_error(loaded: Loaded) -> None:
    from kubekeep.errors import ConnectorError, SourceUnreachable

    proxy = CuttingProxy(loaded.server.client_port)
    c = loaded.server.client(endpoints=f"127.0.0.1:{proxy.port}")
    c.connect()
    proxy.close()  # the member vanishes after connect
    with c:
        with pytest.raises(ConnectorError) as err:
            c.snapshot()  # the first message is awaited on open
        assert isinstance(err.value, SourceUnreachable), err.value
