"""The whole life of a repository through the real ``kubekeep`` command, on a local directory
and on S3 (the MinIO test server): init, backup, snapshots, ls, cat, diff, restore (whole, a
directory, a file), check --read-data, forget --prune, and copy to a repository of the other
kind."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import s3_spec
from tests.cli.helpers import KK, RepoSpec, assert_same_tree, make_rich_tree, manifest, subtree


def _modify(src: Path) -> set[tuple[str, str]]:
    """Change the tree in ways diff must see, and only those; return the expected changes."""
    deep = src / "a" / "b" / "c" / "d" / "deep.txt"
    d_times = deep.parent.stat().st_mtime_ns
    deep.write_text("changed content\n")
    os.utime(deep, ns=(1_700_000_000_000_000_001,) * 2)
    os.utime(deep.parent, ns=(d_times, d_times))

    root_new = src / "new.txt"
    root_new.write_text("brand new\n")

    small = src / "small"
    small_t = small.stat().st_mtime_ns
    (small / "file_003.txt").unlink()
    os.utime(small, ns=(small_t, small_t))

    os.chmod(src / "script.sh", 0o700)

    (src / "empty").unlink()
    (src / "empty").mkdir()

    dangling = src / "link_dangling"
    t = dangling.lstat().st_mtime_ns
    dangling.unlink()
    os.symlink("still/not/there", dangling)
    os.utime(dangling, ns=(t, t), follow_symlinks=False)
    return {
        ("M", "/a/b/c/d/deep.txt"),
        ("+", "/new.txt"),
        ("-", "/small/file_003.txt"),
        ("U", "/script.sh"),
        ("T", "/empty"),
        ("M", "/link_dangling"),
    }


def test_end_to_end(
    any_repo: RepoSpec, make_kk: Callable[..., KK], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    kk = make_kk(any_repo)
    # everything runs on the local repository; on S3 (slower per request) the core of it
    full = not any_repo.is_s3
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=4, small_files=100 if full else 40)
    m1 = manifest(src)

    init = kk.json("init")
    assert len(init["id"]) == 32

    # -- backup, snapshots ------------------------------------------------------------------
    first = kk.json("backup", str(src), "--tag", "first")
    id1 = first["id"]
    assert len(id1) == 64 and first["short_id"] == id1[:8]
    n_files = sum(1 for v in m1.values() if v.type == "file")
    assert first["stats"]["files"] == n_files
    assert first["stats"]["symlinks"] == sum(1 for v in m1.values() if v.type == "symlink")
    assert first["stats"]["bytes_read"] == sum(v.size for v in m1.values())
    assert first["warnings"] == []
    if full:
        snaps = kk.json("snapshots")
        assert [s["id"] for s in snaps] == [id1]
        assert snaps[0]["tags"] == ["first"] and snaps[0]["source"]["uri"] == f"fs:{src}"

        # -- ls -----------------------------------------------------------------------------
        top = kk.out("ls", "latest").splitlines()
        assert "/a/" in top and "/big.bin" in top and "/link_rel -> a/b/c/d/deep.txt" in top
        assert "/naïve café.txt" in top and "/日本語/" in top and "/emoji_😀.txt" in top
        assert not any(line.startswith("/a/b") for line in top)  # not recursive
        long_a = kk.out("ls", "-l", f"{id1[:10]}:/a").splitlines()
        assert len(long_a) == 2
        assert long_a[0].startswith("drwxr-xr-x") and long_a[0].endswith("/a/b/")
        assert long_a[1].startswith("-rw-r--r--") and long_a[1].endswith("/a/sibling.txt")
        assert " 10 " in long_a[1]  # size of "next to b\n"
    listing = kk.json("ls", "-R", id1)
    by_path = {e["path"]: e for e in listing}
    assert set(by_path) == {"/" + p for p in m1}
    for rel, meta in m1.items():
        e = by_path["/" + rel]
        assert (e["type"], e["mode"], e["mtime_ns"], e["uid"], e["gid"]) == (
            meta.type,
            meta.mode,
            meta.mtime_ns,
            meta.uid,
            meta.gid,
        ), rel
        if meta.type == "file":
            assert e["size"] == meta.size, rel
        if meta.type == "symlink":
            assert e["target"] == meta.digest, rel

    # -- cat --------------------------------------------------------------------------------
    if full:
        big = kk.run("cat", f"{id1}:/big.bin").stdout
        assert big == (src / "big.bin").read_bytes()
        assert kk.run("cat", "latest:/日本語/ファイル.txt").stdout == b"unicode dir\n"
        assert kk.run("cat", "latest:empty").stdout == b""

    # -- restore, whole and in parts ---------------------------------------------------------
    kk.run("restore", id1, "--to", str(tmp_path / "r1"))
    assert_same_tree(m1, manifest(tmp_path / "r1"))
    if full:
        kk.run("restore", f"{id1}:/a/b", "--to", str(tmp_path / "r2"))
        assert_same_tree(subtree(m1, "a/b"), manifest(tmp_path / "r2"))

    # -- a second snapshot after changes, and diff -------------------------------------------
    expected_changes = _modify(src)
    m2 = manifest(src)
    second = kk.json("backup", str(src))
    id2 = second["id"]
    assert second["stats"]["files_unchanged"] >= n_files - 5  # the parent was used
    changes = kk.json("diff", id1, id2)
    assert {(c["status"], c["path"]) for c in changes} == expected_changes
    assert len(changes) == len(expected_changes)
    if full:
        text = kk.out("diff", id1[:8], id2[:8])
        assert "M    /a/b/c/d/deep.txt" in text and "T    /empty" in text
        assert "1 added, 1 removed, 2 modified, 1 changed type, 1 metadata only" in text
        assert kk.json("diff", id2, id2) == []

        kk.run("restore", f"{id2}:/big.bin", "--to", str(tmp_path / "r3"))
        assert [p.name for p in (tmp_path / "r3").iterdir()] == ["big.bin"]
        assert_same_tree({"big.bin": m2["big.bin"]}, manifest(tmp_path / "r3"))

    if full:
        check = kk.run("check", "--read-data")
        assert b"no errors were found" in check.stdout

    # -- forget --prune keeps a working repository -------------------------------------------
    before = any_repo.size("data/")
    kk.run("forget", "--keep-last", "1", "--prune")
    if any_repo.is_s3:  # the endpoint as an option instead of from the environment
        listed = kk.json(
            "snapshots", "--s3-endpoint", any_repo.env["KUBEKEEP_S3_ENDPOINT"], env={"KUBEKEEP_S3_ENDPOINT": None}
        )
    else:
        listed = kk.json("snapshots")
    assert [s["id"] for s in listed] == [id2]
    assert any_repo.size("data/") < before  # the old deep.txt, file_003.txt, trees are gone
    kk.run("check", "--read-data")
    shutil.rmtree(kk.cache_dir)  # restore from storage alone
    kk.run("restore", "latest", "--to", str(tmp_path / "r4"))
    assert_same_tree(m2, manifest(tmp_path / "r4"))

    # -- copy into a repository of the other kind ------------------------------------------------
    if any_repo.is_s3:
        dst = RepoSpec(str(tmp_path / "copy"))
        # the source repository is on S3 and takes its endpoint from the environment
        dst_env = dict(any_repo.env)
    else:
        dst = s3_spec(server, bucket, "copy")
        dst_env = {}
    (tmp_path / "dst-pw").write_text("another password\n")
    (tmp_path / "src-pw").write_text(kk.password + "\n")
    dk = make_kk(dst, password="unused", cache="dst-cache", extra_env=dst_env)
    dk.env.pop("KUBEKEEP_PASSWORD")
    pw = ["--password-file", str(tmp_path / "dst-pw")]
    copy_args = ["copy", "--from-repo", any_repo.location, "--from-password-file", str(tmp_path / "src-pw"), *pw]
    dk.run("init", *pw)
    copied = dk.json(*copy_args)
    assert len(copied) == 1 and copied[0]["source"] == id2 and copied[0]["copy"]
    again = dk.json(*copy_args)
    assert again == [{"source": id2, "copy": None}]
    dk.run("restore", "latest", "--to", str(tmp_path / "r5"), *pw)
    assert_same_tree(m2, manifest(tmp_path / "r5"))
    if not full:
        dk.run("check", "--read-data", *pw)
        return

    # a new snapshot of the same data copies as (almost) nothing
    third = kk.json("backup", "--force", str(src))
    assert third["stats"]["bytes_read"] > 4 * 1024 * 1024 and third["stats"]["bytes_stored"] < 64 * 1024
    size_before = dst.size()
    copied = dk.json(*copy_args)
    assert [c["source"] for c in copied if c["copy"]] == [third["id"]]
    assert dst.size() - size_before < 64 * 1024
    dst_snaps = dk.json("snapshots", *pw)
    assert sorted(s["original"] for s in dst_snaps) == sorted([id2, third["id"]])
    assert hashlib.sha256(dk.run("cat", "latest:/big.bin", *pw).stdout).hexdigest() == m2["big.bin"].digest
