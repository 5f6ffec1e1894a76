"""Issue #15's attack, against the real S3 server (MinIO): a repository made with
``init --object-lock`` in compliance mode, written with "backup" credentials that may add and
nothing else (docs/immutability.md). Someone holding those credentials (whoever owns the
cluster) tries to delete, overwrite and unlock packs, snapshots, index files, keys and the
config, and to switch the bucket's protection off: every destructive step is refused, and an
overwrite only adds a version kubekeep never reads. ``check --read-data`` passes and every
snapshot restores. Once the lock period is over, ``forget --prune`` with the separate "prune"
credentials removes what it should."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import botocore.exceptions as bexc
import pytest

from tests.cli.conftest import s3_spec
from tests.cli.helpers import KK, assert_same_tree, make_rich_tree, manifest
from tests.support.s3server import S3Server, backup_policy, prune_policy, s3_client

pytestmark = [pytest.mark.s3, pytest.mark.timeout(300)]

PREFIX = "prod"
PERIOD_S = 20
MARGIN_S = 2


def _said(proc: Any) -> str:
    return str(proc.stdout.decode() + proc.stderr.decode())


def _refused(call: Any, **kwargs: Any) -> str:
    """The error code the server refused ``call`` with; fails the test if it was accepted."""
    try:
        call(**kwargs)
    except bexc.ClientError as exc:
        return str(exc.response["Error"]["Code"])
    raise AssertionError(f"the server accepted {call.__name__}({kwargs})")


def _keys(admin: Any, bucket: str) -> dict[str, str]:
    """Every key of the repository but lock files -> the id of its oldest version."""
    oldest: dict[str, str] = {}
    for page in admin.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=f"{PREFIX}/"):
        for item in page.get("Versions", ()):
            if "/locks/" not in item["Key"]:
                oldest[item["Key"]] = item["VersionId"]  # newest first: the last one seen is the oldest
    return oldest


def test_backup_credentials_cannot_destroy_a_locked_repository(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str, tmp_path: Path
) -> None:
    bucket = s3_lock_bucket
    tag = uuid.uuid4().hex[:8]
    backup_server = s3_server.with_user(f"backup-{tag}", backup_policy(bucket, PREFIX))
    prune_server = s3_server.with_user(f"prune-{tag}", prune_policy(bucket, PREFIX))
    backup = KK(s3_spec(backup_server, bucket, PREFIX), cache_dir=tmp_path / "backup-cache")
    prune = KK(s3_spec(prune_server, bucket, PREFIX), cache_dir=tmp_path / "prune-cache")

    out = _said(
        backup.run(
            "init", "--object-lock", f"{PERIOD_S}s", "--lock-mode", "compliance", "--lock-margin", f"{MARGIN_S}s"
        )
    )
    assert "compliance" in out
    source = tmp_path / "src"
    make_rich_tree(source, big_mib=2, small_files=40)
    first = backup.backup(source)
    first_tree = manifest(source)
    (source / "added.bin").write_bytes(b"after the first snapshot" * 5000)
    (source / "big.bin").unlink()  # its data is the first snapshot's alone: prune frees it
    second = backup.backup(source)
    second_tree = manifest(source)
    written = time.monotonic()

    keys = _keys(s3_admin, bucket)
    kinds = Counter(key.split("/")[1] for key in keys)
    assert {"config", "keys", "snapshots", "index", "data"} <= set(kinds), kinds

    attacker = s3_client(backup_server)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    for key, version in keys.items():
        target = {"Bucket": bucket, "Key": key}
        # delete: the key (a delete marker would hide it) and its version (would free it)
        assert _refused(attacker.delete_object, **target) == "AccessDenied", key
        assert _refused(attacker.delete_object, **target, VersionId=version) == "AccessDenied", key
        # shorten its retention, with and without asking to bypass governance
        retention = {"Mode": "COMPLIANCE", "RetainUntilDate": soon}
        assert _refused(attacker.put_object_retention, **target, VersionId=version, Retention=retention)
        assert _refused(
            attacker.put_object_retention,
            **target,
            VersionId=version,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon},
            BypassGovernanceRetention=True,
        )
        # overwrite: S3 accepts it as a newer version, which kubekeep never reads
        attacker.put_object(**target, Body=b"encrypted by ransomware" * 10)
    # the bucket's protection stays on
    assert _refused(attacker.put_bucket_versioning, Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert _refused(attacker.delete_bucket, Bucket=bucket)
    # the versions kubekeep wrote are all still there, still locked
    for key, version in keys.items():
        head = s3_admin.head_object(Bucket=bucket, Key=key, VersionId=version)
        assert head["ObjectLockMode"] == "COMPLIANCE", key

    check = _said(backup.run("check", "--read-data"))
    assert "no errors were found" in check
    assert f"{len(keys)} object(s) written over" in check  # the overwrites are reported
    for snap, tree in ((first, first_tree), (second, second_tree)):
        target_dir = tmp_path / f"restored-{snap}"
        backup.run("restore", snap, "--to", str(target_dir))
        assert_same_tree(tree, manifest(target_dir))

    # before the dates nobody forgets the first snapshot; after them the backup credentials still
    # cannot (their policy), the prune credentials can
    for kk in (backup, prune):
        assert "locked" in _said(kk.run("forget", first))
    time.sleep(max(0.0, written + PERIOD_S + MARGIN_S + 1 - time.monotonic()))
    refused = _said(backup.run("forget", first, expect=None))
    assert "refused" in refused, refused
    assert len(backup.json("snapshots")) == 2
    before = set(_keys(s3_admin, bucket))
    pruned = _said(prune.run("forget", first, "--prune"))
    assert "1 snapshot(s) removed" in pruned
    gone = before - set(_keys(s3_admin, bucket))  # every version of these keys is deleted
    assert {key.split("/")[1] for key in gone} >= {"data", "snapshots"}, pruned
    assert [s["id"][:8] for s in backup.json("snapshots")] == [second[:8]]
    assert "no errors were found" in _said(backup.run("check", "--read-data"))
    target_dir = tmp_path / "restored-after-prune"
    backup.run("restore", second, "--to", str(target_dir))
    assert_same_tree(second_tree, manifest(target_dir))
