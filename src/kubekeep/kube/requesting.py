"""Raw JSON requests to the API server.

Requests go through the client library's urllib3 pool (so TLS, client certificates, proxies
and token refresh are configured exactly as ``config.connect`` loaded them) but bodies stay
bytes: lists of thousands of objects are parsed with orjson, never turned into the library's
model classes. Connection failures become ``SourceUnreachable``; HTTP errors become
``ApiError`` with the API's own message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3

from kubekeep import __version__, errors
from kubekeep.kube.config import ClusterAccess

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
USER_AGENT = f"kubekeep/{__version__}"
_RETRY_STATUSES = (500, 502, 503, 504)
_OBJECT_AT = re.compile(r"<[^>]+ object at 0x[0-9a-f]+>: ")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    data: bytes
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.data) if self.data else None


def api_path(
    group: str, version: str, resource: str, *, namespace: str = "", name: str = "", subresource: str = ""
) -> str:
    """REST path of a collection or object: ``/api/v1/...`` for the core group, else ``/apis/G/V/...``."""
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{resource}"
    if name:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def status_message(data: bytes) -> tuple[str, str]:
    """``(message, reason)`` from a ``Status`` body, or the body's start if it is not one."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace").strip()
        return (text.splitlines()[0][:200] if text else ""), ""
    if isinstance(body, dict):
        return str(body.get("message") or ""), str(body.get("reason") or "")
    return "", ""


class Session:
    """Requests to one API server; safe to use from many threads at once."""

    def __init__(self, access: ClusterAccess, *, max_attempts: int = 5) -> None:
        self.access = access
        self.server = access.server.rstrip("/")
        self.context = access.context
        self._pool = access.api_client.rest_client.pool_manager
        self._config = access.api_client.configuration
        self._max_attempts = max_attempts
        # tokens may be refreshed by the library before each request; certificates need nothing
        self._static_auth = not self._config.auth_settings() and self._config.refresh_api_key_hook is None
        self._retries = {
            True: urllib3.Retry(connect=2, read=2, redirect=0, status=0, other=0),
            False: urllib3.Retry(connect=2, read=0, redirect=0, status=0, other=0),
        }

    def close(self) -> None:
        self.access.api_client.close()

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        if self._static_auth:
            return headers
        for auth in self._config.auth_settings().values():  # bearer tokens, refreshed by the library
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = JSON,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and return the response whatever its status. Retries on 429 (as the
        server asks) and, for GETs, on 5xx; raises ``SourceUnreachable`` if the server cannot be
        reached."""
        url = self.server + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None and v != ""})
        headers = self._headers(accept, content_type or (JSON if body is not None else None))
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        for attempt in range(1, self._max_attempts + 1):
            try:
                r = self._pool.request(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    preload_content=True,
                    retries=self._retries[method == "GET"],
                    **extra,
                )
            except urllib3.exceptions.HTTPError as exc:
                raise errors.SourceUnreachable(
                    f"cannot reach the Kubernetes API at {self.server}: {_reason(exc)}"
                ) from None
            response = Response(r.status, r.data or b"", r.headers)
            retry = r.status == 429 or (method == "GET" and r.status in _RETRY_STATUSES)
            if not retry or attempt == self._max_attempts:
                return response
            time.sleep(_retry_after(r.headers.get("Retry-After"), attempt))
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, **kwargs: Any) -> Response:
        """``request`` that raises ``ApiError`` (or a credentials error) unless the status is 2xx."""
        response = self.request(method, path, **kwargs)
        if not response.ok:
            raise self.error(method, path, response)
        return response

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        """GET ``path`` and return the parsed JSON body (an API object or list)."""
        body: dict[str, Any] = self.call("GET", path, query=query).json()
        return body

    def call_unless_missing(self, method: str, path: str, **kwargs: Any) -> Response | None:
        """``call``, but None for 404 (the object, or its resource type, does not exist)."""
        response = self.request(method, path, **kwargs)
        if response.status == 404:
            return None
        if not response.ok:
            raise self.error(method, path, response)
        return response

    def get_or_none(self, path: str, **query: Any) -> dict[str, Any] | None:
        """``get``, but None for 404."""
        response = self.call_unless_missing("GET", path, query=query)
        body: dict[str, Any] | None = None if response is None else response.json()
        return body

    def error(self, method: str, path: str, response: Response) -> errors.ApiError:
        message, reason = status_message(response.data)
        if response.status == 401:
            return errors.ApiError(
                f"the Kubernetes API at {self.server} rejected the credentials of context "
                f"{self.context!r} (401 Unauthorized); check the kubeconfig's user or token",
                status=401,
                reason=reason or "Unauthorized",
            )
        detail = message or f"HTTP {response.status}"
        return errors.ApiError(f"{method} {path}: {detail}", status=response.status, reason=reason)


def _reason(exc: Exception) -> str:
    inner = getattr(exc, "reason", None) or exc
    text = _OBJECT_AT.sub("", str(inner))
    return text.split("(Caused by ")[0].strip().rstrip(":") or type(inner).__name__


def _retry_after(header: str | None, attempt: int) -> float:
    try:
        return min(10.0, max(0.1, float(header))) if header else min(5.0, 0.2 * 2**attempt)
    except ValueError:
        return 1.0
