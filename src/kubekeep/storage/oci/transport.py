"""HTTP to one registry: TLS, authentication as registries ask for it, retries, redirects.

Authentication follows the registry's ``WWW-Authenticate`` challenge (the distribution
spec's token flow): ``Basic`` sends the credentials to the registry itself; ``Bearer`` asks the
token service the challenge names (``realm``, ``service``, ``scope``) for a token, with the
credentials if there are any (anonymous otherwise), and sends that. Tokens are kept per set of
scopes until they expire. Credentials never go anywhere over plain HTTP unless the user asked
for plain HTTP, and never to a host a redirect leads to: registries redirect blob reads to
their storage (S3, a CDN) with a signed URL that needs no credentials.

429 and 5xx answers and dropped connections are tried again, with exponential backoff and
jitter (``Retry-After`` honoured, up to a bound); a TLS failure, a refusal or a 4xx is not.
"""

from __future__ import annotations

import base64
import json
import random
import re
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

import urllib3
import urllib3.exceptions as uexc

from kubekeep.errors import StorageError
from kubekeep.storage.oci.credentials import Credentials

DEFAULT_ATTEMPTS = 5
#: 401s answered by authenticating again before giving up (a token can expire in flight, and a
#: new scope needs a new token)
AUTH_ROUNDS = 3
MAX_REDIRECTS = 5
MAX_POOL = 16
#: the longest ``Retry-After`` waited for; a registry asking for more fails the request
MAX_RETRY_AFTER_S = 30.0
#: token answers and error bodies are small; a larger one is not a registry's
MAX_SMALL_BODY = 1 << 20
_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


class AuthFailed(StorageError):
    """The registry or its token service refused the credentials (or wants some)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    #: by lower-case name
    headers: Mapping[str, str]
    data: bytes

    def header(self, name: str) -> str:
        return str(self.headers.get(name.lower(), "") or "")


@dataclass(slots=True)
class _Token:
    value: str
    expires: float
    scopes: frozenset[str]


@dataclass(slots=True)
class _AuthState:
    """What the registry last asked for: a scheme (``basic``/``bearer``) and, for bearer, the
    token service, the scopes asked for so far and the token that covers them. ``generation``
    counts changes, so that a thread refused with an older token retries with the newer one
    instead of fetching another."""

    scheme: str = ""
    realm: str = ""
    service: str = ""
    scopes: set[str] = field(default_factory=set)
    token: _Token | None = None
    generation: int = 0


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ``("bearer", {...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): (m[2] if m[2] else m[3]).replace('\\"', '"') for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


class Transport:
    """Requests to ``base_url`` (``https://host[:port]``); safe to use from several threads."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        ca_file: str | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parsed = urllib.parse.urlsplit(self.base_url)
        self.scheme = parsed.scheme
        self.host = parsed.netloc.lower()
        self.credentials = credentials
        self.attempts = max(1, attempts)
        self.ca_file = ca_file
        self._auth = _AuthState()
        self._auth_lock = threading.Lock()
        self._fetch_lock = threading.Lock()  # one token request at a time; the others wait for it
        settings = {
            "num_pools": 4,
            "maxsize": MAX_POOL,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": ca_file,
            "retries": False,
            "timeout": urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        }
        proxy = proxy_for(self.scheme, parsed.netloc)
        try:
            if proxy is None:
                self._pool: urllib3.PoolManager = urllib3.PoolManager(**settings)  # type: ignore[arg-type]
            else:
                url, headers = proxy
                self._pool = urllib3.ProxyManager(url, proxy_headers=headers, **settings)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError) as exc:
            raise StorageError(f"cannot use the CA file {ca_file}: {exc}") from exc
        except ValueError as exc:  # a malformed proxy URL
            raise StorageError(f"cannot use the proxy for registry {self.host}: {exc}") from exc

    def close(self) -> None:
        self._pool.clear()

    # -- requests ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        limit: int = MAX_SMALL_BODY,
        what: str = "",
    ) -> Answer:
        """Send one request (``url`` absolute or relative to the registry), authenticating,
        retrying and following redirects; return the final answer whatever its status
        (a 401 after authenticating raises ``AuthFailed``). Bodies above ``limit`` raise."""
        target = url if "://" in url else self.base_url + url
        what = what or f"{method} {urllib.parse.urlsplit(target).path}"
        for _ in range(AUTH_ROUNDS):
            header, generation = self._authorization()
            answer = self._follow(method, target, headers or {}, body, limit, what, header)
            if answer.status != 401:
                return answer
            challenge = answer.header("WWW-Authenticate")
            if not challenge:
                break
            self._authenticate(challenge, what, generation)
        raise self._refused(what, answer.header("WWW-Authenticate"))

    def _follow(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        limit: int,
        what: str,
        auth: str | None,
    ) -> Answer:
        for _ in range(MAX_REDIRECTS + 1):
            send = dict(headers)
            if auth and urllib.parse.urlsplit(url).netloc.lower() == self.host:
                send["Authorization"] = auth  # never to the storage a redirect leads to
            answer = self._retrying(method, url, send, body, limit, what)
            if answer.status not in _REDIRECT_STATUS or method not in ("GET", "HEAD"):
                return answer
            location = answer.header("Location")
            if not location:
                raise StorageError(f"registry {self.host}: {what} was redirected nowhere (no Location)")
            nxt = urllib.parse.urljoin(url, location)
            scheme = urllib.parse.urlsplit(nxt).scheme
            if scheme != "https" and not (scheme == "http" and self.scheme == "http"):
                raise StorageError(
                    f"registry {self.host}: {what} was redirected to a {scheme or 'relative'} URL, refused"
                )
            url = nxt
        raise StorageError(f"registry {self.host}: {what} was redirected more than {MAX_REDIRECTS} times")

    def _retrying(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, limit: int, what: str
    ) -> Answer:
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = self._pool.request(
                    method, url, headers=headers, body=body, redirect=False, preload_content=False
                )
                try:
                    data = b"" if method == "HEAD" else _read(response, limit, what, self.host)
                finally:
                    response.release_conn()
            except uexc.SSLError as exc:
                raise StorageError(
                    f"TLS verification failed for registry {self.host}: {_reason(exc)}; give its CA with "
                    "--registry-ca (KUBEKEEP_REGISTRY_CA), or --insecure-registry for plain HTTP"
                ) from exc
            except (uexc.HTTPError, OSError) as exc:
                if last:
                    raise StorageError(f"cannot reach registry {self.host} ({what}): {_reason(exc)}") from exc
                _sleep(attempt, None)
                continue
            answer = Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, data)
            if answer.status in _RETRIED_STATUS and not last:
                if not _sleep(attempt, answer.header("Retry-After")):
                    return answer
                continue
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    # -- authentication ----------------------------------------------------------------------------

    def _authorization(self) -> tuple[str | None, int]:
        """The Authorization header to send, and the generation of the state it came from."""
        with self._auth_lock:
            state = self._auth
            if state.scheme == "basic":
                return _basic(self.credentials), state.generation
            if state.scheme == "bearer" and state.token and state.token.expires > time.monotonic():
                return f"Bearer {state.token.value}", state.generation
            return None, state.generation

    def _authenticate(self, challenge: str, what: str, sent: int) -> None:
        """Answer a 401 to a request sent with the state of generation ``sent``."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials.anonymous or not self.credentials.username:
                raise AuthFailed(
                    f"registry {self.host} needs credentials ({what}): docker login {self.host}, or set "
                    "KUBEKEEP_REGISTRY_USERNAME and KUBEKEEP_REGISTRY_PASSWORD"
                )
            with self._auth_lock:
                if self._auth.scheme != "basic":
                    self._auth = _AuthState(scheme="basic", generation=self._auth.generation + 1)
            return
        if scheme != "bearer" or not params.get("realm"):
            raise AuthFailed(f"registry {self.host} asks for an authentication kubekeep does not know: {scheme}")
        wanted = {s for s in params.get("scope", "").split(" ") if s}
        with self._fetch_lock:
            with self._auth_lock:
                state = self._auth
                if params["realm"] != state.realm or params.get("service", "") != state.service:
                    state = self._auth = _AuthState(
                        scheme="bearer",
                        realm=params["realm"],
                        service=params.get("service", ""),
                        generation=state.generation + 1,
                    )
                state.scheme = "bearer"
                state.scopes |= wanted
                token = state.token
                if state.generation != sent and token and wanted <= token.scopes and token.expires > time.monotonic():
                    return  # another thread fetched a token that covers this since we sent
                scopes, realm, service = frozenset(state.scopes), state.realm, state.service
            token = self._fetch_token(realm, service, scopes)
            with self._auth_lock:
                self._auth.token = token
                self._auth.generation += 1

    def _fetch_token(self, realm: str, service: str, scopes: frozenset[str]) -> _Token:
        creds = self.credentials
        realm_scheme = urllib.parse.urlsplit(realm).scheme
        if realm_scheme not in ("https", "http"):
            raise AuthFailed(f"registry {self.host} names a token service that is no URL: {realm!r}")
        if realm_scheme == "http" and not creds.anonymous and self.scheme != "http":
            raise AuthFailed(f"registry {self.host} names a token service over plain HTTP ({realm}): refused")
        query = [("service", service)] if service else []
        query += [("scope", s) for s in sorted(scopes)]
        if creds.identity_token:
            form = urllib.parse.urlencode(
                [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token), ("client_id", "kubekeep")]
                + query
            ).encode()
            answer = self._retrying(
                "POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, form, MAX_SMALL_BODY, "token"
            )
        else:
            headers = {} if creds.anonymous else {"Authorization": _basic(creds)}
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
            answer = self._retrying("GET", url, headers, None, MAX_SMALL_BODY, "token")
        if answer.status in (401, 403):
            raise AuthFailed(
                f"the token service of registry {self.host} refused the credentials from {creds.source} "
                f"(HTTP {answer.status}): check the user name and password"
            )
        if answer.status != 200:
            raise StorageError(f"the token service of registry {self.host} answered HTTP {answer.status}")
        try:
            doc = json.loads(answer.data)
            value = str(doc.get("token") or doc.get("access_token") or "")
            expires_in = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            value, expires_in = "", 0.0
        if not value:
            raise StorageError(f"the token service of registry {self.host} gave no token")
        # renew a little early: a token that expires in flight costs a 401 and a retry
        return _Token(value, time.monotonic() + max(expires_in - 10.0, 1.0), scopes)

    def _refused(self, what: str, challenge: str) -> AuthFailed:
        if self.credentials.anonymous:
            return AuthFailed(
                f"registry {self.host} needs credentials ({what}): docker login {self.host}, or set "
                "KUBEKEEP_REGISTRY_USERNAME and KUBEKEEP_REGISTRY_PASSWORD"
            )
        error = parse_challenge(challenge)[1].get("error", "") if challenge else ""
        detail = f" ({error})" if error else ""
        return AuthFailed(
            f"registry {self.host} refused the credentials from {self.credentials.source}{detail}: "
            "check the user name and password (docker login, or KUBEKEEP_REGISTRY_USERNAME/PASSWORD)"
        )


def proxy_for(scheme: str, netloc: str) -> tuple[str, dict[str, str]] | None:
    """The proxy ``HTTPS_PROXY`` / ``HTTP_PROXY`` name for ``scheme`` (``NO_PROXY`` honoured), as
    a URL without credentials and the headers carrying them; None for a direct connection."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme)
    if not url or urllib.request.proxy_bypass(netloc):
        return None
    parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    headers: dict[str, str] = {}
    if parsed.username is not None:
        userinfo = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
        headers = dict(urllib3.make_headers(proxy_basic_auth=userinfo))
    host = parsed.hostname or ""
    netloc_only = f"[{host}]" if ":" in host else host
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{netloc_only}{port}", headers


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")


def _read(response: urllib3.BaseHTTPResponse, limit: int, what: str, host: str) -> bytes:
    """The body, refusing one above ``limit`` (declared or sent) and one cut short."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise StorageError(f"registry {host}: {what} answered {declared} bytes, more than the {limit} expected")
    # with a declared length within bounds, one read into one buffer (http.client's); reads of
    # a bounded amount go through urllib3's chunk queue, a copy more (a quarter of a 16 MiB read)
    known = declared is not None and declared.isdigit()
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        known = False  # a compressed body may unpack to more than it declares: read it bounded
    data = response.read(decode_content=True) if known else response.read(limit + 1, decode_content=True)
    if len(data) > limit:
        raise StorageError(f"registry {host}: {what} answered more than the {limit} bytes expected")
    if known and len(data) != int(str(declared)) and response.status < 300:  # cut short
        raise uexc.ProtocolError(f"the answer ended after {len(data)} of {declared} bytes")
    return bytes(data)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = " ".join(str(reason).split())
    # urllib3 wraps the socket error in its own text; the last part says what happened
    return text.rsplit(": ", 1)[-1] if "Failed to establish a new connection" in text else text


def _sleep(attempt: int, retry_after: str | None) -> bool:
    """Wait before the next attempt; False if the server asks for longer than we wait."""
    delay = min(5.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())
    if retry_after:
        try:
            wanted = float(retry_after)
        except ValueError:
            wanted = delay
        if wanted > MAX_RETRY_AFTER_S:
            return False
        delay = max(delay, wanted)
    time.sleep(delay)
    return True
