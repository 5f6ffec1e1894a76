"""Metadata objects (config, index, snapshot, lock files): msgpack, zstd, then AES-GCM.

Content-addressed objects are named by the unkeyed BLAKE3 of their stored bytes, so
``check`` can verify them without the key and nothing can be swapped under a name.
"""

from __future__ import annotations

from typing import Any

import blake3
import msgpack

from kubekeep import errors
from kubekeep.engine import compression
from kubekeep.engine.crypto import Cipher

#: zstd level of metadata objects (the repository's level applies to blobs)
COMPRESSION_LEVEL = 3
#: the most a metadata object may decompress to (its raw length is not stored)
MAX_SIZE = 1 << 31


def seal(cipher: Cipher, body: object, aad: bytes) -> bytes:
    plain = msgpack.packb(body, use_bin_type=True)
    return bytes(cipher.encrypt(compression.pack_payload(plain, COMPRESSION_LEVEL), aad))


def unseal(cipher: Cipher, data: bytes, aad: bytes, what: str) -> Any:
    """The decoded body: authenticated, but of whatever shape its writer gave it (hence Any)."""
    payload = cipher.decrypt(data, aad, what)
    # raw length unknown for metadata; zstd frames carry their content size
    plain = compression.unpack_payload(payload, MAX_SIZE, what)
    try:
        return msgpack.unpackb(plain, raw=False)
    except (ValueError, msgpack.UnpackException):
        raise errors.IntegrityError(f"{what}: malformed content") from None


def content_name(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()
