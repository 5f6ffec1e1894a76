"""The agent and its client against peers that do not hold the run's secret, or that lie.

Whatever an unauthenticated peer sends (wrong types in any field, garbage, truncated or huge
frames, silence, many connections at once), the agent refuses that connection alone and keeps
serving: the authenticated client still completes a real backup or restore afterwards. On the
client side a hostile agent gets a clear error out of kubekeep, never a crash or a hang, and
cannot make it decompress more than a chunk's announced length.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
import zstandard

from kubekeep import errors
from kubekeep.agent import protocol as p
from kubekeep.agent.client import RemoteBackup, open_session
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import ChunkSpec, Entry, EntryType, Importer, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import run_restore
from kubekeep.files.write import FsExporter
from tests.cli.helpers import assert_same_tree, make_rich_tree, manifest
from tests.volumes.test_agent import Agent, AgentDestination, AgentSource, repo  # noqa: F401

pytestmark = pytest.mark.timeout(120)


class WatchedAgent(Agent):
    """An agent whose log is read as it comes (a flood of refusals must not fill the pipe)."""

    def __init__(self, source: Path, *args: str) -> None:
        super().__init__(source, *args)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def exit_code(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def session(self, mode: str, secret: bytes | None = None) -> tuple[p.Channel, dict[str, Any]]:
        """Like the base class, but a hang in the handshake becomes a failure, not a stuck test."""
        channel, hello = open_session(_connect_with_timeout(self.port, 5.0), secret or self.secret, mode, timeout=10)
        assert isinstance(channel.transport, p.SocketTransport)
        channel.transport.sock.settimeout(None)
        return channel, hello

    def assert_serving(self) -> None:
        """Still running, and a new connection is greeted with a HELLO."""
        assert self.proc.poll() is None, "the agent died:\n" + "\n".join(self.lines)
        with _raw(self.port) as sock:
            kind, _ = _read_frame(sock)
            assert kind == p.HELLO
        assert not any("Traceback" in line for line in self.lines), "\n".join(self.lines)


def _connect_with_timeout(port: int, timeout: float) -> Callable[[], p.Transport]:
    def connect() -> p.Transport:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as exc:
            raise errors.SourceUnreachable(str(exc)) from None
        return p.SocketTransport(sock)

    return connect


def _raw(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _read_frame(sock: socket.socket) -> tuple[int | None, bytes]:
    """One plaintext frame, or ``(None, b"")`` when the peer closed (or reset) the connection."""
    try:
        head = sock.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return None, b""
        (length,) = struct.unpack(">I", head)
        body = sock.recv(length, socket.MSG_WAITALL)
    except ConnectionResetError:
        return None, b""
    if len(body) < length:
        return None, b""
    return body[0], body[1:]


def _frame(kind: int, body: bytes) -> bytes:
    return struct.pack(">I", 1 + len(body)) + bytes([kind]) + body


def _refused(sock: socket.socket, within: float) -> None:
    """The agent answers with ERROR and/or closes, and does so within ``within`` seconds."""
    sock.settimeout(within)
    started = time.monotonic()
    kind, _ = _read_frame(sock)
    if kind == p.ERROR:
        kind, _ = _read_frame(sock)
    assert kind is None, f"the agent went on after a bad frame (message {kind})"
    assert time.monotonic() - started < within


def _small_backup(agent: Agent, repo: Repository, src: Path) -> None:  # noqa: F811
    importer = AgentSource(agent)
    with repo.lock(), importer:
        snap = run_backup(repo, importer)
    assert agent.exit_code() == 0
    out = src.parent / "check-out"
    with repo.lock(), FsExporter(out) as exporter:
        run_restore(repo, snap, exporter)
    assert_same_tree(manifest(src), manifest(out))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    make_rich_tree(root, big_mib=1, small_files=20)
    return root


N = os.urandom(p.NONCE_SIZE)
M = os.urandom(32)
BAD_AUTH_BODIES = {
    "list": p.pack([N, M]),
    "int": p.pack(7),
    "str": p.pack("auth"),
    "nil": p.pack(None),
    "bin": p.pack(N + M),
    "bool": p.pack(True),
    "empty map": p.pack({}),
    "nonce missing": p.pack({"mac": M}),
    "mac missing": p.pack({"nonce": N}),
    "nonce int": p.pack({"nonce": 5, "mac": M}),
    "nonce str": p.pack({"nonce": "x" * 32, "mac": M}),
    "nonce list": p.pack({"nonce": list(N), "mac": M}),
    "nonce map": p.pack({"nonce": {"a": 1}, "mac": M}),
    "nonce nil": p.pack({"nonce": None, "mac": M}),
    "nonce negative": p.pack({"nonce": -1, "mac": M}),
    "nonce short": p.pack({"nonce": N[:31], "mac": M}),
    "nonce long": p.pack({"nonce": N + b"x", "mac": M}),
    "mac int": p.pack({"nonce": N, "mac": 5}),
    "mac str": p.pack({"nonce": N, "mac": "m" * 32}),
    "mac list": p.pack({"nonce": N, "mac": list(M)}),
    "mac map": p.pack({"nonce": N, "mac": {}}),
    "mac nil": p.pack({"nonce": N, "mac": None}),
    "mac float": p.pack({"nonce": N, "mac": 1.5}),
    "mac short": p.pack({"nonce": N, "mac": M[:16]}),
    "int keys": p.pack({1: N, 2: M}),
    "trailing data": p.pack({"nonce": N, "mac": M}) + b"\x00",
    "not msgpack": b"\xc1\xc1\xc1",
    "no body": b"",
    "deep nesting": b"\x91" * 3000 + b"\xc0",
    "ext type": b"\xd4\x05\x00",
}


def test_no_auth_body_stops_the_agent(src: Path, repo: Repository) -> None:  # noqa: F811
    agent = WatchedAgent(src)
    try:
        for _name, body in BAD_AUTH_BODIES.items():
            with _raw(agent.port) as sock:
                assert _read_frame(sock)[0] == p.HELLO
                sock.sendall(_frame(p.AUTH, body))
                _refused(sock, within=5)
            agent.assert_serving()
        _small_backup(agent, repo, src)
    finally:
        agent.stop()


def test_no_other_message_before_auth(src: Path, repo: Repository) -> None:  # noqa: F811
    agent = WatchedAgent(src, "--write")
    try:
        backup = p.pack({"chunker": {}, "id_key": bytes(32)})
        for kind, body in [
            (p.BACKUP, backup),
            (p.RESTORE, p.pack({"owners": None})),
            (p.WELCOME, p.pack({"mac": M})),
            (p.HELLO, p.pack({"v": 1, "nonce": N})),
            (p.ERROR, p.pack({"message": "x"})),
            (p.BYE, p.pack(None)),
            (255, b""),
            (0, b""),
        ]:
            with _raw(agent.port) as sock:
                assert _read_frame(sock)[0] == p.HELLO
                sock.sendall(_frame(kind, body))
                _refused(sock, within=5)
            agent.assert_serving()
        _restore_through(agent, repo, src)
    finally:
        agent.stop()


def _restore_through(agent: Agent, repo: Repository, src: Path) -> None:  # noqa: F811
    """Back ``src`` up locally and restore it through ``agent`` (which serves a --write root)."""
    from kubekeep.files.walk import FsImporter

    with repo.lock(), FsImporter(src) as importer:
        snap = run_backup(repo, importer)
    with repo.lock(), AgentDestination(agent) as exporter:
        run_restore(repo, snap, exporter)
    assert agent.exit_code() == 0
    assert_same_tree(manifest(src), manifest(agent_root(agent)))


def agent_root(agent: Agent) -> Path:
    return Path(agent.proc.args[agent.proc.args.index("--root") + 1])  # type: ignore[union-attr,index]


def test_a_huge_pre_auth_frame_is_refused_at_once(src: Path, repo: Repository) -> None:  # noqa: F811
    agent = WatchedAgent(src, "--handshake-timeout", "30")
    try:
        for announced in (64 * 1024 * 1024, p.MAX_FRAME, 2**32 - 1, 5000):
            with _raw(agent.port) as sock:
                assert _read_frame(sock)[0] == p.HELLO
                sock.sendall(struct.pack(">I", announced) + bytes([p.AUTH]) + bytes(4000))
                _refused(sock, within=3)  # long before the handshake timeout: it did not wait for the rest
            agent.assert_serving()
        _small_backup(agent, repo, src)
    finally:
        agent.stop()


def test_channel_refuses_a_big_frame_before_auth_without_allocating_it() -> None:
    a, b = socket.socketpair()
    b.settimeout(2)
    channel = p.Channel(p.SocketTransport(b))
    a.sendall(struct.pack(">I", 64 * 1024 * 1024) + bytes([p.AUTH]) + bytes(1000))
    with pytest.raises(errors.ConnectorError, match="too large"):
        channel.recv()
    assert len(channel._buf) <= 64 * 1024
    a.close()
    channel.close()


def test_garbage_truncation_and_silence_cost_one_connection_each(src: Path, repo: Repository) -> None:  # noqa: F811
    agent = WatchedAgent(src, "--handshake-timeout", "1")
    try:
        with _raw(agent.port) as sock:  # garbage before even reading the HELLO
            sock.sendall(os.urandom(3000))
            _read_frame(sock)
            _refused(sock, within=5)
        agent.assert_serving()
        with _raw(agent.port) as sock:  # a truncated frame, then the peer hangs up
            _read_frame(sock)
            sock.sendall(struct.pack(">I", 100) + bytes([p.AUTH]) + bytes(40))
            sock.shutdown(socket.SHUT_WR)
            _refused(sock, within=5)
        agent.assert_serving()
        with _raw(agent.port) as sock:  # a truncated frame, and the peer stays
            _read_frame(sock)
            sock.sendall(struct.pack(">I", 100) + bytes([p.AUTH]) + bytes(40))
            _refused(sock, within=5)
        agent.assert_serving()
        with _raw(agent.port) as sock:  # one byte at a time, never finishing in time
            _read_frame(sock)
            started = time.monotonic()
            closed = False
            for byte in struct.pack(">I", 60) + bytes(60):
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.2)
            if not closed:
                _refused(sock, within=5)
            assert time.monotonic() - started < 8
        agent.assert_serving()
        with _raw(agent.port) as sock:  # silence: the handshake times out
            _read_frame(sock)
            _refused(sock, within=5)
        agent.assert_serving()
        _small_backup(agent, repo, src)
    finally:
        agent.stop()


def test_many_silent_connections_do_not_keep_the_client_out(src: Path, repo: Repository) -> None:  # noqa: F811
    agent = WatchedAgent(src)  # default handshake timeout: the silent peers outlast the test's client
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            try:
                idle.append(_raw(agent.port, timeout=2))
            except OSError:
                pass
        assert len(idle) >= 100
        started = time.monotonic()
        _small_backup(agent, repo, src)
        assert time.monotonic() - started < 30
    finally:
        for sock in idle:
            sock.close()
        agent.stop()


def test_the_session_is_not_taken_by_a_refused_peer(src: Path, repo: Repository) -> None:  # noqa: F811
    agent = WatchedAgent(src)
    try:
        with _raw(agent.port) as sock:  # an unauthenticated peer in the middle of its handshake
            assert _read_frame(sock)[0] == p.HELLO
            with pytest.raises(errors.ConnectorError, match="authentication failed"):
                agent.session("backup", secret=p.new_secret())
            _small_backup(agent, repo, src)
    finally:
        agent.stop()


# -- the client against a hostile agent -----------------------------------------------------


class FakeAgent:
    """A listening socket whose one connection is handled by ``script`` (a hostile agent)."""

    def __init__(self, script: Callable[[p.Channel], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        channel = p.Channel(p.SocketTransport(conn))
        try:
            self.script(channel)
        except errors.KubekeepError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            time.sleep(0.2)
            channel.close()
            self.listener.close()

    def channel(self) -> p.Channel:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return p.Channel(p.SocketTransport(sock), peer="agent")


GOOD_HELLO: dict[str, Any] = {
    "v": p.VERSION,
    "nonce": N,
    "modes": ["backup"],
    "source": "dir",
    "agent": "x",
    "writers": 8,
}
BAD_HELLOS: dict[str, Any] = {
    "list": [1, 2],
    "int": 3,
    "nil": None,
    "v str": {**GOOD_HELLO, "v": "1"},
    "v missing": {k: v for k, v in GOOD_HELLO.items() if k != "v"},
    "nonce int": {**GOOD_HELLO, "nonce": 5},
    "nonce str": {**GOOD_HELLO, "nonce": "n" * 32},
    "nonce list": {**GOOD_HELLO, "nonce": list(N)},
    "nonce short": {**GOOD_HELLO, "nonce": N[:8]},
    "nonce missing": {k: v for k, v in GOOD_HELLO.items() if k != "nonce"},
    "modes int": {**GOOD_HELLO, "modes": 5},
    "modes str": {**GOOD_HELLO, "modes": "backup"},
    "modes of ints": {**GOOD_HELLO, "modes": [1, 2]},
    "modes map": {**GOOD_HELLO, "modes": {"backup": 1}},
    "source int": {**GOOD_HELLO, "source": 1},
    "source unknown": {**GOOD_HELLO, "source": "tape"},
    "writers str": {**GOOD_HELLO, "writers": "8"},
    "writers zero": {**GOOD_HELLO, "writers": 0},
    "writers huge": {**GOOD_HELLO, "writers": 10**9},
    "writers bool": {**GOOD_HELLO, "writers": True},
    "agent list": {**GOOD_HELLO, "agent": [1]},
}


@pytest.mark.parametrize("body", BAD_HELLOS.values(), ids=BAD_HELLOS.keys())
def test_client_refuses_a_malformed_hello(body: Any) -> None:
    fake = FakeAgent(lambda ch: (ch.send(p.HELLO, body), ch.recv()))
    channel = fake.channel()
    with pytest.raises(errors.ConnectorError, match="HELLO"):
        p.client_handshake(channel, os.urandom(32), mode="backup")
    channel.close()
    fake.thread.join(5)
    assert fake.error is None


BAD_ANSWERS: dict[str, tuple[int, Any]] = {
    "welcome list": (p.WELCOME, [1]),
    "welcome nil": (p.WELCOME, None),
    "welcome mac str": (p.WELCOME, {"mac": "m" * 32}),
    "welcome mac int": (p.WELCOME, {"mac": 5}),
    "welcome mac list": (p.WELCOME, {"mac": list(M)}),
    "welcome mac missing": (p.WELCOME, {}),
    "error list": (p.ERROR, [1]),
    "error message int": (p.ERROR, {"message": 5}),
    "error nil": (p.ERROR, None),
    "other message": (p.DATA, {"x": 1}),
}


@pytest.mark.parametrize("answer", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_client_refuses_a_malformed_welcome(answer: tuple[int, Any]) -> None:
    def script(ch: p.Channel) -> None:
        ch.send(p.HELLO, GOOD_HELLO)
        ch.recv()
        ch.send(*answer)

    fake = FakeAgent(script)
    channel = fake.channel()
    with pytest.raises(errors.ConnectorError, match="agent"):
        p.client_handshake(channel, os.urandom(32), mode="backup")
    channel.close()
    fake.thread.join(5)
    assert fake.error is None


def test_client_refuses_a_big_frame_from_the_agent_before_auth() -> None:
    def script(ch: p.Channel) -> None:
        ch.transport.sendall(struct.pack(">I", 64 * 1024 * 1024) + bytes([p.HELLO]) + bytes(1000))
        time.sleep(1)

    fake = FakeAgent(script)
    channel = fake.channel()
    with pytest.raises(errors.ConnectorError, match="too large"):
        p.client_handshake(channel, os.urandom(32), mode="backup")
    channel.close()


BOMB_SIZE = 256 * 1024 * 1024


def _bomb(content_size: bool) -> bytes:
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    obj = cctx.compressobj(size=BOMB_SIZE if content_size else -1)
    zeros = bytes(1024 * 1024)
    return b"".join(obj.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))) + obj.flush()


class _BombImporter(Importer):
    scheme = "bomb"

    def __init__(self, fake: FakeAgent, secret: bytes) -> None:
        self.fake, self.secret = fake, secret
        self.spec: ChunkSpec | None = None
        self.remote: RemoteBackup | None = None

    def source(self) -> SourceInfo:
        return SourceInfo("bomb:", "volume")

    def use_chunking(self, spec: ChunkSpec) -> None:
        self.spec = spec

    def entries(self) -> Iterator[Entry]:
        assert self.spec is not None
        channel = self.fake.channel()
        p.client_handshake(channel, self.secret, mode="backup")
        self.remote = RemoteBackup(channel, self.spec)
        yield from self.remote.entries()

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()


@pytest.mark.parametrize("content_size", [True, False], ids=["size in header", "no size in header"])
def test_client_caps_decompression_at_the_announced_length(repo: Repository, content_size: bool) -> None:  # noqa: F811
    secret = p.new_secret()
    bomb = _bomb(content_size)
    announced = b"what the agent announced"

    def script(ch: p.Channel) -> None:
        assert p.agent_handshake(ch, secret, {"modes": ["backup"], "source": "dir", "agent": "x", "writers": 8})
        kind, payload = ch.recv()
        request = p.unpack(payload)
        chunk_id = blake3.blake3(announced, key=bytes(request["id_key"])).digest()
        ch.send(
            p.FILE,
            {
                "s": 0,
                "f": 0,
                "p": "f",
                "t": "file",
                "m": 0o644,
                "u": 0,
                "g": 0,
                "mt": 0,
                "z": len(announced),
                "o": 0,
                "ids": chunk_id,
                "n": [len(announced)],
                "end": len(announced),
            },
        )
        ch.send(p.DONE, {"s": 1, "warnings": [], "stats": {}})
        while True:
            kind, payload = ch.recv()
            if kind == p.WANT:
                ch.send(p.DATA, raw=bomb, head=p.data_head(p.unpack(payload)["r"], p.FLAG_ZSTD))
            elif kind == p.BYE:
                return

    fake = FakeAgent(script)
    tracemalloc.start()
    try:
        with repo.lock(), pytest.raises(errors.ConnectorError, match="announced"):
            importer = _BombImporter(fake, secret)
            with importer:
                run_backup(repo, importer)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.0f} MiB allocated"
    assert repo.snapshots() == []
    fake.thread.join(5)
    assert fake.error is None


def test_agent_writes_no_more_than_a_files_announced_size(tmp_path: Path) -> None:
    """The other direction, for an authenticated client: a restored file's data is capped at
    the size its WFILE announced, compressed (a bomb) or not."""
    bomb = _bomb(True)
    for payload, flags in ((bomb, p.FLAG_ZSTD), (bytes(100), 0)):
        dst = tmp_path / f"dst{flags}"
        dst.mkdir()
        agent = WatchedAgent(dst, "--write")
        try:
            channel, _ = agent.session("restore")
            channel.send(p.RESTORE, {"owners": None})
            channel.send(p.WFILE, {"f": 0, **p.entry_body(Entry("f", EntryType.FILE, size=10))})
            channel.send(p.WDATA, raw=payload, head=p.data_head(0, flags))
            with pytest.raises(errors.ConnectorError, match="announced"):
                channel.expect(p.FINISHED)
            assert agent.exit_code() == 1
            assert not (dst / "f").exists() or (dst / "f").stat().st_size <= 10
        finally:
            agent.stop()


GOOD_BACKUP: dict[str, Any] = {
    "chunker": {"algorithm": "fastcdc2020-keyed-gear", "min": 256 * 1024, "avg": 768 * 1024, "max": 8 * 1024 * 1024},
    "id_key": bytes(32),
    "compress": "zstd",
    "excludes": [],
    "window_bytes": 1 << 20,
    "window_records": 16,
}
BAD_BACKUPS: dict[str, Any] = {
    "list": [1],
    "id_key str": {**GOOD_BACKUP, "id_key": "k" * 32},
    "id_key short": {**GOOD_BACKUP, "id_key": bytes(8)},
    "chunker unknown": {**GOOD_BACKUP, "chunker": {**GOOD_BACKUP["chunker"], "algorithm": "rabin"}},
    "chunker max str": {**GOOD_BACKUP, "chunker": {**GOOD_BACKUP["chunker"], "max": "8M"}},
    "chunker list": {**GOOD_BACKUP, "chunker": [1, 2, 3]},
    "window huge": {**GOOD_BACKUP, "window_bytes": 1 << 40},
    "window zero": {**GOOD_BACKUP, "window_records": 0},
    "excludes str": {**GOOD_BACKUP, "excludes": "*.log"},
    "excludes of ints": {**GOOD_BACKUP, "excludes": [1]},
}


@pytest.mark.parametrize("body", BAD_BACKUPS.values(), ids=BAD_BACKUPS.keys())
def test_a_malformed_request_ends_the_session_cleanly(tmp_path: Path, body: Any) -> None:
    agent = WatchedAgent(tmp_path)
    try:
        channel, _ = agent.session("backup")
        channel.send(p.BACKUP, body)
        with pytest.raises(errors.ConnectorError, match="malformed"):
            channel.expect(p.DONE)
        assert agent.exit_code() == 1
        assert not any("Traceback" in line for line in agent.lines), "\n".join(agent.lines)
    finally:
        agent.stop()


GOOD_ENTRY: dict[str, Any] = {"s": 0, "p": "d", "t": "dir", "m": 0o755, "u": 0, "g": 0, "mt": 0}
BAD_ENTRIES: dict[str, Any] = {
    "path missing": {k: v for k, v in GOOD_ENTRY.items() if k != "p"},
    "type unknown": {**GOOD_ENTRY, "t": "fifo"},
    "type int": {**GOOD_ENTRY, "t": 1},
    "mode str": {**GOOD_ENTRY, "m": "755"},
    "mode negative": {**GOOD_ENTRY, "m": -1},
    "uid float": {**GOOD_ENTRY, "u": 1.0},
    "uid huge": {**GOOD_ENTRY, "u": 2**40},
    "mtime str": {**GOOD_ENTRY, "mt": "now"},
    "symlink target missing": {**GOOD_ENTRY, "t": "symlink"},
}


@pytest.mark.parametrize("body", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_client_refuses_a_malformed_entry(repo: Repository, body: Any) -> None:  # noqa: F811
    secret = p.new_secret()

    def script(ch: p.Channel) -> None:
        assert p.agent_handshake(ch, secret, {"modes": ["backup"], "source": "dir", "agent": "x", "writers": 8})
        ch.recv()
        ch.send(p.ENTRY, body)
        ch.send(p.DONE, {"s": 1, "warnings": [], "stats": {}})
        while ch.recv()[0] != p.BYE:
            pass

    fake = FakeAgent(script)
    with repo.lock(), pytest.raises(errors.ConnectorError, match="malformed entry"):
        importer = _BombImporter(fake, secret)
        with importer:
            run_backup(repo, importer)
    assert repo.snapshots() == []


@pytest.mark.parametrize(
    "lengths", [[2**40], [0], [-1], ["8"], [True]], ids=["huge", "zero", "negative", "str", "bool"]
)
def test_client_refuses_chunk_lengths_beyond_the_chunker(repo: Repository, lengths: list[Any]) -> None:  # noqa: F811
    """An announced length is where decompression stops: it may not exceed the largest chunk."""
    secret = p.new_secret()

    def script(ch: p.Channel) -> None:
        assert p.agent_handshake(ch, secret, {"modes": ["backup"], "source": "dir", "agent": "x", "writers": 8})
        ch.recv()
        ch.send(
            p.FILE,
            {
                "s": 0,
                "f": 0,
                "p": "f",
                "t": "file",
                "m": 0o644,
                "u": 0,
                "g": 0,
                "mt": 0,
                "z": 1,
                "o": 0,
                "ids": os.urandom(32),
                "n": lengths,
                "end": 1,
            },
        )
        ch.send(p.DONE, {"s": 1, "warnings": [], "stats": {}})
        while ch.recv()[0] != p.BYE:
            pass

    fake = FakeAgent(script)
    with repo.lock(), pytest.raises(errors.ConnectorError, match="malformed chunk list"):
        importer = _BombImporter(fake, secret)
        with importer:
            run_backup(repo, importer)
    assert repo.snapshots() == []
