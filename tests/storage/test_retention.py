"""The storage side of Object Lock: retention dates on stores, reading and extending them, and
deletion in a versioned bucket (every version, refused while one is locked, nothing half done).
The local backend says it cannot."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from kubekeep import errors
from kubekeep.storage.base import Retention
from kubekeep.storage.local import LocalBackend
from kubekeep.storage.s3 import S3Backend
from tests.support.s3server import S3Server


def _backend(server: S3Server, bucket: str) -> S3Backend:
    return S3Backend(bucket, "repo", **server.backend_options())


def _soon(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def _keys(admin: Any, bucket: str) -> list[tuple[str, bool]]:
    out = []
    for page in admin.get_paginator("list_object_versions").paginate(Bucket=bucket):
        out += [(v["Key"], False) for v in page.get("Versions", ())]
        out += [(m["Key"], True) for m in page.get("DeleteMarkers", ())]
    return sorted(out)


def test_the_local_backend_cannot_hold_retention_dates(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    support = backend.lock_support()
    assert not support.object_lock and support.why_not and "chattr" in support.why_not
    with pytest.raises(errors.StorageError, match="cannot hold retention dates"):
        backend.store("data/ab/x", b"x", retention=Retention("governance", _soon(5)))
    assert not backend.exists("data/ab/x")
    with pytest.raises(errors.StorageError):
        backend.retention("config")


@pytest.mark.s3
def test_lock_support_of_buckets(s3_server: S3Server, s3_admin: Any, s3_bucket: str, s3_lock_bucket: str) -> None:
    plain = _backend(s3_server, s3_bucket).lock_support()
    assert not plain.object_lock and plain.why_not is None
    locked = _backend(s3_server, s3_lock_bucket).lock_support()
    assert locked.object_lock and locked.versioning and locked.default_retention is None
    s3_admin.put_object_lock_configuration(
        Bucket=s3_lock_bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2}},
        },
    )
    try:
        assert _backend(s3_server, s3_lock_bucket).lock_support().default_retention == "COMPLIANCE 2 days"
    finally:
        s3_admin.put_object_lock_configuration(
            Bucket=s3_lock_bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
        )


@pytest.mark.s3
def test_store_read_and_extend_a_retention_date(s3_server: S3Server, s3_lock_bucket: str) -> None:
    backend = _backend(s3_server, s3_lock_bucket)
    until = _soon(30)
    backend.store("data/ab/one", b"pack", retention=Retention("governance", until))
    backend.store("locks/l", b"lock")
    got = backend.retention("data/ab/one")
    assert got is not None and got.mode == "governance" and abs((got.until - until).total_seconds()) < 1
    assert backend.retention("locks/l") is None
    backend.extend_retention("data/ab/one", Retention("governance", until + dt.timedelta(seconds=60)))
    got = backend.retention("data/ab/one")
    assert got is not None and got.until > until + dt.timedelta(seconds=59)
    with pytest.raises(errors.ObjectNotFound):
        backend.retention("data/ab/missing")


@pytest.mark.s3
def test_deleting_a_locked_object_is_refused_and_changes_nothing(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str
) -> None:
    backend = _backend(s3_server, s3_lock_bucket)
    backend.store("snapshots/s", b"snapshot", retention=Retention("governance", _soon(3)))
    s3_admin.put_object(Bucket=s3_lock_bucket, Key="repo/snapshots/s", Body=b"forged over it")  # a newer version
    before = _keys(s3_admin, s3_lock_bucket)
    with pytest.raises(errors.DeleteRefused, match="S3 refused to delete .*snapshots/s") as info:
        backend.delete("snapshots/s")
    assert "\n" not in str(info.value)
    assert _keys(s3_admin, s3_lock_bucket) == before  # no delete marker, nothing half-deleted
    assert backend.load("snapshots/s") == b"snapshot"

    time.sleep(4)
    backend.delete("snapshots/s")  # every version, and no delete marker left
    assert _keys(s3_admin, s3_lock_bucket) == []
    assert not backend.exists("snapshots/s")


@pytest.mark.s3
def test_lock_files_are_deleted_with_every_version(s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str) -> None:
    backend = _backend(s3_server, s3_lock_bucket)
    backend.store("locks/l", b"taken")
    backend.store("locks/l", b"refreshed")
    backend.delete("locks/l")
    assert _keys(s3_admin, s3_lock_bucket) == []
