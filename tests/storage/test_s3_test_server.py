"""The S3 test server's own helpers (tests/support/s3server.py): a server that stops with its
context, bucket teardown that removes every version and delete marker, users limited by their
policy. The other S3 tests rely on them; a helper that silently did less would hide failures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.s3server import (
    S3Server,
    _ready,
    create_lock_bucket,
    create_user,
    remove_bucket,
    running_s3_server,
    s3_client,
)

pytestmark = pytest.mark.s3


def _bucket_exists(client: Any, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise
    return True


def test_a_server_answers_inside_its_context_and_not_after(minio_binaries: object) -> None:
    with running_s3_server() as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        assert _ready(server.endpoint_url)
        client = s3_client(server)
        client.create_bucket(Bucket="inside")
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["inside"]
        client.close()
    assert not _ready(server.endpoint_url)


def test_remove_bucket_removes_every_version_and_delete_marker(s3_admin: Any) -> None:
    bucket = create_lock_bucket(s3_admin)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    for key in ("a", "b/c"):
        s3_admin.put_object(Bucket=bucket, Key=key, Body=b"1")
        s3_admin.put_object(Bucket=bucket, Key=key, Body=b"2")
        s3_admin.delete_object(Bucket=bucket, Key=key)  # a delete marker
    s3_admin.put_object(Bucket=bucket, Key="g", Body=b"g", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    listed = s3_admin.list_object_versions(Bucket=bucket)
    assert (len(listed["Versions"]), len(listed["DeleteMarkers"])) == (5, 2)
    assert remove_bucket(s3_admin, bucket) is True
    assert not _bucket_exists(s3_admin, bucket)


def test_remove_bucket_leaves_a_bucket_under_compliance_retention(s3_admin: Any) -> None:
    bucket = create_lock_bucket(s3_admin)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    s3_admin.put_object(Bucket=bucket, Key="c", Body=b"c", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    s3_admin.put_object(Bucket=bucket, Key="plain", Body=b"p")
    assert remove_bucket(s3_admin, bucket) is False
    keys = [v["Key"] for v in s3_admin.list_object_versions(Bucket=bucket).get("Versions", ())]
    assert keys == ["c"]  # what could go, went


def test_a_lock_bucket_with_a_default_retention(s3_admin: Any) -> None:
    bucket = create_lock_bucket(s3_admin, default_mode="GOVERNANCE", default_days=1)
    try:
        version = s3_admin.put_object(Bucket=bucket, Key="k", Body=b"k")["VersionId"]
        retention = s3_admin.get_object_retention(Bucket=bucket, Key="k", VersionId=version)["Retention"]
        assert retention["Mode"] == "GOVERNANCE"
        assert retention["RetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
    finally:
        assert remove_bucket(s3_admin, bucket) is True
    with pytest.raises(ValueError, match="default_days"):
        create_lock_bucket(s3_admin, default_mode="GOVERNANCE")


def test_a_user_gets_only_what_its_policy_allows(s3_server: S3Server, s3_admin: Any, s3_bucket: str) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="open/x", Body=b"x")
    s3_admin.put_object(Bucket=s3_bucket, Key="closed/y", Body=b"y")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{s3_bucket}/open/*"]}
        ],
    }
    user = create_user(s3_server, f"reader-{s3_bucket}", policy)
    assert (user.access_key, user.endpoint_url) == (f"reader-{s3_bucket}", s3_server.endpoint_url)
    assert user.secret_key != s3_server.secret_key
    reader = s3_client(user)
    assert reader.get_object(Bucket=s3_bucket, Key="open/x")["Body"].read() == b"x"
    for call in (
        lambda: reader.get_object(Bucket=s3_bucket, Key="closed/y"),
        lambda: reader.put_object(Bucket=s3_bucket, Key="open/z", Body=b"z"),
        lambda: reader.list_objects_v2(Bucket=s3_bucket),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    # the same name again: a new secret and policy, the old secret no longer works
    lister = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{s3_bucket}"]}],
    }
    again = create_user(s3_server, f"reader-{s3_bucket}", lister)
    assert again.secret_key != user.secret_key
    with pytest.raises(ClientError) as old_secret:
        reader.get_object(Bucket=s3_bucket, Key="open/x")
    assert old_secret.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    reader.close()
    reader = s3_client(again)
    assert reader.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 2
    with pytest.raises(ClientError) as now_refused:
        reader.get_object(Bucket=s3_bucket, Key="open/x")
    assert now_refused.value.response["Error"]["Code"] == "AccessDenied"
    reader.close()
    with pytest.raises(RuntimeError, match="creating S3 user"):
        create_user(s3_server, "no", policy)  # MinIO wants 3 or more characters
