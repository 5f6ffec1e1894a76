"""``s3://BUCKET[/PREFIX]`` as a destination: a snapshot's files written as plain S3 objects
(``PREFIX/<path>``), readable by any S3 tool; for instance a volume's files handed to a data
pipeline. This is not a repository (``-r s3://...`` is): nothing is deduplicated or encrypted.

Each file becomes one object (a multipart upload above ``MULTIPART_THRESHOLD``), with its mode,
owner and modification time as user metadata (``x-amz-meta-kubekeep-mode`` ...). Directories
need no object; symlinks have no S3 equivalent and are reported, not written. A file whose
stored data fails verification is not written at all (its upload is aborted).

Credentials, region and endpoint come as for an S3 repository (``AWS_*``,
``KUBEKEEP_S3_ENDPOINT``) or from options: ``endpoint_url``, ``region``, ``access_key``,
``secret_key`` (also ``?endpoint=URL&region=R`` in the URI).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl

import botocore.exceptions as bexc

from kubekeep import errors
from kubekeep.engine.entries import Entry, Exporter, SourceInfo
from kubekeep.storage.s3 import S3Backend

SCHEME = "s3"
#: files larger than this are uploaded in parts of ``PART_SIZE``
MULTIPART_THRESHOLD = 32 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """``s3://BUCKET[/PREFIX][?endpoint=URL&region=R]`` -> ``(bucket, prefix, options)``."""
    if not uri.lower().startswith("s3://"):
        raise errors.UsageError(f"bad S3 destination {uri!r}: expected s3://BUCKET[/PREFIX]")
    rest, _, query = uri[5:].partition("?")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise errors.UsageError(f"bad S3 destination {uri!r}: no bucket")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise errors.UsageError(f"bad S3 destination {uri!r}: '.' and '..' are not allowed in the prefix")
    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("endpoint", "region"):
            raise errors.UsageError(f"unknown S3 destination option {key!r} (endpoint, region)")
        options["endpoint_url" if key == "endpoint" else key] = value
    return bucket, "/".join(parts), options


#: S3 answers that refuse one object, not the whole destination
_ENTRY_REFUSED = {"AccessDenied", "KeyTooLongError", "InvalidObjectName"}


class _Bucket(S3Backend):
    """The storage backend's client (configuration, retries, error mapping) used for plain
    objects under a prefix, with any key the snapshot's paths need."""

    def object_key(self, path: str) -> str:
        return self._key_root + path

    def check(self) -> None:
        """Fail now, not after the first file, if the bucket is not there or not ours."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - mapped to kubekeep's errors
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise errors.ConnectorError(f"bucket {self.bucket} does not exist at {self.endpoint_url}") from None
            self._raise(exc, "check")

    def put_stream(self, path: str, data: Iterable[bytes], size: int, metadata: dict[str, str]) -> None:
        key = self.object_key(path)
        if size <= MULTIPART_THRESHOLD:
            body = b"".join(data)
            try:
                self._client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)
            except Exception as exc:  # noqa: BLE001 - mapped to kubekeep's errors
                self._refused_entry(exc, path)
                self._raise(exc, "write", path)
            return
        try:
            upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=metadata)
        except Exception as exc:  # noqa: BLE001
            self._refused_entry(exc, path)
            self._raise(exc, "write", path)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            buf = bytearray()
            for piece in data:
                buf += piece
                while len(buf) >= PART_SIZE:
                    parts.append(self._part(key, upload_id, len(parts) + 1, bytes(buf[:PART_SIZE]), path))
                    del buf[:PART_SIZE]
            if buf or not parts:
                parts.append(self._part(key, upload_id, len(parts) + 1, bytes(buf), path))
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the original failure is the one to report
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            if isinstance(exc, Exception) and not isinstance(exc, errors.KubekeepError):
                self._refused_entry(exc, path)
                self._raise(exc, "write", path)
            raise

    def _refused_entry(self, exc: Exception, path: str) -> None:
        """Raise ``EntryFailed`` when S3 refused this one object (a policy denying its key, a key
        it does not take): the restore reports it and goes on. Anything else (the bucket, the
        network, the credentials) is for ``_raise`` and ends the restore."""
        if isinstance(exc, bexc.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _ENTRY_REFUSED:
                message = " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())
                raise errors.EntryFailed(f"S3 refused to write {path} ({code}): {message or 'refused'}") from exc

    def _part(self, key: str, upload_id: str, number: int, body: bytes, path: str) -> dict[str, Any]:
        response = self._client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": response["ETag"]}


class S3Exporter(Exporter):
    scheme = SCHEME

    def __init__(self, bucket: str, prefix: str, **options: Any) -> None:
        self.bucket = _Bucket(bucket, prefix, **options)
        self._symlinks: list[str] = []
        self._lock = threading.Lock()
        self.objects = 0

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        self.bucket.check()

    def directory(self, entry: Entry) -> None:
        """S3 has no directories: their files' keys carry the path."""

    def symlink(self, entry: Entry) -> None:
        with self._lock:
            self._symlinks.append(entry.path)

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        metadata = {
            "kubekeep-mode": f"{entry.mode:04o}",
            "kubekeep-uid": str(entry.uid),
            "kubekeep-gid": str(entry.gid),
            "kubekeep-mtime-ns": str(entry.mtime_ns),
        }
        self.bucket.put_stream(entry.path, data, entry.size, metadata)
        with self._lock:
            self.objects += 1

    def finish(self) -> list[str]:
        if not self._symlinks:
            return []
        shown = ", ".join(self._symlinks[:3]) + (
            f" and {len(self._symlinks) - 3} more" if len(self._symlinks) > 3 else ""
        )
        return [f"{len(self._symlinks)} symlink(s) not written (S3 has no symlinks): {shown}"]

    def close(self) -> None:
        self.bucket.close()


@dataclass(frozen=True)
class S3DestinationOptions:
    """Where and as whom to write; each given one overrides the URI's query and the environment."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    verify_tls: bool | None = None


DESTINATION_OPTIONS = S3DestinationOptions


def open_exporter(uri: str, options: S3DestinationOptions) -> S3Exporter:
    bucket, prefix, from_uri = parse_uri(uri)
    given = {f.name: getattr(options, f.name) for f in fields(options)}
    merged: dict[str, Any] = {**from_uri, **{k: v for k, v in given.items() if v is not None}}
    return S3Exporter(bucket, prefix, **merged)
