"""The etcd layer through the real ``kubekeep`` command: backup with etcdctl-style TLS flags,
``etcd status``, ``etcd restore-dir``, broken streams that must store nothing, one-line errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from kubekeep.engine.repository import Repository
from kubekeep.etcd._proto import rpc_pb2, rpc_pb2_grpc
from kubekeep.etcd.restore import find_restore_tool
from tests.cli.helpers import FAST_KDF, KK, RepoSpec, stderr_line

from .conftest import EXPECTED_LIVE, Loaded
from .etcdserver import CuttingProxy, EtcdServer, free_port


@pytest.fixture
def kk(tmp_path: Path) -> KK:
    """A runner on a fresh local repository (cheap key derivation)."""
    spec = RepoSpec(str(tmp_path / "repo"))
    Repository.init(spec.backend(), "pw", kdf=FAST_KDF, no_cache=True).close()
    return KK(spec, password="pw", cache_dir=tmp_path / "cache")


def tls_flags(srv: EtcdServer) -> list[str]:
    return ["--cacert", str(srv.pki.ca), "--cert", str(srv.pki.client_cert), "--key", str(srv.pki.client_key)]


def etcdutl_status(etcdutl: Path, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(etcdutl), "snapshot", "status", str(path), "-w", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout.strip().splitlines()[0])  # type: ignore[no-any-return]


def expect_error(kk: KK, code: int, *args: str, contains: str, env: dict[str, str] | None = None) -> str:
    line = stderr_line(kk.run(*args, expect=code, env=env))
    assert line.startswith("error: ") and contains.lower() in line.lower(), line
    return line


def test_backup_status_cat_restore_and_restore_dir(loaded: Loaded, kk: KK, tmp_path: Path) -> None:
    srv = loaded.server
    tool = find_restore_tool(srv.tools.etcdutl or srv.tools.etcdctl)  # etcd 3.4: its etcdctl
    dead = f"127.0.0.1:{free_port()}"
    result = kk.json(
        "backup", f"etcd://{dead},{srv.endpoint}", *tls_flags(srv), "--tag", "etcd", "--etcd-server-name", "localhost"
    )  # a name in the server certificate
    assert result["source"]["kind"] == "etcd" and result["source"]["extra"]["endpoint"] == srv.endpoint
    [snap] = kk.json("snapshots")
    recorded = snap["metadata"]["etcd"]
    assert recorded["revision"] == loaded.revision and recorded["members"][0]["name"] == srv.name

    status = kk.json("etcd", "status", "latest")
    f = status["file"]
    assert status["path"] == "/etcd/snapshot.db" and status["matches_recorded"] is True
    assert status["recorded"] == recorded

    # The stored file comes back byte for byte, through cat and through restore to fs:
    data = kk.run("cat", "latest:/etcd/snapshot.db").stdout
    assert hashlib.sha256(data[:-32]).hexdigest() == data[-32:].hex() == f["sha256"] == recorded["sha256"]
    kk.run("restore", "latest:/etcd/snapshot.db", "--to", f"fs:{tmp_path / 'out'}")
    restored = tmp_path / "out" / "snapshot.db"
    assert restored.read_bytes() == data

    # ... and etcd's own tool reads the same figures as `kubekeep etcd status` (3.4 has none)
    if srv.tools.etcdutl is not None:
        theirs = etcdutl_status(srv.tools.etcdutl, restored)
        assert (f["revision"], f["live_keys"], f["db_size"], f["storage_version"]) == (
            theirs["revision"],
            theirs["totalKey"],
            theirs["totalSize"],
            theirs["version"],
        )
    assert f["live_keys"] == loaded.live_keys == EXPECTED_LIVE

    text = kk.out("etcd", "status", snap["short_id"])
    assert f"revision    {loaded.revision}" in text and f["sha256"] in text and "matches the backup" in text

    # restore-dir: a data directory a new member boots from, with the revision bumped
    new = EtcdServer(srv.tools, srv.pki, tmp_path / "restored", name="kk-restored")
    bump = 1000 if tool.supports_bump else 0
    out = kk.json(
        "etcd",
        "restore-dir",
        "latest",
        "--data-dir",
        str(new.data_dir),
        "--name",
        new.name,
        "--initial-cluster",
        new.initial_cluster,
        "--initial-advertise-peer-urls",
        new.peer_url,
        "--initial-cluster-token",
        "restored",
        "--etcdutl",
        tool.path,
        *(["--bump-revision", str(bump), "--mark-compacted"] if bump else []),
    )
    assert out["snapshot_revision"] == loaded.revision and out["data_dir"] == str(new.data_dir)
    assert out["command"][:4] == [tool.path, "snapshot", "restore", f"{snap['short_id']}:/etcd/snapshot.db"]
    assert ("--bump-revision" in out["command"] and "--mark-compacted" in out["command"]) == bool(bump)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".kubekeep-etcd-restore-")]
    new.start()
    try:
        with new.client() as c:
            assert c.range(b"\0", b"\0", count_only=True).count == loaded.live_keys
            assert c.status().revision >= loaded.revision + bump
    finally:
        new.stop()


def test_status_of_a_snapshot_file_in_an_fs_backup(kk: KK, snapshot_file: Path) -> None:
    kk.json("backup", str(snapshot_file))
    status = kk.json("etcd", "status", "latest:/snapshot.db")
    assert status["recorded"] is None and status["matches_recorded"] is None
    assert status["file"]["sha256"] == snapshot_file.read_bytes()[-32:].hex()
    assert status["file"]["live_keys"] == EXPECTED_LIVE
    expect_error(kk, 14, "etcd", "status", "latest", contains="SNAPSHOT:PATH")


# -- broken streams store nothing -------------------------------------------------------------


class RelayEtcd:
    """A plaintext gRPC server on loopback that answers Status and MemberList from the real
    member and relays its Snapshot stream through ``mangle`` (which may corrupt or cut it)."""

    def __init__(self, loaded: Loaded, mangle: Callable[[Iterator[Any]], Iterator[Any]]) -> None:
        self._client = loaded.server.client()
        chan = self._client._chan()
        maintenance = rpc_pb2_grpc.MaintenanceStub(chan)
        cluster = rpc_pb2_grpc.ClusterStub(chan)

        class Maintenance(rpc_pb2_grpc.MaintenanceServicer):
            def Status(self, request: Any, context: Any) -> Any:
                return maintenance.Status(request, timeout=10)

            def Snapshot(self, request: Any, context: Any) -> Iterator[Any]:
                yield from mangle(iter(maintenance.Snapshot(request)))

        class Cluster(rpc_pb2_grpc.ClusterServicer):
            def MemberList(self, request: Any, context: Any) -> Any:
                return cluster.MemberList(request, timeout=10)

        self.server = grpc.server(ThreadPoolExecutor(4))
        rpc_pb2_grpc.add_MaintenanceServicer_to_server(Maintenance(), self.server)
        rpc_pb2_grpc.add_ClusterServicer_to_server(Cluster(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self) -> None:
        self.server.stop(0)
        self._client.close()


def flip_a_byte(responses: Iterator[Any]) -> Iterator[Any]:
    for n, resp in enumerate(responses):
        if n == 2:
            blob = bytearray(resp.blob)
            blob[100] ^= 0x40
            resp = rpc_pb2.SnapshotResponse(remaining_bytes=resp.remaining_bytes, blob=bytes(blob))
        yield resp


def end_early(responses: Iterator[Any]) -> Iterator[Any]:
    for n, resp in enumerate(responses):
        if n == 3:
            return  # a clean end of stream, before the database is complete
        yield resp


def assert_nothing_stored(kk: KK, before: list[dict[str, Any]]) -> None:
    assert kk.json("snapshots") == before
    kk.run("check")  # exit 0: no damage, nothing half-written in use


@pytest.mark.parametrize(("mangle", "message"), [(flip_a_byte, "SHA-256 mismatch"), (end_early, "truncated")])
def test_corrupted_or_truncated_stream_fails_the_backup(
    loaded: Loaded,
    kk: KK,
    snapshot_file: Path,
    mangle: Callable[[Iterator[Any]], Iterator[Any]],
    message: str,
) -> None:
    kk.json("backup", str(snapshot_file))  # an unrelated snapshot that must survive
    before = kk.json("snapshots")
    relay = RelayEtcd(loaded, mangle)
    try:
        expect_error(kk, 13, "backup", f"etcd://127.0.0.1:{relay.port}", contains=message)
    finally:
        relay.close()
    assert_nothing_stored(kk, before)


def test_connection_cut_mid_stream_fails_the_backup(loaded: Loaded, kk: KK) -> None:
    before = kk.json("snapshots")
    proxy = CuttingProxy(loaded.server.client_port, cut_after=400_000)
    try:
        expect_error(
            kk, 13, "backup", f"etcd://127.0.0.1:{proxy.port}", *tls_flags(loaded.server), contains="broke after"
        )
    finally:
        proxy.close()
    assert_nothing_stored(kk, before)


# -- one-line errors ----------------------------------------------------------------------------


def test_errors_are_one_line(loaded: Loaded, kk: KK, snapshot_file: Path, tmp_path: Path) -> None:
    srv = loaded.server
    flags = tls_flags(srv)
    closed = f"127.0.0.1:{free_port()}"
    expect_error(kk, 17, "backup", f"etcd://{closed}", *flags, contains="no etcd endpoint answered")
    expect_error(
        kk,
        2,
        "backup",
        f"etcd://{srv.endpoint}",
        "--cacert",
        str(srv.pki.ca),
        "--cert",
        str(tmp_path / "missing.crt"),
        "--key",
        str(srv.pki.client_key),
        contains="missing.crt",
    )
    expect_error(kk, 2, "backup", str(snapshot_file), *flags, contains="etcd:// sources only")
    expect_error(kk, 2, "backup", f"etcd://{srv.endpoint}", *flags, "--exclude", "x", contains="exclude")
    expect_error(
        kk, 16, "backup", f"etcd://{srv.endpoint}", *flags, "--etcd-server-name", "other.invalid", contains="host name"
    )
    expect_error(
        kk,
        16,
        "backup",
        f"etcds://{srv.endpoint}",
        "--cacert",
        str(srv.pki.other_ca),
        "--cert",
        str(srv.pki.client_cert),
        "--key",
        str(srv.pki.client_key),
        contains="not trusted",
    )
    assert kk.json("snapshots") == []

    kk.json("backup", f"etcd://{srv.endpoint}", *flags)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "member").mkdir()
    expect_error(
        kk,
        2,
        "etcd",
        "restore-dir",
        "latest",
        "--data-dir",
        str(busy),
        "--name",
        "m",
        contains="not an empty directory",
    )
    no_tools = tmp_path / "empty-path"
    no_tools.mkdir()
    expect_error(
        kk,
        2,
        "etcd",
        "restore-dir",
        "latest",
        "--data-dir",
        str(tmp_path / "new"),
        "--name",
        "m",
        env={"PATH": str(no_tools)},
        contains="etcdutl not found",
    )
    expect_error(
        kk,
        2,
        "etcd",
        "restore-dir",
        "latest",
        "--data-dir",
        str(tmp_path / "new"),
        "--name",
        "m",
        "--bump-revision",
        "10",
        contains="go together",
    )
    assert not (tmp_path / "new").exists()
    expect_error(kk, 14, "etcd", "status", "latest:/etcd/nothing.db", contains="nothing.db")
    expect_error(kk, 2, "etcd", "status", "latest:/etcd", contains="not an etcd snapshot file")
