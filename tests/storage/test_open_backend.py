"""Parsing repository locations into backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubekeep.errors import UsageError
from kubekeep.storage import open_backend
from kubekeep.storage.local import LocalBackend
from kubekeep.storage.s3 import S3Backend

S3_OPTIONS = {"endpoint_url": "http://127.0.0.1:9", "access_key": "a", "secret_key": "b"}


@pytest.mark.parametrize(
    ("location", "expected_root"),
    [
        ("/srv/backups/repo", "/srv/backups/repo"),
        ("fs:/srv/backups/repo", "/srv/backups/repo"),
        ("local:/srv/backups/repo", "/srv/backups/repo"),
        ("relative/repo", os.path.join(os.getcwd(), "relative/repo")),
        ("local:relative/repo", os.path.join(os.getcwd(), "relative/repo")),
        ("~/repo", os.path.expanduser("~/repo")),
        ("/srv/with:colon", "/srv/with:colon"),
    ],
)
def test_local_locations(location: str, expected_root: str) -> None:
    backend = open_backend(location)
    assert isinstance(backend, LocalBackend)
    assert backend.root == Path(expected_root)
    assert backend.location == location


@pytest.mark.parametrize(
    ("location", "bucket", "prefix"),
    [
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
        ("s3://my-bucket.example/team/repo", "my-bucket.example", "team/repo"),
        ("s3://bucket//team//repo/", "bucket", "team/repo"),
    ],
)
def test_s3_locations(location: str, bucket: str, prefix: str) -> None:
    backend = open_backend(location, region="eu-central-1", verify_tls=None, **S3_OPTIONS)
    assert isinstance(backend, S3Backend)
    assert (backend.bucket, backend.prefix) == (bucket, prefix)
    assert backend.location == location
    assert backend.endpoint_url == S3_OPTIONS["endpoint_url"]
    assert backend._client.meta.region_name == "eu-central-1"
    backend.close()


def test_s3_endpoint_from_kubekeep_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEKEEP_S3_ENDPOINT", "http://127.0.0.1:7777")
    backend = open_backend("s3://bucket/repo", access_key="a", secret_key="b")
    assert isinstance(backend, S3Backend)
    assert backend.endpoint_url == "http://127.0.0.1:7777"


@pytest.mark.parametrize(
    "location",
    [
        "",
        "   ",
        "ftp://host/repo",
        "https://example.com/repo",
        "s3://",
        "s3:///prefix",
        "s3:bucket/repo",
        "s3://bad bucket/repo",
        "s3://bucket/../up",
        "s3://bucket/repo?versionId=1",
        "sftp:host:/srv/repo",
        "rest:http://host/",
        "fs:",
        "local:",
    ],
)
def test_bad_locations_are_usage_errors(location: str) -> None:
    with pytest.raises(UsageError) as info:
        open_backend(location)
    message = str(info.value)
    assert "\n" not in message
    assert "s3://BUCKET[/PREFIX]" in message and "fs:PATH" in message


def test_options_must_fit_the_backend() -> None:
    with pytest.raises(UsageError, match="endpoint_url"):
        open_backend("/srv/repo", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(UsageError, match="colour"):
        open_backend("s3://bucket", colour="blue", **S3_OPTIONS)
    assert isinstance(open_backend("/srv/repo", endpoint_url=None), LocalBackend)
