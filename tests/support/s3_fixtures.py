"""Pytest fixtures for tests that need a real S3-compatible server (MinIO, tests.support.s3server).

Use them with ``pytest_plugins = ["tests.support.s3_fixtures"]`` in the root conftest, or by
importing them into a conftest (``from tests.support.s3_fixtures import s3_bucket, ...``).

* ``s3_server`` (session): the server, with its root credentials;
  ``s3_server.with_user(name, policy)`` creates a user limited by an IAM policy.
* ``s3_auth_server`` (session): the same server (it always checks credentials).
* ``s3_admin`` (session): a boto3 client with the root credentials.
* ``s3_bucket``: a fresh bucket (no versioning), removed afterwards.
* ``s3_lock_bucket``: a fresh bucket with Object Lock enabled (so versioning), no default
  retention, emptied (governance retention bypassed) and removed afterwards if nothing in it
  is still under compliance retention.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3server import S3Server, create_lock_bucket, remove_bucket, running_s3_server, s3_client

__all__ = ["s3_admin", "s3_auth_server", "s3_bucket", "s3_client", "s3_lock_bucket", "s3_server"]


@pytest.fixture(scope="session")
def s3_server(minio_binaries: dict[str, Path]) -> Iterator[S3Server]:
    """One MinIO server for the whole session, with its root credentials (its data, in a
    temporary directory, goes with it)."""
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_auth_server(s3_server: S3Server) -> S3Server:
    """The server that checks credentials: ``s3_server`` itself (MinIO always does)."""
    return s3_server


@pytest.fixture(scope="session")
def s3_admin(s3_server: S3Server) -> Iterator[Any]:
    """A plain boto3 client for ``s3_server`` (root credentials), to set up and inspect buckets."""
    client = s3_client(s3_server)
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_admin: Any) -> Iterator[str]:
    """A fresh, empty bucket on ``s3_server``, emptied and removed afterwards."""
    name = f"kk-{uuid.uuid4().hex[:20]}"
    s3_admin.create_bucket(Bucket=name)
    yield name
    remove_bucket(s3_admin, name)  # the test may have removed the bucket itself


@pytest.fixture
def s3_lock_bucket(s3_admin: Any) -> Iterator[str]:
    """A fresh bucket with Object Lock enabled (so versioning) and no default retention."""
    name = create_lock_bucket(s3_admin)
    yield name
    remove_bucket(s3_admin, name)
