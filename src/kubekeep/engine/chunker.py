"""Content-defined chunking with FastCDC 2020 (pyfastcdc, Cython), seeded per repository."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import IO, Any

import pyfastcdc

_local = threading.local()


class Chunker:
    """Splits streams into content-defined chunks. One FastCDC instance per thread (it is not
    safe to share), all with the repository's parameters and secret seed."""

    def __init__(self, params: dict[str, Any], seed: int) -> None:
        self.min = int(params["min"])
        self.avg = int(params["avg"])
        self.max = int(params["max"])
        self.normalization = int(params.get("normalization", 1))
        self.seed = seed
        self._key = (self.min, self.avg, self.max, self.normalization, seed)

    def _fastcdc(self) -> pyfastcdc.FastCDC:
        cache = getattr(_local, "chunkers", None)
        if cache is None:
            cache = _local.chunkers = {}
        cdc = cache.get(self._key)
        if cdc is None:
            cdc = cache[self._key] = pyfastcdc.FastCDC(
                self.avg, min_size=self.min, max_size=self.max,
                normalized_chunking=self.normalization, seed=self.seed)  # type: ignore[arg-type]
        return cdc

    def stream(self, stream: IO[bytes]) -> Iterator[memoryview]:
        """Chunks of ``stream``; each view is valid only until the next one is produced."""
        for chunk in self._fastcdc().cut_stream(stream):
            yield chunk.data

    def buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        if not data:
            return
        for chunk in self._fastcdc().cut_buf(data):
            yield chunk.data
