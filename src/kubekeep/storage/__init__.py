"""Storage backends: where a repository's objects live. See ``base.Backend``."""

from __future__ import annotations

import inspect
import re
from typing import Any

from kubekeep.errors import UsageError
from kubekeep.storage.base import Backend, ObjectInfo

__all__ = ["Backend", "ObjectInfo", "open_backend", "ACCEPTED_FORMS"]

ACCEPTED_FORMS = "a directory path, fs:PATH, local:PATH, s3://BUCKET[/PREFIX] or oci://REGISTRY/REPOSITORY"

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: restic-style location prefixes that kubekeep does not (yet) support
_OTHER_SCHEMES = ("sftp:", "rest:", "gs:", "azure:", "b2:", "swift:", "rclone:", "s3:")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REGISTRY_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def _bad(location: str, why: str = "unsupported repository location") -> UsageError:
    return UsageError(f"{why} {location!r}: use {ACCEPTED_FORMS}")


def open_backend(location: str, **options: Any) -> Backend:
    """Return the backend for a repository ``location`` given as restic does.

    ``PATH``, ``fs:PATH`` and ``local:PATH`` give a ``LocalBackend``;
    ``s3://BUCKET[/PREFIX]`` gives an ``S3Backend`` configured by ``options``
    (``endpoint_url``, ``region``, ``access_key``, ...); ``oci://REGISTRY/REPOSITORY`` an
    ``OciBackend`` (``insecure``, ``ca_file``, ...). Options set to None are ignored.
    Anything else raises ``UsageError``.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if not isinstance(location, str) or not location.strip():
        raise UsageError(f"no repository location given: use {ACCEPTED_FORMS}")
    if "\n" in location or "\x00" in location:
        raise _bad(location)

    if location.startswith("s3://"):
        from kubekeep.storage.s3 import S3Backend

        rest = location[len("s3://") :]
        if any(c in rest for c in "?#"):
            raise _bad(location, "query strings are not supported in")
        bucket, _, prefix = rest.partition("/")
        parts = [p for p in prefix.split("/") if p]
        if not bucket or not _BUCKET.match(bucket):
            raise _bad(location, "missing or invalid bucket name in")
        if any(p in (".", "..") for p in parts):
            raise _bad(location, "invalid prefix in")
        accepted = set(inspect.signature(S3Backend).parameters) - {"bucket", "prefix", "location"}
        if unknown := sorted(set(options) - accepted):
            raise UsageError(f"option(s) {', '.join(unknown)} do not apply to {location!r}")
        return S3Backend(bucket, "/".join(parts), location=location, **options)

    if location.startswith("oci://"):
        return _open_oci(location, options)

    if _URL_SCHEME.match(location) or location.startswith(_OTHER_SCHEMES):
        raise _bad(location)

    from kubekeep.storage.local import LocalBackend

    path = location
    for scheme in ("fs:", "local:"):
        if location.startswith(scheme):
            path = location[len(scheme) :]
            if not path:
                raise _bad(location, "missing path in")
            break
    if options:
        raise UsageError(f"option(s) {', '.join(sorted(options))} do not apply to local repository {location!r}")
    return LocalBackend(path, location=location)


def _open_oci(location: str, options: dict[str, Any]) -> Backend:
    from kubekeep.storage.oci.backend import OciBackend, valid_repository

    rest = location[len("oci://") :]
    if any(c in rest for c in "?#@"):
        raise _bad(location, "query strings, fragments and user names are not supported in")
    registry, _, repository = rest.partition("/")
    if not registry or not _REGISTRY_HOST.match(registry):
        raise _bad(location, "missing or invalid registry host in")
    repository = repository.strip("/")
    if not repository or not valid_repository(repository):
        raise _bad(location, "missing or invalid repository name (lowercase letters, digits, . _ - and /) in")
    accepted = set(inspect.signature(OciBackend).parameters) - {"registry", "repository", "location"}
    if unknown := sorted(set(options) - accepted):
        raise UsageError(f"option(s) {', '.join(unknown)} do not apply to {location!r}")
    return OciBackend(registry, repository, location=location, **options)
