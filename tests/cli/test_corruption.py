"""Damaged storage is found and never turned into wrong data: one flipped byte in a data pack,
a tree pack, an index file or a snapshot file; a missing or truncated pack. Damage hides only
what is damaged: the other snapshots, and the blobs a damaged index file listed (found from pack
headers), stay usable, and ``repair index|snapshots`` put the repository right."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep.engine.pack import pack_name
from tests.cli.conftest import s3_spec
from tests.cli.helpers import KK, assert_same_tree, backup_api, init_fast, manifest, open_api, stderr_line
from tests.support.s3server import S3Server


@pytest.fixture
def damaged_setup(kk: KK, tmp_path: Path) -> tuple[KK, Path, str]:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    rnd = random.Random(7)
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "victim.bin").write_bytes(rnd.randbytes(200_000))
    (src / "big.bin").write_bytes(rnd.randbytes(3 * 1024 * 1024))
    for i in range(20):
        (src / "sub" / f"f{i}.txt").write_text(f"file {i}\n" * 50)
    (src / "sub" / "deeper" / "x.txt").write_text("x\n")
    snap = backup_api(kk, src)
    return kk, src, snap


def flip(kk: KK, name: str, offset: int) -> None:
    data = bytearray(kk.repo.read(name))
    data[offset] ^= 0x40
    kk.repo.write(name, bytes(data))


def locate(kk: KK, snap_id: str, path: str, tree: bool = False) -> tuple[str, int, int]:
    """(storage name, offset, length) of a file's first data blob, or of a directory's tree."""
    repo = open_api(kk.repo, kk.password)
    try:
        node = repo.resolve(repo.find_snapshot(snap_id), path)
        blob = node.subtree if tree else node.content[0]
        loc = repo.index.lookup(blob)
        assert loc is not None
        return pack_name(loc.pack_id), loc.offset, loc.length
    finally:
        repo.close()


def test_damaged_data_pack(damaged_setup: tuple[KK, Path, str], tmp_path: Path) -> None:
    kk, src, snap = damaged_setup
    name, offset, length = locate(kk, snap, "/victim.bin")
    flip(kk, name, offset + length // 2)
    pack_prefix = name.rsplit("/", 1)[1][:16]

    proc = kk.run("check", "--read-data", expect=13)
    err = proc.stderr.decode()
    assert "Traceback" not in err
    assert f"pack {pack_prefix}" in err and "corrupted" in err
    assert "problem(s) found" in err

    out = tmp_path / "out"
    proc = kk.run("restore", "latest", "--to", str(out), expect=13)
    line = stderr_line(proc)
    assert "victim.bin" in line and "could not be restored" in line
    assert not (out / "victim.bin").exists()
    assert not [p for p in out.rglob("*") if "kubekeep-" in p.name]  # no temp file left behind
    expected = {k: v for k, v in manifest(src).items() if k != "victim.bin"}
    assert_same_tree(expected, manifest(out))

    proc = kk.run("cat", "latest:/victim.bin", expect=13)
    assert stderr_line(proc).startswith("error: ")
    assert proc.stdout == b""


def test_damaged_tree_pack_and_the_cache(damaged_setup: tuple[KK, Path, str], tmp_path: Path) -> None:
    kk, src, snap = damaged_setup
    name, offset, length = locate(kk, snap, "/sub", tree=True)
    cached_pack = kk.cache_dir / open_api(kk.repo, kk.password).id / name
    assert cached_pack.exists()  # tree packs are cached by the backup that wrote them
    flip(kk, name, offset + length // 2)

    # check reads storage, not the (intact) cache, even without --read-data
    proc = kk.run("check", expect=13)
    assert "/sub" in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()
    # the cache holds authenticated, correct trees: using it is fine, and without it the
    # damage is reported, never turned into a wrong listing
    assert "/sub/deeper/x.txt" in kk.out("ls", "-R", "latest")
    proc = kk.run("ls", "-R", "latest", "--no-cache", expect=13)
    assert "tree" in stderr_line(proc) or "blob" in stderr_line(proc)
    out = tmp_path / "out"
    kk.run("restore", "latest", "--to", str(out), "--no-cache", expect=13)
    assert not (out / "sub" / "f1.txt").exists()


def test_damaged_cache_falls_back_to_storage(damaged_setup: tuple[KK, Path, str], tmp_path: Path) -> None:
    kk, src, snap = damaged_setup
    name, offset, length = locate(kk, snap, "/sub", tree=True)
    cached_pack = kk.cache_dir / open_api(kk.repo, kk.password).id / name
    data = bytearray(cached_pack.read_bytes())
    data[offset + length // 2] ^= 1
    cached_pack.write_bytes(bytes(data))
    kk.run("restore", "latest", "--to", str(tmp_path / "out"))
    assert_same_tree(manifest(src), manifest(tmp_path / "out"))
    assert cached_pack.read_bytes() == kk.repo.read(name)  # the bad copy was replaced


def test_damaged_index_file(damaged_setup: tuple[KK, Path, str], tmp_path: Path) -> None:
    kk, src, snap = damaged_setup
    [index_name] = kk.repo.objects("index/")
    flip(kk, index_name, 40)
    proc = kk.run("check", expect=13)
    assert index_name.split("/")[1][:16] in proc.stderr.decode()
    # the packs describe themselves: restores read their headers, with a warning
    out = tmp_path / "out"
    proc = kk.run("restore", "latest", "--to", str(out), "--no-cache")
    warnings = warnings_of(proc)
    assert any(index_name.split("/")[1] in w and "damaged" in w for w in warnings), warnings
    assert any("repair index" in w for w in warnings), warnings
    assert_same_tree(manifest(src), manifest(out))
    # prune cannot know what a damaged index described: it refuses, deleting nothing
    stored = kk.repo.objects()
    proc = kk.run("prune", "--no-cache", expect=13)
    assert "repair index" in proc.stderr.decode().splitlines()[-1]
    added = {n: s for n, s in kk.repo.objects().items() if n not in stored}
    assert {n: s for n, s in kk.repo.objects().items() if n in stored} == stored  # nothing deleted
    assert len(added) == 1 and next(iter(added)).startswith("runs/")  # the failed run's record
    stored = kk.repo.objects()

    report = kk.json("repair", "index", "--dry-run")
    assert kk.repo.objects() == stored
    assert report["dry_run"] and report["damaged_index_files"] == [index_name]
    assert report["packs_read"] == len(kk.repo.objects("data/")) and not report["packs_unreadable"]
    proc = kk.run("repair", "index")
    assert "index" in proc.stderr.decode()
    after = kk.repo.objects("index/")
    assert after and index_name not in after
    kk.run("check", "--read-data")
    proc = kk.run("restore", "latest", "--to", str(tmp_path / "out2"), "--no-cache")
    assert not warnings_of(proc)
    assert_same_tree(manifest(src), manifest(tmp_path / "out2"))


def test_one_damaged_index_file_of_several(damaged_setup: tuple[KK, Path, str], tmp_path: Path) -> None:
    kk, src, first = damaged_setup
    [first_index] = kk.repo.objects("index/")
    (src / "later.bin").write_bytes(random.Random(3).randbytes(300_000))
    backup_api(kk, src)
    flip(kk, first_index, 40)
    out = tmp_path / "out"
    proc = kk.run("restore", "latest", "--to", str(out), "--no-cache")
    assert any(first_index.split("/")[1] in w for w in warnings_of(proc))
    assert_same_tree(manifest(src), manifest(out))
    kk.run("repair", "index")
    assert first_index not in kk.repo.objects("index/")
    kk.run("check")


def test_repair_snapshots_drops_only_what_is_gone(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    (src / "z").mkdir(parents=True)
    for i in range(30):
        (src / "z" / f"f{i:03d}.txt").write_text(f"{i}\n")
    backup_api(kk, src)
    (src / "a.bin").write_bytes(random.Random(1).randbytes(100_000))
    broken = backup_api(kk, src)  # a.bin's data in a pack of its own
    name, _, _ = locate(kk, broken, "/a.bin")
    (Path(kk.repo.location) / name).unlink()
    expected = {k: v for k, v in manifest(src).items() if k != "a.bin"}

    stored = kk.repo.objects()
    report = kk.json("repair", "snapshots", "--dry-run", "--no-cache")
    assert kk.repo.objects() == stored
    [entry] = [s for s in report["snapshots"] if s["status"] != "intact"]
    assert entry["id"] == broken and entry["status"] == "would repair"
    assert entry["removed_files"] == ["/a.bin"] and entry["new_id"] is None
    assert len([s for s in report["snapshots"] if s["status"] == "intact"]) == 1

    kk.run("repair", "index")  # forgets the missing pack
    proc = kk.run("repair", "snapshots", "--no-cache")
    err = proc.stderr.decode()
    assert "/a.bin" in err and broken[:8] in err
    new = [s for s in kk.json("snapshots", "--no-cache") if "repaired" in s["tags"]]
    assert len(new) == 1
    assert new[0]["metadata"]["repaired"]["original"] == broken
    assert f"snapshots/{broken}" in kk.repo.objects("snapshots/")  # kept without --forget
    out = tmp_path / "out"
    kk.run("restore", new[0]["id"], "--to", str(out), "--no-cache")
    assert_same_tree(expected, manifest(out))
    # a second run does not repair the same snapshot again; --forget removes the original
    report = kk.json("repair", "snapshots", "--forget", "--no-cache")
    assert [s["status"] for s in report["snapshots"] if s["id"] == broken] == ["already repaired"]
    assert f"snapshots/{broken}" not in kk.repo.objects("snapshots/")
    assert len(kk.json("snapshots")) == 2
    kk.run("check")
    kk.run("prune")
    kk.run("check", "--read-data")


def test_repair_snapshots_empties_an_unreadable_directory(damaged_setup: tuple[KK, Path, str], tmp_path: Path) -> None:
    kk, src, snap = damaged_setup
    name, offset, length = locate(kk, snap, "/sub", tree=True)
    flip(kk, name, offset + length // 2)
    report = kk.json("repair", "snapshots", "--forget", "--no-cache")
    [entry] = report["snapshots"]
    assert entry["status"] == "repaired" and entry["emptied_dirs"] == ["/sub"] and entry["forgotten"]
    out = tmp_path / "out"
    kk.run("restore", "latest", "--to", str(out), "--no-cache")
    expected = {k: v for k, v in manifest(src).items() if not k.startswith("sub/")}
    expected.pop("sub")
    actual = manifest(out)
    assert actual.pop("sub").type == "dir"
    assert_same_tree(expected, actual)


def test_check_notices_a_truncated_pack_without_reading_data(damaged_setup: tuple[KK, Path, str]) -> None:
    kk, src, snap = damaged_setup
    for cut in (10, 100_000):
        name, _, _ = locate(kk, snap, "/victim.bin")
        data = kk.repo.read(name)
        kk.repo.write(name, data[:-cut])
        proc = kk.run("check", expect=13)
        err = proc.stderr.decode()
        assert f"pack {name.rsplit('/', 1)[1][:16]}" in err and "truncated" in err, err
        kk.repo.write(name, data)
        kk.run("check")


def test_damaged_snapshot_file(damaged_setup: tuple[KK, Path, str], tmp_path: Path) -> None:
    kk, src, snap = damaged_setup
    (src / "later.txt").write_text("a later file\n")
    later = backup_api(kk, src)
    flip(kk, f"snapshots/{snap}", 50)
    shutil.rmtree(kk.cache_dir)
    proc = kk.run("check", expect=13)
    assert f"snapshot {snap[:8]}" in proc.stderr.decode()
    # the other snapshot is unaffected, and backups go on
    kk.run("restore", later, "--to", str(tmp_path / "out"))
    assert_same_tree(manifest(src), manifest(tmp_path / "out"))
    (src / "even-later.txt").write_text("x\n")
    kk.backup(src)
    proc = kk.run("restore", snap, "--to", str(tmp_path / "out2"), expect=13)
    assert snap[:8] in stderr_line(proc)


def test_missing_data_pack(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    (src / "z").mkdir(parents=True)
    for i in range(300):  # many files after the damaged one
        (src / "z" / f"f{i:03d}.txt").write_text(f"{i}\n")
    backup_api(kk, src)
    (src / "a.bin").write_bytes(random.Random(1).randbytes(100_000))
    backup_api(kk, src)  # a.bin's data in a pack of its own
    name, _, _ = locate(kk, "latest", "/a.bin")
    (Path(kk.repo.location) / name).unlink()

    proc = kk.run("restore", "latest", "--to", str(tmp_path / "out"), expect=13)
    line = stderr_line(proc)
    assert "a.bin" in line and "not found" in line
    assert not (tmp_path / "out" / "a.bin").exists()
    expected = {k: v for k, v in manifest(src).items() if k != "a.bin"}
    assert_same_tree(expected, manifest(tmp_path / "out"))
    proc = kk.run("check", expect=13)
    assert "missing from storage" in proc.stderr.decode()


# -- damage hides only what is damaged (issue #11) ----------------------------------------------


def warnings_of(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("warning:")]


def short_ids(kk: KK, *extra: str) -> list[str]:
    return [s["short_id"] for s in kk.json("snapshots", *extra)]


@pytest.mark.parametrize("cache", ["cold", "no-cache", "warm"])
def test_damaged_snapshot_hides_only_itself(damaged_setup: tuple[KK, Path, str], tmp_path: Path, cache: str) -> None:
    kk, src, first = damaged_setup
    before = manifest(src)
    (src / "later.txt").write_text("a later file\n")
    later = backup_api(kk, src)  # the newest snapshot is the damaged one
    flip(kk, f"snapshots/{later}", 50)
    extra: tuple[str, ...] = ("--no-cache",) if cache == "no-cache" else ()
    if cache == "cold":
        shutil.rmtree(kk.cache_dir)
    if cache == "warm":
        # the cache holds the intact, authenticated copy the backup wrote: nothing is damaged
        # for this reader, and nothing is hidden from it
        proc = kk.run("snapshots")
        assert later[:8] in proc.stdout.decode() and not warnings_of(proc)
        kk.run("restore", "latest", "--to", str(tmp_path / "warm"))
        assert (tmp_path / "warm" / "later.txt").exists()
        return

    proc = kk.run("snapshots", *extra)
    assert first[:8] in proc.stdout.decode() and later[:8] not in proc.stdout.decode()
    [warning] = warnings_of(proc)
    assert later in warning and "damaged" in warning
    assert short_ids(kk, *extra) == [first[:8]]

    out = tmp_path / "out"
    proc = kk.run("restore", "latest", "--to", str(out), *extra)
    [warning] = warnings_of(proc)
    assert later in warning
    assert_same_tree(before, manifest(out))
    assert "/later.txt" not in kk.out("ls", "latest", *extra)  # latest = newest readable
    # a policy never removes a snapshot it cannot read, and says so
    proc = kk.run("forget", "--keep-last", "1", *extra)
    assert any(later in w for w in warnings_of(proc))
    assert f"snapshots/{later}" in kk.repo.objects("snapshots/")
    assert f"snapshots/{first}" in kk.repo.objects("snapshots/")
    # naming it removes it, by its storage name, without decrypting it
    proc = kk.run("forget", later[:12], *extra)
    assert f"snapshots/{later}" not in kk.repo.objects("snapshots/")
    assert later[:8] in proc.stderr.decode()
    proc = kk.run("snapshots", *extra)
    assert not warnings_of(proc)
    kk.run("prune", *extra)
    kk.run("check")


def test_policy_never_removes_a_damaged_snapshot(damaged_setup: tuple[KK, Path, str]) -> None:
    kk, src, first = damaged_setup
    (src / "later.txt").write_text("a later file\n")
    later = backup_api(kk, src)
    flip(kk, f"snapshots/{first}", 50)  # the one --keep-last 1 would remove
    result = kk.json("forget", "--keep-last", "1", "--no-cache")
    assert [(d["id"], d["keep"]) for d in result if not d.get("damaged")] == [(later, True)]
    assert [d["id"] for d in result if d.get("damaged")] == [first]
    assert f"snapshots/{first}" in kk.repo.objects("snapshots/")
    # a unique prefix of the file name is enough; an ambiguous or unknown one is refused
    proc = kk.run("forget", "0" * 12, "--no-cache", expect=14)
    assert stderr_line(proc).startswith("error: ")
    kk.run("forget", first, "--no-cache")
    assert kk.repo.objects("snapshots/") == {f"snapshots/{later}": kk.repo.objects("snapshots/")[f"snapshots/{later}"]}


@pytest.mark.s3
def test_pack_headers_on_s3(s3_server: S3Server, s3_bucket: str, make_kk: Callable[..., KK], tmp_path: Path) -> None:
    """The ranged reads of pack ends work against S3: a damaged index file is read around,
    rebuilt, and a truncated pack is noticed without --read-data."""
    kk = make_kk(s3_spec(s3_server, s3_bucket))
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.bin").write_bytes(random.Random(5).randbytes(500_000))
    (src / "b.txt").write_text("b\n" * 1000)
    snap = backup_api(kk, src)
    [index_name] = kk.repo.objects("index/")
    flip(kk, index_name, 40)
    out = tmp_path / "out"
    proc = kk.run("restore", "latest", "--to", str(out), "--no-cache")
    assert any(index_name.split("/")[1] in w for w in warnings_of(proc))
    assert_same_tree(manifest(src), manifest(out))
    kk.run("repair", "index")
    kk.run("check")
    name, _, _ = locate(kk, snap, "/d/a.bin")
    kk.repo.write(name, kk.repo.read(name)[:-7])
    proc = kk.run("check", expect=13)
    assert "truncated" in proc.stderr.decode()
