"""Several processes on one repository: concurrent backups both land; prune waits for nobody
and refuses while a backup holds its lock; a backup refuses while prune holds its lock."""

from __future__ import annotations

import random
from pathlib import Path

from tests.cli.helpers import (
    KK,
    assert_same_tree,
    init_fast,
    kill_hard,
    manifest,
    open_api,
    stderr_line,
    subtree,
    wait_for,
)


def _tree(root: Path) -> None:
    rnd = random.Random(11)
    shared = rnd.randbytes(3 * 1024 * 1024)
    for i in range(6):
        d = root / "part" if i % 2 else root / "rest"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"r{i}.bin").write_bytes(rnd.randbytes(4 * 1024 * 1024))
        (d / f"shared{i}.bin").write_bytes(shared)  # identical content in both sources
    for i in range(60):
        (root / "part" / "small" / f"s{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "part" / "small" / f"s{i}.txt").write_text(f"{i}\n" * i)


def test_concurrent_backups_both_land(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    _tree(src)
    locks_seen: set[str] = set()
    # one backs up the whole tree, the other a directory inside it, at the same time
    procs = [kk.popen("--json", "backup", str(src)), kk.popen("--json", "backup", str(src / "part"))]

    def both_done() -> bool:
        locks_seen.update(kk.repo.objects("locks/"))
        return all(p.poll() is not None for p in procs)

    assert wait_for(both_done, timeout=120, interval=0.01)
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(locks_seen) == 2  # both held their (shared) lock at some point
    snaps = {s["source"]["uri"]: s["id"] for s in kk.json("snapshots")}
    assert set(snaps) == {f"fs:{src}", f"fs:{src / 'part'}"}

    m = manifest(src)
    kk.run("restore", snaps[f"fs:{src}"], "--to", str(tmp_path / "whole"), "--no-cache")
    assert_same_tree(m, manifest(tmp_path / "whole"))
    kk.run("restore", snaps[f"fs:{src / 'part'}"], "--to", str(tmp_path / "part"), "--no-cache")
    assert_same_tree(subtree(m, "part"), manifest(tmp_path / "part"))
    kk.run("check", "--read-data")


def test_prune_refuses_while_a_backup_runs(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    # a 64 GiB sparse file keeps a real backup busy (reading and chunking zeros) for long
    # enough, whatever the machine's load; the test kills it when done
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse.img", "wb") as f:
        f.truncate(64 << 30)
    proc = kk.popen("backup", str(src))
    try:
        assert wait_for(lambda: bool(kk.repo.objects("locks/")) or proc.poll() is not None, timeout=60)
        locked = kk.run("prune", expect=11)
        assert "locked" in stderr_line(locked) and "shared lock" in stderr_line(locked)
        assert "removed 0 lock(s)" in stderr_line(kk.run("unlock"))  # a live lock is not stale
        assert proc.poll() is None, "the backup ended before prune ran; the test proved nothing"
    finally:
        kill_hard(proc)
    # the dead process's lock is stale now: unlock removes it, and prune runs
    assert len(kk.repo.objects("locks/")) == 1
    assert "removed 1 lock(s)" in stderr_line(kk.run("unlock"))
    kk.json("prune")


def test_backup_refuses_while_prune_holds_the_lock(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    repo = open_api(kk.repo, kk.password)
    try:
        with repo.lock(exclusive=True):
            proc = kk.run("backup", str(tmp_path / "src"), expect=11)
            assert "exclusive lock" in stderr_line(proc)
            # and a second exclusive locker is refused as well
            assert kk.run("prune", expect=11).returncode == 11
    finally:
        repo.close()
    kk.backup(tmp_path / "src")
