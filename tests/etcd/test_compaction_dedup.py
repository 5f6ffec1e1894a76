"""Issue #16: two snapshots of an etcd that compacted in between still share most of their data.

A real etcd (its own member: the test rewrites and compacts it) is loaded, backed up, 1 % of
its keys rewritten, compacted physically (what the API server does every 5 minutes), backed
up again. Page-group chunking (the etcd importer's page-size hint) must keep the second
snapshot's addition to the repository within 10 % of the database; the same two databases,
backed up as plain files (content-defined chunking, what the hint replaces), must not, so the
figure depends on the hint. Each backup restores to the bytes of etcd's own snapshot of that
moment, and a member restored from the second one serves the rewritten keys.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubekeep import api
from kubekeep.etcd._proto import rpc_pb2, rpc_pb2_grpc
from kubekeep.etcd.boltmeta import read_snapshot_info
from kubekeep.etcd.restore import restore_data_dir

from .etcdserver import EtcdServer, Pki, Tools

FAST_KDF: dict[str, int | str] = {"algorithm": "argon2id", "time_cost": 1, "memory_kib": 8192, "parallelism": 1}
N_KEYS = 20_000
VALUE_SIZE = 600
TARGET = 0.10  # the target: at most 10 % of the database added per snapshot


def _key(i: int) -> bytes:
    return b"/registry/configmaps/compaction/cm-%06d" % i


def _value(i: int, generation: int, rnd: random.Random) -> bytes:
    head = b'{"kind":"ConfigMap","metadata":{"name":"cm-%06d","generation":%d},"data":"' % (i, generation)
    return head + rnd.randbytes(VALUE_SIZE // 2).hex().encode() + b'"}'


def _put(srv: EtcdServer, keys: list[int], generation: int, seed: int) -> None:
    rnd = random.Random(seed)
    with srv.client(timeout=120) as c:
        kv = rpc_pb2_grpc.KVStub(c._chan())
        for start in range(0, len(keys), 400):
            futures = [
                kv.Put.future(rpc_pb2.PutRequest(key=_key(i), value=_value(i, generation, rnd)), timeout=120)
                for i in keys[start : start + 400]
            ]
            for f in futures:
                f.result()


def _etcd_snapshot(srv: EtcdServer, target: Path) -> bytes:
    """etcd's own snapshot (etcdctl snapshot save) of this moment."""
    srv.etcdctl("snapshot", "save", str(target))
    return target.read_bytes()


@pytest.fixture()
def member(etcd_tools: Tools, pki: Pki, fast_tmp: Path) -> Iterator[EtcdServer]:
    if etcd_tools.etcdctl is None:
        pytest.fail("etcdctl must sit next to etcd", pytrace=False)
    data = fast_tmp / "compaction"
    shutil.rmtree(data, ignore_errors=True)
    srv = EtcdServer(etcd_tools, pki, data, name="compaction")
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def test_snapshot_after_compaction_adds_little(member: EtcdServer, tmp_path: Path) -> None:
    srv = member
    tls = api.EtcdSourceOptions(cacert=str(srv.pki.ca), cert=str(srv.pki.client_cert), key=str(srv.pki.client_key))
    repo = api.init_repository(
        api.RepositoryOptions(location=str(tmp_path / "repo"), password="pw", no_cache=True), kdf=FAST_KDF
    )
    plain = api.init_repository(
        api.RepositoryOptions(location=str(tmp_path / "plain"), password="pw", no_cache=True), kdf=FAST_KDF
    )
    _put(srv, list(range(N_KEYS)), 0, seed=1)

    first = api.backup(repo, f"etcd://{srv.endpoint}", options=tls)
    first_db = _etcd_snapshot(srv, tmp_path / "etcd-1.db")
    rev_before = first.metadata["etcd"]["revision"]

    changed = random.Random(7).sample(range(N_KEYS), N_KEYS // 100)
    _put(srv, changed, 1, seed=2)
    with srv.client() as c:
        rev = c.status().revision
    assert rev == rev_before + len(changed)
    srv.etcdctl("compact", "--physical", str(rev))  # drops every superseded revision
    second = api.backup(repo, f"etcd://{srv.endpoint}", options=tls)
    second_db = _etcd_snapshot(srv, tmp_path / "etcd-2.db")
    assert second.metadata["etcd"]["revision"] == rev

    # compaction rewrote pages all over the file
    page = 4096
    n_pages = len(second_db) // page
    moved = sum(first_db[i * page : (i + 1) * page] != second_db[i * page : (i + 1) * page] for i in range(n_pages))
    assert moved > n_pages // 20, f"only {moved} of {n_pages} pages changed: the compaction did not happen"

    size = len(second_db)
    added = second.stats["bytes_stored"]
    assert added <= TARGET * size, f"the second snapshot added {added} bytes, {added / size:.1%} of {size}"
    assert first.stats["bytes_stored"] > size // 4  # the first stored the database (hex values: zstd halves)

    # the same two databases as plain files (content-defined chunks) share almost nothing
    path = tmp_path / "files" / "snapshot.db"
    path.parent.mkdir()
    path.write_bytes(first_db)
    api.backup(plain, str(path))
    path.write_bytes(second_db)
    plain_added = api.backup(plain, str(path)).stats["bytes_stored"]
    assert plain_added > TARGET * size, f"content-defined chunks added only {plain_added / size:.1%}"
    assert plain_added > 3 * added

    # each backup holds what etcd's own snapshot of that moment holds (not byte for byte: etcd
    # commits its backend between two snapshots, so even the meta pages differ), its SHA-256
    # trailer verifies, and restore writes back exactly the stored bytes
    for snap, db in ((first, first_db), (second, second_db)):
        ours = b"".join(api.cat(repo, f"{snap.id}:etcd/snapshot.db"))
        mine, theirs = read_snapshot_info(ours), read_snapshot_info(db)
        assert mine.hash_ok is True and theirs.hash_ok is True
        assert mine.sha256 == snap.metadata["etcd"]["sha256"]
        fields = ("revision", "compact_revision", "revisions", "live_keys", "page_size", "cluster_id")
        assert [getattr(mine, f) for f in fields] == [getattr(theirs, f) for f in fields]
    assert read_snapshot_info(ours).compact_revision == rev
    assert read_snapshot_info(ours).revisions == N_KEYS  # the superseded revisions are gone
    api.restore(repo, second.id, str(tmp_path / "out"))
    restored = tmp_path / "out" / "etcd" / "snapshot.db"
    assert restored.read_bytes() == ours

    restored_member = EtcdServer(srv.tools, srv.pki, tmp_path / "member", name="m2")
    restore_data_dir(
        restored, restored_member.data_dir, restored_member.name, restored_member.initial_cluster,
        restored_member.peer_url, "compaction", etcdutl=srv.tools.etcdutl or srv.tools.etcdctl,
    )  # fmt: skip
    restored_member.start()
    try:
        with restored_member.client() as c:
            assert c.status().revision == rev
            assert c.range(_key(changed[0])).kvs[0].value.startswith(b'{"kind":"ConfigMap","metadata":{"name"')
            assert b'"generation":1}' in c.range(_key(changed[0])).kvs[0].value
            assert c.range(_key(0), b"/registry/configmaps/compaction0", count_only=True).count == N_KEYS
    finally:
        restored_member.stop()
