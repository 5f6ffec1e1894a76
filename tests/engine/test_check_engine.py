"""check through the API verifies storage, not what this process (or the disk cache) holds."""

from __future__ import annotations

from pathlib import Path

from kubekeep import api
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
