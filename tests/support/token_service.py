"""A registry token service (the distribution spec's token flow) for the test registry.

It answers ``GET /token?service=...&scope=...`` over HTTPS: with the test user's basic
credentials it grants every action the scopes ask for, without (or with others) it answers 401.
Tokens are JWTs signed ES256 with the registry's server key; the ``x5c`` header carries its
certificate, which the registry checks against the CA in its ``rootcertbundle``.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "kubekeep-test-token-service"
SERVICE = "kubekeep-test-registry"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_token(
    key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, subject: str, access: list[dict[str, object]]
) -> str:
    """A JWT as the registry's token access controller checks it."""
    header = {
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()],
    }
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": secrets.token_hex(8),
        "access": access,
    }
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _access(scopes: list[str]) -> list[dict[str, object]]:
    granted = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name:
            granted.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return granted


@contextlib.contextmanager
def running_token_service(
    host: str, cert_file: Path, key_file: Path, username: str, password: str, *, tls: bool = True
) -> Iterator[tuple[str, list[str]]]:
    """Serve tokens on a free port of ``host`` (over HTTPS with the certificate that also signs
    the tokens, or plain HTTP for a plain-HTTP registry); yields the realm URL and the list of
    the requests' subjects (``anonymous`` or the user), for tests to look at."""
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the token service signs with an EC key")
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            auth = self.headers.get("Authorization", "")
            if url.path != "/token" or query.get("service") != [SERVICE]:
                self._answer(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            if auth != expected:
                seen.append("refused" if auth else "anonymous")
                self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                return
            seen.append(username)
            token = sign_token(key, cert, username, _access(query.get("scope", [])))
            self._answer(200, {"token": token, "expires_in": 300})

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="token-service", daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://{host}:{server.server_address[1]}/token", seen
    finally:
        server.shutdown()
        server.server_close()
