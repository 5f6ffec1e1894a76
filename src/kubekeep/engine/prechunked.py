"""Storing content that was chunked and hashed at its source (``Entry.chunks``).

The source (the pvc agent) cut the content with the repository's chunker and named each chunk
with the repository's id key; here only the ids the repository lacks are fetched. Every fetched
chunk is hashed again and its length checked before it is stored, so a faulty or hostile source
can make a backup fail but never store data under a wrong id.
"""

from __future__ import annotations

from collections.abc import Callable

from kubekeep import errors
from kubekeep.engine.crypto import MasterKey
from kubekeep.engine.entries import PreChunked
from kubekeep.engine.pack import DATA
from kubekeep.engine.writer import BlobWriter


def store_prechunked(
    source: PreChunked,
    writer: BlobWriter,
    master: MasterKey,
    content: list[bytes],
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Append the content's blob ids to ``content``, store the missing chunks, return the size."""
    size = 0
    for batch in source.batches():
        missing: dict[bytes, int] = {}
        batch_bytes = 0
        for blob_id, length in batch:
            content.append(blob_id)
            batch_bytes += length
            if blob_id in missing:
                continue
            if writer.has(blob_id):
                known = writer.index.lookup(blob_id)
                if known is not None and known.raw_length != length:
                    raise errors.IntegrityError(
                        f"the source gave chunk {blob_id.hex()[:16]} a length of {length}, the repository "
                        f"holds {known.raw_length} bytes for it"
                    )
                continue
            missing[blob_id] = length
        if missing:
            wanted = list(missing)
            received = 0
            for data in source.fetch(wanted):
                if received >= len(wanted):
                    raise errors.IntegrityError("the source sent more chunks than were asked for")
                blob_id = wanted[received]
                if len(data) != missing[blob_id] or master.blob_id(data) != blob_id:
                    raise errors.IntegrityError(
                        f"the source sent data that does not match chunk {blob_id.hex()[:16]} "
                        "(wrong chunker parameters or id key, or a changed file)"
                    )
                writer.save(DATA, data, blob_id)
                received += 1
            if received != len(wanted):
                raise errors.IntegrityError(f"the source sent {received} of {len(wanted)} chunks asked for")
        size += batch_bytes
        if on_bytes is not None:
            on_bytes(batch_bytes)
    return size
