"""Random bit flips in a pack, an index file, a snapshot file or a key file of a small
repository (two snapshots of a seeded ~3 MB tree).

Every flip is detected: ``check --read-data`` reports the damage (a non-zero exit), and a key
file with a flipped bit does not open with the password. No restore writes a wrong byte: each
file comes back with exactly its original bytes, or not at all. Damage hides only what is
damaged (issue #11): a damaged index file or snapshot file leaves every other snapshot listable
and restorable whole, a damaged data blob fails only the files that use it, and a damaged key
file is skipped, with a warning, when another key opens the repository. ``forget ID`` removes a
damaged snapshot and ``repair index`` rebuilds a damaged index; ``check`` passes after either."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine.pack import pack_name
from kubekeep.engine.repository import Repository
from kubekeep.engine.tree import FILE
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF, KK, RepoSpec
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
CI_RUNS = 16
KINDS = {"pack": "data/", "index": "index/", "snapshot": "snapshots/", "key": "keys/"}


def open_repo(location: Path) -> Repository:
    return Repository.open(LocalBackend(location), PASSWORD, no_cache=True)


@dataclass
class Template:
    repo: Path
    ids: list[str]
    digests: dict[str, dict[str, str]]  # snapshot id -> its source's file digests
    files: dict[str, dict[str, list[bytes]]]  # snapshot id -> file path -> its data blob ids


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("flip")
    src0 = make_dataset(root / "src0", seed=21)
    shutil.copytree(src0, root / "src1", symlinks=True)
    src1 = make_dataset(root / "src1", seed=21, variant=2)
    repo_path = root / "repo"
    Repository.init(LocalBackend(repo_path), PASSWORD, kdf=FAST_KDF, no_cache=True).close()
    t = Template(repo_path, [], {}, {})
    repo = open_repo(repo_path)
    try:
        for src in (src0, src1):
            snap = api.backup(repo, str(src))
            t.ids.append(snap.id)
            t.digests[snap.id] = file_digests(src)
            t.files[snap.id] = {
                rel.lstrip("/"): list(node.content)
                for rel, node in api.ls(repo, snap.id, recursive=True)
                if node.type == FILE
            }
    finally:
        repo.close()
    return t


def flip_bits(path: Path, rng: random.Random) -> list[int]:
    """Flip 1-3 random bits of the file at ``path`` (replaced whole, as storage would); return
    the byte offsets touched."""
    data = bytearray(path.read_bytes())
    bits = rng.sample(range(len(data) * 8), rng.randint(1, 3))
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    tmp = path.with_name(path.name + ".flipped")
    tmp.write_bytes(bytes(data))
    tmp.replace(path)
    return sorted({bit // 8 for bit in bits})


def damaged_blobs(t: Template, location: Path, name: str, offsets: list[int]) -> set[bytes]:
    """Blobs of pack ``name`` whose stored bytes include a flipped offset (by the template's
    intact index)."""
    repo = open_repo(t.repo)
    try:
        hit: set[bytes] = set()
        for pack_id, entries in repo.index.by_pack().items():
            if pack_name(pack_id) != name:
                continue
            for e in entries:
                if any(e.offset <= o < e.offset + e.length for o in offsets):
                    hit.add(e.id)
        return hit
    finally:
        repo.close()


def detected_by_check(location: Path, what: str) -> None:
    try:
        repo = open_repo(location)
    except errors.KubekeepError:
        return
    try:
        report = api.check(repo, read_data=True)
    except errors.KubekeepError:
        return
    finally:
        repo.close()
    if report.ok:
        raise fail("undetected", f"{what}: check --read-data found nothing")


def restore_each(t: Template, location: Path, work: Path, what: str) -> dict[str, str | None]:
    """Restore every snapshot into its own directory; return snapshot id -> the error (None if
    the restore succeeded). Fails the run on any wrong byte."""
    outcome: dict[str, str | None] = {}
    for snap_id in t.ids:
        out = work / f"out-{snap_id[:8]}"
        try:
            repo = open_repo(location)
        except errors.KubekeepError as exc:
            outcome[snap_id] = str(exc)
            continue
        try:
            api.restore(repo, snap_id, str(out))
            outcome[snap_id] = None
        except errors.KubekeepError as exc:
            outcome[snap_id] = str(exc)
        finally:
            repo.close()
        if out.exists() and (wrong := wrong_files(t.digests[snap_id], out)):
            raise fail("wrong_restores", f"{what}: restore of {snap_id[:8]} wrote wrong bytes to {wrong[:5]}")
        if outcome[snap_id] is None and (missing := missing_files(t.digests[snap_id], out)):
            raise fail("other_failures", f"{what}: restore of {snap_id[:8]} succeeded without {missing[:5]}")
    return outcome


def one_run(t: Template, tmp: Path) -> Callable[[random.Random, Figures], None]:
    def run(rng: random.Random, figures: Figures) -> None:
        work = tmp / f"run-{figures.runs}"
        work.mkdir()
        location = work / "repo"
        shutil.copytree(t.repo, location, symlinks=True)
        kind = rng.choice(sorted(KINDS))
        spare_key = kind == "key" and rng.random() < 0.5
        if spare_key:
            repo = open_repo(location)
            try:
                repo.add_key(PASSWORD, kdf=FAST_KDF)
            finally:
                repo.close()
        names = sorted(o.name for o in LocalBackend(location).list(KINDS[kind]))
        name = names[0] if spare_key else rng.choice(names)
        offsets = flip_bits(location / name, rng)
        figures.faults += 1
        what = f"{kind} {name} flipped at byte(s) {offsets}"

        if kind == "key":
            check_key(location, work, spare_key, what)
        else:
            detected_by_check(location, what)
            outcome = restore_each(t, location, work, what)
            if kind == "index":
                # the packs describe themselves: every snapshot still restores whole
                failed = {s[:8]: e for s, e in outcome.items() if e is not None}
                if failed:
                    raise fail("other_failures", f"{what}: damaged index, restore failed: {failed}")
                # rebuilt from the pack headers, the repository is whole again
                repair(work, location, what, "repair", "index")
            elif kind == "snapshot":
                damaged = name.split("/", 1)[1]
                others = [s for s in t.ids if s != damaged]
                failed = {s[:8]: outcome[s] for s in others if outcome[s] is not None}
                if failed:
                    raise fail("other_failures", f"{what}: another snapshot no longer restores: {failed}")
                listed = KK(RepoSpec(str(location)), password=PASSWORD, cache_dir=work / "cache").run(
                    "--json", "snapshots", expect=None
                )
                if listed.returncode != 0 or any(s not in listed.stdout.decode() for s in others):
                    raise fail(
                        "other_failures",
                        f"{what}: 'snapshots' exited {listed.returncode} and listed "
                        f"{listed.stdout.decode()[:200]!r}: {listed.stderr.decode()[-300:]}",
                    )
                # forget removes it by name, without decrypting it; then the repository is whole
                repair(work, location, what, "forget", damaged)
            else:
                hit = damaged_blobs(t, location, name, offsets)
                for snap_id, error in outcome.items():
                    if error is None:
                        continue
                    spared = {rel for rel, blobs in t.files[snap_id].items() if not hit & set(blobs)}
                    lost = sorted(spared & set(missing_files(t.digests[snap_id], work / f"out-{snap_id[:8]}")))
                    if lost and hit <= data_blobs(t):
                        raise fail(
                            "other_failures", f"{what}: restore of {snap_id[:8]} lost undamaged files {lost[:5]}"
                        )
        shutil.rmtree(work)

    return run


def repair(work: Path, location: Path, what: str, *command: str) -> None:
    """Run ``kubekeep COMMAND``; it must succeed and leave a repository that check accepts."""
    kk = KK(RepoSpec(str(location)), password=PASSWORD, cache_dir=work / "cache")
    proc = kk.run(*command, expect=None)
    if proc.returncode != 0:
        raise fail(
            "other_failures",
            f"{what}: 'kubekeep {' '.join(command)}' exited {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace')[-300:]}",
        )
    repo = open_repo(location)
    try:
        report = api.check(repo, read_data=True)
    finally:
        repo.close()
    if not report.ok:
        raise fail(
            "check_failures",
            f"{what}: after 'kubekeep {' '.join(command)}' check --read-data: {'; '.join(report.errors[:3])}",
        )


def data_blobs(t: Template) -> set[bytes]:
    return {b for files in t.files.values() for blobs in files.values() for b in blobs}


def check_key(location: Path, work: Path, spare_key: bool, what: str) -> None:
    if not spare_key:
        try:
            repo = open_repo(location)
        except errors.KubekeepError:
            return  # refused with a clear error: detected
        except Exception as exc:
            raise fail("other_failures", f"{what}: opening crashed: {type(exc).__name__}: {exc}") from exc
        repo.close()
        # the wrapped master key is intact (the flip hit the sealed details): it opens, warning
        if not any("key file" in w for w in repo.warnings):
            raise fail("undetected", f"{what}: the damaged key file still opens the repository, without a warning")
        return
    kk = KK(RepoSpec(str(location)), password=PASSWORD, cache_dir=work / "cache")
    proc = kk.run("snapshots", expect=None)
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 or "Traceback" in err:
        raise fail(
            "other_failures", f"{what}: with a second, intact key 'snapshots' exited {proc.returncode}: {err[-300:]}"
        )
    if "warning" not in err.lower() or "key" not in err.lower():
        raise fail("undetected", f"{what}: opened through the other key without a warning about the damaged one")


@pytest.mark.timeout(time_limit(CI_RUNS, setup_s=60, per_run_s=15))
def test_bit_flip_campaign(template: Template, tmp_path: Path, campaign_id: str) -> None:
    Campaign("bit flips in packs, index, snapshots and keys", CI_RUNS, campaign_id).run(one_run(template, tmp_path))
