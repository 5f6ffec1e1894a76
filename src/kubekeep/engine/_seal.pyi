from collections.abc import Sequence

from typing_extensions import Buffer

NONCE_SIZE: int
TAG_SIZE: int

def read_files(
    paths: Sequence[str], sizes: Sequence[int], id_key: bytes
) -> list[tuple[bytes, bytes] | tuple[int, bool]]:
    """Read each file whole (``sizes`` are hints: a file is read to its end) and name its content
    with keyed BLAKE3 under ``id_key``, the batch without the GIL. Per file ``(blob id, data)``,
    or ``(errno, opened)`` when it could not be opened (``opened`` False) or read (True)."""

def seal(datas: Sequence[Buffer], ids: Sequence[bytes], blob_type: int, enc_key: bytes, level: int) -> list[bytes]:
    """``nonce || AES-256-GCM(method byte || payload, aad = blob_type || id) || tag`` per blob,
    the payload zstd at ``level`` when that saves at least 3 % (as compression.pack_payload),
    the batch without the GIL."""

def open_blobs(
    span: Buffer, blobs: Sequence[tuple[int, int, int, bytes, int]], enc_key: bytes, id_key: bytes
) -> list[bytes | str]:
    """Decrypt, decompress and verify (length, keyed BLAKE3 under ``id_key``) blobs cut from
    ``span``: ``(offset, stored length, plaintext length, id, blob type)`` each. Per blob its
    plaintext, or why it cannot be read; the batch without the GIL."""

def write_files(files: Sequence[tuple[int, bytes, int, int, int, int, int, Sequence[Buffer]]]) -> list[tuple[int, int]]:
    """Create and write new files, the run without the GIL: per file ``(directory descriptor,
    name, creation mode, mode set after the owner or -1, uid or -1, gid, mtime_ns, pieces)``,
    zero blocks of 16 KiB left as holes. Per file ``(stage, errno)``: 0 written; 1 not created;
    2 created but not written (removed again); 3 written, its owner not set."""
