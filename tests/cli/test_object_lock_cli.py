"""``init --object-lock``, ``locks extend`` and what check, forget and prune say about retention
dates, through the command line (docs/immutability.md). Periods are seconds long."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cli.conftest import s3_spec
from tests.cli.helpers import KK, assert_same_tree, make_rich_tree, manifest, stderr_line
from tests.support.s3server import S3Server


def _said(kk: KK, *args: str) -> str:
    """All a command printed, stdout and stderr."""
    proc = kk.run(*args)
    return proc.stdout.decode() + proc.stderr.decode()


def test_object_lock_on_a_local_directory_is_refused_in_one_line(kk: KK) -> None:
    proc = kk.run("init", "--object-lock", "30", expect=2)
    line = stderr_line(proc)
    assert "local directory cannot hold retention dates" in line and "docs/immutability.md" in line


def test_a_bad_period_or_a_lone_lock_mode_is_a_usage_error(kk: KK) -> None:
    assert "invalid Object Lock period" in stderr_line(kk.run("init", "--object-lock", "30m", expect=2))
    assert "need --object-lock" in stderr_line(kk.run("init", "--lock-mode", "compliance", expect=2))


@pytest.mark.s3
def test_a_bucket_without_object_lock_is_refused(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    kk = KK(s3_spec(s3_server, s3_bucket), cache_dir=tmp_path / "cache")
    assert "does not have Object Lock enabled" in stderr_line(kk.run("init", "--object-lock", "5s", expect=2))


@pytest.mark.s3
def test_a_locked_repository_from_init_to_prune(s3_server: S3Server, s3_lock_bucket: str, tmp_path: Path) -> None:
    kk = KK(s3_spec(s3_server, s3_lock_bucket), cache_dir=tmp_path / "cache")
    out = _said(kk, "init", "--object-lock", "15s", "--lock-margin", "2s")
    assert "governance mode" in out
    source = tmp_path / "src"
    make_rich_tree(source, big_mib=1, small_files=20)
    first = kk.backup(source)
    first_written = time.monotonic()
    (source / "new-file").write_bytes(b"new" * 1000)
    second = kk.backup(source)
    forget = _said(kk, "forget", first)
    assert "locked" in forget and "left for a later forget" in forget
    extend = json.loads(kk.run("--json", "locks", "extend").stdout)
    assert extend["extended"] == 0 and extend["objects"] > 3  # the backups set what they need

    check = _said(kk, "check")
    assert "retention dates of" in check and "no errors were found" in check
    time.sleep(max(0.0, first_written + 15 + 2 + 1 - time.monotonic()))  # past period + margin
    forget = _said(kk, "forget", first, "--prune")
    assert "1 snapshot(s) removed" in forget
    assert "still locked" not in forget
    assert "no errors were found" in _said(kk, "check", "--read-data")
    target = tmp_path / "restored"
    kk.run("restore", second, "--to", str(target))
    assert_same_tree(manifest(source), manifest(target))
