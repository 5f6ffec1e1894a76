"""Unchanged files of a volume are not read again (docs/volumes.md, "Unchanged files"): a real
agent process on loopback, kubekeep's client and the engine, without a cluster.

The client names the parent snapshot's files in BACKUP (``known``); the agent skips a file
whose path, size and mtime match, the engine reuses the parent's chunks, and when it cannot
the file is read after all (READ). A hostile ``known`` or READ gets a clear error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import errors
from kubekeep.agent import protocol as p
from kubekeep.agent.client import RemoteBackup
from kubekeep.connectors.pvc.claim_backup import known_files
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import ChunkSpec, Entry, Importer, ParentFiles, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import run_restore
from kubekeep.engine.snapshot import Snapshot
from kubekeep.files.write import FsExporter
from tests.cli.helpers import assert_same_tree, make_rich_tree, manifest
from tests.volumes.test_agent import Agent, repo  # noqa: F401
from tests.volumes.test_agent_hostile import GOOD_BACKUP, FakeAgent, WatchedAgent, _BombImporter

pytestmark = pytest.mark.timeout(120)


class VolumeSource(Importer):
    """What pvc:// does once its helper pod runs: the parent's files to the agent, then the walk."""

    scheme = "agent"

    def __init__(self, agent: Agent, *, parent_from: ParentFiles | None = None, **options: Any) -> None:
        self.agent = agent
        self.options = options
        self.spec: ChunkSpec | None = None
        self.parent: ParentFiles | None = parent_from
        self.remote: RemoteBackup | None = None

    def source(self) -> SourceInfo:
        return SourceInfo("agent:volume", "volume")

    def use_chunking(self, spec: ChunkSpec) -> None:
        self.spec = spec

    def use_parent(self, parent: ParentFiles) -> None:
        if self.parent is None:
            self.parent = parent

    def entries(self) -> Iterator[Entry]:
        assert self.spec is not None
        channel, hello = self.agent.session("backup")
        known = known_files(self.parent, "") if self.parent is not None else None
        self.remote = RemoteBackup(channel, self.spec, known=known, reuse_keys=hello["source"] == "dir", **self.options)
        yield from self.remote.entries()

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()


def backup(repo: Repository, source: Path, **options: Any) -> tuple[Snapshot, dict[str, Any]]:  # noqa: F811
    use_parent = options.pop("use_parent", True)
    agent = Agent(source)
    importer = VolumeSource(agent, **options)
    try:
        with repo.lock(), importer:
            snap = run_backup(repo, importer, use_parent=use_parent)
        assert agent.exit_code() == 0
    finally:
        agent.stop()
    assert importer.remote is not None
    transfer = importer.remote.stats.to_dict()
    return snap, transfer


def restore(repo: Repository, snap: Snapshot, target: Path) -> dict[str, tuple[Any, ...]]:  # noqa: F811
    with repo.lock(), FsExporter(target) as exporter:
        run_restore(repo, snap, exporter)
    return manifest(target)


def test_an_unchanged_rebackup_reads_nothing_and_restores_byte_for_byte(
    repo: Repository,  # noqa: F811
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=8, small_files=300)
    first, t1 = backup(repo, src)
    assert t1["files_unchanged"] == 0 and t1["bytes_read"] == t1["bytes_total"] > 8 * 1024 * 1024
    assert first.stats["bytes_read"] == first.stats["bytes_total"]

    second, t2 = backup(repo, src)
    total = second.stats["bytes_total"]
    assert total == first.stats["bytes_total"]
    assert t2["bytes_read"] < total / 100  # the target: under 1 % of the claim's bytes
    assert second.stats["bytes_read"] == 0 and second.stats["files_unchanged"] == second.stats["files"] > 300
    assert t2["files_unchanged"] == second.stats["files"] and t2["files_reread"] == 0
    assert t2["chunks_total"] == 0 and t2["bytes_fetched"] == 0
    assert second.parent == first.id

    expected = manifest(src)
    assert_same_tree(expected, restore(repo, second, tmp_path / "out"))


def test_new_mtime_or_size_is_read_again_a_new_mode_is_not(repo: Repository, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=4, small_files=50)
    backup(repo, src)
    small = src / "small" / "file_001.txt"
    same_size = small.read_bytes().replace(b"a", b"b").replace(b"0", b"9")
    st = small.stat()
    small.write_bytes(same_size)
    os.utime(small, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # same size, new mtime
    grown = src / "small" / "file_002.txt"
    st2 = grown.stat()
    with open(grown, "ab") as f:
        f.write(b"more\n")
    os.utime(grown, ns=(st2.st_atime_ns, st2.st_mtime_ns))  # new size, same mtime
    (src / "small" / "file_003.txt").chmod(0o600)  # only its mode: content reused, mode recorded

    snap, transfer = backup(repo, src)
    assert transfer["files_unchanged"] == snap.stats["files"] - 2
    assert transfer["bytes_read"] == small.stat().st_size + grown.stat().st_size
    assert snap.stats["files_unchanged"] == snap.stats["files"] - 2
    assert_same_tree(manifest(src), restore(repo, snap, tmp_path / "out"))
    assert (tmp_path / "out" / "small" / "file_003.txt").stat().st_mode & 0o777 == 0o600


def test_use_parent_false_reads_every_file(repo: Repository, tmp_path: Path) -> None:  # noqa: F811
    """``--force-read``: no parent files go to the agent, which reads everything."""
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=2, small_files=20)
    first, _ = backup(repo, src)
    snap, transfer = backup(repo, src, use_parent=False)
    assert transfer["files_unchanged"] == 0 and transfer["bytes_read"] == snap.stats["bytes_total"]
    assert snap.stats["bytes_read"] == snap.stats["bytes_total"] and snap.stats["files_unchanged"] == 0


class _ParentOf(ParentFiles):
    """Another snapshot's files, whatever parent the engine uses."""

    def __init__(self, repo: Repository, snap: Snapshot) -> None:  # noqa: F811
        from kubekeep.engine.backup import _ParentView

        self.view = _ParentView(repo, bytes.fromhex(snap.tree))

    def files(self, under: str = "") -> Iterator[tuple[str, bytes, int]]:
        return self.view.files(under)


def test_a_skipped_file_the_engine_cannot_reuse_is_read_after_all(repo: Repository, tmp_path: Path) -> None:  # noqa: F811
    """The agent skips what the client named, but the engine has no parent to reuse from: every
    skipped file is read through READ, chunked as the agent would have, and stored whole."""
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=6, small_files=40)
    (src / "empty.txt").write_bytes(b"")
    first, _ = backup(repo, src)
    snap, transfer = backup(repo, src, parent_from=_ParentOf(repo, first), use_parent=False)
    files = snap.stats["files"]
    assert transfer["files_unchanged"] == transfer["files_reread"] == files
    assert transfer["bytes_reread"] == snap.stats["bytes_total"] == snap.stats["bytes_read"]
    assert snap.stats["files_unchanged"] == 0
    assert snap.stats["bytes_new"] == 0  # the same chunks as the first backup: the same cuts
    assert_same_tree(manifest(src), restore(repo, snap, tmp_path / "out"))


def test_an_old_client_without_known_gets_every_file_read(repo: Repository, tmp_path: Path) -> None:  # noqa: F811
    """BACKUP without ``known`` (a client of an earlier version): the agent reads every file."""
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=2, small_files=20)
    backup(repo, src)
    agent = Agent(src)
    try:
        channel, _ = agent.session("backup")
        request = {**GOOD_BACKUP, "id_key": repo.master.identity, "chunker": repo.config["chunker"]}
        channel.send(p.BACKUP, request)
        unchanged = 0
        while True:
            kind, payload = channel.recv()
            body = p.unpack(payload) if kind != p.DATA else {}
            if kind == p.ENTRY and body.get("t") == "file":
                unchanged += 1
            if kind in (p.FILE, p.CHUNKS, p.FILE_END, p.ENTRY):
                channel.send(p.CREDIT, {"s": [body["s"]]})
            if kind == p.DONE:
                break
        assert unchanged == 0 and body["stats"]["files_unchanged"] == 0
        assert body["stats"]["bytes_read"] > 2 * 1024 * 1024
        channel.send(p.BYE)
        assert agent.exit_code() == 0
    finally:
        agent.stop()


BAD_KNOWN: dict[str, Any] = {
    "str": "x" * 16,
    "list": [1, 2],
    "int": 5,
    "nil": None,
    "not a multiple of 8": bytes(12),
    "over the cap": bytes(p.KNOWN_SIZE * (p.MAX_KNOWN + 1)),
}


@pytest.mark.parametrize("known", BAD_KNOWN.values(), ids=BAD_KNOWN.keys())
def test_a_malformed_known_ends_the_session_cleanly(tmp_path: Path, known: Any) -> None:
    (tmp_path / "f").write_bytes(b"x")
    agent = WatchedAgent(tmp_path)
    try:
        channel, _ = agent.session("backup")
        channel.send(p.BACKUP, {**GOOD_BACKUP, "known": known})
        with pytest.raises(errors.ConnectorError, match="malformed BACKUP: 'known'"):
            channel.expect(p.DONE)
        assert agent.exit_code() == 1
        assert not any("Traceback" in line for line in agent.lines), "\n".join(agent.lines)
    finally:
        agent.stop()


def test_read_never_leaves_the_volume(tmp_path: Path) -> None:
    """READ is answered for regular files below the volume only: no ``..``, no absolute path, no
    symlink followed (not even a directory's), and bad fields end the session."""
    root = tmp_path / "vol"
    root.mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "in.txt").write_bytes(b"inside")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    os.symlink(tmp_path, root / "up")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    agent = WatchedAgent(root)
    try:
        channel, _ = agent.session("backup")
        channel.send(p.BACKUP, GOOD_BACKUP)
        number = 0

        def read(path: Any, offset: int = 0, length: int = 100) -> tuple[int, bytes]:
            nonlocal number
            number += 1
            channel.send(p.READ, {"r": number, "p": path, "o": offset, "n": length})
            while True:
                kind, payload = channel.recv()
                if kind == p.DATA:
                    got, _flags, data = p.split_data(payload)
                    assert got == number
                    return kind, bytes(data)
                if kind == p.FAIL:
                    body = p.unpack(payload)
                    assert body["r"] == number
                    return kind, str(body["error"]).encode()
                if kind in (p.ENTRY, p.FILE, p.FILE_END, p.CHUNKS):
                    channel.send(p.CREDIT, {"s": [p.unpack(payload)["s"]]})

        assert read("sub/in.txt") == (p.DATA, b"inside")
        assert read("sub/in.txt", offset=2, length=2) == (p.DATA, b"si")
        assert read("sub/in.txt", offset=6) == (p.DATA, b"")  # the end
        for path in ("../secret.txt", "/etc/hostname", "up/secret.txt", "link.txt", "sub/../sub/in.txt", "sub", ""):
            kind, message = read(path)
            assert kind == p.FAIL, path
            assert b"outside" not in message
        channel.send(p.READ, {"r": 99, "p": "sub/in.txt", "o": 0, "n": p.MAX_READ + 1})
        with pytest.raises(errors.ConnectorError, match="malformed READ"):
            while True:
                channel.expect(p.DATA)
        assert agent.exit_code() == 1
        assert not any("Traceback" in line for line in agent.lines), "\n".join(agent.lines)
    finally:
        agent.stop()


def test_client_refuses_a_file_without_content_it_did_not_allow(repo: Repository) -> None:  # noqa: F811
    """An agent may skip a file only when the client named the parent's files: otherwise a file
    sent without content is a protocol error, never an empty file in the snapshot."""
    entry = {"s": 0, "p": "f", "t": "file", "m": 0o644, "u": 0, "g": 0, "mt": 1, "z": 5, p.UNCHANGED: 1}
    _refused_without_known(repo, p.ENTRY, entry, "without content")


def test_block_devices_are_never_skipped(repo: Repository, tmp_path: Path) -> None:  # noqa: F811
    """A block volume's image has no mtime to go by: it is read every time (its unchanged chunks
    still cost no transfer)."""
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(3 * 1024 * 1024))
    backup(repo, image)
    snap, transfer = backup(repo, image)
    assert transfer["files_unchanged"] == 0 and transfer["bytes_read"] == 3 * 1024 * 1024
    assert transfer["chunks_fetched"] == 0


def test_the_known_digest_is_stable() -> None:
    """The digest is part of the protocol between versions: it must not change by accident."""
    key = p.volume_reuse_key(5, 1_700_000_000_000_000_000)
    assert key == b"V1" + (5).to_bytes(8, "little") + (1_700_000_000_000_000_000).to_bytes(8, "little")
    assert p.known_digest("a/b.txt", key) == 11779743081108971911
    assert p.known_digest("a/b.txt", key) != p.known_digest("a/c.txt", key)
    packed = p.pack_known([3, 1, 2])
    assert list(p.unpack_known(packed)) == [1, 2, 3]


class _KnownImporter(_BombImporter):
    """A client that named the parent's files (one), against a scripted agent."""

    def entries(self) -> Iterator[Entry]:
        assert self.spec is not None
        channel = self.fake.channel()
        p.client_handshake(channel, self.secret, mode="backup")
        self.remote = RemoteBackup(channel, self.spec, known=p.pack_known([1]))
        yield from self.remote.entries()


FILE_BODY: dict[str, Any] = {"p": "f", "t": "file", "m": 0o644, "u": 0, "g": 0, "mt": 1, "z": 5}
BAD_RUNS: dict[str, tuple[Any, str]] = {
    "not a list": ({"s": 0, "e": "x"}, "'e' is a str"),
    "empty": ({"s": 0, "e": []}, "0 entries"),
    "too long": ({"s": 0, "e": [{"p": "d", "t": "dir"}] * (p.MAX_ENTRIES + 1)}, "1025 entries"),
    "an int": ({"s": 0, "e": [5]}, "a int, not a map"),
    "a file not unchanged": ({"s": 0, "e": [FILE_BODY]}, "without content"),
    "unchanged 2": ({"s": 0, "e": [{**FILE_BODY, p.UNCHANGED: 2}]}, "without content"),
    "bad entry": ({"s": 0, "e": [{**FILE_BODY, p.UNCHANGED: 1, "z": -1}]}, "malformed entry"),
}


@pytest.mark.parametrize("body,message", BAD_RUNS.values(), ids=BAD_RUNS.keys())
def test_client_refuses_a_malformed_run_of_entries(repo: Repository, body: Any, message: str) -> None:  # noqa: F811
    secret = p.new_secret()

    def script(ch: p.Channel) -> None:
        assert p.agent_handshake(ch, secret, {"modes": ["backup"], "source": "dir", "agent": "x", "writers": 8})
        ch.recv()
        ch.send(p.ENTRIES, body)
        ch.send(p.DONE, {"s": 1, "warnings": [], "stats": {}})
        while ch.recv()[0] != p.BYE:
            pass

    fake = FakeAgent(script)
    with repo.lock(), pytest.raises(errors.ConnectorError, match=message):
        importer = _KnownImporter(fake, secret)
        with importer:
            run_backup(repo, importer)
    assert repo.snapshots() == []


def test_client_refuses_a_run_of_entries_it_did_not_allow(repo: Repository) -> None:  # noqa: F811
    body = {"s": 0, "e": [{**FILE_BODY, p.UNCHANGED: 1}]}
    _refused_without_known(repo, p.ENTRIES, body, "did not name the parent's files")


def _refused_without_known(repo: Repository, kind: int, body: dict[str, Any], message: str) -> None:  # noqa: F811
    """An agent sends ``body`` as a ``kind`` message with unchanged content to a client that sent
    no ``known``: the backup fails with ``message`` and stores no snapshot."""
    secret = p.new_secret()

    def script(ch: p.Channel) -> None:
        assert p.agent_handshake(ch, secret, {"modes": ["backup"], "source": "dir", "agent": "x", "writers": 8})
        ch.recv()
        ch.send(kind, body)
        ch.send(p.DONE, {"s": 1, "warnings": [], "stats": {}})
        while ch.recv()[0] != p.BYE:
            pass

    fake = FakeAgent(script)
    with repo.lock(), pytest.raises(errors.ConnectorError, match=message):
        importer = _BombImporter(fake, secret)
        with importer:
            run_backup(repo, importer)
    assert repo.snapshots() == []
