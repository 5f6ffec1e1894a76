"""Pack files: many encrypted blobs in one storage object, with an encrypted header at the end.

Layout (docs/format.md, "Packs")::

    blob_1 || blob_2 || ... || blob_n || E(header) || uint32_le(len(E(header)))

Each blob is ``nonce || AES-GCM(payload, aad = type byte || blob id)``; the header is a msgpack
list of ``[type, id, offset, length, raw_length]``, followed (version 2) by zero bytes up to a size
bucket so its length does not tell how many blobs the pack holds, and encrypted with aad
``b"pack header"``. A pack's
name is the unkeyed BLAKE3 of its whole content, so storage integrity can be checked by anyone
(``check --read-data``) and a pack cannot be modified without its name changing.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from dataclasses import dataclass

import blake3
import msgpack

from kubekeep import errors
from kubekeep.engine.crypto import Cipher

DATA = 0
TREE = 1
BLOB_TYPES = {DATA: "data", TREE: "tree"}

_HEADER_AAD = b"pack header"
_LEN = struct.Struct("<I")
#: the header's length, the last bytes of a pack
LENGTH_SIZE = _LEN.size
#: the smallest padded header; larger ones double. 4 KiB holds ~80 entries: every pack of large
#: files' chunks (256 KiB and up, so at most ~65 in a 16 MiB pack) has the same header size.
HEADER_BUCKET = 4096


@dataclass(frozen=True, slots=True)
class BlobEntry:
    type: int
    id: bytes
    offset: int
    length: int  # stored (encrypted) length
    raw_length: int  # plaintext length


def blob_aad(blob_type: int, blob_id: bytes) -> bytes:
    return bytes((blob_type,)) + blob_id


def pack_name(pack_id: bytes) -> str:
    hexid = pack_id.hex()
    return f"data/{hexid[:2]}/{hexid}"


class PackBuffer:
    """Where a pack is assembled: an anonymous memory mapping that a writer reuses pack after pack.

    Packs used to be lists of blobs joined into one ``bytes`` when full: each finish held the
    pack twice, and the 16 MiB joins left holes in the C heap that the next allocations only
    partly reused (first backup of the engine benchmark: median peak RSS 155 MB, 147 MB with
    these buffers; bench/README.md, "Memory"). A mapping is faulted in once, and only as far
    as it is written; its size is address space, not memory.
    """

    __slots__ = ("_map", "_pin", "_address", "used")

    def __init__(self, capacity: int) -> None:
        self._map_new(mmap.mmap(-1, max(capacity, mmap.PAGESIZE)))
        self.used = 0

    def _map_new(self, mapping: mmap.mmap) -> None:
        self._map = mapping
        # the mapping's address, for copies that let go of the GIL (ctypes.memmove does; an
        # mmap slice assignment copies holding it: 11 % of a first backup's GIL time by py-spy)
        self._pin: ctypes.Array[ctypes.c_char] | None = (ctypes.c_char * len(mapping)).from_buffer(mapping)
        self._address = ctypes.addressof(self._pin)

    def _map_close(self) -> None:
        if not self._map.closed:
            self._pin = None  # the exported buffer goes first: an mmap with one cannot close
            self._map.close()

    def append(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` after what the buffer holds; return where it starts."""
        end = self.used + len(data)
        if end > len(self._map):
            self._grow(end)
        if type(data) is bytes:
            ctypes.memmove(self._address + self.used, data, len(data))
        else:
            self._map[self.used : end] = data
        start, self.used = self.used, end
        return start

    def _grow(self, size: int) -> None:
        bigger = mmap.mmap(-1, max(size, 2 * len(self._map)))
        bigger[: self.used] = self._map[: self.used]
        self._map_close()
        self._map_new(bigger)

    def view(self) -> memoryview:
        """The bytes written so far; release the view before the buffer is reused or closed."""
        return memoryview(self._map)[: self.used]

    def reset(self) -> None:
        self.used = 0

    def close(self) -> None:
        self._map_close()


class PackWriter:
    """Accumulates encrypted blobs of one type until the pack is large enough to upload."""

    def __init__(self, blob_type: int, buffer: PackBuffer | None = None) -> None:
        self.blob_type = blob_type
        self.buffer = buffer if buffer is not None else PackBuffer(1 << 20)
        self.buffer.reset()
        self.entries: list[BlobEntry] = []

    @property
    def size(self) -> int:
        """Bytes of blobs so far."""
        return self.buffer.used

    def add(self, blob_id: bytes, encrypted: bytes | bytearray, raw_length: int) -> None:
        offset = self.buffer.append(encrypted)
        self.entries.append(BlobEntry(self.blob_type, blob_id, offset, len(encrypted), raw_length))

    def __len__(self) -> int:
        return len(self.entries)

    def finish(self, cipher: Cipher, *, pad_header: bool = True) -> tuple[bytes, memoryview]:
        """Return ``(pack_id, pack_bytes)``: the bytes are a view of the pack's buffer, valid
        until the buffer is reused. ``pad_header``: pad the header to its size bucket (version
        2; version 1 wrote unpadded headers)."""
        header = msgpack.packb([[e.type, e.id, e.offset, e.length, e.raw_length] for e in self.entries])
        if pad_header:
            header += bytes(header_bucket(len(header)) - len(header))
        enc_header = cipher.encrypt(header, _HEADER_AAD)
        self.buffer.append(enc_header)
        self.buffer.append(_LEN.pack(len(enc_header)))
        data = self.buffer.view()
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest(), data


def header_bucket(length: int) -> int:
    """The padded size of a plaintext header of ``length`` bytes: ``HEADER_BUCKET * 2**k``."""
    size = HEADER_BUCKET
    while size < length:
        size *= 2
    return size


def read_header(pack: bytes | mmap.mmap, cipher: Cipher, what: str) -> list[BlobEntry]:
    """Decode the header of a whole pack held in memory."""
    if len(pack) < _LEN.size:
        raise errors.IntegrityError(f"{what}: pack is truncated")
    (hlen,) = _LEN.unpack_from(pack, len(pack) - _LEN.size)
    start = len(pack) - _LEN.size - hlen
    if start < 0:
        raise errors.IntegrityError(f"{what}: pack header length is out of range")
    plain = cipher.decrypt(memoryview(pack)[start : len(pack) - _LEN.size], _HEADER_AAD, f"{what} header")
    try:
        unpacker = msgpack.Unpacker()
        unpacker.feed(plain)
        rows = unpacker.unpack()
        end = unpacker.tell()
        if plain[end:] != bytes(len(plain) - end):  # padding is zero bytes (none in version 1)
            raise ValueError("non-zero padding")
        entries = [BlobEntry(int(t), bytes(i), int(o), int(n), int(r)) for t, i, o, n, r in rows]
    except (ValueError, TypeError, msgpack.UnpackException):
        raise errors.IntegrityError(f"{what}: pack header is malformed") from None
    for e in entries:
        if e.offset < 0 or e.offset + e.length > start:
            raise errors.IntegrityError(f"{what}: pack header points outside the pack")
    return entries


def verify_pack_id(pack_id: bytes, pack: bytes) -> bool:
    return blake3.blake3(pack, max_threads=blake3.blake3.AUTO).digest() == pack_id
