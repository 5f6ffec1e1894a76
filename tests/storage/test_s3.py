"""S3Backend specifics against the real S3 test server (MinIO): errors, bucket handling, configuration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kubekeep.errors import ObjectNotFound, RepositoryExists, RepositoryNotFound, StorageError
from kubekeep.storage.s3 import S3Backend
from tests.support.s3server import S3Server, free_port

pytestmark = pytest.mark.s3


@pytest.fixture
def backend(s3_server: S3Server, s3_bucket: str) -> Iterator[S3Backend]:
    b = S3Backend(s3_bucket, "/team/repo/", **s3_server.backend_options())
    yield b
    b.close()


def count_requests(backend: S3Backend, operation: str) -> list[str]:
    """Record the names of requests of ``operation`` this backend sends from now on."""
    seen: list[str] = []
    backend._client.meta.events.register(f"before-send.s3.{operation}", lambda request, **_: seen.append(request.url))
    return seen


def test_objects_live_under_the_prefix(backend: S3Backend, s3_admin: Any, s3_bucket: str) -> None:
    assert backend.location == f"s3://{s3_bucket}/team/repo"
    backend.store("data/ab/obj", b"payload")
    s3_admin.put_object(Bucket=s3_bucket, Key="team/repo-other/config", Body=b"other")
    s3_admin.put_object(Bucket=s3_bucket, Key="team/repo/data/", Body=b"")  # a folder marker
    keys = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert "team/repo/data/ab/obj" in keys
    assert [(i.name, i.size) for i in backend.list("")] == [("data/ab/obj", 7)]
    assert not backend.exists("config")


def test_list_follows_continuation_tokens(backend: S3Backend) -> None:
    names = {f"index/{i:04d}" for i in range(25)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: backend.store(name, b"i"), names))
    backend.list_page_size = 10
    lists = count_requests(backend, "ListObjectsV2")
    assert {i.name for i in backend.list("index/")} == names
    assert len(lists) == 3


def test_exclusive_store_uses_conditional_write(backend: S3Backend) -> None:
    heads = count_requests(backend, "HeadObject")
    backend.store("locks/l", b"mine", exclusive=True)
    with pytest.raises(StorageError, match="already exists"):
        backend.store("locks/l", b"theirs", exclusive=True)
    assert heads == [], "the server supports If-None-Match: no HEAD should be needed"
    assert backend.load("locks/l") == b"mine"


def test_exclusive_store_fallback_checks_with_head(s3_server: S3Server, s3_bucket: str) -> None:
    backend = S3Backend(s3_bucket, "repo", conditional_writes=False, **s3_server.backend_options())
    heads = count_requests(backend, "HeadObject")
    backend.store("locks/l", b"mine", exclusive=True)
    with pytest.raises(StorageError, match="already exists"):
        backend.store("locks/l", b"theirs", exclusive=True)
    assert len(heads) == 2
    assert backend.load("locks/l") == b"mine"


def test_missing_bucket_is_repository_not_found(s3_server: S3Server) -> None:
    backend = S3Backend("kk-no-such-bucket", "repo", **s3_server.backend_options())
    for call in (
        lambda: backend.load("config"),
        lambda: list(backend.list("")),
        lambda: backend.store("config", b"x"),
        lambda: backend.delete("config"),
    ):
        with pytest.raises(RepositoryNotFound, match="bucket kk-no-such-bucket does not exist"):
            call()
    assert not backend.exists("config")


def test_create_makes_the_bucket_then_refuses_an_existing_repository(s3_server: S3Server, s3_admin: Any) -> None:
    bucket = f"kk-create-{time.time_ns()}"
    backend = S3Backend(bucket, "repo", **s3_server.backend_options())
    try:
        backend.create()
        backend.create()  # the bucket is ours already: still fine
        s3_admin.head_bucket(Bucket=bucket)
        backend.store("config", b"c")
        with pytest.raises(RepositoryExists, match=f"s3://{bucket}/repo"):
            backend.create()
        # another prefix in the same bucket is another repository
        S3Backend(bucket, "repo2", **s3_server.backend_options()).create()
    finally:
        for key in ("repo/config",):
            s3_admin.delete_object(Bucket=bucket, Key=key)
        s3_admin.delete_bucket(Bucket=bucket)


def test_unreachable_endpoint_is_a_fast_one_line_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    backend = S3Backend(
        "bucket",
        "repo",
        endpoint_url=endpoint,
        access_key="a",
        secret_key="b",
        max_attempts=1,
        connect_timeout=2,
    )
    started = time.monotonic()
    for call in (lambda: backend.load("config"), backend.create, lambda: list(backend.list(""))):
        with pytest.raises(StorageError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"cannot reach S3 endpoint {endpoint}")
        assert "\n" not in message and "Traceback" not in message
    assert time.monotonic() - started < 10


def test_refused_credentials_are_reported_as_such(s3_auth_server: S3Server) -> None:
    backend = S3Backend(
        "kk-auth",
        "repo",
        endpoint_url=s3_auth_server.endpoint_url,
        access_key="AKIAWRONGWRONGWRONG0",
        secret_key="not-the-secret",
        max_attempts=1,
    )
    for call in (
        lambda: backend.load("config"),
        lambda: backend.exists("config"),
        lambda: backend.store("config", b"x"),
        lambda: list(backend.list("")),
        backend.create,
    ):
        with pytest.raises(StorageError) as info:
            call()
        message = str(info.value)
        assert not isinstance(info.value, ObjectNotFound | RepositoryNotFound)
        assert "refused the credentials" in message and s3_auth_server.endpoint_url in message
        assert "\n" not in message


def test_settings_come_from_the_environment(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # KUBEKEEP_S3_ENDPOINT wins
    monkeypatch.setenv("KUBEKEEP_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    backend = S3Backend(s3_bucket, "env")
    assert backend.endpoint_url == s3_server.endpoint_url
    assert backend._client.meta.region_name == "eu-west-3"
    assert backend._client.meta.config.max_pool_connections >= 16
    assert backend._client.meta.config.s3["addressing_style"] == "path"
    backend.store("config", b"from env")
    assert backend.load("config") == b"from env"


def test_half_given_credentials_are_a_usage_error() -> None:
    from kubekeep.errors import UsageError

    with pytest.raises(UsageError):
        S3Backend("bucket", access_key="only-the-key")


def test_a_permission_refused_is_not_called_a_credentials_problem(s3_server: S3Server, s3_bucket: str) -> None:
    reader = s3_server.with_user(
        "kk-reader",
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": ["arn:aws:s3:::*"]}
            ],
        },
    )
    S3Backend(s3_bucket, "repo", **s3_server.backend_options()).store("config", b"x")
    backend = S3Backend(s3_bucket, "repo", **reader.backend_options(), max_attempts=1)
    assert backend.load("config") == b"x"
    with pytest.raises(StorageError) as info:
        backend.store("data/ab/abcd", b"y")
    message = str(info.value)
    assert "denied the write of" in message and "AccessDenied" in message and "not allowed" in message
    assert "refused the credentials" not in message
