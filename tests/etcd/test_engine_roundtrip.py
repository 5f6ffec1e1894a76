"""etcd:// through kubekeep's engine: back up, read the file back, restore it with etcdutl."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kubekeep import api
from kubekeep.errors import UsageError
from kubekeep.etcd.boltmeta import read_snapshot_info
from kubekeep.etcd.restore import restore_data_dir

from .conftest import EXPECTED_LIVE, Loaded, key_of, value_of
from .etcdserver import EtcdServer

FAST_KDF: dict[str, int | str] = {"algorithm": "argon2id", "time_cost": 1, "memory_kib": 8192, "parallelism": 1}


def test_backup_cat_and_restore(loaded: Loaded, tmp_path: Path) -> None:
    srv = loaded.server
    opts = api.RepositoryOptions(location=str(tmp_path / "repo"), password="pw", no_cache=True)
    repo = api.init_repository(opts, kdf=FAST_KDF)
    tls = api.EtcdSourceOptions(cacert=str(srv.pki.ca), cert=str(srv.pki.client_cert), key=str(srv.pki.client_key))
    # another connector's options (here an fs: source's exclude patterns) are refused, not ignored
    with pytest.raises(UsageError, match="FsSourceOptions does not apply to etcd: sources"):
        api.backup(repo, f"etcd://{srv.endpoint}", options=api.FsSourceOptions(excludes=("*.db",)))
    snap = api.backup(repo, f"etcd://{srv.endpoint}", options=tls)
    assert snap.source["kind"] == "etcd" and snap.source["uri"] == f"etcd://{srv.endpoint}"
    meta = snap.metadata["etcd"]
    assert meta["revision"] == loaded.revision

    data = b"".join(api.cat(repo, f"{snap.id}:etcd/snapshot.db"))
    assert hashlib.sha256(data[:-32]).hexdigest() == meta["sha256"] == data[-32:].hex()
    assert read_snapshot_info(data).live_keys == EXPECTED_LIVE

    api.restore(repo, snap.id, str(tmp_path / "out"))
    restored_file = tmp_path / "out" / "etcd" / "snapshot.db"
    assert restored_file.read_bytes() == data
    member = EtcdServer(srv.tools, srv.pki, tmp_path / "member", name="m1")
    tool = srv.tools.etcdutl or srv.tools.etcdctl
    restore_data_dir(
        restored_file, member.data_dir, member.name, member.initial_cluster, member.peer_url,
        "roundtrip", etcdutl=tool,
    )  # fmt: skip
    member.start()
    try:
        with member.client() as c:
            assert c.range(key_of(40)).kvs[0].value == value_of(40, 1)
            assert c.status().revision == loaded.revision
    finally:
        member.stop()
