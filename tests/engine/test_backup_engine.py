"""The backup pipeline through the Python API: unchanged files are not read again, identical
content is stored once, and a restore gives back what was backed up."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from kubekeep import api
from kubekeep.engine.repository import Repository
from tests.cli.helpers import assert_same_tree, make_rich_tree, manifest
from tests.engine.conftest import reopen


def test_unchanged_rebackup_reads_nothing(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=3, small_files=50)
    first = api.backup(repo, str(src))
    assert first.stats["bytes_read"] == first.stats["bytes_total"] > 3 * 1024 * 1024
    assert first.stats["files_unchanged"] == 0

    fresh = reopen(repo, tmp_path)  # another process: parent found from the repository
    second = api.backup(fresh, str(src))
    st = second.stats
    assert second.parent == first.id
    assert st["bytes_read"] == 0 and st["files_unchanged"] == st["files"] == first.stats["files"]
    assert st["bytes_total"] == first.stats["bytes_total"]
    assert st["bytes_stored"] == 0 and second.tree == first.tree

    # one changed file is the only one read
    os.utime(src / "a" / "sibling.txt", ns=(1, 1))
    third = api.backup(fresh, str(src))
    assert third.stats["bytes_read"] == (src / "a" / "sibling.txt").stat().st_size
    assert third.stats["files_unchanged"] == third.stats["files"] - 1

    # --force reads everything again, and stores nothing new
    forced = api.backup(fresh, str(src), force=True)
    assert forced.stats["bytes_read"] == forced.stats["bytes_total"]
    assert forced.stats["bytes_new"] == 0
    fresh.close()


def test_identical_content_is_stored_once(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "one").mkdir(parents=True)
    big = random.Random(2).randbytes(6 * 1024 * 1024)
    (src / "one" / "big.bin").write_bytes(big)
    first = api.backup(repo, str(src))
    assert len(big) <= first.stats["bytes_new"] < len(big) + 10_000  # data + trees

    (src / "two" / "deeper").mkdir(parents=True)
    shutil.copyfile(src / "one" / "big.bin", src / "two" / "deeper" / "copy.bin")
    second = api.backup(repo, str(src))
    assert second.stats["bytes_read"] == len(big)  # the copy is new to the parent ...
    assert second.stats["bytes_new"] < 10_000  # ... but its chunks are not (trees only)
    assert second.stats["bytes_stored"] < 20_000

    # the same data under another source path dedups too
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copyfile(src / "one" / "big.bin", other / "again.bin")
    third = api.backup(repo, str(other))
    assert third.parent is None and third.stats["bytes_new"] < 10_000

    # a shifted copy shares most chunks (content-defined boundaries)
    (src / "shifted.bin").write_bytes(b"inserted at the front" + big)
    fourth = api.backup(repo, str(src))
    assert fourth.stats["bytes_new"] < len(big) // 2

    out = tmp_path / "out"
    api.restore(repo, fourth.id, str(out))
    assert (out / "shifted.bin").read_bytes() == b"inserted at the front" + big
    assert (out / "two" / "deeper" / "copy.bin").read_bytes() == big


def test_api_restore_roundtrip_and_selection(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=1, small_files=10)
    snap = api.backup(repo, str(src))
    out = tmp_path / "out"
    stats = api.restore(repo, snap.id, str(out))
    assert stats.failed == [] and stats.files == sum(1 for m in manifest(src).values() if m.type == "file")
    assert_same_tree(manifest(src), manifest(out))
    # restoring over an existing tree replaces changed files and symlinks
    (out / "a" / "sibling.txt").write_text("locally changed\n")
    (out / "link_rel").unlink()
    os.symlink("elsewhere", out / "link_rel")
    api.restore(repo, snap.id, str(out))
    assert_same_tree(manifest(src), manifest(out))
    listed = dict(api.ls(repo, f"{snap.id}:/a", recursive=True))
    assert set(listed) == {"/a/b", "/a/b/c", "/a/b/c/d", "/a/b/c/d/deep.txt", "/a/sibling.txt"}
    assert b"".join(api.cat(repo, "latest:/a/sibling.txt")) == b"next to b\n"


def test_a_hostile_parent_node_is_not_reused_and_names_not_utf8_are(repo: Repository, tmp_path: Path) -> None:
    """The parent snapshot comes from the repository (which may come from someone else): a file
    node whose fields have the wrong types is not reused (the file is read again, the backup
    goes on); a name stored as bytes (not UTF-8) is reused like any other."""
    import dataclasses

    import msgpack

    from kubekeep.engine.pack import TREE
    from kubekeep.engine.tree import wire_nodes

    src = tmp_path / "src"
    src.mkdir()
    for name in ("good.txt", "bad.txt", "worse.txt"):
        (src / name).write_bytes(name.encode() * 1000)
    odd = os.fsencode(str(src)) + b"/caf\xe9.bin"
    with open(odd, "wb") as f:
        f.write(b"latin-1 name" * 1000)
    first = api.backup(repo, str(src))

    nodes = wire_nodes(repo.load_blob(bytes.fromhex(first.tree)), "root")
    for node in nodes:
        if node["n"] == "bad.txt":
            node["c"] = [1, 2]  # not blob ids
        if node["n"] == "worse.txt":
            node["s"] = "3"
    writer = repo.writer()
    tree_id = writer.save(TREE, msgpack.packb({"v": 1, "nodes": nodes}, use_bin_type=True))
    writer.flush()
    writer.close()
    hostile = dataclasses.replace(first, tree=tree_id.hex(), id="")
    hostile_id = repo.save_snapshot(hostile)

    second = api.backup(repo, str(src), parent=hostile_id)
    assert second.stats["files_unchanged"] == 2  # good.txt and the latin-1 name
    assert second.stats["bytes_read"] == (src / "bad.txt").stat().st_size + (src / "worse.txt").stat().st_size
    assert second.tree == first.tree  # what was read again is what the first backup stored
