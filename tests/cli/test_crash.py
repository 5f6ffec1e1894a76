"""A backup killed with SIGKILL at any moment leaves a valid repository: no snapshot, only
unreferenced packs (a note for check, removed by prune), a stale lock (removed by unlock), and
the next backup works."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from tests.cli.helpers import KK, init_fast, kill_hard, stderr_line, wait_for


def _packs(repo_root: Path) -> int:
    data = repo_root / "data"
    return sum(1 for _, _, files in os.walk(data) for f in files if not f.startswith(".tmp-"))


def _start_and_kill(kk: KK, root: Path, source: Path, when: str) -> None:
    before = _packs(root)
    started = time.monotonic()
    proc = kk.popen("backup", str(source))

    def ready() -> bool:
        if when == "first-pack":
            return _packs(root) > before
        if when == "1s":
            # 1 s in, or earlier on a machine fast enough to be close to done by then
            return _packs(root) > before and (time.monotonic() - started >= 1.0 or _packs(root) >= before + 3)
        return _packs(root) >= before + 6  # ~100 MB of the 200 MB stored

    try:
        assert wait_for(lambda: ready() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, f"backup finished before the {when} kill"
    finally:
        kill_hard(proc)


def test_sigkilled_backups_leave_a_valid_repository(kk: KK, big_tree: Path) -> None:
    init_fast(kk.repo, kk.password)
    root = Path(kk.repo.location)
    # kill: as soon as a pack exists; 1 s in (with packs written); well into the run
    for when in ("first-pack", "1s", "mid"):
        _start_and_kill(kk, root, big_tree, when)
    assert _packs(root) > 6

    # no snapshot, and check is happy (unreferenced packs are only a note)
    assert kk.json("snapshots") == []
    proc = kk.run("check")
    assert b"not referenced by the index" in proc.stderr and b"no errors were found" in proc.stdout
    assert len(kk.repo.objects("locks/")) == 3  # one stale lock per killed run

    # the next backup works and everything it stored is intact
    snap = kk.json("backup", str(big_tree))
    assert snap["stats"]["files"] == 420
    kk.run("check", "--read-data")
    one = big_tree / "big" / "b07.bin"
    assert (
        hashlib.sha256(kk.run("cat", f"latest:/big/{one.name}").stdout).digest()
        == hashlib.sha256(one.read_bytes()).digest()
    )

    # unlock removes the stale locks of the dead processes
    assert "removed 3 lock(s)" in stderr_line(kk.run("unlock"))
    assert kk.repo.objects("locks/") == {}

    # prune removes the orphans (and temp files of interrupted stores once they are old)
    leftover = root / "data" / "00" / ".tmp-killedstore"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_bytes(b"\0" * 1_000_000)
    os.utime(leftover, (time.time() - 7200,) * 2)
    data_before = kk.repo.size("data/")
    report = kk.json("prune")
    assert report["packs_deleted"] > 0
    assert kk.repo.size("data/") < data_before
    assert not leftover.exists()
    assert kk.json("prune", "--dry-run")["packs_deleted"] == 0
    proc = kk.run("check")
    assert b"not referenced" not in proc.stderr
