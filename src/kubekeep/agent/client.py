"""kubekeep's side of an agent session: entries with pre-chunked content for a backup, an
exporter-shaped writer for a restore.

One reader thread per session takes every frame off the connection and routes it: entries to
the importer's generator, chunk lists to the file they belong to, chunk data to the request
that asked for it. It never blocks on a consumer, so answers always get through; the agent's
window (acknowledged here as records are consumed) bounds what can pile up.
"""

from __future__ import annotations

import io
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeVar, cast

import blake3
import zstandard

from kubekeep import errors
from kubekeep.agent import protocol as p
from kubekeep.engine.chunker import Chunker
from kubekeep.engine.entries import ChunkSpec, Entry, EntryType, PreChunked
from kubekeep.engine.restore import FAILURES_NAMED

Connect = Callable[[], p.Transport]

_T = TypeVar("_T")

#: seconds ``close`` waits for a session's threads
JOIN_TIMEOUT = 10.0


def tcp(host: str, port: int, *, timeout: float = 10.0) -> Connect:
    """A :data:`Connect` for a direct TCP connection (the pod's address, from inside the cluster)."""

    def connect() -> p.Transport:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise errors.SourceUnreachable(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        sock.settimeout(None)
        return p.SocketTransport(sock)

    return connect


def open_session(
    connect: Connect,
    secret: bytes,
    mode: str,
    *,
    timeout: float = 60.0,
    peer: str = "agent",
    alive: Callable[[], None] | None = None,
) -> tuple[p.Channel, p.Hello]:
    """Connect and authenticate, retrying while the agent is not listening yet; ``alive``
    (called between attempts) raises if the agent is gone for good, which ends the retries."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        channel: p.Channel | None = None
        try:
            channel = p.Channel(connect(), peer=peer)
            return channel, p.client_handshake(channel, secret, mode=mode)
        except errors.SourceUnreachable as exc:  # not listening yet (behind a tunnel: accepted, then closed)
            if channel is not None:
                channel.close()
            if alive is not None:
                alive()
            if time.monotonic() + delay > deadline:
                raise errors.SourceUnreachable(f"cannot connect to the {peer} within {timeout:.0f}s: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        except BaseException:
            if channel is not None:
                channel.close()
            raise


@dataclass
class TransferStats:
    """What crossed the connection in a backup session."""

    chunks_total: int = 0
    chunks_fetched: int = 0  # chunk data frames received
    bytes_total: int = 0  # logical bytes of all files
    bytes_fetched: int = 0  # plaintext bytes of the chunks received
    bytes_on_wire: int = 0  # bytes received, framing, compression and sealing included
    files_unchanged: int = 0  # files the agent did not read: unchanged since the parent snapshot
    bytes_unchanged: int = 0  # their size
    files_reread: int = 0  # of those, files read after all (the engine could not reuse them)
    bytes_reread: int = 0  # plaintext bytes of those files received
    agent: dict[str, object] = field(default_factory=dict)  # the agent's own counters, unchecked

    @property
    def bytes_read(self) -> int:
        """The bytes the agent says it read from the volume (-1: it did not say)."""
        value = self.agent.get("bytes_read")
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunks_total": self.chunks_total,
            "chunks_fetched": self.chunks_fetched,
            "bytes_total": self.bytes_total,
            "bytes_fetched": self.bytes_fetched,
            "bytes_on_wire": self.bytes_on_wire,
            "bytes_read": self.bytes_read,
            "files_unchanged": self.files_unchanged,
            "bytes_unchanged": self.bytes_unchanged,
            "files_reread": self.files_reread,
            "bytes_reread": self.bytes_reread,
            "agent": self.agent,
        }


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Inbox(Generic[_T]):
    """A queue from the reader thread to a consumer, or the session's failure, which every
    later ``get`` raises too."""

    def __init__(self) -> None:
        self._queue: queue.Queue[_T | _Failure] = queue.Queue()

    def put(self, item: _T) -> None:
        self._queue.put(item)

    def fail(self, failure: _Failure) -> None:
        self._queue.put(failure)

    def get(self, before_waiting: Callable[[], None]) -> _T:
        """The next item; ``before_waiting`` runs first if there is none yet (a backup sends its
        acknowledgements then: let the agent move on)."""
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            before_waiting()
            item = self._queue.get()
        if isinstance(item, _Failure):
            self._queue.put(item)  # every later reader fails the same way
            raise item.error
        return item


class _Request:
    """Chunks asked for with one WANT; the reader thread queues their frames in order."""

    def __init__(self, number: int, ids: list[bytes], lengths: dict[bytes, int]) -> None:
        self.number = number
        self.ids = ids
        self.lengths = lengths  # the announced length of each chunk: decompression stops there
        self.wanted = set(ids)
        self.queue: _Inbox[tuple[int, memoryview]] = _Inbox()  # (flags, data)
        self.got: dict[bytes, tuple[int, memoryview]] = {}
        self.taken = 0  # frames moved from the queue into ``got``
        self.remaining = len(ids)  # frames the reader still expects
        self.abandoned = False
        self.read = False  # a READ's answer (a range of a file), not chunks


@dataclass
class _Batch:
    seq: int
    offsets: dict[bytes, int]
    chunks: list[tuple[bytes, int]]
    lengths: dict[bytes, int]
    prefetch: _Request | None = None


@dataclass
class _FileEnd:
    seq: int | None  # None: part of a single-record file, acknowledged with its batch
    error: str


class RemoteBackup:
    """The entries of an agent backup session, files carrying :class:`RemoteFile` content.

    With ``spec.known`` (the repository's "do I have this blob"), the reader asks for a batch's
    missing chunks as soon as the batch arrives, so chunk data streams while the engine is
    still busy with earlier files: no round trip per file. What the engine then asks for is
    served from those answers; anything else (rare: a chunk stored meanwhile by another file
    is simply not used) costs one extra request.
    """

    def __init__(
        self,
        channel: p.Channel,
        spec: ChunkSpec,
        *,
        prefix: str = "",
        compress: bool = True,
        excludes: Iterable[str] = (),
        window_bytes: int = 96 * 1024 * 1024,
        window_records: int = 4096,
        known: bytes | None = None,
        reuse_keys: bool = False,
    ) -> None:
        """``known``: the parent snapshot's files (:func:`p.pack_known`), which the agent then
        skips where they are unchanged; ``reuse_keys``: give files their reuse key (a directory
        volume; a block device's image has no modification time to go by)."""
        self.channel = channel
        self.prefix = prefix.strip("/")
        self.stats = TransferStats()
        self.warnings: list[str] = []
        self.spec = spec
        self._known = spec.known
        self._skipping = known is not None
        self._reuse_keys = reuse_keys or self._skipping
        #: the longest chunk the agent may announce (what a compressed chunk may decompress to)
        self.max_chunk = min(p.MAX_FRAME, int(spec.params.get("max", p.MAX_FRAME)))
        #: ``(record to acknowledge, entry)``, then None when the walk is done
        self._entries: _Inbox[tuple[int | None, Entry | list[Entry]] | None] = _Inbox()
        self._files: dict[int, RemoteFile] = {}
        self._requests: dict[int, _Request] = {}
        self._next_request = 0
        self._lock = threading.Lock()
        self._acks: list[int] = []
        self._ack_every = max(1, min(256, window_records // 8))
        self._error: BaseException | None = None
        self._closed = False
        #: files handed to the consumer whose chunk lists it has not read to the end
        self._unread = 0
        self._all_read = threading.Condition(self._lock)
        self._dctx = threading.local()
        self._outbox: queue.Queue[tuple[int, p.Want] | None] = queue.Queue()  # None: stop
        request: p.BackupRequestKnown = {
            "chunker": spec.params,
            "id_key": spec.id_key,
            "compress": "zstd" if compress else "none",
            "excludes": list(excludes),
            "window_bytes": window_bytes,
            "window_records": window_records,
        }
        if known is not None:
            request["known"] = known
        channel.send(p.BACKUP, request)
        self._reader = threading.Thread(target=self._read, name="kubekeep-agent-reader", daemon=True)
        self._reader.start()
        # the reader never sends (a send can block, and then nothing would read the answers)
        self._sender = threading.Thread(target=self._send_outbox, name="kubekeep-agent-sender", daemon=True)
        self._sender.start()

    # -- consumer side -----------------------------------------------------------------------
    def entries(self) -> Iterator[Entry]:
        """The walk's entries; returns only once every file it yielded has been read to the end
        (the engine reads files on worker threads while it asks for later entries: whoever ends
        the session after this returns must not cut a read short)."""
        while True:
            item = self._entries.get(self.flush_acks)
            if item is None:
                break
            seq, entry = item
            if seq is not None:
                self.ack(seq)
            if isinstance(entry, list):
                yield from entry
            else:
                yield entry
        self.flush_acks()
        with self._all_read:
            while self._unread and self._error is None:
                self._all_read.wait()
        if self._error is not None:
            raise self._error

    def _file_read(self) -> None:
        with self._all_read:
            self._unread -= 1
            if not self._unread:  # only entries() waits, for zero
                self._all_read.notify_all()

    def ack(self, seq: int) -> None:
        with self._lock:
            self._acks.append(seq)
            full = len(self._acks) >= self._ack_every
        if full:
            self.flush_acks()

    def flush_acks(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
        if acks and not self._closed:
            credit: p.Credit = {"s": acks}
            self.channel.send(p.CREDIT, credit)

    def _want(self, batch: _Batch, ids: list[bytes]) -> _Request:
        """Register a request; the caller sends its WANT."""
        with self._lock:
            req = _Request(self._next_request, ids, batch.lengths)
            self._next_request += 1
            self._requests[req.number] = req
        return req

    def _want_body(self, batch: _Batch, req: _Request) -> p.Want:
        return {"r": req.number, "s": batch.seq, "o": [batch.offsets[i] for i in req.ids]}

    def prefetch(self, batch: _Batch) -> None:
        """Reader thread: ask at once for the batch's chunks the repository lacks."""
        if self._known is None:
            return
        missing = list(dict.fromkeys(i for i, _ in batch.chunks if not self._known(i)))
        if missing:
            batch.prefetch = self._want(batch, missing)
            self._outbox.put((p.WANT, self._want_body(batch, batch.prefetch)))

    def fetch(self, batch: _Batch, ids: list[bytes]) -> Iterator[bytes]:
        pre = batch.prefetch
        extra = [i for i in ids if pre is None or i not in pre.wanted]
        late = self._want(batch, extra) if extra else None
        if late is not None:
            self.channel.send(p.WANT, self._want_body(batch, late))
        for blob_id in ids:
            req = pre if pre is not None and blob_id in pre.wanted else late
            assert req is not None
            yield self._take(req, blob_id)
        if late is not None:
            self._drop(late)

    def read_range(self, path: str | bytes, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` of the volume's file ``path`` (a file the agent
        skipped as unchanged); empty at its end. Any thread."""
        length = max(1, min(length, p.MAX_READ))
        with self._lock:
            req = _Request(self._next_request, [b""], {b"": length})
            req.read = True
            self._next_request += 1
            self._requests[req.number] = req
        body: p.Read = {"r": req.number, "p": path, "o": offset, "n": length}
        self.channel.send(p.READ, body)
        try:
            flags, data = req.queue.get(self.flush_acks)
        finally:
            req.remaining = 0
            self._drop(req)
        if not flags & p.FLAG_ZSTD:
            piece = bytes(data)
        else:
            dctx = getattr(self._dctx, "d", None)
            if dctx is None:
                dctx = self._dctx.d = zstandard.ZstdDecompressor()
            piece = p.decompress(dctx, data, length, exact=False)
        if len(piece) > length:
            raise errors.ConnectorError(f"agent protocol: {len(piece)} bytes for a READ of {length}")
        with self._lock:
            self.stats.bytes_reread += len(piece)
        return piece

    def _take(self, req: _Request, blob_id: bytes) -> bytes:
        while blob_id not in req.got:
            if req.taken >= len(req.ids):
                raise errors.ConnectorError("agent protocol: a chunk was asked for twice in one batch")
            req.got[req.ids[req.taken]] = req.queue.get(self.flush_acks)
            req.taken += 1
        flags, data = req.got.pop(blob_id)
        if not flags & p.FLAG_ZSTD:
            return bytes(data)
        dctx = getattr(self._dctx, "d", None)
        if dctx is None:
            dctx = self._dctx.d = zstandard.ZstdDecompressor()
        return p.decompress(dctx, data, req.lengths[blob_id])

    def _drop(self, req: _Request | None) -> None:
        """The batch is done: frames still to come for ``req`` are thrown away."""
        if req is None:
            return
        with self._lock:
            req.abandoned = True
            req.got.clear()
            if req.remaining <= 0:
                self._requests.pop(req.number, None)

    # -- the reader thread -------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                kind, payload = self.channel.recv()
                if kind == p.DATA:
                    self._data(payload)
                    continue
                body = p.unpack_map(payload, f"message {kind}")
                if kind == p.CHUNKS:
                    self._files[int(body["f"])].add_batch(body)
                elif kind == p.FILE:
                    self._file(body)
                elif kind == p.FILE_END:
                    rf = self._files.pop(int(body["f"]))
                    rf.queue.put(_FileEnd(int(body["s"]), str(body.get("error") or "")))
                elif kind == p.ENTRY:
                    entry = self._entry(body)
                    if entry.type == EntryType.FILE:
                        self._unchanged(entry, body)
                    self._entries.put((int(body["s"]), entry))
                elif kind == p.ENTRIES:
                    self._entries.put((int(body["s"]), self._run(body)))
                elif kind == p.FAIL:
                    with self._lock:
                        req = self._requests.get(int(body["r"]))
                        if req is not None and req.abandoned:
                            self._requests.pop(req.number, None)
                            req = None
                    if req is not None:
                        req.queue.fail(
                            _Failure(errors.ConnectorError(f"the agent could not send chunks: {body.get('error')}"))
                        )
                elif kind == p.DONE:
                    self.warnings.extend(str(w) for w in body.get("warnings", ()))
                    self.stats.agent = dict(body.get("stats") or {})
                    self._entries.put(None)
                elif kind == p.ERROR:
                    raise errors.ConnectorError(f"the agent failed: {p.error_message(payload)}")
                else:
                    raise errors.ConnectorError(f"agent protocol: unexpected message {kind} in a backup")
        except errors.KubekeepError as exc:
            self._fail(exc if not self._closed else errors.ConnectorError("the agent session was closed"))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumers
            self._fail(errors.ConnectorError(f"agent session failed: {exc!r}"))

    def _data(self, payload: memoryview) -> None:
        number, flags, data = p.split_data(payload)
        with self._lock:
            req = self._requests.get(number)
            if req is None:
                raise errors.ConnectorError(f"agent protocol: data for unknown request {number}")
            req.remaining -= 1
            if req.abandoned and req.remaining <= 0:
                self._requests.pop(number, None)
            if not req.read:
                self.stats.chunks_fetched += 1
                self.stats.bytes_fetched += _content_size(data) if flags & p.FLAG_ZSTD else len(data)
        if not req.abandoned:
            req.queue.put((flags, data))

    def _send_outbox(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            try:
                self.channel.send(*item)
            except errors.KubekeepError:
                return  # the reader sees the broken connection and fails the consumers

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        failure = _Failure(exc)
        self._entries.fail(failure)
        with self._lock:
            self._all_read.notify_all()
            targets: list[_Inbox[Any]] = [
                *(r.queue for r in self._requests.values()),
                *(f.queue for f in self._files.values()),
            ]
        for q in targets:
            q.fail(failure)

    def _entry(self, body: p.Message) -> Entry:
        entry = p.entry_from_body(body)
        if self.prefix:
            entry.path = f"{self.prefix}/{entry.path}"
        return entry

    def _run(self, body: p.Message) -> list[Entry]:
        """The entries of an ENTRIES record (only to a client that named the parent's files)."""
        if not self._skipping:
            raise errors.ConnectorError("agent protocol: ENTRIES to a client that did not name the parent's files")
        bodies = p.require(body, "e", list, "ENTRIES")
        if not 1 <= len(bodies) <= p.MAX_ENTRIES:
            raise errors.ConnectorError(f"agent protocol: malformed ENTRIES: {len(bodies)} entries")
        run = []
        for item in bodies:
            if not isinstance(item, dict):
                raise errors.ConnectorError(f"agent protocol: malformed ENTRIES: a {type(item).__name__}, not a map")
            entry = self._entry(item)
            if entry.type == EntryType.FILE:
                self._unchanged(entry, item)
            run.append(entry)
        return run

    def _unchanged(self, entry: Entry, body: p.Message) -> None:
        """A file the agent skipped as unchanged since the parent snapshot: the engine reuses the
        parent's chunks, or has the file read after all (:class:`SkippedFile`)."""
        if not self._skipping or body.get(p.UNCHANGED) != 1:
            raise errors.ConnectorError(
                f"agent protocol: file {entry.path!r:.200} sent without content"
                + ("" if self._skipping else " (no files were named unchanged)")
            )
        entry.reuse_key = p.volume_reuse_key(entry.size, entry.mtime_ns)
        entry.chunks = SkippedFile(self, entry.path, body["p"], entry.size)
        with self._lock:
            self._unread += 1
            self.stats.files_unchanged += 1
            self.stats.bytes_unchanged += entry.size
        self.stats.bytes_total += entry.size

    def _file(self, body: p.Message) -> None:
        entry = self._entry(body)
        if self._reuse_keys:
            entry.reuse_key = p.volume_reuse_key(entry.size, entry.mtime_ns)
        rf = RemoteFile(self, entry.path)
        entry.chunks = rf
        with self._lock:
            self._unread += 1
        self.stats.bytes_total += entry.size
        if "ids" in body:  # the whole file in one record: acknowledged once its chunks are dealt with
            rf.add_batch(body)
            rf.queue.put(_FileEnd(None, ""))
            self._entries.put((None, entry))
            return
        self._files[int(body["f"])] = rf
        self._entries.put((int(body["s"]), entry))

    def close(self) -> None:
        """End the session (the agent exits after it); safe to call twice."""
        if self._closed:
            return
        self._outbox.put(None)
        self._sender.join(timeout=JOIN_TIMEOUT)
        try:
            if self._error is None:
                self.flush_acks()
                self.channel.send(p.BYE)
        except errors.KubekeepError:
            pass
        self._closed = True
        self.stats.bytes_on_wire = self.channel.bytes_received
        self.channel.close()
        self._reader.join(timeout=JOIN_TIMEOUT)


def _content_size(data: memoryview) -> int:
    """The size a compressed chunk claims (counted, never trusted: decompression checks it)."""
    try:
        return max(0, zstandard.frame_content_size(data))
    except zstandard.ZstdError:
        return 0


class RemoteFile(PreChunked):
    """One file of a backup session: chunk lists as the agent computes them, data on request."""

    def __init__(self, session: RemoteBackup, path: str) -> None:
        self.session = session
        self.path = path
        self.queue: _Inbox[_Batch | _FileEnd] = _Inbox()
        self._current: _Batch | None = None

    def add_batch(self, body: p.Message) -> None:
        """Reader thread: a batch of chunk ids arrived; ask for what is missing right away."""
        ids_blob = p.require(body, "ids", bytes, "chunk list")
        lengths: list[int] = p.require(body, "n", list, "chunk list")  # each checked below
        longest = self.session.max_chunk
        if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= longest for n in lengths):
            raise errors.ConnectorError(f"agent protocol: malformed chunk list: a length that is not 1 to {longest}")
        if len(ids_blob) != p.ID_SIZE * len(lengths):
            raise errors.ConnectorError("agent protocol: chunk list and lengths disagree")
        offset = p.require(body, "o", int, "chunk list")
        offsets: dict[bytes, int] = {}
        chunks: list[tuple[bytes, int]] = []
        for i, length in enumerate(lengths):
            blob_id = ids_blob[p.ID_SIZE * i : p.ID_SIZE * (i + 1)]
            offsets.setdefault(blob_id, offset)
            chunks.append((blob_id, length))
            offset += length
        batch = _Batch(int(body["s"]), offsets, chunks, dict(chunks))
        self.session.prefetch(batch)
        self.queue.put(batch)

    def batches(self) -> Iterator[list[tuple[bytes, int]]]:
        session = self.session
        try:
            while True:
                item = self.queue.get(session.flush_acks)
                if isinstance(item, _FileEnd):
                    if item.seq is not None:
                        session.ack(item.seq)
                    if item.error:
                        raise OSError(f"agent: {item.error}")
                    return
                self._current = item
                with session._lock:
                    session.stats.chunks_total += len(item.chunks)
                try:
                    yield item.chunks
                finally:
                    self._current = None
                    session._drop(item.prefetch)
                session.ack(item.seq)
        finally:
            session._file_read()

    def fetch(self, ids: list[bytes]) -> Iterator[bytes]:
        if self._current is None:
            raise errors.ConnectorError(f"{self.path}: chunks fetched outside their batch")
        return self.session.fetch(self._current, ids)


class SkippedFile(PreChunked):
    """A file the agent did not read (unchanged since the parent snapshot). The engine reuses
    the parent's copy (:meth:`skip`); if it cannot (the parent's copy turned out damaged, or
    differs after all), :meth:`batches` reads the file through READ requests and chunks it
    here, with the run's chunking: the same chunks the agent would have cut."""

    reusable = True

    def __init__(self, session: RemoteBackup, path: str, wire_path: object, size: int) -> None:
        self.session = session
        self.path = path
        self.wire_path: str | bytes = wire_path if isinstance(wire_path, bytes) else str(wire_path)
        self.size = size
        self._data: dict[bytes, bytes] = {}
        self._done = False

    def _finished(self) -> None:
        if not self._done:
            self._done = True
            self.session._file_read()

    def skip(self) -> None:
        self._finished()

    def batches(self) -> Iterator[list[tuple[bytes, int]]]:
        session = self.session
        try:
            with session._lock:
                session.stats.files_reread += 1
            chunker = Chunker(session.spec.params, session.spec.id_key)
            stream = _RangeReader(session, self.wire_path)
            batch: list[tuple[bytes, int]] = []
            for chunk in chunker.stream(cast(IO[bytes], stream), self.size):
                piece = bytes(chunk)
                blob_id = blake3.blake3(piece, key=session.spec.id_key).digest()
                self._data[blob_id] = piece
                batch.append((blob_id, len(piece)))
                if len(batch) == SKIPPED_BATCH:
                    yield batch
                    batch = []
                    self._data.clear()
            if batch:
                yield batch
        finally:
            self._data.clear()
            self._finished()

    def fetch(self, ids: list[bytes]) -> Iterator[bytes]:
        for blob_id in ids:
            data = self._data.get(blob_id)
            if data is None:
                raise errors.ConnectorError(f"{self.path}: chunks fetched outside their batch")
            yield data


#: chunks per batch of a file read after all (its data is held until the batch is stored)
SKIPPED_BATCH = 8


class _RangeReader(io.RawIOBase):
    """A file the agent skipped, read sequentially through READ requests."""

    def __init__(self, session: RemoteBackup, path: str | bytes) -> None:
        self.session = session
        self.path = path
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not view:
            return 0
        piece = self.session.read_range(self.path, self.offset, len(view))
        view[: len(piece)] = piece
        self.offset += len(piece)
        return len(piece)


class RemoteRestore:
    """Writes entries through an agent restore session; shaped like an exporter."""

    def __init__(self, channel: p.Channel, *, writers: int, compress: bool = False, owners: bool | None = None) -> None:
        self.channel = channel
        self.compress = compress
        self._slots = threading.BoundedSemaphore(max(1, writers))
        self._lock = threading.Lock()
        self._next = 0
        self._failed: list[str] = []
        self._finished: queue.Queue[p.Message | _Failure] = queue.Queue()  # the decoded FINISHED
        self._error: BaseException | None = None
        self._closed = False
        self._cctx = threading.local()
        self.bytes_sent = 0
        request: p.RestoreRequest = {"owners": owners}
        channel.send(p.RESTORE, request)
        self._reader = threading.Thread(target=self._read, name="kubekeep-agent-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                kind, payload = self.channel.recv()
                body = p.unpack_map(payload, f"message {kind}")
                if kind == p.FILE_FAILED:
                    with self._lock:
                        self._failed.append(f"{body.get('p')}: {body.get('error')}")
                elif kind == p.FINISHED:
                    self._finished.put(body)
                elif kind == p.ERROR:
                    raise errors.ConnectorError(f"the agent failed: {p.error_message(payload)}")
                else:
                    raise errors.ConnectorError(f"agent protocol: unexpected message {kind} in a restore")
        except errors.KubekeepError as exc:
            self._error = exc if not self._closed else errors.ConnectorError("the agent session was closed")
            self._finished.put(_Failure(self._error))
        except Exception as exc:  # noqa: BLE001 - a malformed answer fails the restore, never hangs it
            self._error = errors.ConnectorError(f"agent session failed: {exc!r}")
            self._finished.put(_Failure(self._error))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def directory(self, entry: Entry) -> None:
        self._check()
        self.channel.send(p.MKDIR, p.entry_body(entry))

    def symlink(self, entry: Entry) -> None:
        self._check()
        self.channel.send(p.SYMLINK, p.entry_body(entry))

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        self._check()
        with self._slots:
            with self._lock:
                number = self._next
                self._next += 1
            self.channel.send(p.WFILE, {"f": number, **p.entry_body(entry)})
            try:
                for piece in data:
                    self._send_piece(number, piece)
            except BaseException:
                self.channel.send(p.WABORT, p.FileNumber(f=number))
                raise
            self.channel.send(p.WEND, p.FileNumber(f=number))

    def _send_piece(self, number: int, piece: bytes) -> None:
        flags = 0
        payload: bytes = piece
        if self.compress:
            cctx = getattr(self._cctx, "c", None)
            if cctx is None:
                cctx = self._cctx.c = zstandard.ZstdCompressor(level=1)
            packed = cctx.compress(piece)
            if len(packed) < len(piece) * (1 - p.MIN_SAVING):
                payload, flags = packed, p.FLAG_ZSTD
        self.channel.send(p.WDATA, raw=payload, head=p.data_head(number, flags))
        with self._lock:
            self.bytes_sent += len(payload)

    def finish(self) -> tuple[list[str], dict[str, object]]:
        """Wait until the agent wrote everything; its warnings and counters. Raises if any
        entry could not be written."""
        self._check()
        self.channel.send(p.FINISH)
        result = self._finished.get()
        if isinstance(result, _Failure):
            raise result.error
        failed = [str(f) for f in result.get("failed", ())]
        if failed:
            named = FAILURES_NAMED
            shown = "; ".join(failed[:named]) + (f"; and {len(failed) - named} more" if len(failed) > named else "")
            raise errors.ConnectorError(f"the agent could not write {len(failed)} entries: {shown}")
        return [str(w) for w in result.get("warnings", ())], dict(result.get("stats") or {})

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._error is None:
                self.channel.send(p.BYE)
        except errors.KubekeepError:
            pass
        self._closed = True
        self.channel.close()
        self._reader.join(timeout=JOIN_TIMEOUT)
