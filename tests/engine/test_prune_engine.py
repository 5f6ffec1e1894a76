"""Prune through the API with duplicate blobs (two writers that did not see each other's
index, as concurrent backups do) and partly used packs."""

from __future__ import annotations

import random
from pathlib import Path

from kubekeep import api
from kubekeep.engine.repository import Repository
from tests.cli.helpers import assert_same_tree, manifest
from tests.engine.conftest import reopen


def test_prune_with_duplicate_blobs(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(9)
    (src / "shared.bin").write_bytes(rnd.randbytes(2 * 1024 * 1024))
    (src / "small.txt").write_text("small\n")
    other = reopen(repo, tmp_path)
    other.index  # noqa: B018 - loaded now: it will not see what `repo` writes next
    first = api.backup(repo, str(src))
    (src / "extra.txt").write_text("only in the second\n")
    second = api.backup(other, str(src), force=True)  # stores the same chunks again
    other.close()

    fresh = reopen(repo, tmp_path)
    rows = list(fresh.index.entries())
    assert len(rows) > len({b for b, _ in rows})  # duplicates exist
    api.forget(fresh, ids=[first.id])
    report = api.prune(fresh, max_unused=0.0)
    assert report.blobs_removed > 0
    rows = list(fresh.index.entries())
    assert len(rows) == len({b for b, _ in rows})  # each blob kept once
    assert api.check(fresh, read_data=True).ok
    out = tmp_path / "out"
    api.restore(fresh, second.id, str(out))
    assert_same_tree(manifest(src), manifest(out))
    again = api.prune(fresh, max_unused=0.0)
    assert (again.packs_deleted, again.packs_repacked, again.blobs_removed) == (0, 0, 0)
    fresh.close()


def test_prune_refuses_when_a_snapshot_needs_missing_data(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("x" * 1000)
    snap = api.backup(repo, str(src))
    # lose every index file: the snapshot's blobs are unknown now
    for name in [o.name for o in repo.backend.list("index/")]:
        repo.backend.delete(name)
    fresh = Repository.open(repo.backend, "engine test password", no_cache=True)
    packs_before = {o.name for o in fresh.backend.list("data/")}
    try:
        api.prune(fresh)
    except Exception as exc:  # noqa: BLE001 - checked below
        assert "nothing was deleted" in str(exc) and snap.short_id in str(exc)
    else:
        raise AssertionError("prune went ahead without the data a snapshot needs")
    assert {o.name for o in fresh.backend.list("data/")} == packs_before
