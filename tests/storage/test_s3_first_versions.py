"""In a bucket with Object Lock (so versioning) on, an overwrite of a write-once object only adds
a newer version: kubekeep keeps reading the version it wrote, so a forgery put over a pack, a
snapshot, a key or the config by someone holding the backup credentials changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubekeep.storage.s3 import S3Backend
from tests.cli.conftest import s3_spec
from tests.cli.helpers import KK, assert_same_tree, make_rich_tree, manifest
from tests.support.s3server import S3Server

pytestmark = pytest.mark.s3


def _backend(server: S3Server, bucket: str) -> S3Backend:
    return S3Backend(bucket, "repo", **server.backend_options())


def test_an_overwritten_object_reads_as_first_written(s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str) -> None:
    backend = _backend(s3_server, s3_lock_bucket)
    original = bytes(range(256)) * 64
    backend.store("data/ab/abcdef", original)
    s3_admin.put_object(Bucket=s3_lock_bucket, Key="repo/data/ab/abcdef", Body=b"forged by an attacker")

    fresh = _backend(s3_server, s3_lock_bucket)  # nothing cached: it asks the bucket
    assert fresh.load("data/ab/abcdef") == original
    assert fresh.load("data/ab/abcdef", 100, 50) == original[100:150]
    assert [v.size for v in fresh.first_versions.versions("repo/data/ab/abcdef")] == [21, len(original)]
    # check reports the overwrite; the same bytes again (a retried PUT) and lock files are no overwrite
    backend.store("data/cd/cdef01", b"same bytes")
    s3_admin.put_object(Bucket=s3_lock_bucket, Key="repo/data/cd/cdef01", Body=b"same bytes")
    backend.store("locks/one", b"first")
    backend.store("locks/one", b"refreshed")
    assert fresh.overwritten() == ["data/ab/abcdef"]


def test_lock_files_are_read_at_their_newest_version(s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str) -> None:
    backend = _backend(s3_server, s3_lock_bucket)
    backend.store("locks/one", b"first")
    backend.store("locks/one", b"refreshed")
    assert backend.load("locks/one") == b"refreshed"


def test_without_object_lock_the_newest_version_is_read(s3_server: S3Server, s3_admin: Any, s3_bucket: str) -> None:
    backend = _backend(s3_server, s3_bucket)
    backend.store("data/ab/abcdef", b"first")
    s3_admin.put_object(Bucket=s3_bucket, Key="repo/data/ab/abcdef", Body=b"second")
    assert backend.load("data/ab/abcdef") == b"second"
    assert backend.overwritten() == []  # one version per key: nothing to tell
    assert not backend.first_versions.enabled()


def test_a_repository_survives_forgeries_over_its_objects(
    s3_server: S3Server,
    s3_admin: Any,
    s3_lock_bucket: str,
    tmp_path: Path,
) -> None:
    spec = s3_spec(s3_server, s3_lock_bucket)
    kk = KK(spec, password="correct horse", cache_dir=tmp_path / "cache")
    kk.run("init")
    source = tmp_path / "src"
    make_rich_tree(source, big_mib=2, small_files=40)
    snap = kk.backup(source)

    # what someone holding the backup credentials could do: PUT over every object
    forged = 0
    for name in spec.objects():
        if not name.startswith("locks/"):
            s3_admin.put_object(Bucket=s3_lock_bucket, Key=f"repo/{name}", Body=b"\0" * 64)
            forged += 1
    assert forged > 5

    out = kk.out("check", "--read-data")
    assert "no errors were found" in out
    target = tmp_path / "restored"
    kk.run("restore", snap, "--to", str(target))
    assert_same_tree(manifest(source), manifest(target))
