"""Fixtures for the end-to-end tests: repositories on a local directory and on the MinIO S3
test server, and a ``kubekeep`` runner bound to one."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.helpers import KK, RepoSpec
from tests.support.s3server import S3Server


def s3_spec(server: S3Server, bucket: str, prefix: str = "repo") -> RepoSpec:
    return RepoSpec(
        location=f"s3://{bucket}/{prefix}",
        env={
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": server.region,
            "KUBEKEEP_S3_ENDPOINT": server.endpoint_url,
        },
        backend_options=server.backend_options(),
    )


@pytest.fixture
def local_repo(tmp_path: Path) -> RepoSpec:
    return RepoSpec(str(tmp_path / "repo"))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_repo(request: pytest.FixtureRequest, tmp_path: Path) -> RepoSpec:
    if request.param == "local":
        return RepoSpec(str(tmp_path / "repo"))
    return s3_spec(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))


@pytest.fixture
def make_kk(tmp_path: Path) -> Callable[..., KK]:
    """``make_kk(repo_spec, password=..., cache=name)``: a runner with its own cache dir."""

    def factory(
        repo: RepoSpec,
        *,
        password: str = "correct horse",
        cache: str = "cache",
        extra_env: dict[str, str] | None = None,
    ) -> KK:
        return KK(repo, password=password, cache_dir=tmp_path / cache, extra_env=extra_env)

    return factory


@pytest.fixture
def kk(local_repo: RepoSpec, make_kk: Callable[..., KK]) -> KK:
    """A runner for a fresh, not yet initialised local repository."""
    return make_kk(local_repo)


@pytest.fixture(scope="session")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~200 MB of incompressible data: 20 files of 8 MiB and 400 of 100 KB (shared, read-only)."""
    root = tmp_path_factory.mktemp("big") / "src"
    rnd = random.Random(5)
    (root / "big").mkdir(parents=True)
    for i in range(20):
        (root / "big" / f"b{i:02d}.bin").write_bytes(rnd.randbytes(8 * 1024 * 1024))
    for i in range(400):
        d = root / "small" / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"s{i:03d}.bin").write_bytes(rnd.randbytes(100_000))
    return root
