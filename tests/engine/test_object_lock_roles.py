"""A locked repository run with two sets of real credentials (MinIO users with the IAM policies of
docs/immutability.md): backups with the "backup" role, which may delete only lock files, and
forget/prune with the "prune" role. Someone holding the backup credentials cannot delete,
overwrite or shorten anything; prune removes what it should once the dates are reached."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from kubekeep import api
from kubekeep.engine import objectlock
from kubekeep.engine.check import run_check
from kubekeep.engine.objectlock import LockPolicy
from kubekeep.engine.repository import Repository
from kubekeep.storage.s3 import S3Backend
from tests.cli.helpers import FAST_KDF, assert_same_tree, manifest
from tests.support.s3server import S3Server, backup_policy, prune_policy, s3_client

pytestmark = pytest.mark.s3

PREFIX = "repo"
PERIOD = dt.timedelta(seconds=4)
MARGIN = dt.timedelta(seconds=2)


def _tree(root: Path, name: str, seed: int) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (d / f"f{i}").write_bytes(bytes([seed, i]) * 40_000 + uuid.uuid4().bytes)
    return d


def _open(server: S3Server, bucket: str) -> Repository:
    return Repository.open(S3Backend(bucket, PREFIX, **server.backend_options()), "pw", no_cache=True)


def test_backup_and_prune_roles_on_a_locked_repository(
    s3_server: S3Server, s3_lock_bucket: str, tmp_path: Path
) -> None:
    bucket = s3_lock_bucket
    backup_role = s3_server.with_user(f"bk-{bucket}", backup_policy(bucket, PREFIX))
    prune_role = s3_server.with_user(f"pr-{bucket}", prune_policy(bucket, PREFIX))
    Repository.init(
        S3Backend(bucket, PREFIX, **s3_server.backend_options()),
        "pw",
        kdf=FAST_KDF,
        no_cache=True,
        object_lock=LockPolicy(PERIOD, "governance", MARGIN),
    )

    # backups with the backup role: nothing but lock files is deleted, reused packs are extended
    repo = _open(backup_role, bucket)
    source = _tree(tmp_path, "src", 1)
    first = api.backup(repo, str(source))
    time.sleep(MARGIN.total_seconds() / 2 + 1.5)  # recorded dates are whole seconds
    (source / "f9").write_bytes(b"added")
    second = api.backup(repo, str(source))
    assert repo.retaining is not None and repo.retaining.extensions > 0

    # an attacker with the backup credentials
    attacker = s3_client(backup_role)
    pack = sorted(objectlock.needed_packs(repo, bytes.fromhex(first.tree)))[0]
    targets = [pack, f"snapshots/{first.id}", next(o.name for o in repo.backend.list("keys/")), "config"]
    for name in targets:
        key = f"{PREFIX}/{name}"
        version = attacker.list_object_versions(Bucket=bucket, Prefix=key)["Versions"][-1]["VersionId"]
        with pytest.raises(ClientError):
            attacker.delete_object(Bucket=bucket, Key=key, VersionId=version)
        with pytest.raises(ClientError):
            attacker.put_object_retention(
                Bucket=bucket,
                Key=key,
                VersionId=version,
                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": dt.datetime.now(dt.UTC)},
            )
        attacker.put_object(Bucket=bucket, Key=key, Body=b"forged")  # only adds a version
    with pytest.raises(ClientError):
        attacker.delete_object(Bucket=bucket, Key=f"{PREFIX}/{pack}")  # no delete marker either

    # forget with the backup role: refused by the storage, reported, nothing lost
    report = api.forget(repo, ids=[first.id])
    assert list(report.locked) == [first.id]
    checked = run_check(_open(backup_role, bucket), read_data=True)
    assert checked.ok, checked.errors
    for snap in (first, second):
        target = tmp_path / f"restored-{snap.short_id}"
        api.restore(_open(backup_role, bucket), snap.id, f"fs:{target}")
        assert (target / "f0").read_bytes() == (source / "f0").read_bytes()

    # after the dates: the prune role forgets and prunes
    time.sleep((PERIOD + MARGIN).total_seconds() + 1)
    admin = _open(prune_role, bucket)
    report = api.forget(admin, ids=[first.id])
    assert report.locked == {} and report.removed == 1
    pruned = api.prune(admin)
    assert pruned.objects_locked == 0
    checked = run_check(_open(prune_role, bucket), read_data=True)
    assert checked.ok, checked.errors
    target = tmp_path / "restored-last"
    api.restore(_open(prune_role, bucket), second.id, f"fs:{target}")
    assert_same_tree(manifest(source), manifest(target))
