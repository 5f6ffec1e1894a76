"""EtcdClient against a real etcd: status, members, failover, unreachable, TLS failures."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from kubekeep.errors import ConnectorError, SourceUnreachable, UsageError
from kubekeep.etcd.client import EtcdClient, parse_endpoint, parse_endpoints

from .conftest import Loaded
from .etcdserver import EtcdServer, Pki, Tools, free_port


def test_parse_endpoints() -> None:
    eps = parse_endpoints("10.0.0.1:2379, https://etcd-a:4001,[::1]:2380,etcd-b")
    assert [(e.host, e.port, e.secure) for e in eps] == [
        ("10.0.0.1", 2379, None),
        ("etcd-a", 4001, True),
        ("::1", 2380, None),
        ("etcd-b", 2379, None),
    ]
    assert eps[2].address == "[::1]:2380"
    assert parse_endpoint("http://h:1").secure is False
    for bad in ("", "h:0", "h:99999", "h:port", "https://h:1/path", "[::1"):
        with pytest.raises(UsageError):
            parse_endpoints(bad)


def test_cert_without_key_is_a_usage_error(loaded: Loaded) -> None:
    with pytest.raises(UsageError, match="certificate and its key"):
        EtcdClient(loaded.server.endpoint, cacert=loaded.server.pki.ca, cert=loaded.server.pki.client_cert)
    with pytest.raises(UsageError, match="cannot read etcd CA certificate"):
        EtcdClient(loaded.server.endpoint, cacert="/nonexistent/ca.crt")


def test_status_and_member_list(loaded: Loaded) -> None:
    srv = loaded.server
    with srv.client() as c:
        st = c.status()
        members = c.member_list()
    assert st.endpoint == srv.endpoint
    assert st.version.split(".")[:2] == [str(v) for v in srv.tools.version[:2]]
    assert st.revision == loaded.revision
    assert st.db_size > 0 and st.raft_term >= 1
    assert int(st.cluster_id, 16) != 0 and st.leader == st.member_id
    assert len(members) == 1
    m = members[0]
    assert (m.id, m.name) == (st.member_id, srv.name)
    assert m.peer_urls == [srv.peer_url] and m.client_urls == [srv.client_url]


def test_failover_skips_a_closed_port(loaded: Loaded) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with loaded.server.client(endpoints=[dead, loaded.server.endpoint]) as c:
        assert str(c.connect()) == loaded.server.endpoint
        assert c.status().revision == loaded.revision


def test_nothing_answers_is_source_unreachable(loaded: Loaded) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"localhost:{free_port()}"]
    with pytest.raises(SourceUnreachable) as err:
        loaded.server.client(endpoints=dead, connect_timeout=2).connect()
    msg = str(err.value)
    assert "\n" not in msg
    assert all(d in msg for d in dead), msg
    assert "connection refused" in msg


def test_connect_timeout_on_a_silent_listener(loaded: Loaded) -> None:
    # A loopback socket that accepts TCP connections but never speaks: only the timeout ends it.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(SourceUnreachable, match=r"no answer within 1s"):
            loaded.server.client(endpoints=f"127.0.0.1:{port}", connect_timeout=1).connect()
        assert time.monotonic() - start < 5
        # ... and the next endpoint still gets its turn.
        c = loaded.server.client(endpoints=[f"127.0.0.1:{port}", loaded.server.endpoint], connect_timeout=1)
        with c:
            assert str(c.connect()) == loaded.server.endpoint
    finally:
        silent.close()


def test_tls_without_client_certificate_is_a_connector_error(loaded: Loaded) -> None:
    srv = loaded.server
    with pytest.raises(ConnectorError) as err:
        EtcdClient(srv.endpoint, cacert=srv.pki.ca, connect_timeout=3).connect()
    assert not isinstance(err.value, SourceUnreachable)
    assert "client certificate" in str(err.value) and "\n" not in str(err.value)


def test_untrusted_server_certificate_is_a_connector_error(loaded: Loaded) -> None:
    srv = loaded.server
    c = EtcdClient(
        srv.endpoint, cacert=srv.pki.other_ca, cert=srv.pki.client_cert, key=srv.pki.client_key,
        connect_timeout=3,
    )  # fmt: skip
    with pytest.raises(ConnectorError, match="server certificate not trusted") as err:
        c.connect()
    assert not isinstance(err.value, SourceUnreachable)


def test_plaintext_client_on_tls_port_fails_cleanly(loaded: Loaded) -> None:
    with pytest.raises(SourceUnreachable, match="TLS or plaintext mismatch"):
        EtcdClient(f"http://{loaded.server.endpoint}", connect_timeout=3).connect()


def test_auth_refusal_is_a_connector_error(etcd_tools: Tools, pki: Pki, tmp_path: Path) -> None:
    srv = EtcdServer(etcd_tools, pki, tmp_path / "auth").start()
    try:
        srv.etcdctl("user", "add", "root", "--no-password")
        srv.etcdctl("auth", "enable")
        with srv.client() as root:  # CN=root: the root user
            assert root.status().revision >= 1
        # etcd answers Status and MemberList to any authenticated TLS client, but a snapshot
        # needs the root role: CN=nobody is no etcd user at all.
        with srv.client(cert=pki.nobody_cert, key=pki.nobody_key, connect_timeout=3) as c:
            c.connect()
            with pytest.raises(ConnectorError) as err:
                c.snapshot().read(10)
        assert not isinstance(err.value, SourceUnreachable)
        msg = str(err.value)
        assert "refused the snapshot request" in msg and "not found" in msg and "\n" not in msg
    finally:
        srv.stop()
