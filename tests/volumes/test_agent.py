"""The agent and its protocol without a cluster: a real ``kubekeep agent`` process on loopback,
kubekeep's client, the engine. Authentication, sealing, chunk-level transfer, back-pressure,
block devices, restores, and what a faulty source cannot do to a repository."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubekeep import errors
from kubekeep.agent import protocol as p
from kubekeep.agent.client import RemoteBackup, RemoteRestore, open_session, tcp
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import ChunkSpec, Entry, EntryType, Exporter, Importer, PreChunked, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import run_restore
from tests.cli.helpers import FAST_KDF, assert_same_tree, make_rich_tree, manifest


class Agent:
    """A ``python -m kubekeep.agent`` process serving ``source`` on a free loopback port."""

    def __init__(self, source: Path, *args: str, secret: bytes | None = None) -> None:
        self.secret = secret or p.new_secret()
        flag = "--device" if source.is_file() else "--root"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubekeep.agent", flag, str(source), "--listen", "127.0.0.1:0", *args],
            env={**os.environ, p.SECRET_ENV: self.secret.hex()},
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r" on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        self.port = int(match.group(1))

    def session(self, mode: str, secret: bytes | None = None) -> tuple[p.Channel, dict[str, Any]]:
        return open_session(tcp("127.0.0.1", self.port), secret or self.secret, mode, timeout=10)

    def exit_code(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.exit_code()


class AgentSource(Importer):
    """The engine's importer contract over a backup session (what pvc:// does after connecting)."""

    scheme = "agent"

    def __init__(self, agent: Agent, **session_options: Any) -> None:
        self.agent = agent
        self.options = session_options
        self.spec: ChunkSpec | None = None
        self.remote: RemoteBackup | None = None

    def source(self) -> SourceInfo:
        return SourceInfo("agent:test", "volume")

    def use_chunking(self, spec: ChunkSpec) -> None:
        self.spec = spec

    def entries(self) -> Iterator[Entry]:
        assert self.spec is not None
        channel, _ = self.agent.session("backup")
        self.remote = RemoteBackup(channel, self.spec, **self.options)
        yield from self.remote.entries()

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()


class AgentDestination(Exporter):
    """The exporter contract over a restore session."""

    scheme = "agent"

    def __init__(self, agent: Agent) -> None:
        channel, hello = agent.session("restore")
        self.remote = RemoteRestore(channel, writers=int(hello["writers"]))

    def directory(self, entry: Entry) -> None:
        self.remote.directory(entry)

    def symlink(self, entry: Entry) -> None:
        self.remote.symlink(entry)

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        self.remote.file(entry, data)

    def finish(self) -> list[str]:
        return self.remote.finish()[0]

    def close(self) -> None:
        self.remote.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    from kubekeep.storage import open_backend

    r = Repository.init(open_backend(str(tmp_path / "repo")), "pw", kdf=FAST_KDF, no_cache=True)
    yield r
    r.close()


def backup(repo: Repository, source: Path, **options: Any) -> tuple[Any, dict[str, Any]]:
    agent = Agent(source)
    importer = AgentSource(agent, **options)
    try:
        with repo.lock(), importer:
            snap = run_backup(repo, importer)
    finally:
        agent.stop()
    assert importer.remote is not None
    return snap, importer.remote.stats.to_dict()


def test_backup_and_restore_through_agents(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=6, small_files=200)
    snap, first = backup(repo, src)
    assert first["chunks_fetched"] == first["chunks_total"] > 6
    snap2, second = backup(repo, src)
    assert second["chunks_fetched"] == 0 and second["bytes_total"] == first["bytes_total"]
    assert snap2.tree == snap.tree  # the same tree: ids are the repository's own

    dst = tmp_path / "dst"
    dst.mkdir()
    agent = Agent(dst, "--write")
    with repo.lock(), AgentDestination(agent) as exporter:
        stats = run_restore(repo, snap2, exporter)
    assert agent.exit_code() == 0  # one session, then the agent exits
    assert stats.files > 200
    assert_same_tree(manifest(src), manifest(dst))


class EndsSessionAfterWalk(AgentSource):
    """Ends the session as soon as the walk is over, before the next entry (a backup of many
    claims moves on to the next claim that way)."""

    def entries(self) -> Iterator[Entry]:
        yield from super().entries()
        assert self.remote is not None
        self.remote.close()
        yield Entry("after", EntryType.FILE, data=b"the next source")


def test_the_walk_ends_only_when_every_file_it_gave_is_read(repo: Repository, tmp_path: Path) -> None:
    # the engine reads files on worker threads while it asks for later entries: ending the
    # session at the end of the walk used to cut those reads short ("the agent session was closed")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"big-{i}").write_bytes(random.Random(i).randbytes(3 * 1024 * 1024))
    agent = Agent(src)
    importer = EndsSessionAfterWalk(agent)
    try:
        with repo.lock(), importer:
            snap = run_backup(repo, importer)
    finally:
        agent.stop()
    out = tmp_path / "out"
    from kubekeep.files.write import FsExporter

    with repo.lock(), FsExporter(out) as exporter:
        run_restore(repo, snap, exporter)
    assert (out / "after").read_bytes() == b"the next source"
    (out / "after").unlink()
    assert_same_tree(manifest(src), manifest(out))


def test_wrong_secret_is_refused_and_the_agent_keeps_waiting(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    agent = Agent(tmp_path)
    try:
        with pytest.raises(errors.ConnectorError, match="refused the connection: authentication failed"):
            agent.session("backup", secret=p.new_secret())
        with pytest.raises(errors.ConnectorError, match="does not allow restore sessions"):
            agent.session("restore")  # started without --write
        channel, hello = agent.session("backup")  # the right secret still gets in
        assert hello["modes"] == ["backup"]
        channel.close()
    finally:
        agent.stop()


def test_idle_agent_exits_by_itself(tmp_path: Path) -> None:
    agent = Agent(tmp_path, "--idle-timeout", "1")
    assert agent.exit_code(timeout=30) == 2


def _secured_pair() -> tuple[p.Channel, socket.socket, socket.socket, p.Channel]:
    """channel a -> raw socket (to tamper with) -> channel b, both sealed with the same keys."""
    a_sock, raw_in = socket.socketpair()
    raw_out, b_sock = socket.socketpair()
    a, b = p.Channel(p.SocketTransport(a_sock)), p.Channel(p.SocketTransport(b_sock))
    k1, k2 = os.urandom(32), os.urandom(32)
    a.secure(k1, k2)
    b.secure(k2, k1)
    return a, raw_in, raw_out, b


def _relay_frame(raw_in: socket.socket, raw_out: socket.socket, flip: int | None = None, times: int = 1) -> None:
    head = raw_in.recv(4, socket.MSG_WAITALL)
    body = bytearray(raw_in.recv(int.from_bytes(head, "big"), socket.MSG_WAITALL))
    if flip is not None:
        body[flip] ^= 0x01
    for _ in range(times):
        raw_out.sendall(head + bytes(body))


def test_sealed_frames_cannot_be_altered_or_replayed() -> None:
    a, raw_in, raw_out, b = _secured_pair()
    a.send(p.CREDIT, {"s": [1, 2, 3]})
    _relay_frame(raw_in, raw_out)
    assert b.expect(p.CREDIT) == {"s": [1, 2, 3]}
    a.send(p.CREDIT, {"s": [4]})
    _relay_frame(raw_in, raw_out, flip=20)
    with pytest.raises(errors.ConnectorError, match="failed authentication"):
        b.recv()

    a, raw_in, raw_out, b = _secured_pair()
    a.send(p.CREDIT, {"s": [5]})
    _relay_frame(raw_in, raw_out, times=2)  # the same frame again
    assert b.expect(p.CREDIT) == {"s": [5]}
    with pytest.raises(errors.ConnectorError, match="failed authentication"):
        b.recv()


def test_a_tiny_window_bounds_the_agent_without_deadlock(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src, big_mib=12, small_files=400)
    snap, stats = backup(repo, src, window_records=3, window_bytes=1024 * 1024, compress=False)
    assert stats["chunks_fetched"] == stats["chunks_total"]
    out = tmp_path / "out"
    from kubekeep.files.write import FsExporter

    with repo.lock(), FsExporter(out) as exporter:
        run_restore(repo, snap, exporter)
    assert_same_tree(manifest(src), manifest(out))


def test_block_device_is_one_image_both_ways(repo: Repository, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(random.Random(3).randbytes(8 * 1024 * 1024) + bytes(4 * 1024 * 1024))
    snap, _ = backup(repo, disk)
    [node] = repo.load_tree(bytes.fromhex(snap.tree))
    assert (node.name, node.size) == ("volume.img", 12 * 1024 * 1024)

    target = tmp_path / "target.img"
    target.write_bytes(bytes(12 * 1024 * 1024))
    agent = Agent(target, "--write")
    with repo.lock(), AgentDestination(agent) as exporter:
        run_restore(repo, snap, exporter)
    assert target.read_bytes() == disk.read_bytes()

    small = tmp_path / "small.img"
    small.write_bytes(bytes(1024 * 1024))
    agent = Agent(small, "--write")
    with (
        pytest.raises(errors.ConnectorError, match="does not fit the block device"),
        repo.lock(),
        AgentDestination(agent) as exporter,
    ):
        run_restore(repo, snap, exporter)
    assert small.read_bytes() == bytes(1024 * 1024)
    agent.stop()


def test_abandoned_file_leaves_nothing_half_written(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    agent = Agent(dst, "--write")

    def failing() -> Iterator[bytes]:
        yield b"x" * 1000
        raise errors.IntegrityError("blob failed verification")

    with AgentDestination(agent) as exporter:
        exporter.directory(Entry("d", EntryType.DIR, mode=0o755))
        with pytest.raises(errors.IntegrityError):
            exporter.file(Entry("d/bad.bin", EntryType.FILE, size=2000), failing())
        exporter.file(Entry("d/good.txt", EntryType.FILE, size=2), [b"ok"])
        exporter.finish()
    assert agent.exit_code() == 0
    assert sorted(os.listdir(dst / "d")) == ["good.txt"]


class _LyingSource(PreChunked):
    """A source whose data does not match the ids it announced (a broken or hostile agent)."""

    def __init__(self, repo: Repository) -> None:
        self.id = repo.master.blob_id(b"what was announced")

    def batches(self) -> Iterator[list[tuple[bytes, int]]]:
        yield [(self.id, len(b"what was announced"))]

    def fetch(self, ids: list[bytes]) -> Iterator[bytes]:
        yield b"what is actually sent"


class _LyingImporter(Importer):
    scheme = "lying"

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def source(self) -> SourceInfo:
        return SourceInfo("lying:", "volume")

    def entries(self) -> Iterator[Entry]:
        yield Entry("f", EntryType.FILE, size=18, chunks=_LyingSource(self.repo))


def test_data_that_does_not_match_its_id_is_never_stored(repo: Repository) -> None:
    with repo.lock(), pytest.raises(errors.IntegrityError, match="does not match chunk"):
        run_backup(repo, _LyingImporter(repo))
    assert repo.snapshots() == []
    assert _LyingSource(repo).id not in repo.index


def test_agent_ids_are_the_repositorys_blob_ids(repo: Repository) -> None:
    import blake3

    data = os.urandom(1000)
    assert blake3.blake3(data, key=repo.master.identity).digest() == repo.master.blob_id(data)
