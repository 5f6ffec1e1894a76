"""A seekable, read-only view of a file stored in a snapshot, without a copy on disk.

The file's data blobs are loaded (and verified) on demand; the last few are kept in memory.
Blob sizes come from the index, so opening costs no blob reads. Sequential reads load each
blob once; random reads cost one blob load per miss.
"""

from __future__ import annotations

import bisect
import io
import os
from collections import OrderedDict
from typing import TYPE_CHECKING

from kubekeep import errors

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from kubekeep.engine.repository import Repository
    from kubekeep.engine.tree import Node


class FileView(io.RawIOBase):
    """``open(...)``-like binary access to a stored file's content (read, seek, tell)."""

    def __init__(self, repo: Repository, node: Node, *, cached_blobs: int = 4) -> None:
        super().__init__()
        if node.type != "file":
            raise errors.UsageError(f"{node.name} is a {node.type}, not a file")
        self._repo = repo
        self._blobs = list(node.content)
        self._starts: list[int] = []
        offset = 0
        for blob_id in self._blobs:
            loc = repo.locate(blob_id)
            if loc is None:
                raise errors.IntegrityError(
                    f"blob {blob_id.hex()[:16]} of {node.name} is not in the index "
                    "(repository damaged; run 'kubekeep check')"
                )
            self._starts.append(offset)
            offset += loc.raw_length
        if offset != node.size:
            raise errors.IntegrityError(f"{node.name}: its blobs hold {offset} bytes, the tree records {node.size}")
        self._size = offset
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_limit = max(1, cached_blobs)
        self.blob_loads = 0

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def _blob(self, i: int) -> bytes:
        data = self._cache.get(i)
        if data is not None:
            self._cache.move_to_end(i)
            return data
        data = self._repo.load_blob(self._blobs[i])
        self.blob_loads += 1
        self._cache[i] = data
        if len(self._cache) > self._cache_limit:
            self._cache.popitem(last=False)
        return data

    def readinto(self, b: Buffer) -> int:
        if self.closed:
            raise ValueError("read from a closed file view")
        out = memoryview(b).cast("B")
        n = 0
        while n < len(out) and self._pos < self._size:
            i = bisect.bisect_right(self._starts, self._pos) - 1
            blob = self._blob(i)
            skip = self._pos - self._starts[i]
            k = min(len(blob) - skip, len(out) - n)
            out[n : n + k] = blob[skip : skip + k]
            n += k
            self._pos += k
        return n

    def close(self) -> None:
        self._cache.clear()
        super().close()
