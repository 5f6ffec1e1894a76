"""What a user sees when something is wrong: the documented exit code and one line on
stderr, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import s3_spec
from tests.cli.helpers import KK, RepoSpec, backup_api, init_fast, stderr_line


@pytest.fixture
def ready(kk: KK, tmp_path: Path) -> KK:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "f.txt").write_text("x\n")
    backup_api(kk, src)
    return kk


def expect_error(kk: KK, code: int, *args: str, contains: str = "", env: dict[str, str] | None = None) -> str:
    proc = kk.run(*args, expect=code, env=env)
    line = stderr_line(proc)
    assert contains.lower() in line.lower(), line
    return line


def test_repository_errors(ready: KK, tmp_path: Path) -> None:
    kk = ready
    line = expect_error(kk, 12, "snapshots", env={"KUBEKEEP_PASSWORD": "not the password"}, contains="wrong password")
    assert line.startswith("error: ")
    expect_error(kk, 10, "snapshots", "-r", str(tmp_path / "nowhere"), contains="no repository")
    expect_error(kk, 2, "snapshots", "-r", "ftp://x", contains="ftp://x")
    expect_error(kk, 10, "init", contains="already exists")
    expect_error(kk, 2, "snapshots", env={"KUBEKEEP_PASSWORD": ""}, contains="no password")
    (tmp_path / "pwfile").write_text("")
    expect_error(kk, 2, "snapshots", "--password-file", str(tmp_path / "pwfile"), contains="empty")


def test_snapshot_and_path_errors(ready: KK, tmp_path: Path) -> None:
    kk = ready
    expect_error(kk, 14, "ls", "deadbeef", contains="deadbeef")
    expect_error(kk, 14, "restore", "0123abcd", "--to", str(tmp_path / "out"), contains="0123abcd")
    assert not (tmp_path / "out").exists()
    expect_error(kk, 14, "cat", "latest:/no/such/file", contains="/no")
    expect_error(kk, 2, "cat", "latest:/dir", contains="not a file")
    expect_error(kk, 2, "cat", "latest", contains="SNAPSHOT:PATH")


def test_source_destination_and_usage_errors(ready: KK, tmp_path: Path) -> None:
    kk = ready
    expect_error(kk, 16, "backup", str(tmp_path / "missing-source"), contains="no such file")
    (tmp_path / "a-file").write_text("in the way\n")
    expect_error(kk, 16, "restore", "latest", "--to", str(tmp_path / "a-file"), contains="a-file")
    assert (tmp_path / "a-file").read_text() == "in the way\n"
    expect_error(kk, 2, "forget", "--keep-within", "3x", contains="duration")
    for bad, says in [("apps/v1", "OLD_GROUP_VERSION=NEW_GROUP_VERSION"), ("apps/v1=Apps/V2", "not a group version")]:
        expect_error(kk, 2, "restore", "latest", "--to", "k8s://", "--api-version-map", bad, contains=says)
    expect_error(kk, 2, "restore", "latest", "--to", str(tmp_path / "yaml"), "--api-version-map", "a.io/v1=a.io/v2",
                 contains="--api-version-map apply(ies) to manifests snapshots")  # fmt: skip
    expect_error(kk, 2, "prune", "--max-unused", "lots", contains="max-unused")
    expect_error(kk, 2, "forget", contains="nothing to forget")
    # an unusable cache directory only costs time
    kk.run("snapshots", "--cache-dir", "/dev/null/cache")
    proc = kk.run("no-such-verb", expect=2)
    assert b"Traceback" not in proc.stderr and b"No such command" in proc.stderr


@pytest.mark.s3
def test_s3_errors(s3_server, s3_bucket: str, make_kk: Callable[..., KK]) -> None:  # type: ignore[no-untyped-def]
    kk = make_kk(s3_spec(s3_server, s3_bucket, "empty"))
    expect_error(kk, 10, "snapshots", contains="no repository")
    missing_bucket = RepoSpec("s3://kk-no-such-bucket/repo", env=kk.repo.env)
    expect_error(make_kk(missing_bucket), 10, "snapshots", contains="does not exist")
    bad_keys = s3_spec(s3_server, s3_bucket, "empty")
    expect_error(
        make_kk(bad_keys),
        15,
        "snapshots",
        "--s3-endpoint",
        "http://127.0.0.1:9",
        contains="cannot reach",
        env={"AWS_MAX_ATTEMPTS": "1"},
    )
