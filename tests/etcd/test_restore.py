"""restore_data_dir: run etcdutl (or etcd 3.4's etcdctl), then boot etcd on the result."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from kubekeep.errors import IntegrityError, UsageError
from kubekeep.etcd._proto import rpc_pb2, rpc_pb2_grpc
from kubekeep.etcd.restore import find_restore_tool, restore_data_dir

from .conftest import BIG_KEY, BIG_VALUE, EXPECTED_LIVE, Loaded, key_of, value_of
from .etcdserver import EtcdServer, Tools


def _tool(tools: Tools) -> Path:
    tool = tools.etcdutl or tools.etcdctl
    assert tool is not None, "neither etcdutl nor etcdctl found next to etcd or on PATH"
    return tool


def _restore_and_boot(loaded: Loaded, snapshot: Path, where: Path, **kw: object) -> tuple[EtcdServer, object]:
    srv = EtcdServer(loaded.server.tools, loaded.server.pki, where / "data", name="restored")
    result = restore_data_dir(
        snapshot, srv.data_dir, srv.name, srv.initial_cluster, srv.peer_url,
        "kubekeep-restore-test", etcdutl=_tool(loaded.server.tools), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    srv.start()
    return srv, result


def test_restore_then_read_back(loaded: Loaded, snapshot_file: Path, tmp_path: Path) -> None:
    srv, result = _restore_and_boot(loaded, snapshot_file, tmp_path)
    try:
        assert result.command[1:4] == ["snapshot", "restore", str(snapshot_file)]  # type: ignore[attr-defined]
        assert "--skip-hash-check" not in result.command  # type: ignore[attr-defined]
        with srv.client() as c:
            assert c.range(key_of(0)).kvs[0].value == value_of(0, 1)
            assert c.range(key_of(2)).kvs[0].value == value_of(2)
            assert c.range(key_of(1)).count == 0  # deleted before the snapshot
            assert c.range(BIG_KEY).kvs[0].value == BIG_VALUE
            assert c.range(b"\0", b"\0", count_only=True).count == EXPECTED_LIVE
            st = c.status()
            members = c.member_list()
        assert st.revision == loaded.revision
        assert [(m.name, m.peer_urls) for m in members] == [("restored", [srv.peer_url])]
        assert st.cluster_id != loaded.server.client().status().cluster_id  # a new cluster
    finally:
        srv.stop()


def test_bump_revision_and_mark_compacted(loaded: Loaded, snapshot_file: Path, tmp_path: Path) -> None:
    tool = find_restore_tool(_tool(loaded.server.tools))
    if not tool.supports_bump:
        with pytest.raises(UsageError, match="cannot bump revisions"):
            restore_data_dir(
                snapshot_file, tmp_path / "d", "n", "n=http://127.0.0.1:1", "http://127.0.0.1:1",
                "t", bump_revision=10, mark_compacted=True, etcdutl=tool.path,
            )  # fmt: skip
        assert not (tmp_path / "d").exists()
        return
    srv, _ = _restore_and_boot(loaded, snapshot_file, tmp_path, bump_revision=1000, mark_compacted=True)
    try:
        with srv.client() as c:
            assert c.status().revision == loaded.revision + 1000
            assert c.range(key_of(0)).kvs[0].value == value_of(0, 1)
            kv = rpc_pb2_grpc.KVStub(c._chan())
            with pytest.raises(grpc.RpcError) as err:
                kv.Range(rpc_pb2.RangeRequest(key=key_of(0), revision=loaded.revision), timeout=10)
            assert "compacted" in (err.value.details() or "")  # type: ignore[attr-defined]
    finally:
        srv.stop()


def test_refusals(loaded: Loaded, snapshot_file: Path, tmp_path: Path) -> None:
    tool = str(_tool(loaded.server.tools))
    args = ("n", "n=http://127.0.0.1:1", "http://127.0.0.1:1", "tok")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    with pytest.raises(UsageError, match="not an empty directory"):
        restore_data_dir(snapshot_file, busy, *args, etcdutl=tool)
    with pytest.raises(UsageError, match="go together"):
        restore_data_dir(snapshot_file, tmp_path / "a", *args, bump_revision=5, etcdutl=tool)
    with pytest.raises(UsageError, match="go together"):
        restore_data_dir(snapshot_file, tmp_path / "a", *args, mark_compacted=True, etcdutl=tool)
    with pytest.raises(UsageError, match="no entry for member"):
        restore_data_dir(snapshot_file, tmp_path / "a", "other", *args[1:], etcdutl=tool)
    with pytest.raises(UsageError, match="not found"):
        restore_data_dir(snapshot_file, tmp_path / "a", *args, etcdutl=tmp_path / "no-etcdutl")

    corrupt = tmp_path / "corrupt.db"
    data = bytearray(snapshot_file.read_bytes())
    data[9000] ^= 1
    corrupt.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
        restore_data_dir(corrupt, tmp_path / "a", *args, etcdutl=tool)
    raw = tmp_path / "raw.db"
    raw.write_bytes(snapshot_file.read_bytes()[:-32])
    with pytest.raises(UsageError, match="no SHA-256 trailer"):
        restore_data_dir(raw, tmp_path / "a", *args, etcdutl=tool)
    assert not (tmp_path / "a").exists()


def test_tool_older_than_snapshot_is_refused(snapshot_file: Path, tmp_path: Path) -> None:
    fake = tmp_path / "etcdutl"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in version) echo "etcdutl version: 3.3.27"; echo "API version: 3.3";;\n'
        '  *) echo "  --data-dir string";; esac\n'
    )
    fake.chmod(0o755)
    with pytest.raises(UsageError, match="too old|older"):
        restore_data_dir(snapshot_file, tmp_path / "d", "n", "n=http://h:1", "http://h:1", "t", etcdutl=fake)
    assert not (tmp_path / "d").exists()


def test_missing_tool_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="etcdutl not found on PATH"):
        find_restore_tool()
