"""Who may use the UI: the token (URL, cookie, bearer), the Host check, the origin and CSRF
checks on posts, --allow-restore, and the headers every response carries."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine.repository import Repository
from kubekeep.ui.access import csrf_token, is_loopback
from kubekeep.ui.server import parse_listen
from tests.ui.conftest import TOKEN, UIServer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def ui(make_repo: Callable[[str], Repository], ui_server: Callable[..., UIServer], tmp_path: Path) -> UIServer:
    repo = make_repo("repo")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "secret.txt").write_text("top secret\n")
    api.backup(repo, str(tmp_path / "src"))
    return ui_server(repo)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/static/ui.css",
        "/static/pygments.css",
        "/s/latest/tree/secret.txt",
        "/s/latest/raw/secret.txt",
        "/diff?a=latest&b=latest",
        "/no-such-page",
    ],
)
def test_every_path_needs_the_token(ui: UIServer, path: str) -> None:
    for headers in (
        {},
        {"Cookie": "kubekeep_ui=wrong"},
        {"Authorization": "Bearer wrong"},
        {"Cookie": f"other_cookie={TOKEN}"},
    ):
        status, _, body = ui.get(path, token=False, headers=headers)
        assert status == 403, (path, headers)
        assert b"top secret" not in body and b"access denied" in body


def test_token_url_sets_a_strict_cookie_and_drops_the_token(ui: UIServer) -> None:
    status, headers, _ = ui.get(f"/s/latest/tree/?q=sec&token={TOKEN}&page=1", token=False)
    assert status == 303
    assert headers["location"] == "/s/latest/tree/?q=sec&page=1"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"kubekeep_ui={TOKEN};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    status, _, _ = ui.get(f"/?token=x{TOKEN}", token=False)
    assert status == 403
    status, _, body = ui.get("/s/latest/tree/secret.txt", token=False, headers={"Cookie": f"kubekeep_ui={TOKEN}"})
    assert status == 200 and b"top secret" in body
    status, _, body = ui.get("/s/latest/tree/secret.txt", token=False, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"top secret" in body


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x", "///evil.example", "//evil.example"])
def test_the_token_redirect_stays_on_this_server(ui: UIServer, path: str) -> None:
    """``//host`` after the token redirect would be a protocol-relative URL to another site."""
    status, headers, _ = ui.get(f"{path}?token={TOKEN}", token=False)
    assert status == 303
    location = headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location


def test_security_headers(ui: UIServer) -> None:
    for path in ("/", "/static/ui.js"):
        status, headers, _ = ui.get(path)
        assert status == 200
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert ui.get("/")[1]["cache-control"] == "no-store"


def test_host_header_must_be_loopback(ui: UIServer) -> None:
    port = ui.base.rsplit(":", 1)[1]
    status, _, body = ui.get("/", headers={"Host": f"attacker.example:{port}"})
    assert status == 403 and b"unexpected Host" in body
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]:80"):
        assert ui.get("/", headers={"Host": host})[0] == 200, host


def test_posts_need_the_origin_and_the_csrf_token(ui: UIServer) -> None:
    snap = "latest"
    form = {"csrf": csrf_token(TOKEN), "namespace": "web"}
    status, _, body = ui.get(
        f"/s/{snap}/restore",
        data=urllib.parse.urlencode(form).encode(),
        headers={**FORM, "Origin": "http://attacker.example"},
    )
    assert status == 403 and b"cross-origin" in body
    status, _, body = ui.get(
        f"/s/{snap}/restore",
        data=urllib.parse.urlencode({**form, "csrf": "nope"}).encode(),
        headers={**FORM, "Origin": ui.base},
    )
    assert status == 403 and b"CSRF" in body
    status, _, body = ui.get(
        f"/s/{snap}/restore", data=urllib.parse.urlencode(form).encode(), headers={**FORM, "Origin": ui.base}
    )
    assert status == 400 and b"only manifests snapshots" in body  # past the checks


def test_restore_is_refused_without_allow_restore(ui: UIServer) -> None:
    form = urllib.parse.urlencode({"csrf": csrf_token(TOKEN), "confirm": "yes"}).encode()
    status, _, body = ui.get("/restore/some-plan/apply", data=form, headers=FORM)
    assert status == 403 and b"--allow-restore" in body


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1") == ("127.0.0.1", None)
    assert parse_listen("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    assert parse_listen("9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("::1") == ("::1", None)
    with pytest.raises(errors.UsageError, match="port from 0 to 65535"):
        parse_listen("127.0.0.1:99999")
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.com")
