"""JSON requests and watches against the test apiserver, for the simulated node-side parts.

Built on a ``kubernetes`` ApiClient's urllib3 pool (TLS and client certificate as the
kubeconfig says) but independent of kubekeep's own Kubernetes code: the simulation must not
share code with what it is used to test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import urllib3

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

Obj = dict[str, Any]

SNAPSHOT_GROUP = "snapshot.storage.k8s.io/v1"


class SimApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


def path_of(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    if sub:
        base += f"/{sub}"
    return base


class SimApi:
    """Thread-safe: the pool is shared, requests carry no state."""

    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client
        self.server = api_client.configuration.host.rstrip("/")
        self._pool = api_client.rest_client.pool_manager

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> Any:
        url = self.server + path + ("?" + urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "User-Agent": "kubekeep-simcsi"}
        if data is not None:
            headers["Content-Type"] = content_type
        r = self._pool.request(
            method, url, body=data, headers=headers, retries=False, timeout=urllib3.Timeout(connect=5.0, read=30.0)
        )
        decoded = json.loads(r.data) if r.data else None
        if r.status == 404 and missing_ok:
            return None
        if r.status >= 300:
            raise SimApiError(method, path, r.status, decoded)
        return decoded

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None, missing_ok=True)

    def create(self, path: str, obj: Obj, *, exist_ok: bool = False) -> Any:
        try:
            return self.request("POST", path, obj)
        except SimApiError as err:
            if exist_ok and err.status == 409:
                return None
            raise

    def merge(self, path: str, patch: Obj) -> Any:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json", missing_ok=True)

    def apply(self, path: str, obj: Obj) -> Any:
        return self.request(
            "PATCH",
            path,
            obj,
            query={"fieldManager": "kubekeep-simcsi", "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def delete(self, path: str, body: Obj | None = None) -> Any:
        return self.request("DELETE", path, body, missing_ok=True)

    def event(self, obj: Obj, reason: str, message: str, *, warning: bool = False, component: str = "simcsi") -> None:
        """Record an Event on ``obj`` as a controller or kubelet would."""
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "count": 1,
        }
        try:
            self.create(path_of("v1", "events", ns), body)
        except SimApiError:
            pass  # events are best effort, as in Kubernetes

    def watch(
        self, path: str, resource_version: str, *, timeout_s: int = 240, query: dict[str, Any] | None = None
    ) -> Iterator[Obj]:
        """Watch events until the server ends the watch; raises SimApiError(410) when too old."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
            **(query or {}),
        }
        url = self.server + path + "?" + urlencode(params)
        r = self._pool.request(
            "GET",
            url,
            headers={"Accept": "application/json"},
            preload_content=False,
            retries=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout_s + 30),
        )
        try:
            if r.status >= 300:
                raise SimApiError("WATCH", path, r.status, json.loads(r.data or b"null"))
            buf = b""
            for piece in r.stream(65536, decode_content=True):
                buf += piece
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object", {}).get("code", 500)
                            raise SimApiError("WATCH", path, int(status), event.get("object"))
                        yield event
        finally:
            r.release_conn()


def now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
