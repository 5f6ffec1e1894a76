"""Object Lock (docs/immutability.md): every object kubekeep writes carries a retention date,
backups extend only what they reuse and is near its date, check compares the server's dates with
the record and the invariant, forget and prune leave what is locked and remove it once lapsed,
and a backup never deletes outside ``locks/``. Periods are seconds long."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubekeep import api, errors
from kubekeep.api.snapshot_ops import forget
from kubekeep.engine import objectlock
from kubekeep.engine.check import run_check
from kubekeep.engine.objectlock import LockPolicy
from kubekeep.engine.prune import run_prune
from kubekeep.engine.repository import Repository
from kubekeep.storage.base import Backend, WrappingBackend
from kubekeep.storage.local import LocalBackend
from kubekeep.storage.s3 import S3Backend
from tests.support.s3server import S3Server

pytestmark = pytest.mark.s3

from tests.cli.helpers import FAST_KDF  # noqa: E402

PERIOD = dt.timedelta(seconds=3)
MARGIN = dt.timedelta(seconds=2)


def _backend(server: S3Server, bucket: str) -> S3Backend:
    return S3Backend(bucket, "repo", **server.backend_options())


def _init(
    server: S3Server, bucket: str, tmp_path: Path, period: dt.timedelta = PERIOD, margin: dt.timedelta = MARGIN
) -> Repository:
    policy = LockPolicy(period, "governance", margin)
    return Repository.init(_backend(server, bucket), "pw", kdf=FAST_KDF, no_cache=True, object_lock=policy)


def _tree(root: Path, name: str, seed: int) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (d / f"f{i}").write_bytes(bytes([seed, i]) * 50_000 + uuid.uuid4().bytes)
    return d


def _backup(repo: Repository, path: Path) -> Any:
    return api.backup(repo, str(path))


def _versions(admin: Any, bucket: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in admin.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="repo/"):
        out += [{**v, "marker": False} for v in page.get("Versions", ())]
        out += [{**m, "marker": True} for m in page.get("DeleteMarkers", ())]
    return out


def test_init_refuses_a_local_directory(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match="docs/immutability.md") as info:
        Repository.init(LocalBackend(tmp_path / "r"), "pw", kdf=FAST_KDF, object_lock=LockPolicy(PERIOD))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()  # refused before anything was created


def test_init_refuses_a_bucket_without_object_lock(s3_server: S3Server, s3_bucket: str) -> None:
    with pytest.raises(errors.UsageError, match="does not have Object Lock enabled"):
        _init(s3_server, s3_bucket, Path())
    assert not _backend(s3_server, s3_bucket).exists("config")


def test_init_refuses_a_bucket_with_a_default_retention(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str
) -> None:
    s3_admin.put_object_lock_configuration(
        Bucket=s3_lock_bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    try:
        with pytest.raises(errors.UsageError, match="default retention rule .*lock files"):
            _init(s3_server, s3_lock_bucket, Path())
    finally:
        s3_admin.put_object_lock_configuration(
            Bucket=s3_lock_bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
        )


def test_every_object_written_carries_a_retention_date(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str, tmp_path: Path
) -> None:
    repo = _init(s3_server, s3_lock_bucket, tmp_path)
    assert repo.format_version == 3
    start = dt.datetime.now(dt.UTC)
    _backup(repo, _tree(tmp_path, "a", 1))
    # a lock file, as a backup holds one, carries none and can be deleted
    with repo.lock():
        lock_keys = [o.name for o in repo.backend.list("locks/")]
        assert lock_keys
    versions = _versions(s3_admin, s3_lock_bucket)
    names = {v["Key"].removeprefix("repo/").split("/")[0] for v in versions}
    assert {"config", "keys", "data", "index", "snapshots", "retention"} <= names
    for v in versions:
        head = s3_admin.head_object(Bucket=s3_lock_bucket, Key=v["Key"], VersionId=v["VersionId"])
        assert head.get("ObjectLockMode") == "GOVERNANCE", v["Key"]
        assert head["ObjectLockRetainUntilDate"] >= start + PERIOD, v["Key"]
    assert not any(v["Key"].startswith("repo/locks/") for v in versions)  # released: all versions gone

    reopened = Repository.open(_backend(s3_server, s3_lock_bucket), "pw", no_cache=True)
    assert reopened.object_lock == LockPolicy(PERIOD, "governance", MARGIN)


def test_a_backup_extends_only_the_reused_objects_near_their_date(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str, tmp_path: Path
) -> None:
    repo = _init(s3_server, s3_lock_bucket, tmp_path, period=dt.timedelta(seconds=30))
    a, b = _tree(tmp_path, "a", 1), _tree(tmp_path, "b", 2)
    _backup(repo, a)
    snap_b = _backup(repo, b)
    assert repo.retaining is not None
    assert repo.retaining.extensions == 0  # everything new: written with a fresh date

    _backup(repo, a)  # at once: nothing is near its date
    assert repo.retaining.extensions == 0

    time.sleep(MARGIN.total_seconds() / 2 + 1.5)  # past half the margin (recorded dates are whole seconds)
    snap_a = _backup(repo, a)
    needed_a = objectlock.needed_packs(repo, bytes.fromhex(snap_a.tree))
    needed_b = objectlock.needed_packs(repo, bytes.fromhex(snap_b.tree))
    assert needed_a.isdisjoint(needed_b)
    keys = [o.name for o in repo.backend.list("keys/")]
    assert repo.retaining.extensions == len(needed_a) + 1 + len(keys)  # its packs, the config, the keys

    # the server holds the new dates; b's packs kept theirs
    fresh = Repository.open(_backend(s3_server, s3_lock_bucket), "pw", no_cache=True)
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    for name in needed_a:
        retention = fresh.backend.retention(name)
        assert retention is not None and retention.until >= due
    for name in needed_b:
        retention = fresh.backend.retention(name)
        assert retention is not None and retention.until < due
    # and the records say so: a backup in a new process extends nothing more
    _backup(fresh, a)
    assert fresh.retaining is not None and fresh.retaining.extensions == 0
    checked = run_check(fresh)
    assert checked.ok, checked.errors


def test_check_finds_missing_and_shortened_retention(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str, tmp_path: Path
) -> None:
    # a margin of 20 s: the packs' dates (stored + 60 + 20 s) stay above what the snapshot needs
    # (its time + 60 + 10 s) however slowly a busy machine runs the backup (2 s made it flaky)
    repo = _init(s3_server, s3_lock_bucket, tmp_path, period=dt.timedelta(seconds=60), margin=dt.timedelta(seconds=20))
    snap = _backup(repo, _tree(tmp_path, "a", 1))
    report = run_check(repo)
    assert report.ok, report.errors
    assert report.locked_objects >= 5 and report.locked_until_earliest

    pack = sorted(objectlock.needed_packs(repo, bytes.fromhex(snap.tree)))[0]
    versions = [v for v in _versions(s3_admin, s3_lock_bucket) if v["Key"] == f"repo/{pack}"]
    short = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
    # as only an administrator can: governance dates are shortened with the bypass permission
    s3_admin.put_object_retention(
        Bucket=s3_lock_bucket,
        Key=f"repo/{pack}",
        VersionId=versions[0]["VersionId"],
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": short},
        BypassGovernanceRetention=True,
    )
    s3_admin.put_object(Bucket=s3_lock_bucket, Key="repo/runs/" + "0" * 64, Body=b"planted without a date")
    fresh = Repository.open(_backend(s3_server, s3_lock_bucket), "pw", no_cache=True)
    errs = run_check(fresh).errors
    assert any(pack in e and "shortened" in e for e in errs), errs
    assert any(pack in e and "needed by a snapshot" in e for e in errs), errs
    assert any("runs/" + "0" * 64 in e and "no retention date" in e for e in errs), errs

    # the records trust the date kubekeep set; --verify asks the server and repairs only that one
    assert objectlock.extend_all(fresh).extended == 0
    extended = objectlock.extend_all(fresh, verify=True)
    assert extended.extended == 1 and extended.asked == extended.objects
    errs = run_check(Repository.open(_backend(s3_server, s3_lock_bucket), "pw", no_cache=True)).errors
    assert [e for e in errs if pack in e] == []


def test_forget_and_prune_leave_locked_objects_and_remove_them_once_lapsed(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str, tmp_path: Path
) -> None:
    repo = _init(s3_server, s3_lock_bucket, tmp_path)
    snap_a = _backup(repo, _tree(tmp_path, "a", 1))
    snap_b = _backup(repo, _tree(tmp_path, "b", 2))
    packs_a = objectlock.needed_packs(repo, bytes.fromhex(snap_a.tree))

    report = forget(repo, ids=[snap_a.id])
    assert list(report.locked) == [snap_a.id] and report.removed == 0
    assert snap_a.id in repo.snapshot_ids()
    with repo.lock(exclusive=True):
        pruned = run_prune(repo)
    assert pruned.packs_deleted == 0

    time.sleep((PERIOD + MARGIN).total_seconds() + 1)
    report = forget(repo, ids=[snap_a.id])
    assert report.locked == {} and report.removed == 1
    with repo.lock(exclusive=True):
        pruned = run_prune(repo)
    assert pruned.objects_locked == 0
    assert pruned.packs_deleted == len(packs_a)
    left = {v["Key"].removeprefix("repo/") for v in _versions(s3_admin, s3_lock_bucket)}
    assert packs_a.isdisjoint(left)  # every version gone, no delete marker left behind
    assert f"snapshots/{snap_a.id}" not in left
    assert run_check(repo, read_data=True).ok
    assert [s.id for s in repo.snapshots()] == [snap_b.id]


class _AppendOnly(WrappingBackend):
    """Backup credentials: may delete only under ``locks/``."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.deletes: list[str] = []

    def delete(self, name: str) -> None:
        if not name.startswith("locks/"):
            raise errors.DeleteRefused(f"AccessDenied: may not delete {name}")
        self.deletes.append(name)
        self.inner.delete(name)


def test_a_backup_deletes_nothing_outside_the_lock_files(
    s3_server: S3Server, s3_lock_bucket: str, tmp_path: Path
) -> None:
    _init(s3_server, s3_lock_bucket, tmp_path)
    backend = _AppendOnly(_backend(s3_server, s3_lock_bucket))
    repo = Repository.open(backend, "pw", no_cache=True)
    a = _tree(tmp_path, "a", 1)
    _backup(repo, a)
    time.sleep(MARGIN.total_seconds() / 2 + 1.5)
    (a / "f0").write_bytes(b"changed")
    snap = _backup(repo, a)  # reuses and extends
    assert backend.deletes and all(n.startswith("locks/") for n in backend.deletes)
    assert run_check(repo, read_data=True).ok
    assert snap.id in repo.snapshot_ids()
    with pytest.raises(errors.DeleteRefused):
        repo.backend.delete(f"snapshots/{snap.id}")


def test_a_refused_deletion_is_reported_not_raised_by_prune(
    s3_server: S3Server, s3_lock_bucket: str, tmp_path: Path
) -> None:
    _init(s3_server, s3_lock_bucket, tmp_path)
    backend = _AppendOnly(_backend(s3_server, s3_lock_bucket))
    repo = Repository.open(backend, "pw", no_cache=True)
    snap = _backup(repo, _tree(tmp_path, "a", 1))
    time.sleep((PERIOD + MARGIN).total_seconds() + 1)
    report = forget(repo, ids=[snap.id])
    assert list(report.locked) == [snap.id]  # refused by the credentials, reported
    assert snap.id in repo.snapshot_ids()


def test_prune_leaves_a_locked_unreferenced_pack_and_removes_it_once_lapsed(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str, tmp_path: Path
) -> None:
    repo = _init(s3_server, s3_lock_bucket, tmp_path)
    _backup(repo, _tree(tmp_path, "a", 1))
    leftover = "data/ab/ab" + "1" * 62  # as a killed backup leaves it: stored, never indexed
    repo.backend.store(leftover, b"pack of an interrupted backup")
    with repo.lock(exclusive=True):
        report = run_prune(repo)
    # the leftover pack, and the backup's index file (replaced by prune's, but still locked)
    assert report.objects_locked == 2 and report.locked_until and report.packs_deleted == 0
    assert repo.backend.exists(leftover)
    records_before = len(list(repo.backend.list("retention/")))
    assert records_before >= 2

    time.sleep((PERIOD + MARGIN).total_seconds() + 1)
    with repo.lock(exclusive=True):
        report = run_prune(repo)
    assert report.objects_locked == 0 and report.packs_deleted == 1
    assert not any(v["Key"] == f"repo/{leftover}" for v in _versions(s3_admin, s3_lock_bucket))
    # the records were replaced by one (the lapsed ones deleted)
    assert repo.ledger is not None
    assert len(list(repo.backend.list("retention/"))) == 1
    fresh = Repository.open(_backend(s3_server, s3_lock_bucket), "pw", no_cache=True)
    assert fresh.ledger is not None and leftover not in fresh.ledger.dates
    assert run_check(fresh).ok


def test_forget_keep_within_longer_than_the_lock_extends_what_kept_snapshots_need(
    s3_server: S3Server, s3_admin: Any, s3_lock_bucket: str, tmp_path: Path
) -> None:
    repo = _init(s3_server, s3_lock_bucket, tmp_path)
    snap = _backup(repo, _tree(tmp_path, "a", 1))
    taken = objectlock.parse_time(snap.time)
    within = dt.timedelta(seconds=60)

    shorter = forget(repo, api.Policy(within=PERIOD))  # the lock already covers it: nothing to do
    assert shorter.extended is None
    report = forget(repo, api.Policy(within=within))
    assert report.removed == 0 and report.extended is not None
    assert report.extended.extended == report.extended.objects > 3 and not report.extended.failures
    backend = _backend(s3_server, s3_lock_bucket)
    needed = objectlock.needed_packs(repo, bytes.fromhex(snap.tree)) | {f"snapshots/{snap.id}", "config"}
    for name in needed:
        retention = backend.retention(name)
        assert retention is not None and retention.until >= taken + within, name
    again = forget(repo, api.Policy(within=within))  # recorded: a second run extends nothing
    assert again.extended is not None and again.extended.extended == 0
