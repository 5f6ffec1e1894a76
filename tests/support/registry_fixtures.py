"""Pytest fixtures for tests that need a real OCI registry (tests.support.registry).

* ``oci_registry`` (session): the distribution registry over TLS with htpasswd users.
* ``oci_token_registry`` (session): the same with bearer tokens from a token service.
* ``oci_repository``: a fresh repository name (registries create repositories on push).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.registry import Registry, running_registry

__all__ = ["oci_registry", "oci_repository", "oci_token_registry"]


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[Registry]:
    with running_registry() as registry:
        yield registry


@pytest.fixture
def oci_repository() -> str:
    return f"kubekeep/t-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def oci_token_registry() -> Iterator[Registry]:
    """The registry sending clients to a token service (bearer tokens), over TLS."""
    with running_registry(auth="token") as registry:
        yield registry
