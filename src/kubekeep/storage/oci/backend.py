"""A repository in an OCI registry: ``oci://REGISTRY/REPOSITORY``.

Each object is one blob (its bytes, named by their SHA-256) and one small OCI image manifest
(``artifactType`` :data:`ARTIFACT_TYPE`, the blob as its one layer, the object's name as an
annotation) tagged with the name (``tags.to_tag``). So a store is a blob upload then a manifest
PUT: the tag appears whole or not at all. A load resolves the tag to its manifest (kept in
memory for names that are content-addressed, so never change) and reads the blob, with a
``Range`` for part of it. Listing pages through ``/tags/list`` (the ``Link`` header) and reads
each listed manifest for the size (once per process for content-addressed names). A delete
removes the manifest; the registry's garbage collection frees the blob later.

What a registry cannot do: an exclusive store is a check then a write, best effort against a
concurrent writer (registries have no conditional tag writes), as ``S3Backend`` without
conditional writes; no retention dates. docs/storage.md says why and what it costs.

The registry is not trusted: manifests are parsed strictly and must name the object asked for,
a whole blob read is checked against its digest, a partial read against its length, and every
answer's size is bounded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubekeep.errors import ObjectNotFound, RepositoryExists, StorageError
from kubekeep.storage.base import Backend, LockSupport, ObjectInfo, Retention
from kubekeep.storage.oci import credentials as creds
from kubekeep.storage.oci import tags
from kubekeep.storage.oci.transport import Answer, Transport

ARTIFACT_TYPE = "application/vnd.kubekeep.object.v1"
LAYER_TYPE = "application/vnd.kubekeep.object.v1"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_BLOB).hexdigest()
NAME_ANNOTATION = "org.kubekeep.object.name"
#: our manifests are under 1 KiB; the distribution spec lets registries refuse above 4 MiB
MAX_MANIFEST = 64 * 1024
#: tags asked for per ``/tags/list`` page
LIST_PAGE = 1000
#: manifests read at once when a listing needs the sizes
LIST_WORKERS = 8
#: names that never change once written (named by the hash of their bytes: docs/format.md)
CONTENT_ADDRESSED = ("data/", "index/", "snapshots/")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True, slots=True)
class _Object:
    """What a tag resolves to."""

    manifest: str
    blob: str
    size: int


def valid_repository(path: str) -> bool:
    """A repository name as the distribution spec allows it."""
    return len(path) <= 255 and bool(_REPOSITORY.fullmatch(path))


class OciBackend(Backend):
    """Objects as tagged single-layer artifacts in ``REGISTRY/REPOSITORY``."""

    #: uploads wait on the network, as S3's do
    parallel_stores = 4
    deferred_reclaim = (
        "the registry frees deleted objects' space at its next garbage collection "
        "(distribution: registry garbage-collect --delete-untagged)"
    )

    def __init__(
        self,
        registry: str,
        repository: str,
        *,
        insecure: bool = False,
        ca_file: str | None = None,
        credentials: creds.Credentials | None = None,
        max_attempts: int | None = None,
        location: str | None = None,
    ) -> None:
        self.registry = registry.lower()
        self.repository = repository
        self.location = location or f"oci://{registry}/{repository}"
        self._where = f"{self.registry}/{repository}"
        scheme = "http" if insecure else "https"
        found = credentials if credentials is not None else creds.find(self.registry)
        # docker.io names Docker Hub, whose registry API answers at registry-1.docker.io
        api_host = "registry-1.docker.io" if self.registry in creds.DOCKER_HUB else self.registry
        self._http = Transport(f"{scheme}://{api_host}", found, ca_file=ca_file, attempts=max_attempts or 5)
        self._base = f"/v2/{repository}"
        self._cache: dict[str, _Object] = {}
        self._lock = threading.Lock()
        self._empty_uploaded = False

    def __repr__(self) -> str:
        return f"OciBackend({self.location!r})"

    # -- Backend -------------------------------------------------------------------------------

    def lock_support(self) -> LockSupport:
        return LockSupport(
            False,
            False,
            why_not=(
                "an OCI registry cannot hold retention dates: whoever may push may delete; replicate to a "
                "second registry with other credentials, or use S3 with Object Lock (docs/storage.md)"
            ),
        )

    def create(self) -> None:
        answer = self._http.request("GET", "/v2/", what="version check")
        if answer.status != 200:
            raise StorageError(
                f"{self.registry} does not answer as an OCI registry (GET /v2/: HTTP {answer.status}): "
                "check the location"
            )
        if self.exists("config"):
            raise RepositoryExists(f"a repository already exists at {self.location}")

    def exists(self, name: str) -> bool:
        tag = tags.to_tag(name)
        answer = self._http.request("HEAD", f"{self._base}/manifests/{tag}", headers=_ACCEPT, what=f"check {name}")
        if answer.status == 200:
            return True
        if answer.status == 404:
            return False
        raise self._error(answer, "check", name)

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range offset={offset} length={length}")
        for fresh in (False, True):
            obj = self._resolve(name, fresh=fresh)
            if obj is None:
                raise ObjectNotFound(f"object {self._where}/{name} not found")
            end = obj.size if length is None else min(obj.size, offset + length)
            if offset >= end:
                return b""
            data = self._read_blob(obj, offset, end, name)
            if data is not None:
                return data
            self._forget(name)  # the blob went (a delete and a GC since we resolved): ask again
        raise ObjectNotFound(f"object {self._where}/{name} not found")

    def store(
        self, name: str, data: bytes | memoryview, *, exclusive: bool = False, retention: Retention | None = None
    ) -> None:
        if retention is not None:
            raise StorageError(f"{self.location}: an OCI registry cannot hold retention dates (see docs/storage.md)")
        tag = tags.to_tag(name)
        body = bytes(data)
        if exclusive and self.exists(name):
            raise StorageError(f"object {self._where}/{name} already exists")
        blob = "sha256:" + hashlib.sha256(body).hexdigest()
        self._ensure_empty_config()
        self._upload(blob, body, name)
        manifest = _manifest(name, blob, len(body))
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        answer = self._http.request(
            "PUT",
            f"{self._base}/manifests/{tag}",
            headers={"Content-Type": MANIFEST_TYPE},
            body=manifest,
            what=f"write {name}",
        )
        if answer.status not in (200, 201):
            raise self._error(answer, "write", name)
        if exclusive:
            # best effort: a writer that raced us between the check and the PUT shows here
            # if its PUT came after ours
            now = self._resolve(name, fresh=True)
            if now is None or now.manifest != digest:
                raise StorageError(f"object {self._where}/{name} already exists (written concurrently)")
        with self._lock:
            self._cache[name] = _Object(digest, blob, len(body))

    def delete(self, name: str) -> None:
        tag = tags.to_tag(name)
        self._forget(name)
        head = self._http.request("HEAD", f"{self._base}/manifests/{tag}", headers=_ACCEPT, what=f"delete {name}")
        if head.status == 404:
            return
        if head.status != 200:
            raise self._error(head, "delete", name)
        digest = head.header("Docker-Content-Digest")
        if not _DIGEST.fullmatch(digest):
            obj = self._resolve(name, fresh=True)
            if obj is None:
                return
            digest = obj.manifest
        answer = self._http.request("DELETE", f"{self._base}/manifests/{digest}", what=f"delete {name}")
        if answer.status in (200, 202, 404):
            self._forget(name)
            return
        if answer.status == 405:
            raise StorageError(
                f"registry {self.registry} does not allow deleting manifests (HTTP 405): enable deletes "
                "(distribution: storage.delete.enabled) or use a registry that allows them"
            )
        raise self._error(answer, "delete", name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        names = [n for n in self._all_names() if n.startswith(prefix)]
        if not names:
            return
        with ThreadPoolExecutor(min(LIST_WORKERS, len(names)), thread_name_prefix="kubekeep-oci-list") as pool:
            for name, obj in zip(names, pool.map(self._resolve, names), strict=True):
                if obj is not None:  # deleted since the tag list was read
                    yield ObjectInfo(name, obj.size)

    def close(self) -> None:
        self._http.close()

    # -- registry requests -------------------------------------------------------------------------

    def _all_names(self) -> Iterator[str]:
        url: str | None = f"{self._base}/tags/list?n={LIST_PAGE}"
        seen: set[str] = set()
        pages = 0
        while url:
            answer = self._http.request("GET", url, what="list tags")
            if answer.status == 404 and pages == 0:
                return  # a repository nothing was pushed to yet
            if answer.status != 200:
                raise self._error(answer, "list")
            pages += 1
            try:
                listed = json.loads(answer.data).get("tags") or []
            except (ValueError, AttributeError):
                raise StorageError(f"registry {self.registry} answered a tag list that is not JSON") from None
            if not isinstance(listed, list):
                raise StorageError(f"registry {self.registry} answered a malformed tag list")
            for tag in listed:
                name = tags.to_name(tag) if isinstance(tag, str) else None
                if name is not None and name not in seen:
                    seen.add(name)
                    yield name
            url = self._next_page(answer, url)

    def _next_page(self, answer: Answer, current: str) -> str | None:
        match = _LINK_NEXT.search(answer.header("Link"))
        if not match:
            return None
        nxt = urllib.parse.urljoin(self._http.base_url + current if "://" not in current else current, match[1])
        parsed = urllib.parse.urlsplit(nxt)
        if parsed.netloc.lower() != self._http.host or not parsed.path.startswith(f"{self._base}/tags/list"):
            raise StorageError(f"registry {self.registry} gave a tag list page elsewhere: {match[1]!r}")
        return f"{parsed.path}?{parsed.query}"

    def _resolve(self, name: str, *, fresh: bool = False) -> _Object | None:
        if not fresh:
            with self._lock:
                if cached := self._cache.get(name):
                    return cached
        tag = tags.to_tag(name)
        answer = self._http.request(
            "GET", f"{self._base}/manifests/{tag}", headers=_ACCEPT, limit=MAX_MANIFEST, what=f"read {name}"
        )
        if answer.status == 404:
            self._forget(name)
            return None
        if answer.status != 200:
            raise self._error(answer, "read", name)
        obj = _parse_manifest(answer.data, name, self._where)
        if name.startswith(CONTENT_ADDRESSED):
            with self._lock:
                self._cache[name] = obj
        return obj

    def _forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)

    def _read_blob(self, obj: _Object, start: int, end: int, name: str) -> bytes | None:
        """Bytes ``[start, end)`` of the blob (whole ones checked against the digest); None if
        the registry no longer has it."""
        whole = start == 0 and end == obj.size
        headers = {} if whole else {"Range": f"bytes={start}-{end - 1}"}
        answer = self._http.request(
            "GET", f"{self._base}/blobs/{obj.blob}", headers=headers, limit=obj.size, what=f"read {name}"
        )
        if answer.status == 404:
            return None
        if answer.status not in (200, 206):
            raise self._error(answer, "read", name)
        data = answer.data
        if answer.status == 200 and not whole:
            if len(data) != obj.size:  # a registry that ignores Range sent it all
                raise StorageError(f"registry {self.registry} sent {len(data)} bytes of {name}, not {obj.size}")
            if "sha256:" + hashlib.sha256(data).hexdigest() != obj.blob:
                raise StorageError(f"registry {self.registry} sent bytes for {name} that do not match their digest")
            data = data[start:end]
        if whole and "sha256:" + hashlib.sha256(data).hexdigest() != obj.blob:
            raise StorageError(f"registry {self.registry} sent bytes for {name} that do not match their digest")
        if len(data) != end - start:
            raise StorageError(f"registry {self.registry} sent {len(data)} bytes of {name}, not {end - start}")
        return data

    def _upload(self, digest: str, body: bytes, name: str) -> None:
        start = self._http.request("POST", f"{self._base}/blobs/uploads/", what=f"write {name}")
        if start.status != 202 or not start.header("Location"):
            raise self._error(start, "write", name)
        location = urllib.parse.urljoin(self._http.base_url + f"{self._base}/blobs/uploads/", start.header("Location"))
        parsed = urllib.parse.urlsplit(location)
        if parsed.scheme not in ("https", "http") or (parsed.scheme == "http" and self._http.scheme != "http"):
            raise StorageError(f"registry {self.registry} gave an upload URL kubekeep refuses: {location!r}")
        put = location + ("&" if parsed.query else "?") + urllib.parse.urlencode({"digest": digest})
        done = self._http.request(
            "PUT",
            put,
            headers={"Content-Type": "application/octet-stream"},
            body=body,
            what=f"write {name}",
        )
        if done.status != 201:
            raise self._error(done, "write", name)

    def _ensure_empty_config(self) -> None:
        """The empty config every manifest names must be in the repository (once per process)."""
        if self._empty_uploaded:
            return
        head = self._http.request("HEAD", f"{self._base}/blobs/{EMPTY_DIGEST}", what="check the empty config")
        if head.status != 200:
            self._upload(EMPTY_DIGEST, EMPTY_BLOB, "the empty config")
        self._empty_uploaded = True

    def _error(self, answer: Answer, action: str, name: str | None = None) -> StorageError:
        what = f"{self._where}/{name}" if name else self._where
        code, message = _error_code(answer.data)
        if answer.status == 403:
            return StorageError(
                f"registry {self.registry} denied the {action} of {what} ({code or 'HTTP 403'}): these credentials "
                "are not allowed to; check the repository's permissions"
            )
        if code == "NAME_UNKNOWN":
            return StorageError(f"registry {self.registry} has no repository {self.repository}")
        detail = f"{code}: {message}" if code else f"HTTP {answer.status}"
        return StorageError(f"registry {action} of {what} failed: {detail}")


_ACCEPT = {"Accept": MANIFEST_TYPE}


def _manifest(name: str, blob: str, size: int) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": blob, "size": size}],
        "annotations": {NAME_ANNOTATION: name},
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _parse_manifest(data: bytes, name: str, where: str) -> _Object:
    """Our manifest for ``name``, checked field by field; anything else is refused."""
    try:
        doc = json.loads(data)
        layers = doc["layers"]
        layer = layers[0]
        ok = (
            doc.get("schemaVersion") == 2
            and doc.get("mediaType", MANIFEST_TYPE) == MANIFEST_TYPE
            and doc.get("artifactType") == ARTIFACT_TYPE
            and len(layers) == 1
            and layer.get("mediaType") == LAYER_TYPE
            and isinstance(layer.get("digest"), str)
            and _DIGEST.fullmatch(layer["digest"]) is not None
            and isinstance(layer.get("size"), int)
            and not isinstance(layer.get("size"), bool)
            and layer["size"] >= 0
            and doc.get("annotations", {}).get(NAME_ANNOTATION) == name
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise StorageError(f"the manifest of {where}/{name} is not a kubekeep object's: refused")
    return _Object("sha256:" + hashlib.sha256(data).hexdigest(), str(layer["digest"]), int(layer["size"]))


def _error_code(data: bytes) -> tuple[str, str]:
    """The first error of a registry's error body (``{"errors": [{"code", "message"}]}``)."""
    try:
        first = json.loads(data)["errors"][0]
        return str(first.get("code", "")), " ".join(str(first.get("message", "")).split())[:200]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", ""
