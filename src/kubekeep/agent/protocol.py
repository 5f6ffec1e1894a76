"""The agent wire protocol: framing, mutual authentication and session encryption.

One TCP connection (direct, or tunnelled through the API server's port-forward) carries
length-prefixed frames. The agent speaks first::

    agent  -> HELLO    {v, nonce_a, mode, source}              plaintext msgpack
    client -> AUTH     {nonce_c, mac_c = HMAC(secret, "client" | nonce_a | nonce_c)}
    agent  -> WELCOME  {mac_a = HMAC(secret, "agent" | nonce_a | nonce_c)}

Both sides prove they hold the run's 32-byte secret without sending it, and every later frame
is sealed with AES-256-GCM under a key per direction derived from the secret and both nonces
(HKDF-SHA256), with the frame counter as nonce: a frame cannot be read, altered, replayed or
reordered by anyone on the path. docs/volumes.md describes the messages of a session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, Protocol

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kubekeep import errors
from kubekeep.connectors.base import Entry, EntryType

VERSION = 1
DEFAULT_PORT = 8765
#: the environment variable the agent reads the run's secret from (64 hex digits)
SECRET_ENV = "KUBEKEEP_AGENT_SECRET"
SECRET_SIZE = 32
NONCE_SIZE = 32
#: a frame larger than this is a protocol error (the largest chunk is 8 MiB)
MAX_FRAME = 64 * 1024 * 1024

# message types ----------------------------------------------------------------------------
HELLO, AUTH, WELCOME, ERROR = 1, 2, 3, 4
BACKUP, CREDIT, ENTRY, FILE, CHUNKS, FILE_END, DONE, WANT, DATA, FAIL, BYE = range(10, 21)
RESTORE, MKDIR, SYMLINK, WFILE, WDATA, WEND, WABORT, FINISH, FILE_FAILED, FINISHED = range(30, 40)

#: flag bit of a DATA/WDATA frame: the payload is zstd-compressed
FLAG_ZSTD = 1

_LEN = struct.Struct(">I")
_DATA_HEAD = struct.Struct(">QB")     # request or file number, flags


class Transport(Protocol):
    """A byte stream: a socket, or a port-forward tunnel with the same three methods."""

    def sendall(self, data: bytes | memoryview, /) -> None: ...

    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int: ...

    def close(self) -> None: ...


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise errors.ConnectorError(f"agent protocol: malformed message ({exc})") from None


def data_head(number: int, flags: int) -> bytes:
    return _DATA_HEAD.pack(number, flags)


def split_data(payload: memoryview) -> tuple[int, int, memoryview]:
    number, flags = _DATA_HEAD.unpack_from(payload)
    return number, flags, payload[_DATA_HEAD.size:]


def entry_body(entry: Entry) -> dict[str, Any]:
    """An entry's metadata as sent in ENTRY/FILE (backup) and MKDIR/SYMLINK/WFILE (restore)."""
    body: dict[str, Any] = {"p": _wire_name(entry.path), "t": entry.type.value, "m": entry.mode, "u": entry.uid,
                            "g": entry.gid, "mt": entry.mtime_ns}
    if entry.type == EntryType.FILE:
        body["z"] = entry.size
    elif entry.type == EntryType.SYMLINK:
        body["l"] = _wire_name(entry.target)
    return body


def _wire_name(name: str) -> str | bytes:
    """A path or target as sent: text, or its bytes when they are not UTF-8 (surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape")
    return name


def _name(value: object) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def entry_from_body(body: dict[str, Any]) -> Entry:
    try:
        return Entry(path=_name(body["p"]), type=EntryType(body["t"]), mode=int(body.get("m", 0o644)),
                     uid=int(body.get("u", 0)), gid=int(body.get("g", 0)), mtime_ns=int(body.get("mt", 0)),
                     size=int(body.get("z", 0)), target=_name(body.get("l", "")))
    except (KeyError, ValueError, TypeError) as exc:
        raise errors.ConnectorError(f"agent protocol: malformed entry ({exc})") from None


def mac(secret: bytes, role: bytes, nonce_a: bytes, nonce_c: bytes) -> bytes:
    return hmac.new(secret, b"kubekeep-agent-v1 " + role + nonce_a + nonce_c, hashlib.sha256).digest()


def session_keys(secret: bytes, nonce_a: bytes, nonce_c: bytes) -> tuple[bytes, bytes]:
    """``(client-to-agent key, agent-to-client key)``."""
    def derive(info: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 32, nonce_a + nonce_c, b"kubekeep-agent-v1 " + info).derive(secret)
    return derive(b"c2a"), derive(b"a2c")


def parse_secret(text: str) -> bytes:
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        raise errors.UsageError("the agent secret must be 64 hexadecimal digits") from None
    if len(secret) != SECRET_SIZE:
        raise errors.UsageError("the agent secret must be 64 hexadecimal digits")
    return secret


def new_secret() -> bytes:
    return os.urandom(SECRET_SIZE)


class Channel:
    """Frames over a transport; sealed once :meth:`secure` was called. ``send`` is thread-safe;
    ``recv`` belongs to one reader thread."""

    def __init__(self, transport: Transport, *, peer: str = "peer") -> None:
        self.transport = transport
        self.peer = peer
        self._send_lock = threading.Lock()
        self._buf = bytearray(1024 * 1024)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._seal: AESGCM | None = None
        self._open: AESGCM | None = None
        self._sent = 0
        self._received = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def secure(self, send_key: bytes, recv_key: bytes) -> None:
        self._seal, self._open = AESGCM(send_key), AESGCM(recv_key)

    # -- sending ------------------------------------------------------------------------------
    def send(self, kind: int, body: Any = None, *, raw: bytes | memoryview | None = None,
             head: bytes = b"") -> None:
        """Send a message: ``body`` msgpack-encoded, or ``head + raw`` as is (DATA frames)."""
        payload = bytes([kind]) + head + raw if raw is not None else bytes([kind]) + pack(body)
        with self._send_lock:
            if self._seal is not None:
                payload = self._seal.encrypt(self._nonce(self._sent), payload, None)
                self._sent += 1
            prefix = _LEN.pack(len(payload))
            try:
                if len(payload) < 65536:
                    self.transport.sendall(prefix + payload)
                else:  # no copy of a large payload just to prepend four bytes
                    self.transport.sendall(prefix)
                    self.transport.sendall(payload)
            except OSError as exc:
                raise errors.SourceUnreachable(f"connection to the {self.peer} lost: {exc.strerror or exc}") from None
            self.bytes_sent += len(payload) + _LEN.size

    @staticmethod
    def _nonce(counter: int) -> bytes:
        return b"\0\0\0\0" + counter.to_bytes(8, "big")

    # -- receiving ----------------------------------------------------------------------------
    def _fill(self, need: int) -> None:
        """Make at least ``need`` unread bytes available in the buffer."""
        if self._end - self._start >= need:
            return
        if need > len(self._buf):
            grown = bytearray(max(need, 2 * len(self._buf)))
            grown[: self._end - self._start] = self._view[self._start:self._end]
            self._buf, self._view = grown, memoryview(grown)
            self._end -= self._start
            self._start = 0
        elif len(self._buf) - self._start < need:
            size = self._end - self._start
            self._view[:size] = self._view[self._start:self._end]
            self._start, self._end = 0, size
        while self._end - self._start < need:
            try:
                n = self.transport.recv_into(self._view[self._end:])
            except OSError as exc:
                raise errors.SourceUnreachable(f"connection to the {self.peer} lost: {exc.strerror or exc}") from None
            if n == 0:
                raise errors.SourceUnreachable(f"the {self.peer} closed the connection")
            self._end += n

    def recv(self) -> tuple[int, memoryview]:
        """The next message: its type and payload (a view of a buffer of its own)."""
        self._fill(_LEN.size)
        (length,) = _LEN.unpack_from(self._view, self._start)
        if length == 0 or length > MAX_FRAME:
            raise errors.ConnectorError(f"agent protocol: bad frame length {length} from the {self.peer}")
        self._start += _LEN.size
        self._fill(length)
        frame = self._view[self._start:self._start + length]
        self._start += length
        self.bytes_received += length + _LEN.size
        if self._open is not None:
            try:
                plain = self._open.decrypt(self._nonce(self._received), frame, None)
            except InvalidTag:
                raise errors.ConnectorError(f"agent protocol: a frame from the {self.peer} failed "
                                            "authentication") from None
            self._received += 1
            frame = memoryview(plain)
        else:
            frame = memoryview(bytes(frame))  # handshake only: small, and independent of the buffer
        return frame[0], frame[1:]

    def expect(self, kind: int) -> Any:
        """Receive one message of type ``kind`` and return its decoded body."""
        got, payload = self.recv()
        if got == ERROR:
            raise errors.ConnectorError(f"the {self.peer} reported: {unpack(payload).get('message', '?')}")
        if got != kind:
            raise errors.ConnectorError(f"agent protocol: expected message {kind}, got {got}")
        return unpack(payload)

    def close(self) -> None:
        try:
            self.transport.close()
        except OSError:
            pass


class SocketTransport:
    """A connected socket as a :class:`Transport` (``close`` shuts it down, unblocking a reader)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def sendall(self, data: bytes | memoryview, /) -> None:
        self.sock.sendall(data)

    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int:
        return self.sock.recv_into(buffer, nbytes)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def client_handshake(channel: Channel, secret: bytes, *, mode: str) -> dict[str, Any]:
    """Authenticate to the agent and switch to sealed frames; returns the agent's HELLO."""
    hello = channel.expect(HELLO)
    if hello.get("v") != VERSION:
        raise errors.ConnectorError(f"the agent speaks protocol version {hello.get('v')}, this kubekeep "
                                    f"speaks {VERSION}: use the agent image of the same kubekeep version")
    if mode not in hello.get("modes", ()):
        raise errors.ConnectorError(f"the agent does not allow {mode} sessions (it allows "
                                    f"{', '.join(hello.get('modes', ())) or 'none'})")
    nonce_a = bytes(hello["nonce"])
    nonce_c = os.urandom(NONCE_SIZE)
    channel.send(AUTH, {"nonce": nonce_c, "mac": mac(secret, b"client", nonce_a, nonce_c)})
    got, payload = channel.recv()
    if got == ERROR:
        raise errors.ConnectorError(f"the agent refused the connection: {unpack(payload).get('message', '?')}")
    welcome = unpack(payload) if got == WELCOME else {}
    if got != WELCOME or not hmac.compare_digest(bytes(welcome.get("mac", b"")), mac(secret, b"agent", nonce_a, nonce_c)):
        raise errors.ConnectorError("the agent failed to prove it holds the run's secret")
    c2a, a2c = session_keys(secret, nonce_a, nonce_c)
    channel.secure(c2a, a2c)
    return dict(hello)


def agent_handshake(channel: Channel, secret: bytes, hello: dict[str, Any],
                    on_refused: Callable[[str], None] | None = None) -> bool:
    """Challenge a connecting client; True (and sealed frames) if it proved it holds the secret."""
    nonce_a = os.urandom(NONCE_SIZE)
    channel.send(HELLO, {**hello, "v": VERSION, "nonce": nonce_a})
    got, payload = channel.recv()
    body = unpack(payload) if got == AUTH else {}
    nonce_c = bytes(body.get("nonce", b""))
    if got != AUTH or len(nonce_c) != NONCE_SIZE or not hmac.compare_digest(
            bytes(body.get("mac", b"")), mac(secret, b"client", nonce_a, nonce_c)):
        channel.send(ERROR, {"message": "authentication failed"})
        if on_refused is not None:
            on_refused("authentication failed")
        return False
    channel.send(WELCOME, {"mac": mac(secret, b"agent", nonce_a, nonce_c)})
    c2a, a2c = session_keys(secret, nonce_a, nonce_c)
    channel.secure(a2c, c2a)
    return True
