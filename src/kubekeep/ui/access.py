"""Who may use the UI: the holder of the access token, from the expected host, and for changes,
from a page the UI served.

* Every request needs the token: ``?token=`` on the first URL (which is then answered with a
  redirect that drops it and sets an HttpOnly, SameSite=Strict cookie, as Jupyter does), the
  cookie, or an ``Authorization: Bearer`` header. Anything else is refused with 403.
* When the server listens on loopback, the Host header must name loopback too, so that a web
  page cannot reach the UI through a DNS name rebound to 127.0.0.1.
* Requests that are not GET or HEAD must come from the UI's own origin (when the browser says
  where from) and carry the CSRF token of its forms (checked by the handlers, ``csrf_token``).
* Every response forbids framing, inline scripts and caching of pages.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        (
            b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
DENIED = (
    "<!doctype html><title>kubekeep ui: access denied</title><h1>403: access denied</h1>"
    "<p>Open the URL that <code>kubekeep ui</code> printed: it carries the access token.</p>"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def csrf_token(token: str) -> str:
    """The token the UI's forms carry (derived from the access token, so never in a URL)."""
    return hmac.new(token.encode(), b"kubekeep-ui-csrf", hashlib.sha256).hexdigest()[:40]


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class AccessGuard:
    """ASGI middleware enforcing the rules above."""

    def __init__(self, app: ASGIApp, *, token: str, cookie: str, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(_host_name(host)):
            await _plain(send, 403, f"403: unexpected Host {host!r}: use the URL kubekeep ui printed")
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given:
            if not self._valid(given[0]):
                await _html(send, 403, DENIED)
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = _same_origin(scope.get("root_path", "") + scope["path"]) + (f"?{rest}" if rest else "")
            cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await _respond(
                send, 303, b"", [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1"))]
            )
            return
        if not (
            self._valid(_cookie(headers.get("cookie", ""), self.cookie))
            or self._valid(headers.get("authorization", "").removeprefix("Bearer "))
        ):
            await _html(send, 403, DENIED)
            return
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and origin != f"{scope.get('scheme', 'http')}://{host}":
                await _plain(send, 403, "403: cross-origin request refused")
                return
        await self.app(scope, receive, _with_headers(send, scope["path"].startswith("/static/")))

    def _valid(self, value: str | None) -> bool:
        if not value:
            return False
        return hmac.compare_digest(value.encode("utf-8", "replace"), self.token.encode())


def _same_origin(path: str) -> str:
    """``path`` as a redirect target that stays on this server: a path with one leading ``/``
    (``//host`` or ``/\\host`` is another site to a browser), percent-encoded."""
    if not path.startswith("/") or path[1:2] in ("/", "\\"):
        return "/"
    return quote(path, safe="/:@!$&'()*+,;=-._~")


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _with_headers(send: Send, static: bool) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers += SECURITY_HEADERS
            if not static:
                headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)

    return wrapped


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                *SECURITY_HEADERS,
                (b"cache-control", b"no-store"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _html(send: Send, status: int, text: str) -> None:
    await _respond(send, status, text.encode(), [(b"content-type", b"text/html; charset=utf-8")])


async def _plain(send: Send, status: int, text: str) -> None:
    await _respond(send, status, (text + "\n").encode(), [(b"content-type", b"text/plain; charset=utf-8")])
