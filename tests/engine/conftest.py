"""Fixtures for the engine tests: a repository on a local directory, opened through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubekeep.engine.repository import Repository
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF

PASSWORD = "engine test password"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository.init(LocalBackend(tmp_path / "repo"), PASSWORD, kdf=FAST_KDF, cache_root=tmp_path / "cache")
    yield r
    r.close()


def reopen(r: Repository, tmp_path: Path, password: str = PASSWORD) -> Repository:
    """The same repository opened anew (fresh index, fresh in-memory caches)."""
    return Repository.open(LocalBackend(tmp_path / "repo"), password, cache_root=tmp_path / "cache")
