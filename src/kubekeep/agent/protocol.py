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

Before authentication a peer is nobody: its frames are capped at :data:`HANDSHAKE_MAX_FRAME`
(checked from the length prefix, before anything is read or allocated) and every field of
HELLO, AUTH, WELCOME and ERROR is type- and range-checked (:func:`decode_hello` ...), so a
malformed message is a :class:`~kubekeep.errors.ConnectorError` and nothing else.
"""

from __future__ import annotations

import array
import hashlib
import hmac
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, NotRequired, Protocol, TypedDict, TypeVar, overload

import blake3
import msgpack
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kubekeep import errors
from kubekeep.engine.entries import Entry, EntryType
from kubekeep.engine.format import ChunkerParams

VERSION = 1
DEFAULT_PORT = 8765
#: the environment variable the agent reads the run's secret from (64 hex digits)
SECRET_ENV = "KUBEKEEP_AGENT_SECRET"
SECRET_SIZE = 32
NONCE_SIZE = 32
#: HMAC-SHA256 proofs, and the session keys derived with HKDF-SHA256
MAC_SIZE = 32
KEY_SIZE = 32
#: bytes of a chunk id in CHUNKS/FILE records (keyed BLAKE3-256)
ID_SIZE = 32
#: a frame larger than this is a protocol error (the largest chunk is 8 MiB)
MAX_FRAME = 64 * 1024 * 1024
#: a frame before authentication larger than this is a protocol error (HELLO is ~150 bytes)
HANDSHAKE_MAX_FRAME = 4096
#: seconds a connecting peer has for the whole handshake (a port-forward through a busy API
#: server can take several; a silent peer holds a slot at most this long)
HANDSHAKE_TIMEOUT = 30.0
#: the most writers an agent may announce
MAX_WRITERS = 64
#: the one file a block volume is backed up as (and restored from)
BLOCK_IMAGE = "volume.img"
MODES = ("backup", "restore")
SOURCES = ("dir", "block")

# message types ----------------------------------------------------------------------------
HELLO, AUTH, WELCOME, ERROR = 1, 2, 3, 4
BACKUP, CREDIT, ENTRY, FILE, CHUNKS, FILE_END, DONE, WANT, DATA, FAIL, BYE = range(10, 21)
#: backup: the bytes of a file the agent skipped as unchanged, after all (the engine could not
#: reuse the parent's copy); answered with one DATA frame, empty at the end of the file
READ = 21
#: backup, to a client that sent ``known``: a run of entries without content (directories,
#: symlinks, unchanged files) as one record, in walk order
ENTRIES = 22
#: the most entries in one ENTRIES record
MAX_ENTRIES = 1024
RESTORE, MKDIR, SYMLINK, WFILE, WDATA, WEND, WABORT, FINISH, FILE_FAILED, FINISHED = range(30, 40)

#: flag bit of a DATA/WDATA frame: the payload is zstd-compressed
FLAG_ZSTD = 1
#: a chunk is sent compressed only if that saves at least this fraction
MIN_SAVING = 0.03
#: payloads smaller than this are sent with their length prefix in one piece (larger ones are
#: not copied just to prepend four bytes)
_JOINED_BELOW = 64 * 1024
#: the receive buffer of a sealed channel (it grows for larger frames)
_SESSION_BUFFER = 1024 * 1024

#: the field of an ENTRY that sends a file without content: unchanged since the parent snapshot
UNCHANGED = "un"
#: the most files of a parent snapshot a BACKUP may name as known (8 bytes each: 32 MiB)
MAX_KNOWN = 4_000_000
#: bytes of one known file's digest
KNOWN_SIZE = 8
#: the largest range a READ may ask for
MAX_READ = 4 * 1024 * 1024

_LEN = struct.Struct(">I")
_VOLUME_KEY = struct.Struct("<qq")
#: the first bytes of a volume file's reuse key (an fs: key is 40 bytes of other fields)
VOLUME_KEY_TAG = b"V1"
_DATA_HEAD = struct.Struct(">QB")  # request or file number, flags


class Transport(Protocol):
    """A byte stream: a socket, or a port-forward tunnel with the same three methods."""

    def sendall(self, data: bytes | memoryview, /) -> None: ...

    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int: ...

    def close(self) -> None: ...


class Announcement(TypedDict):
    """What an agent says of itself in HELLO."""

    modes: list[str]
    source: str
    agent: str
    writers: int


class Hello(Announcement):
    v: int
    nonce: bytes


class Auth(TypedDict):
    nonce: bytes
    mac: bytes


class Welcome(TypedDict):
    mac: bytes


class ErrorBody(TypedDict):
    message: str


class EntryBody(TypedDict):
    """An entry as sent in ENTRY/FILE (backup) and MKDIR/SYMLINK/WFILE (restore): path, type,
    mode, owner, group, mtime; a file's size, a symlink's target. Names that are not UTF-8 go as
    their bytes."""

    p: str | bytes
    t: str
    m: int
    u: int
    g: int
    mt: int
    z: NotRequired[int]
    l: NotRequired[str | bytes]  # noqa: E741 - the wire name


class BackupRequest(TypedDict):
    """BACKUP: how to chunk and name the volume's content, and the flow-control window."""

    chunker: ChunkerParams
    id_key: bytes
    compress: str  # "zstd" or "none"
    excludes: list[str]
    window_bytes: int
    window_records: int


class BackupRequestKnown(BackupRequest, total=False):
    """BACKUP with the parent snapshot's files (optional: an agent that does not know the field
    reads every file, and a client that does not send it gets every file read):
    :func:`known_digest` of each, as little-endian 8-byte integers."""

    known: bytes


class Read(TypedDict):
    """READ: ``n`` bytes from offset ``o`` of the file at ``p`` (relative to the volume), as
    request ``r``."""

    r: int
    p: str | bytes
    o: int
    n: int


class RestoreRequest(TypedDict):
    owners: bool | None


class Want(TypedDict):
    """WANT: the data of the chunks at offsets ``o`` of batch ``s``, as request ``r``."""

    r: int
    s: int
    o: list[int]


class Credit(TypedDict):
    """CREDIT: the records (sequence numbers) consumed."""

    s: list[int]


class Fail(TypedDict):
    r: int
    error: str


class FileNumber(TypedDict):
    """WEND and WABORT: which file."""

    f: int


class FileFailed(TypedDict):
    f: int | None
    p: str
    error: str


class Finished(TypedDict):
    warnings: list[str]
    failed: list[str]
    stats: dict[str, int]


#: a message body as decoded (a msgpack map): its values are unchecked, hence Any, until
#: :func:`require` (or a conversion that fails loudly) checks one
Message = dict[str, Any]

_T = TypeVar("_T")
_U = TypeVar("_U")


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise errors.ConnectorError(f"agent protocol: malformed message ({exc})") from None


def unpack_map(data: bytes | memoryview, what: str) -> Message:
    """A message body that must be a map (every message but the DATA frames)."""
    body = unpack(data)
    if not isinstance(body, dict):
        raise errors.ConnectorError(f"agent protocol: malformed {what}: a {type(body).__name__}, not a map")
    return body


@overload
def require(body: Mapping[str, object], key: str, kind: type[_T], what: str) -> _T: ...


@overload
def require(body: Mapping[str, object], key: str, kind: tuple[type[_T], type[_U]], what: str) -> _T | _U: ...


def require(body: Mapping[str, object], key: str, kind: type | tuple[type, ...], what: str) -> object:
    """``body[key]``, which must be of ``kind`` (an int is never a bool)."""
    value = body.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "missing" if key not in body else f"a {type(value).__name__}"
        wanted = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise errors.ConnectorError(f"agent protocol: malformed {what}: {key!r} is {got}, not {wanted}")
    return value


def _sized(body: Mapping[str, object], key: str, size: int, what: str) -> bytes:
    value = require(body, key, bytes, what)
    if len(value) != size:
        raise errors.ConnectorError(f"agent protocol: malformed {what}: {key!r} is {len(value)} bytes, not {size}")
    return value


def decode_hello(data: bytes | memoryview) -> Hello:
    """The agent's HELLO, every field checked (the version first, so a newer agent says so)."""
    body = unpack_map(data, "HELLO")
    version = require(body, "v", int, "HELLO")
    if version != VERSION:
        raise errors.ConnectorError(
            f"the agent speaks protocol version {version}, this kubekeep "
            f"speaks {VERSION}: use the agent image of the same kubekeep version"
        )
    modes = require(body, "modes", list, "HELLO")
    if len(modes) > len(MODES) or not all(isinstance(m, str) and m in MODES for m in modes):
        raise errors.ConnectorError(f"agent protocol: malformed HELLO: modes {modes!r:.80}")
    source = require(body, "source", str, "HELLO")
    if source not in SOURCES:
        raise errors.ConnectorError(f"agent protocol: malformed HELLO: source {source!r:.40}")
    writers = require(body, "writers", int, "HELLO")
    if not 1 <= writers <= MAX_WRITERS:
        raise errors.ConnectorError(f"agent protocol: malformed HELLO: writers {writers} (1 to {MAX_WRITERS})")
    return Hello(
        v=version,
        nonce=_sized(body, "nonce", NONCE_SIZE, "HELLO"),
        modes=list(modes),
        source=source,
        agent=require(body, "agent", str, "HELLO")[:64],
        writers=writers,
    )


def decode_auth(data: bytes | memoryview) -> Auth:
    body = unpack_map(data, "AUTH")
    return Auth(nonce=_sized(body, "nonce", NONCE_SIZE, "AUTH"), mac=_sized(body, "mac", MAC_SIZE, "AUTH"))


def decode_welcome(data: bytes | memoryview) -> Welcome:
    return Welcome(mac=_sized(unpack_map(data, "WELCOME"), "mac", MAC_SIZE, "WELCOME"))


def error_message(data: bytes | memoryview) -> str:
    """The message of an ERROR frame, whatever the peer put there (shortened, printable)."""
    try:
        body = unpack(data)
    except errors.ConnectorError:
        return "?"
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str):
        return "?"
    return message[:500].encode("unicode_escape").decode("ascii") if not message.isprintable() else message[:500]


def decompress(dctx: zstandard.ZstdDecompressor, data: bytes | memoryview, limit: int, *, exact: bool = True) -> bytes:
    """Decompress a chunk that was announced as ``limit`` bytes (or, ``exact=False``, at most
    that), never producing or allocating more: a frame that claims or yields more is refused."""
    try:
        declared = zstandard.frame_content_size(data)
        if declared > limit:
            raise errors.ConnectorError(
                f"agent protocol: a compressed chunk of {declared} bytes is larger than its announced length ({limit})"
            )
        # with the size in the frame header that is what is allocated; without, at most limit
        out: bytes = dctx.decompress(data, max_output_size=limit)
    except zstandard.ZstdError as exc:
        raise errors.ConnectorError(
            f"agent protocol: a compressed chunk is damaged or larger than its "
            f"announced length of {limit} bytes ({exc})"
        ) from None
    if len(out) > limit or (exact and len(out) != limit):
        raise errors.ConnectorError(
            f"agent protocol: a compressed chunk decompressed to {len(out)} bytes, not its announced length of {limit}"
        )
    return out


def data_head(number: int, flags: int) -> bytes:
    return _DATA_HEAD.pack(number, flags)


def split_data(payload: memoryview) -> tuple[int, int, memoryview]:
    number, flags = _DATA_HEAD.unpack_from(payload)
    return number, flags, payload[_DATA_HEAD.size :]


def entry_body(entry: Entry) -> EntryBody:
    """An entry's metadata as sent in ENTRY/FILE (backup) and MKDIR/SYMLINK/WFILE (restore)."""
    body: EntryBody = {
        "p": _wire_name(entry.path),
        "t": entry.type.value,
        "m": entry.mode,
        "u": entry.uid,
        "g": entry.gid,
        "mt": entry.mtime_ns,
    }
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


def entry_from_body(body: Mapping[str, object]) -> Entry:
    """An entry from ENTRY/FILE/MKDIR/SYMLINK/WFILE, every field type- and range-checked."""
    kind = require(body, "t", str, "entry")
    try:
        entry_type = EntryType(kind)
    except ValueError:
        raise errors.ConnectorError(f"agent protocol: malformed entry: type {kind!r:.40}") from None
    path = _name(require(body, "p", (str, bytes), "entry"))
    target = _name(require(body, "l", (str, bytes), "entry")) if entry_type == EntryType.SYMLINK else ""
    numbers = {
        key: require(body, key, int, "entry") if key in body else default
        for key, default in (("m", 0o644), ("u", 0), ("g", 0), ("mt", 0), ("z", 0))
    }
    for key, (low, high) in _ENTRY_RANGES.items():
        if not low <= numbers[key] <= high:
            raise errors.ConnectorError(f"agent protocol: malformed entry: {key!r} = {numbers[key]} out of range")
    return Entry(
        path=path,
        type=entry_type,
        mode=numbers["m"],
        uid=numbers["u"],
        gid=numbers["g"],
        mtime_ns=numbers["mt"],
        size=numbers["z"],
        target=target,
    )


_ENTRY_RANGES = {
    "m": (0, 0o177777),
    "u": (0, 2**32 - 1),
    "g": (0, 2**32 - 1),
    "mt": (-(2**63), 2**63 - 1),
    "z": (0, 2**63 - 1),
}


def volume_reuse_key(size: int, mtime_ns: int) -> bytes:
    """A volume file's reuse key (``Entry.reuse_key``): its size and modification time, which a
    snapshot clone keeps; not its inode or ctime, which every clone renews (docs/volumes.md)."""
    return VOLUME_KEY_TAG + _VOLUME_KEY.pack(size, mtime_ns)


def known_digest(path: str, reuse_key: bytes) -> int:
    """What a BACKUP's ``known`` says of one file of the parent snapshot: its path (relative to
    the volume) and reuse key, hashed to 8 bytes. A collision can only make the agent skip a
    changed file, which the engine then finds (its key differs from the parent's) and has read."""
    digest = blake3.blake3(path.encode("utf-8", "surrogateescape") + b"\0" + reuse_key).digest(KNOWN_SIZE)
    return int.from_bytes(digest, "little")


def pack_known(digests: Iterable[int]) -> bytes:
    """The ``known`` field: digests sorted, as little-endian 8-byte integers."""
    return b"".join(d.to_bytes(KNOWN_SIZE, "little") for d in sorted(digests))


def unpack_known(value: object) -> array.array[int]:
    """A BACKUP's ``known`` field as a sorted array (hostile input: type and size checked)."""
    if not isinstance(value, bytes):
        raise errors.ConnectorError(f"agent protocol: malformed BACKUP: 'known' is a {type(value).__name__}, not bytes")
    if len(value) % KNOWN_SIZE or len(value) // KNOWN_SIZE > MAX_KNOWN:
        raise errors.ConnectorError(
            f"agent protocol: malformed BACKUP: 'known' of {len(value)} bytes "
            f"(a multiple of {KNOWN_SIZE}, for at most {MAX_KNOWN} files)"
        )
    found = array.array("Q")
    found.frombytes(value)
    if sys.byteorder != "little":
        found.byteswap()
    return array.array("Q", sorted(found))


def mac(secret: bytes, role: bytes, nonce_a: bytes, nonce_c: bytes) -> bytes:
    return hmac.new(secret, b"kubekeep-agent-v1 " + role + nonce_a + nonce_c, hashlib.sha256).digest()


def session_keys(secret: bytes, nonce_a: bytes, nonce_c: bytes) -> tuple[bytes, bytes]:
    """``(client-to-agent key, agent-to-client key)``."""

    def derive(info: bytes) -> bytes:
        return HKDF(hashes.SHA256(), KEY_SIZE, nonce_a + nonce_c, b"kubekeep-agent-v1 " + info).derive(secret)

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
        self._max_frame = HANDSHAKE_MAX_FRAME
        self._buf = bytearray(2 * HANDSHAKE_MAX_FRAME)
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
        self._max_frame = MAX_FRAME
        self._fill(0, room=_SESSION_BUFFER)

    # -- sending ------------------------------------------------------------------------------
    def send(self, kind: int, body: object = None, *, raw: bytes | memoryview | None = None, head: bytes = b"") -> None:
        """Send a message: ``body`` msgpack-encoded, or ``head + raw`` as is (DATA frames)."""
        payload = bytes([kind]) + head + raw if raw is not None else bytes([kind]) + pack(body)
        with self._send_lock:
            if self._seal is not None:
                payload = self._seal.encrypt(self._nonce(self._sent), payload, None)
                self._sent += 1
            prefix = _LEN.pack(len(payload))
            try:
                if len(payload) < _JOINED_BELOW:
                    self.transport.sendall(prefix + payload)
                else:
                    self.transport.sendall(prefix)
                    self.transport.sendall(payload)
            except OSError as exc:
                raise errors.SourceUnreachable(f"connection to the {self.peer} lost: {exc.strerror or exc}") from None
            self.bytes_sent += len(payload) + _LEN.size

    @staticmethod
    def _nonce(counter: int) -> bytes:
        return b"\0\0\0\0" + counter.to_bytes(8, "big")

    # -- receiving ----------------------------------------------------------------------------
    def _fill(self, need: int, *, room: int = 0) -> None:
        """Make at least ``need`` unread bytes available in the buffer (``room``: grow it to at
        least that size)."""
        if self._end - self._start >= need and len(self._buf) >= room:
            return
        if need > len(self._buf) or room > len(self._buf):
            grown = bytearray(max(need, room, 2 * len(self._buf)))
            grown[: self._end - self._start] = self._view[self._start : self._end]
            self._buf, self._view = grown, memoryview(grown)
            self._end -= self._start
            self._start = 0
        elif len(self._buf) - self._start < need:
            size = self._end - self._start
            self._view[:size] = self._view[self._start : self._end]
            self._start, self._end = 0, size
        while self._end - self._start < need:
            try:
                n = self.transport.recv_into(self._view[self._end :])
            except OSError as exc:
                raise errors.SourceUnreachable(f"connection to the {self.peer} lost: {exc.strerror or exc}") from None
            if n == 0:
                raise errors.SourceUnreachable(f"the {self.peer} closed the connection")
            self._end += n

    def recv(self) -> tuple[int, memoryview]:
        """The next message: its type and payload (a view of a buffer of its own)."""
        self._fill(_LEN.size)
        (length,) = _LEN.unpack_from(self._view, self._start)
        if length == 0:
            raise errors.ConnectorError(f"agent protocol: an empty frame from the {self.peer}")
        if length > self._max_frame:  # refused before reading or allocating any of it
            raise errors.ConnectorError(
                f"agent protocol: a frame of {length} bytes from the {self.peer} is too "
                f"large (at most {self._max_frame}" + (" before authentication)" if self._open is None else ")")
            )
        self._start += _LEN.size
        self._fill(length)
        frame = self._view[self._start : self._start + length]
        self._start += length
        self.bytes_received += length + _LEN.size
        if self._open is not None:
            try:
                plain = self._open.decrypt(self._nonce(self._received), frame, None)
            except InvalidTag:
                raise errors.ConnectorError(
                    f"agent protocol: a frame from the {self.peer} failed authentication"
                ) from None
            self._received += 1
            frame = memoryview(plain)
        else:
            frame = memoryview(bytes(frame))  # handshake only: small, and independent of the buffer
        return frame[0], frame[1:]

    def expect(self, kind: int) -> Any:
        """Receive one message of type ``kind`` and return its decoded body."""
        got, payload = self.recv()
        if got == ERROR:
            raise errors.ConnectorError(f"the {self.peer} reported: {error_message(payload)}")
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
        #: ``time.monotonic()`` by which every send and receive must be done (the handshake's)
        self.deadline: float | None = None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _bound(self) -> None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("handshake timed out")
            self.sock.settimeout(left)

    def sendall(self, data: bytes | memoryview, /) -> None:
        self._bound()
        self.sock.sendall(data)

    def recv_into(self, buffer: memoryview, nbytes: int = 0, /) -> int:
        self._bound()
        return self.sock.recv_into(buffer, nbytes)

    def unbound(self) -> None:
        """The handshake is over: no deadline from now on."""
        self.deadline = None
        self.sock.settimeout(None)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _expect(channel: Channel, kind: int, otherwise: str) -> memoryview:
    """The payload of the next message, which must be ``kind``; an ERROR is the agent's refusal."""
    got, payload = channel.recv()
    if got == ERROR:
        raise errors.ConnectorError(f"the agent refused the connection: {error_message(payload)}")
    if got != kind:
        raise errors.ConnectorError("agent protocol: " + otherwise.format(got=got))
    return payload


def client_handshake(channel: Channel, secret: bytes, *, mode: str) -> Hello:
    """Authenticate to the agent and switch to sealed frames; returns the agent's HELLO."""
    hello = decode_hello(_expect(channel, HELLO, "expected HELLO, got message {got}"))
    if mode not in hello["modes"]:
        raise errors.ConnectorError(
            f"the agent does not allow {mode} sessions (it allows {', '.join(hello['modes']) or 'none'})"
        )
    nonce_a = hello["nonce"]
    nonce_c = os.urandom(NONCE_SIZE)
    auth: Auth = {"nonce": nonce_c, "mac": mac(secret, b"client", nonce_a, nonce_c)}
    channel.send(AUTH, auth)
    welcome = decode_welcome(_expect(channel, WELCOME, "the agent answered AUTH with message {got}, not WELCOME"))
    if not hmac.compare_digest(welcome["mac"], mac(secret, b"agent", nonce_a, nonce_c)):
        raise errors.ConnectorError("the agent failed to prove it holds the run's secret")
    c2a, a2c = session_keys(secret, nonce_a, nonce_c)
    channel.secure(c2a, a2c)
    return hello


def agent_handshake(channel: Channel, secret: bytes, hello: Announcement) -> bool:
    """Challenge a connecting client: True (and sealed frames) if it proved it holds the secret,
    False (after telling it) if its proof is wrong; a malformed or unexpected message raises
    :class:`~kubekeep.errors.ConnectorError`."""
    nonce_a = os.urandom(NONCE_SIZE)
    body: Hello = {**hello, "v": VERSION, "nonce": nonce_a}
    channel.send(HELLO, body)
    got, payload = channel.recv()
    if got != AUTH:
        raise errors.ConnectorError(f"agent protocol: expected AUTH, got message {got}")
    auth = decode_auth(payload)
    if not hmac.compare_digest(auth["mac"], mac(secret, b"client", nonce_a, auth["nonce"])):
        refusal: ErrorBody = {"message": "authentication failed"}
        channel.send(ERROR, refusal)
        return False
    welcome: Welcome = {"mac": mac(secret, b"agent", nonce_a, auth["nonce"])}
    channel.send(WELCOME, welcome)
    c2a, a2c = session_keys(secret, nonce_a, auth["nonce"])
    channel.secure(a2c, c2a)
    return True
