"""Fixtures for the storage tests: one factory per backend kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubekeep.storage.base import Backend
from kubekeep.storage.local import LocalBackend
from kubekeep.storage.oci import OciBackend
from kubekeep.storage.s3 import S3Backend
from tests.support.registry import Registry
from tests.support.s3_fixtures import s3_admin, s3_auth_server, s3_bucket, s3_lock_bucket, s3_server  # noqa: F401
from tests.support.s3server import S3Server

BackendFactory = Callable[[], Backend]


@pytest.fixture(
    params=[
        "local",
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("oci", marks=pytest.mark.oci),
        pytest.param("oci-token", marks=pytest.mark.oci),
    ]
)
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    """A factory of backends that all open the same fresh, existing (empty) location."""
    opened: list[Backend] = []
    if request.param == "local":
        root = tmp_path / "repo"
        root.mkdir()

        def factory() -> Backend:
            opened.append(LocalBackend(root))
            return opened[-1]

    elif request.param.startswith("oci"):
        registry: Registry = request.getfixturevalue(
            "oci_token_registry" if request.param == "oci-token" else "oci_registry"
        )
        repository: str = request.getfixturevalue("oci_repository")

        def factory() -> Backend:
            opened.append(OciBackend(registry.host, repository, **registry.backend_options()))
            return opened[-1]

    else:
        server: S3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")

        def factory() -> Backend:
            opened.append(S3Backend(bucket, "repos/one", **server.backend_options()))
            return opened[-1]

    yield factory
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(make_backend: BackendFactory) -> Backend:
    return make_backend()
