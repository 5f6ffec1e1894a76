"""Restoring to fs: never writes outside its target: not for hostile snapshots (names with
``..`` or ``/``, a symlink and a file "under" it), not for a directory swapped for a symlink
during the run, not through predictable temporary names. Also: one unwritable file does not stop
the restore, holes stay holes, names that are not UTF-8 come back exactly, manifests are private."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import Entry, EntryType, Importer, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.sealing import compiled
from kubekeep.engine.tree import DIR, FILE, SYMLINK
from kubekeep.files.write import FsExporter
from kubekeep.storage.local import LocalBackend
from tests.cli.helpers import FAST_KDF, KK, init_fast, stderr_line
from tests.engine.test_tree_names import hostile_snapshot

SOURCE = SourceInfo("test:x", "fs")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (owners, and a restore run as root)")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    r = Repository.init(LocalBackend(tmp_path / "repo"), "pw", kdf=FAST_KDF, no_cache=True)
    yield r
    r.close()


def _outside(tmp_path: Path) -> Path:
    """A root-owned directory outside the target, holding a root-owned file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("precious\n")
    os.chmod(outside / "x", 0o600)
    return outside


def _unchanged(outside: Path) -> None:
    st = (outside / "x").lstat()
    assert (outside / "x").read_text() == "precious\n"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, os.geteuid(), os.getegid())
    assert stat.S_IMODE(outside.lstat().st_mode) != 0o777 and outside.lstat().st_uid == os.geteuid()
    assert sorted(p.name for p in outside.iterdir()) == ["x"]


def _entry(path: str, kind: EntryType = EntryType.FILE, **kw: object) -> Entry:
    return Entry(path, kind, **kw)  # type: ignore[arg-type]


# -- hostile snapshots, through the CLI ---------------------------------------------------------


def _kk_repo(kk: KK) -> Repository:
    return Repository.open(LocalBackend(Path(kk.repo.location)), kk.password, no_cache=True)


def test_restore_of_dot_dot_names_writes_nothing_outside(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    repo = _kk_repo(kk)
    snap, _ = hostile_snapshot(
        repo,
        [{"n": "../out-evil/x", "t": FILE, "m": 0o644, "mt": 0}, {"n": "fine.txt", "t": FILE, "m": 0o644, "mt": 0}],
    )
    (tmp_path / "out-evil").mkdir()
    line = stderr_line(kk.run("restore", snap.id, "--to", str(tmp_path / "out"), expect=13))
    assert "out-evil" in line
    assert not list((tmp_path / "out-evil").iterdir())
    check = kk.run("check", expect=None)
    assert check.returncode != 0 and b"out-evil" in check.stdout + check.stderr


def test_restore_never_writes_through_a_symlink_it_restored(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    outside = _outside(tmp_path)
    repo = _kk_repo(kk)
    snap, _ = hostile_snapshot(
        repo,
        [
            {"n": "a", "t": SYMLINK, "m": 0o777, "mt": 0, "l": str(outside)},
            {"n": "a/x", "t": FILE, "m": 0o4777, "mt": 0},
            {"n": "a", "t": DIR, "m": 0o777, "mt": 0, "st": "inner"},
        ],
        subtrees={"inner": [{"n": "x", "t": FILE, "m": 0o4777, "mt": 0}]},
    )
    kk.run("restore", snap.id, "--to", str(tmp_path / "out"), expect=13)
    _unchanged(outside)


# -- the exporter on its own (defence in depth: paths it is handed) -----------------------------


@pytest.mark.parametrize("path", ["../out-evil/x", "sub/../../out-evil/x", "/abs/x", "sub//x", "./x", "a\0b"])
def test_exporter_refuses_paths_outside_its_root(tmp_path: Path, path: str) -> None:
    out = tmp_path / "out"
    exporter = FsExporter(out)
    exporter.begin(SOURCE, {})
    exporter.directory(_entry("sub", EntryType.DIR, mode=0o755))
    for call in (
        lambda: exporter.file(_entry(path, size=4), [b"evil"]),
        lambda: exporter.directory(_entry(path, EntryType.DIR)),
        lambda: exporter.symlink(_entry(path, EntryType.SYMLINK, target="/")),
    ):
        with pytest.raises(errors.ConnectorError):
            call()
    exporter.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["sub"] and not list((out / "sub").iterdir())


def test_exporter_never_follows_a_symlink_it_restored(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    exporter = FsExporter(tmp_path / "out")
    exporter.begin(SOURCE, {})
    exporter.symlink(_entry("a", EntryType.SYMLINK, target=str(outside)))
    with pytest.raises(errors.ConnectorError):
        exporter.file(_entry("a/x", mode=0o4777, uid=1234, gid=1234, size=4), [b"evil"])
    with pytest.raises(errors.ConnectorError):
        exporter.file(_entry("a/new", size=4), [b"evil"])
    exporter.finish()
    _unchanged(outside)


@ROOT_ONLY
@pytest.mark.parametrize("cached", [True, False])
def test_a_directory_swapped_for_a_symlink_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    """As root, restoring into a directory another user can write: after ``sub`` was created,
    the user swaps it for a symlink to a root-owned directory. Neither the files nor the
    directory metadata set at the end may reach through it."""
    outside = _outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    if not cached:  # every lookup walks from the root again
        monkeypatch.setattr(FsExporter, "OPEN_DIRECTORIES", 0)
    exporter = FsExporter(out, owners=True)
    exporter.begin(SOURCE, {})
    exporter.directory(_entry("sub", EntryType.DIR, mode=0o777, uid=1234, gid=1234))
    exporter.directory(_entry("sub/deeper", EntryType.DIR, mode=0o777, uid=1234, gid=1234))
    os.rename(out / "sub", out / "moved")
    os.symlink(outside, out / "sub")
    for path in ("sub/x", "sub/new"):
        try:
            exporter.file(_entry(path, mode=0o4777, uid=1234, gid=1234, size=4), [b"evil"])
        except errors.ConnectorError:
            pass
    try:
        exporter.symlink(_entry("sub/link", EntryType.SYMLINK, target="/", uid=1234, gid=1234))
    except errors.ConnectorError:
        pass
    exporter.finish()
    _unchanged(outside)


def test_temporary_files_have_unpredictable_names(tmp_path: Path) -> None:
    """Replacing an existing file goes through a temporary file: a symlink planted at the name
    it would have had today must not be followed."""
    outside = _outside(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "f").write_text("old\n")
    for pid in (os.getpid(),):
        os.symlink(outside / "x", out / f".f.kubekeep-{pid}-{threading.get_ident()}")
    exporter = FsExporter(out)
    exporter.begin(SOURCE, {})
    exporter.file(_entry("f", mode=0o600, size=4), [b"new\n"])
    exporter.finish()
    assert (out / "f").read_text() == "new\n"
    _unchanged(outside)


# -- one failure does not stop the restore ------------------------------------------------------


class _Files(Importer):
    scheme = "test"

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = entries

    def source(self) -> SourceInfo:
        return SourceInfo("test:files", "fs", "here")

    def entries(self) -> Iterator[Entry]:
        yield from self._entries


def test_a_file_that_cannot_be_written_fails_alone(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    for name in ("a.txt", "blocked.txt", "z.txt"):
        (src / "d").mkdir(parents=True, exist_ok=True)
        (src / "d" / name).write_text(name)
    os.utime(src / "d", ns=(1_500_000_000_000_000_000,) * 2)
    snap = kk.backup(src)
    out = tmp_path / "out"
    (out / "d" / "blocked.txt" / "in-the-way").mkdir(parents=True)
    line = stderr_line(kk.run("restore", snap, "--to", str(out), expect=16))
    assert "blocked.txt" in line and "1 entry" in line and "2 files" in line, line
    assert (out / "d" / "a.txt").read_text() == "a.txt" and (out / "d" / "z.txt").read_text() == "z.txt"
    assert (out / "d").stat().st_mtime_ns == 1_500_000_000_000_000_000  # directory metadata still set


def test_a_full_disk_fails_the_files_not_the_run(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with repo.lock():
        snap = run_backup(
            repo,
            _Files(
                [
                    _entry("d", EntryType.DIR, mode=0o750, mtime_ns=7),
                    _entry("d/big", size=3, data=b"big", mtime_ns=1),
                    _entry("d/small", size=2, data=b"ok", mtime_ns=1),
                ]
            ),
        )
    real_write_files = compiled.write_files

    def write_files(jobs: list[tuple[int, bytes, int, int, int, int, int, list[bytes]]]) -> list[tuple[int, int]]:
        """The run written, but "big" failed as a full disk fails it (created, not written, removed:
        tests/reliability/test_enospc.py has a real full file system)."""
        out = real_write_files([j for j in jobs if j[1] != b"big"])
        return [(2, errno.ENOSPC) if j[1] == b"big" else out.pop(0) for j in jobs]

    monkeypatch.setattr(compiled, "write_files", write_files)
    with pytest.raises(errors.ConnectorError, match="No space left") as failed:
        api.restore(repo, snap.id, str(tmp_path / "out"))
    assert not isinstance(failed.value, errors.IntegrityError)
    assert (tmp_path / "out" / "d" / "small").read_bytes() == b"ok"
    assert not (tmp_path / "out" / "d" / "big").exists()
    assert not [p for p in (tmp_path / "out" / "d").iterdir() if p.name.startswith(".")]  # no temp file left
    st = (tmp_path / "out" / "d").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o750, 7)


# -- holes, names, manifests ----------------------------------------------------------------------


def test_holes_stay_holes(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 64 * 1024 * 1024
    with open(src / "sparse.img", "wb") as f:
        f.write(b"head" * 1024)
        f.seek(size // 2)
        f.write(b"middle" * 1024)
        f.truncate(size)  # ends in a hole
    snap = api.backup(repo, str(src))
    api.restore(repo, snap.id, str(tmp_path / "out"))
    restored = tmp_path / "out" / "sparse.img"
    assert restored.read_bytes() == (src / "sparse.img").read_bytes()
    st = restored.stat()
    assert st.st_size == size
    assert st.st_blocks * 512 < 512 * 1024, f"{st.st_blocks * 512} bytes allocated for a sparse {size}"
    with open(restored, "rb") as f:
        assert os.lseek(f.fileno(), 0, os.SEEK_HOLE) < size


def test_names_that_are_not_utf8_come_back_exactly(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = os.fsencode(tmp_path / "src")
    os.makedirs(src + b"/dir-\xff")
    with open(src + b"/caf\xe9.txt", "wb") as f:
        f.write(b"latin-1 named file")
    with open(src + b"/dir-\xff/in\xfe", "wb") as f:
        f.write(b"inside")
    os.symlink(b"target-\xff", src + b"/odd-link")
    snap = kk.backup(os.fsdecode(src))  # exit 0: nothing skipped
    kk.run("restore", snap, "--to", str(tmp_path / "out"))
    out = os.fsencode(tmp_path / "out")
    assert sorted(os.listdir(out)) == sorted([b"caf\xe9.txt", b"dir-\xff", b"odd-link"])
    with open(out + b"/caf\xe9.txt", "rb") as f:
        assert f.read() == b"latin-1 named file"
    with open(out + b"/dir-\xff/in\xfe", "rb") as f:
        assert f.read() == b"inside"
    assert os.readlink(out + b"/odd-link") == b"target-\xff"
    assert kk.run("check").returncode == 0


class _Manifests(Importer):
    scheme = "test"

    def source(self) -> SourceInfo:
        return SourceInfo("k8s://test", "manifests", "cluster")

    def entries(self) -> Iterator[Entry]:
        secret = (
            b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: web\ndata:\n  password: aHVudGVyMg==\n"
        )
        yield _entry("namespaces", EntryType.DIR, mode=0o755)
        yield _entry("namespaces/web", EntryType.DIR, mode=0o755)
        yield _entry("namespaces/web/core", EntryType.DIR, mode=0o755)
        yield _entry("namespaces/web/core/secrets", EntryType.DIR, mode=0o755)
        yield _entry(
            "namespaces/web/core/secrets/db.yaml",
            mode=0o644,
            size=len(secret),
            data=secret,
            attrs={
                "kind": "Secret",
                "apiVersion": "v1",
                "namespace": "web",
                "name": "db",
                "resource": "secrets",
                "group": "",
            },
        )


@pytest.mark.parametrize("raw", [False, True])
def test_manifests_restored_to_fs_are_private(repo: Repository, tmp_path: Path, raw: bool) -> None:
    with repo.lock():
        snap = run_backup(repo, _Manifests())
    out = tmp_path / "out"
    api.restore(repo, snap.id, str(out), options=api.ManifestsDestinationOptions(raw=raw))
    found = list(out.rglob("*"))
    assert any(p.name.endswith(".yaml") for p in found)
    for p in [out, *found]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p}: {oct(mode)}"


def test_sparse_writes_give_back_the_same_bytes(tmp_path: Path) -> None:
    import random

    from kubekeep.files import write as fs

    rnd = random.Random(11)
    block = fs._HOLE
    for trial in range(40):
        pieces: list[bytes | memoryview] = []
        for _ in range(rnd.randrange(1, 12)):
            n = rnd.choice([1, 100, block - 1, block, block + 1, 3 * block + 7, 10 * block])
            kind = rnd.randrange(4)
            if kind == 0:
                piece = bytes(n)
            elif kind == 1:
                piece = rnd.randbytes(n)
            else:  # zeros with data around or inside
                cut = rnd.randrange(n + 1)
                piece = rnd.randbytes(cut // 3) + bytes(n - cut // 3 - cut // 4) + rnd.randbytes(cut // 4)
            pieces.append(memoryview(piece) if kind == 3 else piece)
        path = tmp_path / f"f{trial}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fs._write_sparse(fd, pieces)
        finally:
            os.close(fd)
        assert path.read_bytes() == b"".join(bytes(p) for p in pieces), trial


def test_names_that_are_not_utf8_cross_the_agent_protocol() -> None:
    from kubekeep.agent import protocol as p

    name = b"dir-\xff/caf\xe9".decode("utf-8", "surrogateescape")
    target = b"t-\xfe".decode("utf-8", "surrogateescape")
    for entry in (
        _entry(name, size=3),
        _entry("link", EntryType.SYMLINK, target=target),
        _entry("plain", EntryType.DIR),
    ):
        back = p.entry_from_body(p.unpack(p.pack(p.entry_body(entry))))
        assert (back.path, back.target, back.type) == (entry.path, entry.target, entry.type)


@ROOT_ONLY
def test_restored_symlinks_get_owner_and_time_not_their_targets(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    exporter = FsExporter(tmp_path / "out", owners=True)
    exporter.begin(SOURCE, {})
    exporter.symlink(_entry("l", EntryType.SYMLINK, target=str(outside / "x"), uid=1234, gid=4321, mtime_ns=77))
    exporter.finish()
    st = (tmp_path / "out" / "l").lstat()
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (1234, 4321, 77)
    _unchanged(outside)


def test_an_incomplete_restore_lists_every_failed_entry(kk: KK, tmp_path: Path) -> None:
    init_fast(kk.repo, kk.password)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(5):
        (src / "d" / f"f{i}.txt").write_text(str(i))
    snap = kk.backup(src)
    out = tmp_path / "out"
    for i in range(5):
        (out / "d" / f"f{i}.txt" / "in-the-way").mkdir(parents=True)
    stderr = kk.run("restore", snap, "--to", str(out), expect=16).stderr.decode()
    assert "and 2 more" in stderr  # the one-line message names three ...
    listed = [line.strip() for line in stderr.splitlines() if line.startswith("  ")]
    assert sorted(line.split(":")[0] for line in listed) == [f"d/f{i}.txt" for i in range(5)], stderr
