"""A full file system (ENOSPC) under the repository during a backup, and under the target of
a restore, on a small tmpfs mounted for the test (skipped where mounting is not permitted).

Backup: fails with a one-line error and a non-zero exit; the repository keeps every earlier
snapshot, passes ``check --read-data``, and goes on working once prune has removed what the
failed backup left. Restore: the files that could not be written are named, every file that
is there has its exact bytes, the rest of the snapshot is restored (directory metadata
included), and the exit is non-zero."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import KK, RepoSpec, init_fast, stderr_line
from tests.reliability.campaign import FIGURES, Figures, file_digests, make_dataset, missing_files, wrong_files

pytestmark = pytest.mark.reliability

MountSmall = Callable[[str, str], Path]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[MountSmall]:
    """``small_fs(name, size)``: a fresh tmpfs of ``size`` (e.g. "8M") at tmp_path/name."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        if os.geteuid() != 0:
            pytest.skip("a full file system needs a small tmpfs, and mounting one needs root")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            timeout=30,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def record(name: str) -> Figures:
    figures = Figures(name, seed=0, runs=1, faults=1)
    FIGURES.append(figures)
    return figures


def temp_files(root: Path) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.startswith(".tmp-")]


@pytest.mark.timeout(180)
def test_backup_into_a_full_file_system(small_fs: MountSmall, tmp_path: Path) -> None:
    figures = record("ENOSPC during backup")
    repo = RepoSpec(str(small_fs("repofs", "24M") / "repo"))
    kk = KK(repo, cache_dir=tmp_path / "cache")
    init_fast(repo, kk.password)
    small = make_dataset(tmp_path / "small", seed=31, big_kib=512)
    first = kk.backup(small)

    big = tmp_path / "big"
    big.mkdir()
    rnd = random.Random(32)
    for i in range(5):  # 40 MB that does not compress: two packs fit, the third does not
        (big / f"part{i}.bin").write_bytes(rnd.randbytes(8 * 1024 * 1024))
    proc = kk.run("backup", str(big), expect=None)
    assert proc.returncode != 0
    line = stderr_line(proc)
    assert "No space left on device" in line, line
    assert temp_files(Path(repo.location)) == []
    assert repo.objects("locks/") == {}

    # every earlier snapshot is there, whole
    if kk.run("check", "--read-data", expect=None).returncode != 0:
        figures.check_failures += 1
    assert [s["id"] for s in kk.json("snapshots")] == [first]
    out = tmp_path / "out"
    kk.run("restore", first, "--to", str(out))
    if wrong_files(file_digests(small), out):
        figures.wrong_restores += 1
    assert wrong_files(file_digests(small), out) == [] and missing_files(file_digests(small), out) == []
    assert figures.check_failures == 0

    # prune removes what the failed backup stored; then backups go on
    kk.run("prune")
    (small / "later.txt").write_text("written after the disk was full\n")
    later = kk.backup(small)
    kk.run("check", "--read-data")
    assert {s["id"] for s in kk.json("snapshots")} == {first, later}


@pytest.mark.timeout(180)
def test_restore_into_a_full_file_system(small_fs: MountSmall, tmp_path: Path) -> None:
    figures = record("ENOSPC during restore")
    kk = KK(RepoSpec(str(tmp_path / "repo")), cache_dir=tmp_path / "cache")
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    rnd = random.Random(41)
    src.mkdir()
    (src / "a_first.bin").write_bytes(rnd.randbytes(900_000))
    (src / "m_huge.bin").write_bytes(rnd.randbytes(10 * 1024 * 1024))  # more than the target holds
    (src / "z").mkdir()
    for i in range(30):
        (src / "z" / f"small{i:02d}.txt").write_text(f"small {i}\n" * rnd.randint(1, 2000))
    os.utime(src / "z", ns=(1_600_000_000_000_000_000,) * 2)
    kk.backup(src)

    target = small_fs("target", "8M") / "out"
    proc = kk.run("restore", "latest", "--to", str(target), expect=None)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode != 0, output
    assert "Traceback" not in output
    digests = file_digests(src)
    wrong = wrong_files(digests, target)
    if wrong:
        figures.wrong_restores += 1
    assert wrong == [], f"wrong bytes in {wrong}"
    missing = missing_files(digests, target)
    assert "m_huge.bin" in missing
    unnamed = [rel for rel in missing if rel.rsplit("/", 1)[-1] not in output]
    assert unnamed == [], f"files neither restored nor reported: {unnamed}"
    # the restore went on past the file it could not write, and set directory metadata
    assert missing == ["m_huge.bin"], f"not restored: {missing}\n{output[-2000:]}"
    assert (target / "z").stat().st_mtime_ns == (src / "z").stat().st_mtime_ns
