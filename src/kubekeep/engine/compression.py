"""Per-blob compression: zstd when it pays, stored as-is when it does not.

The first plaintext byte of every blob payload names the method, inside the encryption, so
the compressibility of content is not visible in the repository beyond the blob's length.
"""

from __future__ import annotations

import threading

import zstandard

from kubekeep import errors

NONE = 0
ZSTD = 1

#: keep the compressed form only if it saves at least this fraction
MIN_SAVING = 0.03

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def pack_payload(data: bytes | bytearray | memoryview, level: int) -> bytes | bytearray:
    """Return method byte + (compressed or raw) data. ``level`` 0 disables compression."""
    if level > 0 and len(data) >= 64:
        packed = _compressor(level).compress(data)
        if len(packed) <= len(data) * (1 - MIN_SAVING):
            return bytes((ZSTD,)) + packed
    out = bytearray(len(data) + 1)  # out[0] == NONE
    out[1:] = data
    return out


def unpack_payload(payload: bytes, raw_length: int, what: str) -> bytes:
    if not payload:
        raise errors.IntegrityError(f"{what}: empty payload")
    method = payload[0]
    if method == NONE:
        return payload[1:]
    if method == ZSTD:
        try:
            return _decompressor().decompress(memoryview(payload)[1:], max_output_size=max(raw_length, 1))
        except zstandard.ZstdError as exc:
            raise errors.IntegrityError(f"{what}: cannot decompress: {exc}") from None
    raise errors.IntegrityError(f"{what}: unknown compression method {method}")
