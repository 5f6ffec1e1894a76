"""Pytest fixtures for tests that need a real OCI registry (tests.support.registry).

* ``oci_registry`` (session): the distribution registry over TLS with htpasswd users.
* ``oci_repository``: a fresh repository name on it (registries create repositories on push).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.registry import Registry, running_registry

__all__ = ["oci_registry", "oci_repository"]


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[Registry]:
    with running_registry() as registry:
        yield registry


@pytest.fixture
def oci_repository() -> str:
    return f"kubekeep/t-{uuid.uuid4().hex[:16]}"
