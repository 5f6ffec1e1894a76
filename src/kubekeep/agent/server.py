"""The agent: serves one mounted volume (a directory or a block device) to one kubekeep run.

It listens on one TCP port, refuses every connection that cannot prove it holds the run's
secret, serves the first one that can (a backup or, when started with ``--write``, a restore)
and exits when that session ends, or when no session started within the idle timeout.

Backup: a walker thread reads each file once, cuts it with the repository's chunker, names the
chunks with the repository's id key and streams per-file chunk lists; the chunk data stays in
a buffer until kubekeep, which has answered from its index, asks for the chunks it lacks or
acknowledges the batch. The walker stops when kubekeep has not acknowledged ``window`` bytes or
records, so memory stays bounded. Restore: files arrive as streams and are written by the fs
connector's exporter with its semantics (new files in place, existing ones replaced atomically,
modes, owners and times restored).
"""

from __future__ import annotations

import bisect
import enum
import errno
import os
import queue
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import zstandard

from kubekeep import __version__, errors
from kubekeep.agent import protocol as p
from kubekeep.engine.chunker import Chunker
from kubekeep.engine.entries import Entry, EntryType, SnapshotKind, SourceInfo
from kubekeep.files.walk import FsImporter
from kubekeep.files.write import FsExporter

#: chunks per CHUNKS message
BATCH_CHUNKS = 32
#: entries per ENTRIES message (directories, symlinks and unchanged files, sent without content)
ENTRIES_RUN = 256
#: restore: files written at once (kubekeep never has more open than this)
WRITERS = 8
#: the largest backup window a client may ask for (records, bytes of buffered chunk data)
MAX_WINDOW_RECORDS = 1_000_000
MAX_WINDOW_BYTES = 512 * 1024 * 1024
#: the window of a BACKUP request that names none
DEFAULT_WINDOW_RECORDS = 4096
DEFAULT_WINDOW_BYTES = 128 * 1024 * 1024
#: restore: pieces of one file buffered ahead of its writer
PIECES_QUEUED = 16
#: handshakes in progress at once; beyond, the oldest is dropped
MAX_PENDING = 64

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} kubekeep-agent: {message}", file=sys.stderr, flush=True)


@dataclass
class AgentConfig:
    source: Path
    secret: bytes
    listen: tuple[str, int] = ("0.0.0.0", p.DEFAULT_PORT)
    block: bool = False
    write: bool = False
    idle_timeout: float = 600.0
    handshake_timeout: float = p.HANDSHAKE_TIMEOUT
    log: Log = stderr_log


class Agent:
    """One agent process: accept, authenticate, serve one session, exit.

    Handshakes run concurrently, one thread each, with a deadline for the whole exchange, so a
    peer that is slow, silent or malformed holds up nobody but itself; at most
    :data:`MAX_PENDING` are in progress (a newer connection pushes out the oldest, which a
    client holding the secret never is for longer than a round trip). Only a connection that
    proved it holds the secret takes the agent's one session."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.log = config.log
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, socket.socket] = {}  # in insertion (= age) order
        self._next = 0
        self._winner: p.Channel | None = None
        self._closed = False  # the session slot is gone (taken, or the agent is exiting)
        self._wake_r, self._wake_w = socket.socketpair()

    def bind(self) -> tuple[str, int]:
        host, port = self.config.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise errors.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.listen(128)
        self._listener = sock
        addr = sock.getsockname()
        return str(addr[0]), int(addr[1])

    def serve(self) -> int:
        """Serve one session; the process exit status (0 after a completed session)."""
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        listener = self._listener
        listener.setblocking(False)
        kind = "block device" if self.config.block else "directory"
        mode = "read-write" if self.config.write else "read-only"
        host, port = listener.getsockname()[:2]
        self.log(f"kubekeep {__version__} agent serving {kind} {self.config.source} ({mode}) on {host}:{port}")
        deadline = time.monotonic() + self.config.idle_timeout
        winner: p.Channel | None = None
        try:
            while winner is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.log(f"no authenticated session within {self.config.idle_timeout:.0f}s; exiting")
                    return 2
                readable, _, _ = select.select([listener, self._wake_r], [], [], left)
                if self._wake_r in readable:
                    self._wake_r.recv(64)
                    with self._lock:
                        winner = self._winner
                elif listener in readable:
                    self._accept(listener)
        finally:
            listener.close()  # one session per agent: nobody else gets in
            with self._lock:
                self._closed = True
                for sock in self._pending.values():
                    _drop(sock)
                self._pending.clear()
                if winner is None and self._winner is not None:  # authenticated as the agent gave up
                    self._winner.close()
            self._wake_r.close()
            self._wake_w.close()
        return self._session(winner)

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, peer = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # out of descriptors, say: the next accept may succeed
            self.log(f"accept failed: {exc.strerror or exc}")
            time.sleep(0.1)
            return
        with self._lock:
            key = self._next
            self._next += 1
            if len(self._pending) >= MAX_PENDING:
                oldest = next(iter(self._pending))
                _drop(self._pending.pop(oldest))
            self._pending[key] = conn
        threading.Thread(
            target=self._handshake, args=(key, conn, str(peer[0])), name="kubekeep-agent-auth", daemon=True
        ).start()

    def _handshake(self, key: int, conn: socket.socket, peer: str) -> None:
        """One connection's handshake; whatever it sends costs one log line and the connection."""
        transport = p.SocketTransport(conn)
        transport.deadline = time.monotonic() + self.config.handshake_timeout
        channel = p.Channel(transport, peer="kubekeep client")
        modes = ["backup", "restore"] if self.config.write else ["backup"]
        hello: p.Announcement = {
            "modes": modes,
            "source": "block" if self.config.block else "dir",
            "agent": __version__,
            "writers": WRITERS,
        }
        try:
            ok = p.agent_handshake(channel, self.config.secret, hello)
        except errors.ConnectorError as exc:
            self._refuse(channel, peer, str(exc), tell=not isinstance(exc, errors.SourceUnreachable))
            return
        except Exception as exc:  # noqa: BLE001 - one connection's failure, never the agent's
            self._refuse(channel, peer, f"internal error: {exc!r}", tell=False)
            return
        finally:
            with self._lock:
                self._pending.pop(key, None)
        if not ok:
            self._refuse(channel, peer, "authentication failed", tell=False)  # already told
            return
        transport.unbound()
        with self._lock:
            first = self._winner is None and not self._closed
            if first:
                self._winner = channel
                self._wake_w.send(b"x")
        if not first:
            self._refuse(channel, peer, "already serving a session", tell=True)
            return
        self.log(f"authenticated session from {peer}")

    def _refuse(self, channel: p.Channel, peer: str, why: str, *, tell: bool) -> None:
        self.log(f"refused {peer}: {why}")
        if tell:
            try:
                refusal: p.ErrorBody = {"message": why if why == "already serving a session" else "protocol error"}
                channel.send(p.ERROR, refusal)
            except errors.KubekeepError:
                pass
        channel.close()

    def _session(self, channel: p.Channel) -> int:
        started = time.monotonic()
        try:
            kind, payload = channel.recv()
            if kind == p.BACKUP:
                stats = BackupSession(self.config, channel, p.unpack_map(payload, "BACKUP")).run()
            elif kind == p.RESTORE and self.config.write:
                stats = RestoreSession(self.config, channel, p.unpack_map(payload, "RESTORE")).run()
            else:
                channel.send(p.ERROR, {"message": "unexpected request (is this agent read-only?)"})
                return 1
        except Exception as exc:  # noqa: BLE001 - a clean end for any failure of the session
            message = str(exc) if isinstance(exc, errors.KubekeepError) else f"internal error: {exc!r}"
            self.log(f"session failed: {message}")
            try:
                channel.send(p.ERROR, {"message": message})
            except errors.KubekeepError:
                pass
            return 1
        finally:
            channel.close()
        self.log(
            f"session done in {time.monotonic() - started:.1f}s: " + ", ".join(f"{k} {v}" for k, v in stats.items())
        )
        return 0


def _drop(sock: socket.socket) -> None:
    """End a pending handshake: its thread's receive returns at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- backup -----------------------------------------------------------------------------------


@dataclass
class _Window:
    """Records and bytes sent but not yet acknowledged, with the buffered chunk data."""

    max_records: int
    max_bytes: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    open_records: int = 0
    open_bytes: int = 0
    batches: dict[int, tuple[int, dict[int, bytes]]] = field(default_factory=dict)  # seq -> (bytes, offset->data)
    closed: bool = False


class BackupSession:
    def __init__(self, config: AgentConfig, channel: p.Channel, request: p.Message) -> None:
        """``request``: the decoded BACKUP (:class:`p.BackupRequest`), checked here."""
        self.config = config
        self.channel = channel
        what = "BACKUP"
        self.id_key = p.require(request, "id_key", bytes, what)
        if len(self.id_key) != p.ID_SIZE:
            raise errors.ConnectorError("agent protocol: malformed BACKUP: the id key must be 32 bytes")
        self.compress = p.require(request, "compress", str, what) == "zstd" if "compress" in request else False
        records = (
            p.require(request, "window_records", int, what) if "window_records" in request else DEFAULT_WINDOW_RECORDS
        )
        size = p.require(request, "window_bytes", int, what) if "window_bytes" in request else DEFAULT_WINDOW_BYTES
        if not (1 <= records <= MAX_WINDOW_RECORDS and 1 <= size <= MAX_WINDOW_BYTES):
            raise errors.ConnectorError(
                f"agent protocol: malformed BACKUP: window of {records} records, "
                f"{size} bytes (at most {MAX_WINDOW_RECORDS}, {MAX_WINDOW_BYTES})"
            )
        self.window = _Window(records, size)
        excludes = p.require(request, "excludes", list, what) if "excludes" in request else []
        if not all(isinstance(x, str) for x in excludes):
            raise errors.ConnectorError("agent protocol: malformed BACKUP: excludes must be strings")
        self.excludes = list(excludes)
        try:
            self.chunker = Chunker(p.require(request, "chunker", dict, what), self.id_key)
        except (KeyError, TypeError, ValueError, errors.RepositoryError) as exc:
            raise errors.ConnectorError(f"agent protocol: malformed BACKUP: chunker {exc}") from None
        # the parent snapshot's files (docs/volumes.md, "Unchanged files"): never for a block
        # device, whose one image has no modification time to go by
        known = p.unpack_known(request["known"]) if "known" in request else None
        self.known = known if known and not config.block else None
        self.seq = 0
        self._next_file = 0
        self.warnings: list[str] = []
        self.stats: dict[str, int] = {
            "files": 0,
            "dirs": 0,
            "symlinks": 0,
            "bytes_read": 0,
            "chunks": 0,
            "chunks_sent": 0,
            "bytes_sent": 0,
            "files_unchanged": 0,
            "bytes_unchanged": 0,
            "files_reread": 0,
            "bytes_reread": 0,  # READ's (the session thread's; bytes_read is the walker's)
        }
        self._reading: tuple[str, int] | None = None  # READ: the file open for it (path, descriptor)
        self._walk_error: BaseException | None = None

    def run(self) -> dict[str, int]:
        walker = threading.Thread(target=self._walk_thread, name="kubekeep-agent-walk", daemon=True)
        walker.start()
        zstd = zstandard.ZstdCompressor(level=1) if self.compress else None
        try:
            while True:
                kind, payload = self.channel.recv()
                if kind == p.CREDIT:
                    self._ack(p.unpack_map(payload, "CREDIT"))
                elif kind == p.WANT:
                    self._send_chunks(p.unpack_map(payload, "WANT"), zstd)
                elif kind == p.READ:
                    self._send_range(p.unpack_map(payload, "READ"), zstd)
                elif kind == p.BYE:
                    break
                else:
                    raise errors.ConnectorError(f"agent protocol: unexpected message {kind} in a backup")
        except errors.SourceUnreachable:
            if self._walk_error is not None:  # the client hung up on the walker's error
                raise self._walk_error from None
            raise
        finally:
            with self.window.cond:
                self.window.closed = True
                self.window.cond.notify_all()
            walker.join(timeout=5)
            self._close_reading()
        self.stats["bytes_on_wire"] = self.channel.bytes_sent
        return self.stats

    # the walker ---------------------------------------------------------------------------
    def _walk_thread(self) -> None:
        # to a client that named the parent's files, entries without content go in runs (ENTRIES)
        run: list[Mapping[str, object]] | None = [] if self.known is not None else None
        try:
            for entry in self._entries():
                if entry.type == EntryType.FILE and self._unchanged(entry):
                    self.stats["files"] += 1
                    self.stats["files_unchanged"] += 1
                    self.stats["bytes_unchanged"] += entry.size
                    assert run is not None
                    run.append({**p.entry_body(entry), p.UNCHANGED: 1})
                elif entry.type == EntryType.FILE:
                    self._send_run(run)
                    self._send_file(entry)
                    continue
                else:
                    self.stats["dirs" if entry.type == EntryType.DIR else "symlinks"] += 1
                    if run is None:
                        self._send_record(p.ENTRY, p.entry_body(entry))
                        continue
                    run.append(p.entry_body(entry))
                if run is not None and len(run) >= ENTRIES_RUN:
                    self._send_run(run)
            self._send_run(run)
            self._send_record(p.DONE, {"warnings": self.warnings, "stats": self.stats}, counted=False)
        except _Closed:
            pass
        except errors.KubekeepError as exc:
            self._walk_error = exc
            try:
                self.channel.send(p.ERROR, {"message": str(exc)})
            except errors.KubekeepError:
                pass

    def _entries(self) -> Iterator[Entry]:
        source = self.config.source
        if self.config.block:
            yield Entry(
                p.BLOCK_IMAGE,
                EntryType.FILE,
                mode=0o600,
                size=_device_size(source),
                opener=lambda: open(source, "rb", buffering=0),  # noqa: SIM115 - the engine closes it
            )
            return
        importer = FsImporter(source, excludes=self.excludes)
        yield from importer.entries()
        self.warnings.extend(importer.warnings())

    def _send_run(self, run: list[Mapping[str, object]] | None) -> None:
        """Send the entries collected (ENTRIES) and empty the list."""
        if run:
            self._send_record(p.ENTRIES, {"e": list(run)})
            run.clear()

    def _unchanged(self, entry: Entry) -> bool:
        """Whether the parent snapshot holds this file as it is (same path, size and mtime)."""
        known = self.known
        if known is None:
            return False
        digest = p.known_digest(entry.path, p.volume_reuse_key(entry.size, entry.mtime_ns))
        at = bisect.bisect_left(known, digest)
        return at < len(known) and known[at] == digest

    def _send_file(self, entry: Entry) -> None:
        """FILE, CHUNKS..., FILE_END; or, for a file of one batch (most files), a single FILE
        record carrying its chunks and its end."""
        number = self._next_file
        self._next_file += 1
        self.stats["files"] += 1
        head = {"f": number, **p.entry_body(entry)}
        announced = False
        error = ""
        offset = start = 0
        ids: list[bytes] = []
        lengths: list[int] = []
        data: dict[int, bytes] = {}
        try:
            assert entry.opener is not None
            with entry.opener() as stream:
                for chunk in self.chunker.stream(stream, entry.size):
                    piece = bytes(chunk)
                    ids.append(blake3.blake3(piece, key=self.id_key).digest())
                    lengths.append(len(piece))
                    data[offset] = piece
                    offset += len(piece)
                    if len(ids) == BATCH_CHUNKS:
                        if not announced:
                            self._send_record(p.FILE, head)
                            announced = True
                        self._send_batch(number, start, ids, lengths, data)
                        ids, lengths, data, start = [], [], {}, offset
        except OSError as exc:
            error = f"read failed at byte {offset}: {exc.strerror or exc}"
            self.warnings.append(f"{entry.path}: {error}; skipped")
        self.stats["bytes_read"] += offset
        if not announced and not error:
            self.stats["chunks"] += len(ids)
            self._send_record(
                p.FILE, {**head, "o": 0, "ids": b"".join(ids), "n": lengths, "end": offset}, data=data, size=offset
            )
            return
        if not announced:
            self._send_record(p.FILE, head)
        if ids and not error:
            self._send_batch(number, start, ids, lengths, data)
        self._send_record(p.FILE_END, {"f": number, "error": error, "size": offset})

    def _send_batch(
        self, number: int, start: int, ids: list[bytes], lengths: list[int], data: dict[int, bytes]
    ) -> None:
        self.stats["chunks"] += len(ids)
        self._send_record(
            p.CHUNKS, {"f": number, "o": start, "ids": b"".join(ids), "n": lengths}, data=data, size=sum(lengths)
        )

    def _send_record(
        self,
        kind: int,
        body: Mapping[str, object],
        *,
        counted: bool = True,
        data: dict[int, bytes] | None = None,
        size: int = 0,
    ) -> None:
        w = self.window
        with w.cond:
            while (
                not w.closed
                and counted
                and (w.open_records >= w.max_records or (w.open_bytes and w.open_bytes + size > w.max_bytes))
            ):
                w.cond.wait()
            if w.closed:
                raise _Closed()
            seq = self.seq
            self.seq += 1
            if counted:
                w.open_records += 1
                w.open_bytes += size
                w.batches[seq] = (size, data or {})
        self.channel.send(kind, {"s": seq, **body})

    def _ack(self, body: p.Message) -> None:
        """``body``: a decoded CREDIT (:class:`p.Credit`)."""
        w = self.window
        with w.cond:
            for seq in body.get("s", ()):
                item = w.batches.pop(seq, None)
                if item is not None:
                    w.open_records -= 1
                    w.open_bytes -= item[0]
            w.cond.notify_all()

    # answering WANTs ----------------------------------------------------------------------
    def _send_chunks(self, want: p.Message, zstd: zstandard.ZstdCompressor | None) -> None:
        """``want``: a decoded WANT (:class:`p.Want`)."""
        request = int(want["r"])
        with self.window.cond:
            batch = self.window.batches.get(int(want["s"]))
        pieces = [batch[1].get(int(o)) for o in want["o"]] if batch is not None else [None]
        if any(piece is None for piece in pieces):
            fail: p.Fail = {"r": request, "error": "chunk is no longer buffered (acknowledged batch)"}
            self.channel.send(p.FAIL, fail)
            return
        for piece in pieces:
            assert piece is not None
            flags = 0
            payload: bytes = piece
            if zstd is not None:
                packed = zstd.compress(piece)
                if len(packed) < len(piece) * (1 - p.MIN_SAVING):
                    payload, flags = packed, p.FLAG_ZSTD
            self.channel.send(p.DATA, raw=payload, head=p.data_head(request, flags))
            self.stats["chunks_sent"] += 1
            self.stats["bytes_sent"] += len(piece)

    # answering READs (a file skipped as unchanged that kubekeep could not reuse after all) ---------
    def _send_range(self, body: p.Message, zstd: zstandard.ZstdCompressor | None) -> None:
        """``body``: a decoded READ (:class:`p.Read`), checked here."""
        request = p.require(body, "r", int, "READ")
        rel = p.require(body, "p", (str, bytes), "READ")
        path = rel.decode("utf-8", "surrogateescape") if isinstance(rel, bytes) else rel
        offset = p.require(body, "o", int, "READ")
        length = p.require(body, "n", int, "READ")
        if not (0 <= offset < 2**63 and 1 <= length <= p.MAX_READ):
            raise errors.ConnectorError(f"agent protocol: malformed READ: {length} bytes at {offset}")
        try:
            fd = self._open_for_read(path)
            if offset == 0:
                self.stats["files_reread"] += 1
            piece = os.pread(fd, length, offset)
        except OSError as exc:
            self._close_reading()
            fail: p.Fail = {"r": request, "error": f"cannot read {path!r:.200}: {exc.strerror or exc}"}
            self.channel.send(p.FAIL, fail)
            return
        self.stats["bytes_reread"] += len(piece)
        flags = 0
        payload = piece
        if zstd is not None and piece:
            packed = zstd.compress(piece)
            if len(packed) < len(piece) * (1 - p.MIN_SAVING):
                payload, flags = packed, p.FLAG_ZSTD
        self.channel.send(p.DATA, raw=payload, head=p.data_head(request, flags))

    def _open_for_read(self, path: str) -> int:
        """A descriptor of the regular file at ``path`` below the source, opened without
        following any symlink (kept open for the next READ of the same file)."""
        if self._reading is not None and self._reading[0] == path:
            return self._reading[1]
        self._close_reading()
        fd = _open_below(self.config.source, path)
        self._reading = (path, fd)
        return fd

    def _close_reading(self) -> None:
        if self._reading is not None:
            os.close(self._reading[1])
            self._reading = None


def _open_below(root: Path, path: str) -> int:
    """Open the regular file ``path`` (relative, slash-separated) below ``root``: no empty,
    ``.`` or ``..`` component, no symlink followed (``OSError`` otherwise)."""
    parts = path.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise OSError(errno.EINVAL, "not a clean relative path")
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = below
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


class _Closed(Exception):
    """The session ended while the walker waited."""


def _device_size(path: Path) -> int:
    try:
        with open(path, "rb", buffering=0) as dev:
            return dev.seek(0, os.SEEK_END)
    except OSError as exc:
        raise errors.ConnectorError(f"cannot open block device {path}: {exc.strerror}") from None


# -- restore ----------------------------------------------------------------------------------


class _Signal(enum.Enum):
    """What ends a file's queue of pieces: its end, or kubekeep abandoning it."""

    END = enum.auto()
    ABORT = enum.auto()


#: a restored file's pieces as they arrive, then a signal
_Pieces = queue.Queue[bytes | _Signal]


class _Aborted(errors.ConnectorError):
    """kubekeep abandoned the file (its stored data failed verification)."""


def _abandon(q: _Pieces) -> None:
    """Tell a file's writer to give up, without blocking on a full queue."""
    while True:
        try:
            q.put_nowait(_Signal.ABORT)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass


class RestoreSession:
    def __init__(self, config: AgentConfig, channel: p.Channel, request: p.Message) -> None:
        self.config = config
        self.channel = channel
        self.block = config.block
        self.exporter = None if self.block else FsExporter(config.source, owners=request.get("owners"))
        self.pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="kubekeep-agent-write")
        self.queues: dict[int, _Pieces] = {}
        self.left: dict[int, int] = {}  # bytes each open file may still receive (its announced size)
        self.futures: list[Future[None]] = []
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.block_written = False
        self.stats: dict[str, int] = {"files": 0, "dirs": 0, "symlinks": 0, "bytes": 0}
        self.zstd = zstandard.ZstdDecompressor()

    def run(self) -> dict[str, int]:
        if self.exporter is not None:
            self.exporter.begin(SourceInfo(f"fs:{self.config.source}", SnapshotKind.VOLUME.value), {})
        try:
            while True:
                kind, payload = self.channel.recv()
                if kind == p.WDATA:
                    number, flags, data = p.split_data(payload)
                    q = self.queues.get(number)
                    if q is None:
                        raise errors.ConnectorError(f"agent protocol: data for unknown file {number}")
                    left = self.left[number]
                    piece = p.decompress(self.zstd, data, left, exact=False) if flags & p.FLAG_ZSTD else bytes(data)
                    if len(piece) > left:
                        raise errors.ConnectorError(f"agent protocol: more data for file {number} than announced")
                    self.left[number] = left - len(piece)
                    q.put(piece)
                    continue
                body = {} if kind in (p.FINISH, p.BYE) else p.unpack_map(payload, f"message {kind}")
                if kind == p.WFILE:
                    self._open_file(int(body["f"]), p.entry_from_body(body))
                elif kind == p.WEND:
                    self.left.pop(int(body["f"]), None)
                    self.queues.pop(int(body["f"])).put(_Signal.END)
                elif kind == p.WABORT:
                    self.left.pop(int(body["f"]), None)
                    self.queues.pop(int(body["f"])).put(_Signal.ABORT)
                elif kind == p.MKDIR:
                    self._directory(p.entry_from_body(body))
                elif kind == p.SYMLINK:
                    self._symlink(p.entry_from_body(body))
                elif kind == p.FINISH:
                    self._finish()
                elif kind == p.BYE:
                    break
                else:
                    raise errors.ConnectorError(f"agent protocol: unexpected message {kind} in a restore")
        finally:
            for q in self.queues.values():
                _abandon(q)
            self.pool.shutdown(wait=True, cancel_futures=True)
            if self.exporter is not None:
                self.exporter.close()  # its directory descriptors, if the session ended early
        return self.stats

    def _directory(self, entry: Entry) -> None:
        if self.exporter is None:
            self._fail(entry.path, "a block volume takes one image file, not directories")
            return
        try:
            self.exporter.directory(entry)
            self.stats["dirs"] += 1
        except errors.KubekeepError as exc:
            self._fail(entry.path, str(exc))

    def _symlink(self, entry: Entry) -> None:
        if self.exporter is None:
            self._fail(entry.path, "a block volume takes one image file, not symlinks")
            return
        try:
            self.exporter.symlink(entry)
            self.stats["symlinks"] += 1
        except errors.KubekeepError as exc:
            self._fail(entry.path, str(exc))

    def _open_file(self, number: int, entry: Entry) -> None:
        q: _Pieces = queue.Queue(maxsize=PIECES_QUEUED)
        self.queues[number] = q
        self.left[number] = max(0, entry.size)
        self.futures.append(self.pool.submit(self._write_file, number, entry, q))

    def _write_file(self, number: int, entry: Entry, q: _Pieces) -> None:
        def pieces() -> Iterator[bytes]:
            while True:
                item = q.get()
                if item is _Signal.END:
                    return
                if item is _Signal.ABORT:
                    raise _Aborted(f"{entry.path}: abandoned by kubekeep")
                yield item

        data = pieces()
        try:
            if self.exporter is not None:
                self.exporter.file(entry, data)
            else:
                self._write_block(entry, data)
            with self.lock:
                self.stats["files"] += 1
                self.stats["bytes"] += entry.size
        except _Aborted:
            pass
        except errors.KubekeepError as exc:
            self._fail(entry.path, str(exc), number)
            for _ in data:  # drain, so the connection's reader never blocks on this file
                pass

    def _write_block(self, entry: Entry, data: Iterator[bytes]) -> None:
        with self.lock:
            if self.block_written:
                raise errors.ConnectorError("a block volume takes one image file")
            self.block_written = True
        device = self.config.source
        size = _device_size(device)
        if entry.size > size:
            raise errors.ConnectorError(f"the image ({entry.size} bytes) does not fit the block device ({size} bytes)")
        try:
            fd = os.open(device, os.O_WRONLY)
        except OSError as exc:
            raise errors.ConnectorError(f"cannot open {device} for writing: {exc.strerror}") from None
        try:
            for piece in data:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fsync(fd)
        except OSError as exc:
            raise errors.ConnectorError(f"cannot write {device}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def _fail(self, path: str, message: str, number: int | None = None) -> None:
        with self.lock:
            self.failed.append(message if message.startswith(path) else f"{path}: {message}")
        failed: p.FileFailed = {"f": number, "p": path, "error": message}
        self.channel.send(p.FILE_FAILED, failed)

    def _finish(self) -> None:
        for fut in self.futures:
            fut.result()
        self.futures.clear()
        warnings = self.exporter.finish() if self.exporter is not None else []
        if self.block and not self.block_written and not self.failed:
            warnings = [*warnings, "the snapshot held no image file for the block volume"]
        finished: p.Finished = {"warnings": warnings, "failed": self.failed, "stats": self.stats}
        self.channel.send(p.FINISHED, finished)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all addresses) or ``[V6]:PORT``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise errors.UsageError(f"bad listen address {text!r}: expected HOST:PORT or :PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def run(
    source: str,
    *,
    block: bool = False,
    write: bool = False,
    listen: str = ":8765",
    idle_timeout: float = 600.0,
    handshake_timeout: float = p.HANDSHAKE_TIMEOUT,
    secret: bytes | None = None,
) -> int:
    """Serve a directory (or a block device) to one authenticated kubekeep session, then exit.
    The secret comes from $KUBEKEEP_AGENT_SECRET (64 hex digits) unless given."""
    if secret is None:
        text = os.environ.get(p.SECRET_ENV, "")
        if not text:
            raise errors.UsageError(f"no session secret: set {p.SECRET_ENV} (64 hex digits)")
        secret = p.parse_secret(text)
    path = Path(source)
    if block:
        _device_size(path)  # fail now, not in the session
    elif not path.is_dir():
        raise errors.UsageError(f"{path} is not a directory")
    agent = Agent(
        AgentConfig(
            path,
            secret,
            parse_listen(listen),
            block=block,
            write=write,
            idle_timeout=idle_timeout,
            handshake_timeout=handshake_timeout,
        )
    )
    return agent.serve()
