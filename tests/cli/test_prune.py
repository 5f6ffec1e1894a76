"""Prune deletes only what no snapshot needs: after forgetting some of several snapshots that
share data, and repacking everything partly unused, every remaining snapshot restores."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from tests.cli.helpers import KK, assert_same_tree, backup_api, init_fast, manifest


def test_prune_keeps_what_remaining_snapshots_need(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    rnd = random.Random(3)
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "a.bin").write_bytes(rnd.randbytes(3 * 1024 * 1024))
    (src / "b.bin").write_bytes(rnd.randbytes(2 * 1024 * 1024))
    for i in range(30):
        (src / "docs" / f"d{i}.txt").write_text(f"document {i}\n" * 100)
    states: dict[str, dict] = {}

    def snap() -> str:
        snap_id = backup_api(kk, src)
        states[snap_id] = manifest(src)
        return snap_id

    s1 = snap()
    with open(src / "b.bin", "ab") as f:  # b keeps its first chunks, gets a new tail
        f.write(rnd.randbytes(300_000))
    (src / "c.bin").write_bytes(rnd.randbytes(1024 * 1024))
    s2 = snap()
    a = (src / "a.bin").read_bytes()
    (src / "a.bin").unlink()
    (src / "moved").mkdir()
    (src / "moved" / "a-copy.bin").write_bytes(a[: 1024 * 1024] + rnd.randbytes(500_000))
    (src / "docs" / "d3.txt").write_text("rewritten\n")
    s3 = snap()
    (src / "b.bin").write_bytes(rnd.randbytes(2 * 1024 * 1024))
    s4 = snap()

    kk.run("forget", s1, s3)
    objects_before = kk.repo.objects()
    dry = kk.json("prune", "--dry-run", "--max-unused", "0%")
    assert dry["dry_run"] and dry["packs_repacked"] > 0 and dry["blobs_removed"] > 0
    assert kk.repo.objects() == objects_before  # a dry run changes nothing

    report = kk.json("prune", "--max-unused", "0%")
    for key in ("packs_deleted", "packs_repacked", "packs_kept", "blobs_used", "blobs_removed"):
        assert report[key] == dry[key], key
    assert kk.repo.size("data/") < sum(v for k, v in objects_before.items() if k.startswith("data/"))
    again = kk.json("prune", "--max-unused", "0%")
    assert (again["packs_deleted"], again["packs_repacked"], again["blobs_removed"]) == (0, 0, 0)

    kk.run("check", "--read-data")
    shutil.rmtree(kk.cache_dir)
    for snap_id in (s2, s4):
        out = tmp_path / f"restore-{snap_id[:8]}"
        kk.run("restore", snap_id, "--to", str(out), "--no-cache")
        assert_same_tree(states[snap_id], manifest(out))
    kk.run("restore", s2, "--to", str(tmp_path / "with-cache"))
    assert_same_tree(states[s2], manifest(tmp_path / "with-cache"))
