"""The OCI backend's parts: tag names, locations, credentials, and the HTTP transport against
small loopback servers (redirects, retries); a registry that lies is refused."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubekeep.errors import StorageError, UsageError
from kubekeep.storage import open_backend
from kubekeep.storage.oci import OciBackend, credentials, tags
from kubekeep.storage.oci.transport import Transport, parse_challenge
from tests.support.registry import Registry

# -- tags ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["config", "keys/k1", "data/ab/" + "ab" * 32, "a/b/c/d/e/f", "x_y.z-w", "_/._", "locks/empty", "..a/b.."],
)
def test_tags_round_trip(name: str) -> None:
    tag = tags.to_tag(name)
    assert tag.startswith("kk.") and len(tag) <= 128
    assert tags.to_name(tag) == name


def test_tags_refuse_what_no_tag_carries_and_ignore_foreign_tags() -> None:
    for name in ["a b", "ü", "a:b", "x" * 126, "a//b", "../x"]:
        with pytest.raises(StorageError):
            tags.to_tag(name)
    for tag in ["latest", "v1.0", "kk.", "kk._x", "kk.a_", "kk..a", "kk.a."]:
        assert tags.to_name(tag) is None


# -- locations -------------------------------------------------------------------------------------


def test_oci_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no credentials: nothing to read
    monkeypatch.delenv("KUBEKEEP_REGISTRY_USERNAME", raising=False)
    backend = open_backend("oci://registry.example.com:5000/backups/prod")
    assert isinstance(backend, OciBackend)
    assert (backend.registry, backend.repository) == ("registry.example.com:5000", "backups/prod")
    assert backend.location == "oci://registry.example.com:5000/backups/prod"
    assert open_backend("oci://[::1]:5000/a").registry == "[::1]:5000"  # type: ignore[attr-defined]
    for bad in [
        "oci://",
        "oci://host",
        "oci://host/",
        "oci://host/UPPER",
        "oci://ho st/a",
        "oci://h/a?b",
        "oci://u@h/a",
    ]:
        with pytest.raises(UsageError) as info:
            open_backend(bad)
        assert bad in str(info.value)
    with pytest.raises(UsageError, match="endpoint_url"):
        open_backend("oci://host/repo", endpoint_url="http://x")


# -- credentials -----------------------------------------------------------------------------------


def _config(path: Path, doc: dict[str, object]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(doc))
    return path / "config.json"


def test_docker_config_forms(tmp_path: Path) -> None:
    auth = base64.b64encode(b"alice:s3cret:with:colons").decode()
    config = _config(
        tmp_path,
        {
            "auths": {
                "https://registry.example.com/v1/": {"auth": auth},
                "other.example.com": {"username": "bob", "password": "pw"},
                "tokens.example.com": {"identitytoken": "refresh-me"},
            }
        },
    )
    found = credentials.from_docker_config("registry.example.com", config)
    assert (found.username, found.password) == ("alice", "s3cret:with:colons")
    assert "s3cret" not in repr(found)
    assert credentials.from_docker_config("other.example.com", config).username == "bob"
    assert credentials.from_docker_config("tokens.example.com", config).identity_token == "refresh-me"
    assert credentials.from_docker_config("nowhere.example.com", config).anonymous
    hub = _config(tmp_path / "hub", {"auths": {"https://index.docker.io/v1/": {"auth": auth}}})
    assert credentials.from_docker_config("docker.io", hub).username == "alice"  # as docker login files it
    assert credentials.from_docker_config("x", tmp_path / "missing.json").anonymous
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError):
        credentials.from_docker_config("x", tmp_path / "bad.json")


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-kktest"
    helper.write_text(
        "#!/bin/sh\nread host\n"
        'if [ "$host" = registry.example.com ]; then echo \'{"Username":"robot","Secret":"tok"}\'; exit 0; fi\n'
        'if [ "$host" = id.example.com ]; then echo \'{"Username":"<token>","Secret":"refresh"}\'; exit 0; fi\n'
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = _config(tmp_path / "docker", {"credHelpers": {"registry.example.com": "kktest"}, "credsStore": "kktest"})
    found = credentials.from_docker_config("registry.example.com", config)
    assert (found.username, found.password, found.source) == ("robot", "tok", "docker-credential-kktest")
    assert credentials.from_docker_config("id.example.com", config).identity_token == "refresh"
    assert credentials.from_docker_config("unknown.example.com", config).anonymous
    missing = _config(tmp_path / "docker2", {"credHelpers": {"registry.example.com": "absent"}})
    with pytest.raises(UsageError, match="docker-credential-absent"):
        credentials.from_docker_config("registry.example.com", missing)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("KUBEKEEP_REGISTRY_USERNAME", "env-user")
    monkeypatch.setenv("KUBEKEEP_REGISTRY_PASSWORD", "env-pw")
    assert credentials.find("registry.example.com").username == "env-user"  # the environment first
    monkeypatch.delenv("KUBEKEEP_REGISTRY_USERNAME")
    assert credentials.find("registry.example.com").username == "robot"


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:a/b:pull,push",
        "error": "insufficient_scope",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


# -- the transport against loopback servers ----------------------------------------------------------

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def serving(handle: Handler) -> Iterator[int]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        def do_POST(self) -> None:
            handle(self)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _reply(req: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    req.send_response(status)
    for key, value in headers.items():
        req.send_header(key.replace("_", "-"), value)
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)


def test_redirects_keep_credentials_at_the_registry() -> None:
    seen: dict[str, str | None] = {}

    def storage(req: http.server.BaseHTTPRequestHandler) -> None:
        seen["storage"] = req.headers.get("Authorization")
        _reply(req, 200, b"blob bytes")

    with serving(storage) as storage_port:

        def registry(req: http.server.BaseHTTPRequestHandler) -> None:
            seen["registry"] = req.headers.get("Authorization")
            if not req.headers.get("Authorization"):
                _reply(req, 401, WWW_Authenticate='Basic realm="r"')
                return
            # another host (localhost, not 127.0.0.1): where registries send blob reads
            _reply(req, 307, Location=f"http://localhost:{storage_port}/signed?x=1")

        with serving(registry) as port:
            t = Transport(f"http://127.0.0.1:{port}", credentials.Credentials("u", "p", source="test"))
            answer = t.request("GET", "/v2/r/blobs/sha256:00")
    assert answer.status == 200 and answer.data == b"blob bytes"
    assert seen["registry"] is not None and seen["registry"].startswith("Basic ")
    assert seen["storage"] is None


def test_an_identity_token_is_exchanged_for_a_bearer_token() -> None:
    """`docker login` to an OAuth2 registry leaves an identity token: a refresh token, POSTed."""
    forms: list[dict[str, list[str]]] = []

    def token_service(req: http.server.BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length", "0"))
        forms.append(urllib.parse.parse_qs(req.rfile.read(length).decode()) if req.command == "POST" else {})
        _reply(req, 200, json.dumps({"access_token": "granted", "expires_in": 60}).encode())

    with serving(token_service) as token_port:

        def registry(req: http.server.BaseHTTPRequestHandler) -> None:
            if req.headers.get("Authorization") != "Bearer granted":
                realm = f"http://127.0.0.1:{token_port}/token"
                challenge = f'Bearer realm="{realm}",service="reg",scope="repository:a/b:pull"'
                _reply(req, 401, WWW_Authenticate=challenge)
                return
            _reply(req, 200, b"{}")

        with serving(registry) as port:
            t = Transport(
                f"http://127.0.0.1:{port}", credentials.Credentials(identity_token="refresh-me", source="test")
            )
            assert t.request("GET", "/v2/").status == 200
            assert t.request("GET", "/v2/").status == 200  # the token is kept
    assert len(forms) == 1
    assert forms[0]["grant_type"] == ["refresh_token"] and forms[0]["refresh_token"] == ["refresh-me"]
    assert forms[0]["service"] == ["reg"] and forms[0]["scope"] == ["repository:a/b:pull"]


def test_a_redirect_away_from_https_is_refused() -> None:
    def registry(req: http.server.BaseHTTPRequestHandler) -> None:
        _reply(req, 302, Location="ftp://elsewhere/x")

    with serving(registry) as port:
        t = Transport(f"http://127.0.0.1:{port}", credentials.ANONYMOUS)
        with pytest.raises(StorageError, match="redirected to a ftp URL"):
            t.request("GET", "/v2/r/blobs/sha256:00")


def test_429_and_5xx_are_tried_again() -> None:
    calls: list[int] = []

    def flaky(req: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:
            _reply(req, 429, Retry_After="0")
        elif len(calls) == 2:
            _reply(req, 503)
        else:
            _reply(req, 200, b"{}")

    with serving(flaky) as port:
        t = Transport(f"http://127.0.0.1:{port}", credentials.ANONYMOUS)
        assert t.request("GET", "/v2/").status == 200
    assert len(calls) == 3


def test_oversized_answers_are_refused() -> None:
    def big(req: http.server.BaseHTTPRequestHandler) -> None:
        _reply(req, 200, b"x" * 5000)

    with serving(big) as port:
        t = Transport(f"http://127.0.0.1:{port}", credentials.ANONYMOUS)
        with pytest.raises(StorageError, match="more than the 100 expected"):
            t.request("GET", "/v2/", limit=100)


# -- a registry that lies --------------------------------------------------------------------------


@pytest.mark.oci
def test_a_manifest_for_another_name_or_bytes_off_their_digest_are_refused(
    oci_registry: Registry, oci_repository: str
) -> None:
    backend = OciBackend(oci_registry.host, oci_repository, **oci_registry.backend_options())
    try:
        backend.store("snapshots/real", b"the real snapshot")
        manifest = backend._http.request("GET", f"/v2/{oci_repository}/manifests/{tags.to_tag('snapshots/real')}",
                                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})  # fmt: skip
        # the same manifest pushed under another object's tag: its annotation names snapshots/real
        put = backend._http.request(
            "PUT",
            f"/v2/{oci_repository}/manifests/{tags.to_tag('snapshots/other')}",
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            body=manifest.data,
        )
        assert put.status == 201
        with pytest.raises(StorageError, match="not a kubekeep object's"):
            backend.load("snapshots/other")

        real = backend._http.request

        def tampered(method: str, url: str, **kw: object) -> object:
            answer = real(method, url, **kw)  # type: ignore[arg-type]
            if "/blobs/" in url and method == "GET":
                return type(answer)(answer.status, answer.headers, answer.data[:-1] + b"!")
            return answer

        backend._http.request = tampered  # type: ignore[method-assign,assignment]
        with pytest.raises(StorageError, match="do not match their digest"):
            backend.load("snapshots/real")
    finally:
        backend.close()


@pytest.mark.oci
def test_listing_follows_the_link_header_across_pages(
    oci_registry: Registry, oci_repository: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubekeep.storage.oci import backend as oci_backend

    monkeypatch.setattr(oci_backend, "LIST_PAGE", 2)
    backend = OciBackend(oci_registry.host, oci_repository, **oci_registry.backend_options())
    pages: list[str] = []
    real = backend._http.request

    def counting(method: str, url: str, **kw: object) -> object:
        if "/tags/list" in url:
            pages.append(url)
        return real(method, url, **kw)  # type: ignore[arg-type]

    try:
        names = {f"index/{i:02d}": i for i in range(7)}
        for name, size in names.items():
            backend.store(name, b"x" * size)
        backend._http.request = counting  # type: ignore[method-assign,assignment]
        assert {o.name: o.size for o in backend.list("index/")} == names
        assert len(pages) == 4 and all("n=2" in page for page in pages)
    finally:
        backend.close()


@pytest.mark.oci
def test_a_registry_that_ignores_range_is_checked_and_cut(oci_registry: Registry, oci_repository: str) -> None:
    backend = OciBackend(oci_registry.host, oci_repository, **oci_registry.backend_options())
    data = bytes(range(256)) * 40
    real = backend._http.request

    def no_ranges(method: str, url: str, **kw: object) -> object:
        headers = dict(kw.pop("headers", None) or {})  # type: ignore[call-overload]
        headers.pop("Range", None)
        return real(method, url, headers=headers, **kw)  # type: ignore[arg-type]

    try:
        backend.store("data/ab/whole", data)
        backend._http.request = no_ranges  # type: ignore[method-assign,assignment]
        assert backend.load("data/ab/whole", 1000, 500) == data[1000:1500]
    finally:
        backend.close()


@pytest.mark.oci
def test_retention_dates_are_refused_in_one_line(oci_registry: Registry, oci_repository: str) -> None:
    import datetime as dt

    from kubekeep.storage.base import Retention

    backend = OciBackend(oci_registry.host, oci_repository, **oci_registry.backend_options())
    try:
        support = backend.lock_support()
        assert not support.object_lock and support.why_not and "registry" in support.why_not
        with pytest.raises(StorageError, match="cannot hold retention dates"):
            backend.store("config", b"x", retention=Retention("governance", dt.datetime.now(dt.UTC)))
    finally:
        backend.close()


@contextlib.contextmanager
def connect_proxy() -> Iterator[tuple[int, list[str]]]:
    """A CONNECT-only HTTP proxy on loopback; yields its port and the targets and
    Proxy-Authorization headers it was asked for."""
    import select
    import socket
    import socketserver

    seen: list[str] = []

    class Tunnel(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.connection.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].decode().split(" ", 2)
            auth = [ln.decode() for ln in lines[1:] if ln.lower().startswith(b"proxy-authorization:")]
            seen.append(f"{method} {target} {auth[0].split(':', 1)[1].strip() if auth else '-'}")
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                self.connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                ends = [self.connection, upstream]
                while True:
                    ready, _, _ = select.select(ends, [], [], 5)
                    if not ready:
                        return
                    for end in ready:
                        data = end.recv(65536)
                        if not data:
                            return
                        (upstream if end is self.connection else self.connection).sendall(data)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tunnel)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.oci
def test_https_proxy_from_the_environment(
    oci_registry: Registry, oci_repository: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with connect_proxy() as (port, seen):
        monkeypatch.setenv("HTTPS_PROXY", f"http://proxy-user:proxy%20pw@127.0.0.1:{port}")
        backend = OciBackend(oci_registry.host, oci_repository, **oci_registry.backend_options())
        try:
            backend.store("keys/through-the-proxy", b"tunnelled")
            assert backend.load("keys/through-the-proxy") == b"tunnelled"
        finally:
            backend.close()
        expected = "Basic " + base64.b64encode(b"proxy-user:proxy pw").decode()
        assert seen and all(entry == f"CONNECT {oci_registry.host} {expected}" for entry in seen)

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        seen.clear()
        backend = OciBackend(oci_registry.host, oci_repository, **oci_registry.backend_options())
        try:
            assert backend.exists("keys/through-the-proxy")
        finally:
            backend.close()
        assert not seen
