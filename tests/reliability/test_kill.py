"""SIGKILL at random moments of backup, prune, copy and ``forget --prune``: afterwards
``check --read-data`` passes, no snapshot that should be there is lost, and the next backup
works and restores byte for byte.

Each operation runs as a real ``kubekeep`` process against a copy of one small repository
(three snapshots of a seeded ~3 MB tree); the kill lands at a random moment between the end of
the process's start-up and the operation's usual end (both measured once per module)."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubekeep import api
from kubekeep.engine.repository import Repository
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF, KK, RepoSpec, kill_hard, wait_for
from tests.reliability.campaign import (
    Campaign,
    Figures,
    fail,
    file_digests,
    make_dataset,
    missing_files,
    time_limit,
    wrong_files,
)

pytestmark = [pytest.mark.reliability, pytest.mark.campaign]

PASSWORD = "correct horse"
CI_RUNS = 4


def open_repo(location: Path) -> Repository:
    return Repository.open(LocalBackend(location), PASSWORD, no_cache=True)


def backup_in_process(location: Path, source: Path) -> str:
    repo = open_repo(location)
    try:
        return api.backup(repo, str(source)).id
    finally:
        repo.close()


def init_in_process(location: Path) -> None:
    Repository.init(LocalBackend(location), PASSWORD, kdf=FAST_KDF, no_cache=True).close()


@dataclass
class Template:
    root: Path
    repo: Path  # three snapshots: ids[0] of sources[0], ...
    ids: list[str]
    sources: list[Path]
    next_source: Path  # what the killed backup and the next backup store
    dest: Path  # a second repository with one snapshot of its own, for copy
    dest_id: str
    password_file: Path
    #: seconds each operation runs from taking its lock to its end
    window_s: dict[str, float] = field(default_factory=dict)


OPERATIONS = ("backup", "prune", "forget-prune", "copy")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("kill")
    sources = [make_dataset(root / "src0", seed=11)]
    for v in (1, 2):  # each later source is a copy of the one before, changed a little
        shutil.copytree(sources[-1], root / f"src{v}", symlinks=True)
        sources.append(make_dataset(root / f"src{v}", seed=11, variant=v))
    next_source = root / "src-next"
    shutil.copytree(sources[2], next_source, symlinks=True)
    make_dataset(next_source, seed=11, variant=3)
    repo = root / "repo"
    init_in_process(repo)
    ids = [backup_in_process(repo, s) for s in sources]
    dest = root / "dest"
    init_in_process(dest)
    dest_id = backup_in_process(dest, make_dataset(root / "other", seed=99))
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    t = Template(root, repo, ids, sources, next_source, dest, dest_id, password_file)

    # calibration: how long each operation runs once it holds its lock
    work = root / "calibrate"
    t.window_s = {}
    for op in OPERATIONS:
        if work.exists():
            shutil.rmtree(work)
        kk, args = prepare(t, work, op)
        proc = kk.popen(*args)
        try:
            assert wait_for(
                lambda kk=kk, proc=proc: has_lock(kk) or proc.poll() is not None, timeout=60, interval=0.005
            )
            locked = time.monotonic()
            assert proc.wait(timeout=120) == 0, proc.stderr.read().decode() if proc.stderr else ""
            t.window_s[op] = time.monotonic() - locked
        finally:
            kill_hard(proc)
    shutil.rmtree(work)
    return t


def prepare(t: Template, work: Path, op: str) -> tuple[KK, list[str]]:
    """A fresh copy of the repository (and of the copy destination), set up for ``op``; the
    runner and the arguments of the operation to kill."""
    work.mkdir(parents=True)
    shutil.copytree(t.repo, work / "repo", symlinks=True)
    target = work / "repo"
    args: list[str]
    if op == "backup":
        args = ["backup", str(t.next_source)]
    elif op == "prune":
        repo = open_repo(target)
        try:
            api.forget(repo, ids=[t.ids[0]])  # something for prune to delete and repack
        finally:
            repo.close()
        args = ["prune"]
    elif op == "forget-prune":
        args = ["forget", t.ids[0], "--prune"]
    else:
        shutil.copytree(t.dest, work / "dest", symlinks=True)
        target = work / "dest"
        args = ["copy", "--from-repo", str(work / "repo"), "--from-password-file", str(t.password_file)]
    kk = KK(RepoSpec(str(target)), password=PASSWORD, cache_dir=work / "cache")
    return kk, args


def has_lock(kk: KK) -> bool:
    """The operation has started: its lock is in the repository."""
    try:
        return any(True for _ in (Path(kk.repo.location) / "locks").iterdir())
    except FileNotFoundError:
        return False


def expected_after(t: Template, op: str) -> set[str]:
    """Snapshots that must still be there after ``op`` was killed."""
    if op == "copy":
        return {t.dest_id}
    if op in ("prune", "forget-prune"):
        return set(t.ids[1:])
    return set(t.ids)


def verify(location: Path, must_have: set[str], what: str) -> None:
    repo = open_repo(location)
    try:
        report = api.check(repo, read_data=True)
        if not report.ok:
            raise fail("check_failures", f"{what}: check --read-data: {'; '.join(report.errors[:3])}")
        lost = must_have - set(repo.snapshot_ids())
        if lost:
            raise fail("other_failures", f"{what}: snapshot(s) lost: {sorted(lost)}")
    finally:
        repo.close()


def one_run(t: Template, tmp: Path, op: str) -> Callable[..., None]:
    def run(rng: random.Random, figures: Figures) -> None:
        work = tmp / f"run-{figures.runs}"
        kk, args = prepare(t, work, op)
        target = Path(kk.repo.location)
        proc = kk.popen(*args)
        try:
            # the kill lands once the operation holds its lock, at a random moment of its usual run
            wait_for(lambda: has_lock(kk) or proc.poll() is not None, timeout=60, interval=0.005)
            delay = rng.uniform(0, 1.1 * t.window_s[op])
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                figures.faults += 1
        finally:
            kill_hard(proc)
        where = f"{op} killed {delay:.3f}s after taking its lock"
        verify(target, expected_after(t, op), where)

        repo = open_repo(target)
        try:
            if op == "copy":
                src = open_repo(work / "repo")
                try:
                    api.copy(src, repo)
                finally:
                    src.close()
                if len(repo.snapshot_ids()) != 1 + len(t.ids):
                    raise fail(
                        "other_failures", f"{where}: the copy run again left {len(repo.snapshot_ids())} snapshots"
                    )
            try:
                snap = api.backup(repo, str(t.next_source)).id
            except Exception as exc:
                raise fail("other_failures", f"{where}: the next backup failed: {exc}") from exc
            out = work / "out"
            api.restore(repo, snap, str(out))
        finally:
            repo.close()
        expected = file_digests(t.next_source)
        if wrong := wrong_files(expected, out):
            raise fail("wrong_restores", f"{where}: restore of the next backup wrote wrong bytes: {wrong[:5]}")
        if missing := missing_files(expected, out):
            raise fail("other_failures", f"{where}: restore of the next backup lacks {missing[:5]}")
        verify(target, expected_after(t, op), f"{where}, then a backup")
        shutil.rmtree(work)

    return run


@pytest.mark.timeout(time_limit(CI_RUNS, setup_s=120, per_run_s=40))
@pytest.mark.parametrize("op", OPERATIONS)
def test_sigkill_campaign(op: str, template: Template, tmp_path: Path, campaign_id: str) -> None:
    Campaign(f"SIGKILL during {op}", CI_RUNS, campaign_id).run(one_run(template, tmp_path, op))
