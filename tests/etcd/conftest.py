"""Fixtures: one real etcd (TLS, client-cert auth) per session, loaded with known data."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubekeep.etcd._proto import rpc_pb2, rpc_pb2_grpc

from .etcdserver import EtcdServer, NoEtcdBinary, Pki, Tools, find_tools, make_pki

PREFIX = b"/registry/kubekeep-test/"
N_KEYS = 2000
N_UPDATED = 100  # keys written a second time
N_DELETED = 50  # keys deleted at the end
BIG_KEY = PREFIX + b"big"
BIG_VALUE = bytes(range(256)) * 80  # 20 KiB: spans bbolt overflow pages
EXPECTED_LIVE = N_KEYS - N_DELETED + 1
EXPECTED_REVISIONS = N_KEYS + N_UPDATED + N_DELETED + 1


def key_of(i: int) -> bytes:
    return PREFIX + b"key-%05d" % i


def value_of(i: int, generation: int = 0) -> bytes:
    return (b"value-%05d-gen%d-" % (i, generation)) * 8


@dataclass(frozen=True)
class Loaded:
    server: EtcdServer
    revision: int  # store revision after loading
    live_keys: int  # keys etcd counts over the whole keyspace


@pytest.fixture(scope="session")
def etcd_tools() -> Tools:
    try:
        return find_tools()
    except NoEtcdBinary as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def fast_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temp dir on tmpfs when there is one (etcd fsyncs every write)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    if base is None:
        yield tmp_path_factory.mktemp("etcd")
        return
    with tempfile.TemporaryDirectory(prefix="kubekeep-etcd-", dir=base) as d:
        yield Path(d)


@pytest.fixture(scope="session")
def pki(fast_tmp: Path) -> Pki:
    return make_pki(fast_tmp / "pki")


@pytest.fixture(scope="session")
def loaded(etcd_tools: Tools, pki: Pki, fast_tmp: Path) -> Iterator[Loaded]:
    """A running etcd with N_KEYS keys, N_UPDATED of them overwritten, N_DELETED deleted."""
    server = EtcdServer(etcd_tools, pki, fast_tmp / "main")
    server.start()
    try:
        with server.client() as c:
            kv = rpc_pb2_grpc.KVStub(c._chan())
            # Pipelined puts: etcd batches concurrent proposals, so this takes well under a second.
            writes = [(key_of(i), value_of(i)) for i in range(N_KEYS)]
            writes += [(key_of(i), value_of(i, 1)) for i in range(0, N_KEYS, N_KEYS // N_UPDATED)]
            for start in range(0, len(writes), 200):
                futures = [
                    kv.Put.future(rpc_pb2.PutRequest(key=k, value=v), timeout=30)
                    for k, v in writes[start : start + 200]
                ]
                for f in futures:
                    f.result()
            for i in range(1, N_DELETED * 2, 2):
                c.delete(key_of(i))
            c.put(BIG_KEY, BIG_VALUE)
            status = c.status()
            live = c.range(b"\0", b"\0", count_only=True).count
        yield Loaded(server=server, revision=status.revision, live_keys=live)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def snapshot_file(loaded: Loaded, fast_tmp: Path) -> Path:
    """One snapshot of the loaded member, streamed by kubekeep's client into a file."""
    path = fast_tmp / "snapshot.db"
    with loaded.server.client() as c, open(path, "wb") as out:
        stream = c.snapshot()
        for chunk in stream.chunks():
            out.write(chunk)
        assert stream.complete
    return path
