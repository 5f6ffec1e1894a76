"""Pytest fixtures for tests that need a real S3-compatible server.

Use them with ``pytest_plugins = ["tests.support.s3_fixtures"]`` in the root conftest, or by
importing them into a conftest (``from tests.support.s3_fixtures import s3_bucket, ...``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.support.s3server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto server for the whole session (any credentials are accepted)."""
    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_auth_server() -> Iterator[S3Server]:
    """A moto server that checks credentials; started only by tests that ask for it."""
    with running_s3_server(require_auth=True) as server:
        yield server


def s3_client(server: S3Server) -> Any:
    """A boto3 S3 client (untyped) with the server's credentials."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )


@pytest.fixture(scope="session")
def s3_admin(s3_server: S3Server) -> Iterator[Any]:
    """A plain boto3 client for ``s3_server``, to set up and inspect buckets directly."""
    client = s3_client(s3_server)
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_admin: Any) -> Iterator[str]:
    """A fresh, empty bucket on ``s3_server``, emptied and removed afterwards."""
    name = f"kk-{uuid.uuid4().hex[:20]}"
    client = s3_admin
    client.create_bucket(Bucket=name)
    yield name
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - the test may have removed the bucket itself
        pass
