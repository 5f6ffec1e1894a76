"""Reading a stored pack's header alone: the trailing length and the encrypted header before
it, fetched with ranged reads from the pack's end, never the blobs (docs/format.md, "Packs").

Readers use this to find blobs a damaged index no longer lists, ``repair index`` to rebuild the
index, and ``check`` to notice truncated packs without downloading them.
"""

from __future__ import annotations

import mmap
import struct

from kubekeep import errors
from kubekeep.engine.crypto import Cipher
from kubekeep.engine.pack import BlobEntry, read_header
from kubekeep.storage.base import Backend

_LEN = struct.Struct("<I")
#: the first read takes this much of the pack's end: a whole header, for all but packs of
#: thousands of small blobs, which take a second read
FIRST_READ = 64 * 1024
#: index rows hold 32-bit offsets: no pack kubekeep writes or indexes is larger
MAX_PACK_SIZE = 1 << 32


def pack_id_of(name: str) -> bytes | None:
    """The id a ``data/xx/<id>`` storage name stands for, or None for a name no pack has."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "data" or len(parts[2]) != 64 or parts[1] != parts[2][:2]:
        return None
    try:
        return bytes.fromhex(parts[2])
    except ValueError:
        return None


def read_stored_header(backend: Backend, name: str, size: int, cipher: Cipher, what: str) -> list[BlobEntry]:
    """The blob entries of the pack ``name`` of ``size`` bytes (as the listing says), from ranged
    reads of its end. IntegrityError if the pack is shorter than listed, truncated, or its
    header fails authentication; StorageError if it cannot be read."""
    if size < _LEN.size:
        raise errors.IntegrityError(f"{what}: pack is truncated ({size} bytes)")
    if size > MAX_PACK_SIZE:
        raise errors.IntegrityError(f"{what}: pack of {size} bytes is larger than any pack kubekeep writes")
    first = min(size, FIRST_READ)
    tail = backend.load(name, size - first, first)
    if len(tail) != first:
        raise errors.IntegrityError(f"{what}: pack is truncated (shorter than the {size} bytes listed)")
    (hlen,) = _LEN.unpack_from(tail, first - _LEN.size)
    need = hlen + _LEN.size
    if need > size:
        raise errors.IntegrityError(f"{what}: pack is truncated (its header length is out of range)")
    if need > first:
        more = backend.load(name, size - need, need - first)
        if len(more) != need - first:
            raise errors.IntegrityError(f"{what}: pack is truncated (shorter than the {size} bytes listed)")
        tail = more + tail
    # read_header parses a whole pack held in memory, and of the whole it reads only the end:
    # an anonymous mapping of the pack's size stands in for the blobs (pages never written
    # take no memory), so the one parser of pack headers also serves ranged reads
    whole = mmap.mmap(-1, size)
    whole[size - len(tail) :] = tail
    return read_header(whole, cipher, what)
