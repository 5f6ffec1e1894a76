"""A repository under a prefix of an S3 (or S3-compatible) bucket, via boto3.

Each object ``name`` is the key ``<prefix>/<name>``. ``put_object`` is atomic by S3
semantics. Exclusive stores send ``If-None-Match: *`` (conditional write); on servers that
reject the header they fall back to HEAD-then-PUT, which is only best effort against a
concurrent writer. Servers that silently ignore the header cannot be detected: pass
``conditional_writes=False`` for them to at least get the HEAD check.

Settings not given explicitly come from the usual AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_CA_BUNDLE``, ``AWS_MAX_ATTEMPTS``) and
``KUBEKEEP_S3_ENDPOINT``, which takes precedence over ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NoReturn, NotRequired, TypedDict

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

from kubekeep.errors import (
    DeleteRefused,
    ObjectNotFound,
    RepositoryExists,
    RepositoryNotFound,
    StorageError,
    UsageError,
)
from kubekeep.storage.base import RETENTION_MODES, Backend, LockSupport, ObjectInfo, Retention
from kubekeep.storage.local import validate_name
from kubekeep.storage.s3_versions import MUTABLE_PREFIXES, FirstVersions

ENDPOINT_ENV = "KUBEKEEP_S3_ENDPOINT"
DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_ATTEMPTS = 5
MAX_POOL_CONNECTIONS = 16
#: conditional PUTs of an exclusive store tried while concurrent conditional writes conflict
CONDITIONAL_PUT_ATTEMPTS = 3


class _CreateBucket(TypedDict):
    """Arguments of ``create_bucket``."""

    Bucket: str
    CreateBucketConfiguration: NotRequired[dict[str, str]]


class _GetObject(TypedDict):
    """Arguments of ``get_object``."""

    Bucket: str
    Key: str
    Range: NotRequired[str]
    VersionId: NotRequired[str]


class _PutObject(TypedDict):
    """Arguments of ``put_object`` (an exclusive store adds ``IfNoneMatch``)."""

    Bucket: str
    Key: str
    Body: bytes
    ContentMD5: str
    ObjectLockMode: NotRequired[str]
    ObjectLockRetainUntilDate: NotRequired[dt.datetime]


_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_AUTH = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
    "403",
}
#: how servers other than AWS answer a deletion Object Lock refuses (MinIO: 400 InvalidRequest)
_WORM_REFUSED = {"InvalidRequest", "ObjectLocked", "400"}
_PRECONDITION = {"PreconditionFailed", "412"}
_CONDITIONAL_UNSUPPORTED = {"NotImplemented", "501", "InvalidArgument", "InvalidRequest"}
_CONDITIONAL_CONFLICT = {"ConditionalRequestConflict", "409"}
_BODY_ERRORS = (
    bexc.IncompleteReadError,
    bexc.ResponseStreamingError,
    bexc.ReadTimeoutError,
    bexc.ConnectionClosedError,
)


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _ShortBody(Exception):
    """An answer's body is shorter than the answer said (a cut connection)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _mode(mode: str) -> str:
    """S3's spelling of a retention mode."""
    if mode not in RETENTION_MODES:
        raise UsageError(f"retention mode must be one of {', '.join(RETENTION_MODES)}, not {mode!r}")
    return mode.upper()


def _code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Backend(Backend):
    """Objects as keys under ``s3://bucket/prefix``; one thread-safe boto3 client."""

    #: keys asked for per ListObjectsV2 request (S3 returns at most 1000)
    list_page_size: int = 1000

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        addressing_style: Literal["path", "virtual"] | None = None,
        verify_tls: bool | str = True,
        conditional_writes: bool | None = None,
        max_attempts: int | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        location: str | None = None,
    ) -> None:
        """Build the client; no request is made until the first operation.

        ``verify_tls`` may also be a CA bundle path. ``conditional_writes``: None tries
        ``If-None-Match`` and falls back when rejected; False always uses HEAD-then-PUT.
        ``max_attempts`` counts the first try (standard retry mode).
        """
        if not bucket:
            raise UsageError("an S3 location needs a bucket name: s3://BUCKET[/PREFIX]")
        if (access_key is None) != (secret_key is None):
            raise UsageError("give both an S3 access key and a secret key, or neither")
        if addressing_style not in (None, "path", "virtual"):
            raise UsageError(f"addressing style must be 'path' or 'virtual', not {addressing_style!r}")
        self.bucket = bucket
        self.prefix = "/".join(p for p in prefix.split("/") if p)
        self._where = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.location = location or self._where
        self._key_root = f"{self.prefix}/" if self.prefix else ""
        self._conditional = conditional_writes
        env_attempts = os.environ.get("AWS_MAX_ATTEMPTS", "")
        default_attempts = int(env_attempts) if env_attempts.isdigit() else DEFAULT_MAX_ATTEMPTS
        self._attempts = max(1, max_attempts or default_attempts)

        endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                aws_session_token=session_token,
            )
            region = (
                region
                or os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or session.region_name
                or DEFAULT_REGION
            )
        except bexc.ProfileNotFound as exc:
            raise UsageError(f"AWS profile not found: {_one_line(str(exc))}") from exc
        custom_endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        style = addressing_style or ("path" if custom_endpoint else "auto")
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": style},
            retries={"mode": "standard", "total_max_attempts": self._attempts},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Newer botocore adds CRC checksums by default, which some S3-compatible
            # servers reject; we send Content-MD5 on uploads instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            # Any: the S3 client's methods are made at run time; their types would need the
            # mypy-boto3-s3 stubs, which kubekeep does not install
            self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config, verify=verify_tls)
        except ValueError as exc:  # e.g. a malformed endpoint URL
            raise UsageError(f"invalid S3 endpoint {endpoint_url!r}: {_one_line(str(exc))}") from exc
        self.endpoint_url: str = self._client.meta.endpoint_url
        #: in a bucket with Object Lock, reads of write-once names take the version kubekeep wrote
        self.first_versions = FirstVersions(self._client, bucket)

    def __repr__(self) -> str:
        return f"S3Backend({self.location!r}, endpoint={self.endpoint_url!r})"

    # -- helpers -----------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        validate_name(name)
        return self._key_root + name

    def _raise(self, exc: Exception, action: str, name: str | None = None) -> NoReturn:
        """Translate a boto3/botocore exception into kubekeep's hierarchy."""
        what = f"{self._where}/{name}" if name else self._where
        if isinstance(exc, bexc.ClientError):
            code = _code(exc)
            message = _one_line(exc.response.get("Error", {}).get("Message", "") or code)
            if code == "NoSuchBucket":
                raise RepositoryNotFound(f"bucket {self.bucket} does not exist at {self.endpoint_url}") from exc
            if code in _NOT_FOUND and name is not None:
                raise ObjectNotFound(f"object {what} not found") from exc
            if code == "AccessDenied":  # valid credentials (a wrong key is InvalidAccessKeyId) without the right
                raise StorageError(
                    f"S3 at {self.endpoint_url} denied the {action} of {what} (AccessDenied): these "
                    "credentials are not allowed to; check the bucket's and the user's policies"
                ) from exc
            if code in _AUTH:
                raise StorageError(
                    f"S3 at {self.endpoint_url} refused the credentials for {what} ({code}): "
                    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the "
                    "bucket's permissions"
                ) from exc
            raise StorageError(f"S3 {action} of {what} failed: {code}: {message}") from exc
        if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
            raise StorageError(
                f"no S3 credentials for {self._where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ) from exc
        if isinstance(exc, bexc.SSLError):
            raise StorageError(
                f"TLS verification failed for S3 endpoint {self.endpoint_url}: "
                "set AWS_CA_BUNDLE or disable verification for a self-signed certificate"
            ) from exc
        if isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectTimeoutError):
            raise StorageError(f"cannot reach S3 endpoint {self.endpoint_url}: {_one_line(str(exc))}") from exc
        if isinstance(exc, bexc.BotoCoreError):
            raise StorageError(f"S3 {action} of {what} failed: {_one_line(str(exc))}") from exc
        raise exc

    # -- Backend -----------------------------------------------------------------------------

    def create(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except bexc.ClientError as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                self._raise(exc, "check")
            self._create_bucket()
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "check")
        if self.exists("config"):
            raise RepositoryExists(f"a repository already exists at {self._where}")

    def _create_bucket(self) -> None:
        params: _CreateBucket = {"Bucket": self.bucket}
        region = self._client.meta.region_name
        if region and region != DEFAULT_REGION:
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**params)
        except bexc.ClientError as exc:
            code = _code(exc)
            if code == "BucketAlreadyOwnedByYou":
                return
            if code == "BucketAlreadyExists":
                raise StorageError(f"bucket {self.bucket} belongs to another account: choose another name") from exc
            self._raise(exc, "bucket creation")
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "bucket creation")

    def exists(self, name: str) -> bool:
        """True if the key exists; False also for a missing bucket (HEAD cannot tell)."""
        key = self._key(name)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except bexc.ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            self._raise(exc, "check", name)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "check", name)
        return True

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range offset={offset} length={length}")
        key = self._key(name)
        if length == 0:
            return b""
        params: _GetObject = {"Bucket": self.bucket, "Key": key}
        try:
            version = self.first_versions.version_id(key, name)
        except LookupError:
            raise ObjectNotFound(f"object {self._where}/{name} not found") from None
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "read", name)
        if version is not None:
            params["VersionId"] = version
        if length is not None:
            params["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            params["Range"] = f"bytes={offset}-"
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._client.get_object(**params)
                body: bytes = response["Body"].read()
                self._check_length(response, body, name, offset, version)
                return body
            except bexc.ClientError as exc:
                if _code(exc) == "InvalidRange":
                    return b""  # offset at or past the end, as a short read locally
                self._raise(exc, "read", name)
            except (*_BODY_ERRORS, _ShortBody) as exc:
                if attempt == self._attempts:
                    if isinstance(exc, _ShortBody):
                        raise StorageError(f"S3 read of {self._where}/{name} failed: {exc}") from exc
                    self._raise(exc, "read", name)
            except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
                self._raise(exc, "read", name)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_length(self, response: dict[str, Any], body: bytes, name: str, offset: int, version: str | None) -> None:
        """Raise ``_ShortBody`` unless ``body`` is as long as the answer said. botocore checks
        Content-Length; an answer without one, ended by a closed connection, looks whole to it,
        so the length comes from Content-Range, or else from the object's size."""
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if "content-length" in headers or headers.get("transfer-encoding", "").lower() == "chunked":
            return  # a framed answer: the HTTP layer notices one that ends early
        match = _CONTENT_RANGE.fullmatch(str(headers.get("content-range", "")).strip())
        if match:
            expected = int(match[2]) - int(match[1]) + 1
        else:
            try:
                head = {"VersionId": version} if version is not None else {}
                size = int(self._client.head_object(Bucket=self.bucket, Key=self._key(name), **head)["ContentLength"])
            except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
                self._raise(exc, "check", name)
            expected = max(size - offset, 0)
        if len(body) != expected:
            raise _ShortBody(f"the answer ended after {len(body)} of {expected} bytes")

    def store(
        self, name: str, data: bytes | memoryview, *, exclusive: bool = False, retention: Retention | None = None
    ) -> None:
        key = self._key(name)
        body = bytes(data)
        params: _PutObject = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentMD5": base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii"),
        }
        if retention is not None:
            params["ObjectLockMode"] = _mode(retention.mode)
            params["ObjectLockRetainUntilDate"] = retention.until
        if not exclusive:
            self._put(params, name)
            return
        if self._conditional is not False:
            for _ in range(CONDITIONAL_PUT_ATTEMPTS):
                try:
                    self._client.put_object(**params, IfNoneMatch="*")
                    self._conditional = True
                    return
                except bexc.ClientError as exc:
                    code = _code(exc)
                    if code in _PRECONDITION:
                        if self._holds(name, body):
                            self._conditional = True
                            return  # our own write: its answer was lost and the retry refused
                        raise StorageError(f"object {self._where}/{name} already exists") from exc
                    if code in _CONDITIONAL_CONFLICT:
                        continue  # a concurrent conditional write; retry to learn who won
                    if code in _CONDITIONAL_UNSUPPORTED and self._conditional is None:
                        break
                    self._raise(exc, "write", name)
                except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
                    self._raise(exc, "write", name)
            else:
                raise StorageError(f"object {self._where}/{name}: conflicting concurrent writes, try again")
        # Best effort: another writer may slip in between HEAD and PUT.
        if self.exists(name):
            raise StorageError(f"object {self._where}/{name} already exists")
        self._put(params, name)
        if self._conditional is None:
            self._conditional = False

    def _holds(self, name: str, body: bytes) -> bool:
        """True if ``name`` holds exactly ``body``. A conditional PUT whose answer was lost (a
        reset after the server stored it) is retried by botocore and refused by its own first
        attempt; identical bytes mean the store happened. Exclusive objects (config, keys) are
        sealed with random nonces, so another writer never stores the same bytes."""
        try:
            return self.load(name) == body
        except ObjectNotFound:
            return False

    def _put(self, params: _PutObject, name: str) -> None:
        try:
            self._client.put_object(**params)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "write", name)

    def delete(self, name: str) -> None:
        """Remove ``name``. In a bucket with Object Lock (so versioning) on, a plain DELETE would
        only add a delete marker and free nothing, so every version of the key is deleted by its
        id, the one kubekeep wrote (the oldest) first, then newer ones and delete markers. A
        version whose retention date is not reached is refused by the server: ``DeleteRefused``."""
        key = self._key(name)
        self.first_versions.forget(key)
        try:
            versioned = self.first_versions.enabled()
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "delete", name)
        if versioned:
            self._delete_versions(key, name)
            return
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except bexc.ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return  # S3 itself answers 204 for a missing key; some servers say 404
            self._refused(exc, name, None)
            self._raise(exc, "delete", name)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "delete", name)

    def _delete_versions(self, key: str, name: str) -> None:
        try:
            versions, markers = self._all_versions(key)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "delete", name)
        for version_id in [*reversed(versions), *markers]:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            except bexc.ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    continue
                self._refused(exc, name, version_id)
                self._raise(exc, "delete", name)
            except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
                self._raise(exc, "delete", name)
            finally:
                self.first_versions.forget(key)

    def _all_versions(self, key: str) -> tuple[list[str], list[str]]:
        """The version ids of ``key``, newest first, and those of its delete markers."""
        versions: list[str] = []
        markers: list[str] = []
        paginator = self._client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            versions += [str(v["VersionId"]) for v in page.get("Versions", ()) if v["Key"] == key]
            markers += [str(m["VersionId"]) for m in page.get("DeleteMarkers", ()) if m["Key"] == key]
        return versions, markers

    def _refused(self, exc: bexc.ClientError, name: str, version_id: str | None) -> None:
        """Raise ``DeleteRefused`` if the server refused a deletion (a retention date or the
        credentials' permissions), with the retention date when it can be read. AWS refuses a
        retained version with 403 AccessDenied, MinIO with 400 InvalidRequest ("Object is WORM
        protected"); a policy's refusal is AccessDenied on both."""
        message = str(exc.response.get("Error", {}).get("Message", ""))
        worm = _code(exc) in _WORM_REFUSED and ("WORM" in message or "lock" in message.lower())
        if _code(exc) not in _AUTH and not worm:
            return
        until = None
        if version_id is not None:
            with contextlib.suppress(Exception):
                head = self._client.head_object(Bucket=self.bucket, Key=self._key(name), VersionId=version_id)
                until = head.get("ObjectLockRetainUntilDate")
        if not (isinstance(until, dt.datetime) and until > dt.datetime.now(dt.UTC)):
            until = None  # a date that is past did not refuse it: the credentials did
        why = (
            f"it is locked until {until:%Y-%m-%d %H:%M:%S} UTC"
            if until is not None
            else "a retention date not reached, or credentials that may not delete"
        )
        raise DeleteRefused(f"S3 refused to delete {self._where}/{name} ({_code(exc)}): {why}", until) from exc

    # -- retention (Object Lock) ---------------------------------------------------------------

    def lock_support(self) -> LockSupport:
        """Object Lock, versioning and any default retention rule of the bucket."""
        try:
            answer = self._client.get_object_lock_configuration(Bucket=self.bucket)
            config = answer.get("ObjectLockConfiguration", {})
        except bexc.ClientError as exc:
            if _code(exc) in ("NoSuchBucket",) or _code(exc) in _AUTH:
                self._raise(exc, "Object Lock check")
            config = {}  # no configuration (or a server without Object Lock)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "Object Lock check")
        try:
            versioning = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status") == "Enabled"
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "versioning check")
        default = config.get("Rule", {}).get("DefaultRetention")
        described = None
        if default:
            amount = ", ".join(f"{default[u]} {u.lower()}" for u in ("Days", "Years") if default.get(u))
            described = f"{default.get('Mode', '?')} {amount}".strip()
        return LockSupport(config.get("ObjectLockEnabled") == "Enabled", versioning, described)

    def retention(self, name: str) -> Retention | None:
        key = self._key(name)
        try:
            version = self.first_versions.version_id(key, name)
            head = {"VersionId": version} if version is not None else {}
            answer = self._client.head_object(Bucket=self.bucket, Key=key, **head)
        except LookupError:
            raise ObjectNotFound(f"object {self._where}/{name} not found") from None
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "retention check", name)
        mode, until = answer.get("ObjectLockMode"), answer.get("ObjectLockRetainUntilDate")
        if not mode or not isinstance(until, dt.datetime):
            return None
        return Retention(str(mode).lower(), until.astimezone(dt.UTC))

    def extend_retention(self, name: str, retention: Retention) -> None:
        key = self._key(name)
        try:
            version = self.first_versions.version_id(key, name)
            extra = {"VersionId": version} if version is not None else {}
            self._client.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                Retention={"Mode": _mode(retention.mode), "RetainUntilDate": retention.until},
                **extra,
            )
        except LookupError:
            raise ObjectNotFound(f"object {self._where}/{name} not found") from None
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "retention extension", name)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        strip = len(self._key_root)
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self._key_root + prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    name = item["Key"][strip:]
                    if name and not name.endswith("/"):  # skip "directory" marker keys
                        yield ObjectInfo(name, int(item["Size"]))
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "list")

    def overwritten(self) -> Sequence[str]:
        """In a bucket with Object Lock on: the write-once names whose key holds a newer version
        with other bytes than the one kubekeep wrote (identical bytes are a retried PUT)."""
        try:
            if not self.first_versions.enabled():
                return []
            by_key = self.first_versions.all_versions(self._key_root)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; _raise maps them
            self._raise(exc, "list")
        strip = len(self._key_root)
        return sorted(
            key[strip:]
            for key, versions in by_key.items()
            if not key[strip:].startswith(MUTABLE_PREFIXES) and {v.etag for v in versions} != {versions[-1].etag}
        )

    def close(self) -> None:
        self._client.close()
