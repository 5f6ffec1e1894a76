"""Reading the version kubekeep wrote, in a bucket with Object Lock (and so versioning) on.

Every name kubekeep stores is written once (packs, index and snapshot files are named by the
hash of their bytes; config and keys are stored exclusively), except the repository lock files
under ``locks/``, which are refreshed in place. In a versioned bucket, a PUT over an existing key
does not replace it: it adds a newer version, and a plain GET returns that one. Someone holding
the backup credentials (which may PUT) could so hide a locked pack, snapshot or key behind a
forgery, and a plain read would trust it. So, in a bucket with Object Lock on, reads of
write-once names ask for the **oldest** version of the key, the one kubekeep wrote (the lock
keeps it until its retention lapses); later versions are reported by ``check`` as overwrites.

The oldest version is found with ListObjectVersions (one request per key, cached for the life
of the backend; versions of a key are listed newest first). Whether the bucket has Object Lock
is asked once (GetObjectLockConfiguration) before the first read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import botocore.exceptions as bexc

#: name prefixes of objects kubekeep rewrites in place (read at their newest version)
MUTABLE_PREFIXES = ("locks/",)


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key, as ListObjectVersions gives it."""

    version_id: str
    etag: str
    size: int


class FirstVersions:
    """Which version of a key to read: the oldest, when the bucket has Object Lock on."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._enabled: bool | None = None
        self._oldest: dict[str, str] = {}
        self._lock = threading.Lock()

    def enabled(self) -> bool:
        """True if the bucket has Object Lock on (asked once). A 4xx answer (no configuration,
        not implemented by the server, AccessDenied) counts as off: the policy examples of
        docs/immutability.md grant ``s3:GetBucketObjectLockConfiguration``. A server error raises."""
        if self._enabled is None:
            try:
                answer = self._client.get_object_lock_configuration(Bucket=self._bucket)
                enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except bexc.ClientError as exc:
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                if status >= 500 or status == 0:
                    raise  # the server failed (botocore has retried): not an answer
                enabled = False  # no configuration, not implemented, or not ours to know
            self._enabled = enabled
        return self._enabled

    def version_id(self, key: str, name: str) -> str | None:
        """The version of ``key`` to read, or None to read the newest (no Object Lock, or a name
        that is rewritten in place). Raises ``LookupError`` if the key has no version at all."""
        if name.startswith(MUTABLE_PREFIXES) or not self.enabled():
            return None
        with self._lock:
            known = self._oldest.get(key)
        if known is not None:
            return known
        versions = self.versions(key)
        if not versions:
            raise LookupError(key)
        oldest = versions[-1].version_id
        with self._lock:
            self._oldest[key] = oldest
        return oldest

    def versions(self, key: str) -> list[KeyVersion]:
        """Every stored version of ``key`` (not delete markers), newest first."""
        found: list[KeyVersion] = []
        paginator = self._client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=key):
            for item in page.get("Versions", ()):
                if item["Key"] == key:
                    found.append(KeyVersion(str(item["VersionId"]), str(item.get("ETag", "")), int(item["Size"])))
        return found

    def all_versions(self, prefix: str) -> dict[str, list[KeyVersion]]:
        """Every key under ``prefix`` -> its stored versions (not delete markers), newest first."""
        found: dict[str, list[KeyVersion]] = {}
        paginator = self._client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Versions", ()):
                version = KeyVersion(str(item["VersionId"]), str(item.get("ETag", "")), int(item["Size"]))
                found.setdefault(str(item["Key"]), []).append(version)
        return found

    def forget(self, key: str) -> None:
        """Drop what is known of ``key`` (it was deleted, or is written anew)."""
        with self._lock:
            self._oldest.pop(key, None)
