"""check through the API verifies storage, not what this process (or the disk cache) holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine.pack import pack_name
from kubekeep.engine.repository import Repository


def _flip(repo_dir: Path, name: str, offset: int) -> None:
    path = repo_dir / name
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_check_ignores_trees_and_snapshots_held_in_memory(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello\n")
    snap = api.backup(repo, str(src))
    assert api.check(repo, read_data=True).ok
    # this process now holds the trees and the snapshot in memory
    assert [p for p, _ in api.ls(repo, f"{snap.id}:/sub")] == ["/sub/f.txt"]
    node = repo.resolve(repo.find_snapshot(snap.id), "/sub")
    loc = repo.index.lookup(node.subtree)  # type: ignore[arg-type]
    assert loc is not None
    _flip(tmp_path / "repo", pack_name(loc.pack_id), loc.offset + loc.length // 2)
    report = api.check(repo)
    assert not report.ok and any("/sub" in e for e in report.errors), report.errors

    _flip(tmp_path / "repo", f"snapshots/{snap.id}", 40)
    report = api.check(repo)
    assert any(f"snapshot {snap.id[:8]}" in e for e in report.errors), report.errors


def test_read_data_subsets_cover_every_pack_once_and_find_damage(repo: Repository, tmp_path: Path) -> None:
    """Groups 1/T .. T/T read each pack exactly once; a damaged pack is found by the group that
    reads it, and by no other (they check only its header, which is intact)."""
    for i in range(4):
        src = tmp_path / f"src{i}"
        src.mkdir()
        (src / "f.bin").write_bytes(os.urandom(50_000))
        api.backup(repo, str(src))
    packs = sorted(o.name for o in repo.backend.list("data/"))
    assert len(packs) >= 4
    snap = api.snapshots(repo)[-1]
    chunk = api.stat(repo, f"{snap.id}:/f.bin").content[0]
    data_pack = repo.index.lookup(chunk)
    assert data_pack is not None
    read = [api.check(repo, subset=api.DataSubset.parse(f"{n}/3")) for n in range(1, 4)]
    assert all(r.ok for r in read), [r.errors for r in read]
    assert sum(r.packs_read for r in read) == len(packs)
    assert api.check(repo, subset=api.DataSubset.parse("100%")).packs_read == len(packs)
    assert api.check(repo, subset=api.DataSubset.parse("1%")).packs_read == 1
    # a byte of file data (not of a tree, which every check reads, nor of the header)
    _flip(tmp_path / "repo", pack_name(data_pack.pack_id), data_pack.offset + 5)
    found = [bool(api.check(repo, subset=api.DataSubset.parse(f"{n}/3")).errors) for n in range(1, 4)]
    assert found.count(True) == 1
    for bad in ("4/3", "0/2", "0%", "101%", "half"):
        with pytest.raises(errors.UsageError):
            api.DataSubset.parse(bad)
