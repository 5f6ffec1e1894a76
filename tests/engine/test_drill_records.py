"""``engine.drills``: drill reports stored in the repository, read back whole, checked field by
field (a record is authenticated but may come from a broken or later writer), found by id
prefix, pruned per source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine import drills, objects
from kubekeep.engine import format as fmt
from kubekeep.engine.drills import (
    Difference,
    DrillCleanup,
    DrillNamespace,
    DrillObject,
    DrillRecord,
    DrillWorkload,
)
from kubekeep.engine.repository import Repository
from tests.cli.helpers import FAST_KDF


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = api.init_repository(api.RepositoryOptions(str(tmp_path / "repo"), "pw", cache_dir=tmp_path / "c"), kdf=FAST_KDF)
    try:
        yield r
    finally:
        r.close()


def _record(source: str = "k8s://prod", started: str = "2026-12-05T04:00:00Z") -> DrillRecord:
    return DrillRecord(
        token="1a2b3c4d",
        snapshot="ab" * 32,
        source=source,
        target="k8s://staging",
        started=started,
        finished=started,
        outcome=drills.FAILURE,
        reason="1 difference(s) in 1 object(s) (ConfigMap shop-drill-1a2b3c4d/settings: data.A)",
        restore_s=1.5,
        ready_s=2.0,
        rto_s=3.5,
        namespaces=[DrillNamespace("shop", "shop-drill-1a2b3c4d", 3, 3, 0, 1, 1, True, 2.0, 3.5)],
        objects=[
            DrillObject(
                "v1",
                "ConfigMap",
                "shop",
                "settings",
                "shop-drill-1a2b3c4d",
                "created",
                "",
                True,
                [Difference("data.A", "changed", "1", {"nested": [1, 2]})],
            )
        ],  # fmt: skip
        workloads=[DrillWorkload("Deployment", "shop-drill-1a2b3c4d", "web", "ready", "2/2 available", 2.0)],
        cleanup=DrillCleanup(False, ["Namespace shop-drill-1a2b3c4d"], [], 4.25),
    )


def test_a_record_reads_back_as_it_was_written(repo: Repository) -> None:
    record = _record()
    drill_id = drills.save(repo, record)
    assert record.id == drill_id and record.differences == 1 and not record.ok
    [loaded], damaged = drills.load_all(repo)
    assert damaged == [] and loaded == record
    assert drills.find(repo, drill_id[:6]) == record
    assert loaded.to_dict()["ok"] is False and loaded.to_dict()["id"] == drill_id


def _store_body(repo: Repository, body: object) -> str:
    data = objects.seal(repo.cipher, body, fmt.AAD_DRILL)
    name = objects.content_name(data)
    repo.backend.store(f"drills/{name}", data)
    return name


def test_malformed_and_damaged_records_are_named_not_trusted(repo: Repository) -> None:
    good = drills.save(repo, _record())
    wire = _record().to_wire()
    _store_body(repo, {**wire, "v": 99})
    _store_body(repo, {**wire, "restore_s": "fast"})
    _store_body(repo, {**wire, "namespaces": [{"source": "a", "target": "b", "ready": "yes"}]})
    _store_body(repo, {**wire, "objects": "nope"})
    unknown = _store_body(repo, {**wire, "future": {"field": 1}, "started": "2026-12-06T00:00:00Z"})
    run_sealed = objects.seal(repo.cipher, wire, fmt.AAD_RUN)  # sealed for another role
    repo.backend.store(f"drills/{objects.content_name(run_sealed)}", run_sealed)
    repo.backend.store("drills/" + "0" * 64, b"garbage")
    records, damaged = drills.load_all(repo)
    assert [r.id for r in records] == [good, unknown]  # a later writer's extra keys are ignored
    assert len(damaged) == 6
    assert any("not a version-1 record" in d for d in damaged)
    assert any("restore_s is not a number" in d for d in damaged)
    assert any("ready is not a boolean" in d for d in damaged)
    assert any("content does not match its name" in d for d in damaged)


def test_find_refuses_bad_and_ambiguous_prefixes(repo: Repository) -> None:
    with pytest.raises(errors.SnapshotNotFound):
        drills.find(repo, "../x")
    with pytest.raises(errors.SnapshotNotFound):
        drills.find(repo, "abc")
    ids = [drills.save(repo, _record(started=f"2026-12-05T04:00:0{i}Z")) for i in range(20)]
    common = next(p for p in (i[:1] for i in ids) if sum(x.startswith(p) for x in ids) > 1)
    with pytest.raises(errors.UsageError, match="ambiguous"):
        drills.find(repo, common)


def test_prune_keeps_the_newest_per_source(repo: Repository) -> None:
    for i in range(5):
        drills.save(repo, _record("k8s://prod", f"2026-12-05T04:00:0{i}Z"))
    other = drills.save(repo, _record("k8s://other"))
    assert drills.prune(repo, keep=2, dry_run=True) == 3
    assert drills.prune(repo, keep=2) == 3
    records, _ = drills.load_all(repo)
    assert other in {r.id for r in records}
    assert sorted(r.started for r in records if r.source == "k8s://prod") == [
        "2026-12-05T04:00:03Z",
        "2026-12-05T04:00:04Z",
    ]
