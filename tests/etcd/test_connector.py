"""The etcd:// importer end to end against a real member, and its URI/env handling."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kubekeep.connectors.etcd import (
    SNAPSHOT_PATH,
    EtcdImporter,
    EtcdSourceOptions,
    open_importer,
    parse_uri,
    snapshot_file_metadata,
)
from kubekeep.engine.entries import EntryType, Importer
from kubekeep.errors import SourceUnreachable, UsageError
from kubekeep.etcd.boltmeta import read_snapshot_info
from kubekeep.etcd.snapshot import SnapshotStream

from .conftest import Loaded
from .etcdserver import free_port


def test_parse_uri() -> None:
    assert parse_uri("etcd://a:1,b:2") == (["a:1", "b:2"], {})
    assert parse_uri("etcds://a:1/") == (["a:1"], {"tls": True})
    hosts, opts = parse_uri("etcd://a?cacert=/ca&cert=/c&key=/k&tls=yes&connect_timeout=2.5")
    assert hosts == ["a"]
    assert opts == {"cacert": "/ca", "cert": "/c", "key": "/k", "tls": True, "connect_timeout": 2.5}
    assert parse_uri("etcd://") == ([], {})
    for bad in ("http://a:1", "etcd:/a", "etcd://a:1/path", "etcd://a?bogus=1", "etcd://a?tls=maybe"):
        with pytest.raises(UsageError):
            parse_uri(bad)


def test_uri_normalised_and_endpoints_from_env(loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = loaded.server
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", f"https://{srv.endpoint}")
    monkeypatch.setenv("ETCDCTL_CACERT", str(srv.pki.ca))
    monkeypatch.setenv("ETCDCTL_CERT", str(srv.pki.client_cert))
    monkeypatch.setenv("ETCDCTL_KEY", str(srv.pki.client_key))
    with open_importer("etcd://", EtcdSourceOptions()) as imp:
        info = imp.source()
    assert info.uri == f"etcd://{srv.endpoint}" and info.kind == "etcd"
    # Keyword options win over the environment: a wrong CA must now fail.
    with (
        pytest.raises(Exception, match="not trusted"),
        open_importer(f"etcds://{srv.endpoint}", EtcdSourceOptions(cacert=str(srv.pki.other_ca))) as imp,
    ):
        imp.source()


def test_no_endpoint_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCDCTL_ENDPOINTS", raising=False)
    with pytest.raises(UsageError, match="no etcd endpoint"):
        open_importer("etcd://", EtcdSourceOptions())


def test_import_end_to_end(loaded: Loaded, tmp_path: Path) -> None:
    srv = loaded.server
    dead = f"127.0.0.1:{free_port()}"
    imp = open_importer(
        f"etcd://{dead},{srv.endpoint}",
        EtcdSourceOptions(cacert=str(srv.pki.ca), cert=str(srv.pki.client_cert), key=str(srv.pki.client_key)),
    )
    assert isinstance(imp, Importer) and imp.scheme == "etcd"
    with imp:
        source = imp.source()
        entries = list(imp.entries())
        assert [(e.path, e.type) for e in entries] == [
            ("etcd", EntryType.DIR),
            (SNAPSHOT_PATH, EntryType.FILE),
        ]
        snap = entries[1]
        assert snap.mode == 0o600 and snap.size > 0 and snap.data is None and snap.opener
        target = tmp_path / "snapshot.db"
        with snap.opener() as stream, open(target, "wb") as out:
            while piece := stream.read(1 << 16):
                out.write(piece)
        meta = imp.metadata()["etcd"]
        assert imp.warnings() == []
    assert source.uri == f"etcd://{dead},{srv.endpoint}"
    assert source.host == meta["cluster_id"] and int(source.host, 16) != 0
    assert source.extra["endpoint"] == srv.endpoint == meta["endpoint"]
    data = target.read_bytes()
    assert meta["sha256"] == hashlib.sha256(data[:-32]).hexdigest() == data[-32:].hex()
    assert meta["db_size"] == len(data) - 32
    assert meta["revision"] == meta["revision_after"] == loaded.revision
    assert meta["members"] == [
        {"id": meta["member_id"], "name": srv.name, "peer_urls": [srv.peer_url], "client_urls": [srv.client_url]}
    ]
    assert meta["version"].startswith("{}.{}.".format(*srv.tools.version[:2]))
    info = read_snapshot_info(target)
    assert info.revision == meta["revision"] and info.hash_ok

    offline = snapshot_file_metadata(target)["etcd"]
    assert set(meta) <= set(offline)
    for k in ("revision", "sha256", "db_size", "members"):
        assert offline[k] == meta[k], k
    assert offline["live_keys"] == loaded.live_keys


def test_import_when_nothing_answers() -> None:
    imp = EtcdImporter([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"], connect_timeout=1, env={})
    with imp, pytest.raises(SourceUnreachable, match="no etcd endpoint answered"):
        list(imp.entries())


def test_close_abandons_an_unread_stream(loaded: Loaded) -> None:
    srv = loaded.server
    imp = EtcdImporter(srv.endpoint, srv.pki.ca, srv.pki.client_cert, srv.pki.client_key, env={})
    with imp:
        snap = list(imp.entries())[1]
        assert snap.opener is not None
        assert snap.chunking is not None and snap.chunking.page_size == 4096
        wrapped = snap.opener()
        stream = imp._stream  # the wrapper replays the meta page read for the page size
        assert isinstance(stream, SnapshotStream)
        assert len(wrapped.read(1000)) == 1000
    assert stream.closed and not stream.complete
    assert imp.client._channel is None
