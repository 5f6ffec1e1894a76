"""A thin, thread-safe JSON REST client for the test apiserver.

Used for bootstrapping and seeding, where the ``kubernetes`` client's model
layer is pure overhead: one pooled urllib3 manager (keep-alive connections,
client-certificate auth) shared by all threads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3


class ApiError(RuntimeError):
    """A non-2xx answer from the apiserver."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        self.body = body

    @property
    def reason(self) -> str:
        """Kubernetes Status reason (``AlreadyExists``, ``NotFound``, ``Forbidden``...)."""
        return self.body.get("reason", "") if isinstance(self.body, dict) else ""


def resource_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """URL path of a resource collection or object."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace)}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name)}"
    return base


class RestClient:
    """JSON over HTTPS with client-certificate auth and a shared connection pool."""

    def __init__(
        self,
        server: str,
        *,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        maxsize: int = 16,
        timeout: float = 30.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=maxsize,
            block=True,
            ca_certs=str(ca_file),
            cert_file=str(cert_file),
            key_file=str(key_file),
            retries=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
            headers={"Accept": "application/json", "User-Agent": "kubekeep-testenv"},
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send a request; return the decoded JSON body or raise :class:`ApiError`."""
        url = self.server + path + (("?" + urlencode(params)) if params else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else None
        resp = self._http.request(method, url, body=data, headers=headers)
        try:
            decoded = json.loads(resp.data) if resp.data else None
        except json.JSONDecodeError:
            decoded = resp.data.decode(errors="replace")
        if resp.status >= 300:
            raise ApiError(method, path, resp.status, decoded)
        return decoded

    def get(self, path: str, **params: str) -> Any:
        """GET a path."""
        return self.request("GET", path, params=params or None)

    def create(self, path: str, obj: dict[str, Any], *, exist_ok: bool = False) -> Any:
        """POST ``obj`` to a collection path; optionally tolerate AlreadyExists."""
        try:
            return self.request("POST", path, obj)
        except ApiError as err:
            if exist_ok and err.status == 409:
                return None
            raise

    def apply(self, path: str, obj: dict[str, Any], *, manager: str = "kubekeep-testenv") -> Any:
        """Server-side apply ``obj`` at its object path (create or update)."""
        return self.request(
            "PATCH",
            path,
            obj,
            params={"fieldManager": manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def delete(self, path: str, *, missing_ok: bool = True) -> Any:
        """DELETE an object; optionally tolerate NotFound."""
        try:
            return self.request("DELETE", path)
        except ApiError as err:
            if missing_ok and err.status == 404:
                return None
            raise

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()
