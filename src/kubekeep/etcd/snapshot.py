"""Verifying reader for etcd's Maintenance.Snapshot response stream.

etcd (3.4 to 3.6) sends the bbolt database in ``SnapshotResponse`` messages whose
``remaining_bytes`` counts the database bytes still to come (so the first message announces
the total), then one more message whose blob is the SHA-256 of the database, then ends the
stream. ``etcdctl snapshot save`` writes every blob, trailer included, to the file, and
``etcdutl snapshot restore`` checks and strips that trailer. :class:`SnapshotStream` yields the
same bytes, hashing as they pass, and at the end of the stream verifies that the announced
length arrived, that exactly 32 trailer bytes followed, and that they equal the hash.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from kubekeep.errors import IntegrityError

if TYPE_CHECKING:
    from typing_extensions import Buffer

HASH_SIZE = 32

ErrorHook = Callable[[BaseException, int, "int | None"], Exception]


class SnapshotMessage(Protocol):
    """What :class:`SnapshotStream` reads of a ``SnapshotResponse`` (``version`` if it has one)."""

    @property
    def remaining_bytes(self) -> int: ...

    @property
    def blob(self) -> bytes: ...


def _default_hook(exc: BaseException, received: int, expected: int | None) -> Exception:
    total = "?" if expected is None else str(expected)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return IntegrityError(f"etcd snapshot stream broke after {received} of {total} bytes: {detail}")


class SnapshotStream(io.RawIOBase):
    """A read-once binary stream over ``SnapshotResponse``-like messages.

    ``responses`` yields objects with ``remaining_bytes`` and ``blob`` (and optionally
    ``version``). ``read``/``readinto`` fill the requested size unless the stream ends; the
    final read raises :class:`IntegrityError` instead of returning ``b""`` when the stream was
    truncated or the SHA-256 trailer does not match. ``error_hook(exc, received, expected)``
    turns an exception raised by ``responses`` into the one to raise (default: IntegrityError).
    ``cancel`` is called by :meth:`close` when the stream was not read to its end.
    """

    def __init__(
        self,
        responses: Iterable[SnapshotMessage],
        *,
        source: str = "etcd",
        cancel: Callable[[], object] | None = None,
        error_hook: ErrorHook | None = None,
    ) -> None:
        super().__init__()
        self._it: Iterator[SnapshotMessage] = iter(responses)
        self._source = source
        self._cancel = cancel
        self._hook = error_hook or _default_hook
        self._hash = hashlib.sha256()
        self._db_size: int | None = None
        self._db_seen = 0
        self._trailer = bytearray()
        self._buf = memoryview(b"")
        self._pos = 0
        self._done = False  # the response iterator is exhausted and verified
        self._failed: Exception | None = None
        self._digest: bytes | None = None
        self.version = ""  # storage version, sent by etcd >= 3.6
        self.messages = 0

    # -- properties -------------------------------------------------------------------------

    @property
    def db_size(self) -> int | None:
        """Database bytes announced by the first message (None before it arrived)."""
        return self._db_size

    @property
    def size(self) -> int | None:
        """Total stream length: database plus the 32-byte trailer (None before the first message)."""
        return None if self._db_size is None else self._db_size + HASH_SIZE

    @property
    def bytes_read(self) -> int:
        """Bytes received from etcd so far (database and trailer)."""
        return self._db_seen + len(self._trailer)

    @property
    def sha256(self) -> str | None:
        """Hex SHA-256 of the database, once the stream ended and verified."""
        return self._digest.hex() if self._digest is not None else None

    @property
    def complete(self) -> bool:
        return self._done

    def start(self) -> SnapshotStream:
        """Wait for the first message (which announces the size) and keep it for the first read.

        A failure here happened before any data arrived (member gone, snapshot refused). Once
        the first message is in, any later failure is a broken stream, even when gRPC drops
        messages it had buffered but not yet handed out when the connection died.
        """
        if self._db_size is None:
            self._next()
        return self

    # -- io.RawIOBase -----------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:
        out = memoryview(b).cast("B")
        want = len(out)
        n = 0
        while n < want:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._next():
                    break
                continue
            k = min(avail, want - n)
            out[n : n + k] = self._buf[self._pos : self._pos + k]
            self._pos += k
            n += k
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        buf = bytearray(size)
        n = self.readinto(buf)
        del buf[n:]
        return bytes(buf)

    def readall(self) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = self.read(1 << 20)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def chunks(self) -> Iterator[bytes]:
        """Yield the stream as it arrives, one piece per message (trailer included)."""
        while True:
            if self._pos < len(self._buf):
                piece = bytes(self._buf[self._pos :])
                self._pos = len(self._buf)
                yield piece
            elif not self._next():
                return

    def close(self) -> None:
        if not self.closed and not self._done and self._cancel is not None:
            try:
                self._cancel()
            except Exception:  # noqa: BLE001 - best effort on an abandoned stream
                pass
        super().close()

    # -- internals --------------------------------------------------------------------------

    def _next(self) -> bool:
        """Load the next message into the buffer; False at the verified end of the stream."""
        if self._failed is not None:
            raise self._failed
        if self._done:
            return False
        if self.closed:
            raise ValueError("read from a closed etcd snapshot stream")
        try:
            resp = next(self._it)
        except StopIteration:
            self._finish()
            return False
        except Exception as exc:
            self._failed = self._hook(exc, self.bytes_read, self.size)
            raise self._failed from exc
        try:
            self._take(resp)
        except IntegrityError as exc:
            self._failed = exc
            raise
        return True

    def _fail(self, msg: str) -> IntegrityError:
        self._failed = IntegrityError(f"{self._source}: {msg}")
        return self._failed

    def _take(self, resp: SnapshotMessage) -> None:
        blob = resp.blob
        remaining = int(resp.remaining_bytes)
        self.messages += 1
        if self._db_size is None:
            self._db_size = remaining + len(blob)
            self.version = getattr(resp, "version", "") or ""
        db_left = self._db_size - self._db_seen
        data = blob[:db_left] if len(blob) > db_left else blob
        rest = blob[len(data) :]
        if data:
            self._hash.update(data)
            self._db_seen += len(data)
            if remaining != self._db_size - self._db_seen:
                raise self._fail(
                    f"snapshot stream is inconsistent: {remaining} bytes announced as remaining "
                    f"after {self._db_seen} of {self._db_size}"
                )
        if rest:
            if len(self._trailer) + len(rest) > HASH_SIZE:
                raise self._fail(
                    f"snapshot stream carries more than the {self._db_size} announced bytes plus a 32-byte SHA-256"
                )
            self._trailer += rest
        self._buf = memoryview(blob)
        self._pos = 0

    def _finish(self) -> None:
        if self._db_size is None:
            raise self._fail("snapshot stream ended before any data arrived")
        if self._db_seen < self._db_size:
            raise self._fail(f"snapshot stream truncated: received {self._db_seen} of {self._db_size} bytes")
        if len(self._trailer) != HASH_SIZE:
            raise self._fail(
                f"snapshot stream ended without its SHA-256 trailer "
                f"({len(self._trailer)} of 32 bytes after the database)"
            )
        digest = self._hash.digest()
        if bytes(self._trailer) != digest:
            raise self._fail(
                f"snapshot SHA-256 mismatch: etcd sent {bytes(self._trailer).hex()[:16]}..., "
                f"the received data hashes to {digest.hex()[:16]}..."
            )
        self._digest = digest
        self._done = True
