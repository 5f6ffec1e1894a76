"""The fs: connector: exclude patterns (restic's syntax), special and unreadable files, single
files as sources."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from kubekeep.files.excludes import ExcludeRules
from kubekeep.files.walk import FsImporter
from tests.cli.helpers import KK, init_fast, stderr_line


def _touch(root: Path, *paths: str) -> None:
    for p in paths:
        target = root / p
        if p.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(p)


TREE = [
    "app.log",
    "keep.txt",
    "logfile.txt",
    "sub/deep/x.log",
    "sub/deep/x.log.txt",
    "cache/big.bin",
    "sub/cache/c.bin",
    "sub2/cache",
    "cachet/in.txt",
    "top-only/t.txt",
    "sub/top-only/t.txt",
    "tmp/t.txt",
    "sub/tmp/t.txt",
    "sub/deep/tmp/t.txt",
    "sub/tmpfile",
    "sub/tmp.txt",
    "docs/a.txt",
    "docs/inner/b.txt",
    "x/foo/y/z/bar",
    "foo/bar",
    "other/foo/bar/f",
]
PATTERNS = ["*.log", "cache/", "/top-only", "**/tmp", "/docs/*.txt", "foo/**/bar"]
EXCLUDED = {
    "app.log",
    "sub/deep/x.log",  # *.log at any depth
    "cache",
    "sub/cache",
    "sub2/cache",  # a trailing / is ignored (as restic)
    "top-only",  # anchored at the backup root
    "tmp",
    "sub/tmp",
    "sub/deep/tmp",  # ** crosses directories
    "docs/a.txt",  # * does not cross /
    "x/foo/y/z/bar",
    "foo/bar",
    "other/foo/bar",  # unanchored: at any depth
}


def _paths(root: Path, patterns: list[str]) -> set[str]:
    return {e.path for e in FsImporter(root, excludes=patterns).entries()}


def test_exclude_patterns(tmp_path: Path) -> None:
    _touch(tmp_path, *TREE)
    everything = _paths(tmp_path, [])
    kept = _paths(tmp_path, PATTERNS)
    below_excluded = {p for p in everything if any(p.startswith(x + "/") for x in EXCLUDED)}
    assert kept == everything - EXCLUDED - below_excluded
    assert {
        "logfile.txt",
        "sub/deep/x.log.txt",
        "cachet/in.txt",
        "sub/top-only/t.txt",
        "sub/tmpfile",
        "sub/tmp.txt",
        "docs/inner/b.txt",
        "x/foo/y/z",
        "other/foo",
    } <= kept


def test_exclude_rules_match_whole_components() -> None:
    rules = ExcludeRules(["foo", "b*ash", "# a comment", "", "/bin"])
    assert rules.excluded("dir/foo", "foo") and not rules.excluded("dir/foobar", "foobar")
    assert rules.excluded("bin/bash", "bash") and not rules.excluded("bin/ash", "ash")
    assert rules.excluded("bin", "bin") and not rules.excluded("usr/bin", "bin")
    assert not rules.excluded("# a comment", "# a comment")
    classes = ExcludeRules(["file[0-9].txt", "x[!a]y", "odd[name"])
    assert classes.excluded("d/file7.txt", "file7.txt") and not classes.excluded("fileX.txt", "fileX.txt")
    assert classes.excluded("xby", "xby") and not classes.excluded("xay", "xay")
    assert not classes.excluded("x/y", "y")  # a negated class does not match "/" either
    assert classes.excluded("odd[name", "odd[name")


def test_excludes_through_the_cli(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    _touch(src, *TREE)
    exclude_file = tmp_path / "excludes.txt"
    exclude_file.write_text("# patterns\n" + "\n".join(PATTERNS[1:]) + "\n\n")
    kk.backup(src, "--exclude", PATTERNS[0], "--exclude-file", str(exclude_file))
    listed = {e["path"].lstrip("/") for e in kk.json("ls", "-R", "latest")}
    assert listed == _paths(src, PATTERNS)


def test_special_files_are_skipped_with_exit_code_3(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    src.mkdir()
    (src / "regular.txt").write_text("kept\n")
    os.mkfifo(src / "a-fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(src / "a-socket"))
    try:
        result = kk.json("backup", str(src), expect=3)  # a FIFO is never opened: no hang
        assert any("a-fifo" in w and "special file" in w for w in result["warnings"])
        assert any("a-socket" in w for w in result["warnings"])
        assert result["id"]
        proc = kk.run("backup", str(src), expect=3)
        err = proc.stderr.decode()
        assert "warning: a-fifo: special file" in err and "Traceback" not in err
        assert b"saved" in proc.stdout
    finally:
        sock.close()
    assert [e["path"] for e in kk.json("ls", "latest")] == ["/regular.txt"]


def _as_nobody(work: Callable[[], object]) -> object:
    """Run ``work`` in a forked child with uid/gid 65534 (the tests run as root, and root reads
    everything); return what it returns (JSON-serialisable) or raise what it raised."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = {"ok": work()}
        except BaseException as exc:  # noqa: BLE001 - handed to the parent
            payload = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write_fd, "w") as f:
            json.dump(payload, f)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        payload = json.loads(f.read() or '{"error": "child died"}')
    os.waitpid(pid, 0)
    if "error" in payload:
        raise AssertionError(payload["error"])
    return payload["ok"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unreadable_entries_are_warned_and_skipped(tmp_path: Path) -> None:
    import tempfile

    from kubekeep import api
    from kubekeep.engine.repository import Repository
    from kubekeep.storage.local import LocalBackend
    from tests.cli.helpers import FAST_KDF

    # outside pytest's private tmp dir, so that the unprivileged child can reach it
    base = Path(tempfile.mkdtemp(prefix="kubekeep-nobody-"))
    try:
        os.chmod(base, 0o755)
        src, repo_dir = base / "src", base / "repo"
        _touch(src, "readable.txt", "locked.txt", "closed/inside.txt", "open/fine.txt")
        Repository.init(LocalBackend(repo_dir), "pw", kdf=FAST_KDF, no_cache=True).close()
        for dirpath, dirs, files in os.walk(base):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirs + files)]:
                os.chown(name, 65534, 65534)
        os.chmod(src / "locked.txt", 0)
        os.chmod(src / "closed", 0)

        def backup() -> object:
            repo = Repository.open(LocalBackend(repo_dir), "pw", no_cache=True)
            snap = api.backup(repo, str(src))
            paths = sorted(p for p, _ in repo.walk(bytes.fromhex(snap.tree)))
            return {"warnings": snap.warnings, "paths": paths}

        result = _as_nobody(backup)
        assert isinstance(result, dict)
        warnings = result["warnings"]
        assert any("locked.txt" in w and "ermission denied" in w for w in warnings), warnings
        assert any(w.startswith("closed") and "cannot list" in w for w in warnings), warnings
        assert result["paths"] == ["closed", "open", "open/fine.txt", "readable.txt"]
        assert stat.S_IMODE((src / "locked.txt").stat().st_mode) == 0
    finally:
        for dirpath, dirs, _ in os.walk(base):
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o755)
        import shutil

        shutil.rmtree(base)


def test_single_file_source_and_restore(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    f = tmp_path / "lonely.txt"
    f.write_text("just me\n")
    os.chmod(f, 0o640)
    os.utime(f, ns=(1_234_567_890_123_456_789,) * 2)
    snap = kk.backup(f"fs:{f}")
    assert [e["path"] for e in kk.json("ls", snap)] == ["/lonely.txt"]
    kk.run("restore", snap, "--to", str(tmp_path / "out"))
    st = (tmp_path / "out" / "lonely.txt").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o640, 1_234_567_890_123_456_789)
    assert "no such file" in stderr_line(kk.run("backup", f"fs:{tmp_path}/absent", expect=16))
