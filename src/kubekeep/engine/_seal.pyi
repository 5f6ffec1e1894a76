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
