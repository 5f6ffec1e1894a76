"""Content-defined chunking with FastCDC 2020, its gear table secret per repository.

Two designs, recorded in the repository config's ``chunker.algorithm`` (docs/format.md, "Blobs
and chunking"):

- ``fastcdc2020-keyed-gear`` (version 2): all 256 gear values come from a keyed PRF of the
  repository's identity key; cut by kubekeep's C module ``_gearcdc``.
- ``fastcdc2020`` (version 1): pyfastcdc's public table XORed with one 62-bit seed. From the chunk
  lengths of some known plaintext the 48 bits that decide cuts are recovered in well under a
  second, after which chunk lengths fingerprint known files. Kept only so version-1 repositories
  go on cutting (and so deduplicating) as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Literal, cast

import blake3

from kubekeep import errors
from kubekeep.engine import format as fmt

if TYPE_CHECKING:
    import pyfastcdc

try:
    from kubekeep.engine._gearcdc import GearCDC
except ImportError as exc:  # a source tree whose C extension was never built
    raise ImportError(
        "kubekeep's C chunker (kubekeep.engine._gearcdc) is not built: install kubekeep "
        "with pip (`pip install -e .` in a checkout; needs a C compiler)"
    ) from exc

#: the design new repositories record
KEYED_GEAR = fmt.CHUNKER_ALGORITHM
#: version 1's design (pyfastcdc, public table XOR one seed)
SEEDED = "fastcdc2020"
ALGORITHMS = (KEYED_GEAR, SEEDED)

#: BLAKE3 key-derivation context for the gear table (a domain of its own: no blob id, which is
#: a keyed hash of content under the same key, can ever equal table bytes)
GEAR_CONTEXT = "kubekeep 2026 chunker gear table v1"
GEAR_BYTES = 256 * 8

_local = threading.local()

#: bytes read per call when chunking a stream (a few max-size chunks, so holding back the
#: last chunk rarely re-scans much)
READ_BLOCK = 32 * 1024 * 1024
#: what is asked for after a short read
PROBE = 64 * 1024


def gear_table(id_key: bytes) -> bytes:
    """The repository's gear table: 256 little-endian uint64, the BLAKE3 XOF in key-derivation
    mode of the identity key (a PRF of the key, separated from blob ids by its context)."""
    return blake3.blake3(id_key, derive_key_context=GEAR_CONTEXT).digest(length=GEAR_BYTES)


def legacy_seed(id_key: bytes) -> int:
    """Version 1's 62-bit pyfastcdc seed (0 would mean no seed)."""
    digest = blake3.blake3(b"kubekeep chunker seed", key=id_key).digest(8)
    return (int.from_bytes(digest, "little") >> 2) or 1


class Chunker:
    """Splits streams into content-defined chunks with a repository's chunker parameters and
    its identity key (from which the secret gear table, or version 1's seed, is derived)."""

    def __init__(self, params: object, id_key: bytes) -> None:
        """``params``: :class:`fmt.ChunkerParams`, checked here (an agent gets them from the network)."""
        if not isinstance(params, Mapping):
            raise errors.RepositoryError("malformed chunker parameters: not a map")
        self.algorithm = params.get("algorithm")
        try:
            self.min = int(params["min"])
            self.avg = int(params["avg"])
            self.max = int(params["max"])
            self.normalization = int(params.get("normalization", 1))
        except (KeyError, TypeError, ValueError):
            raise errors.RepositoryError(f"malformed chunker parameters {dict(params)!r}") from None
        if not all(0 <= v < 1 << 32 for v in (self.min, self.avg, self.max, self.normalization)):
            raise errors.RepositoryError(f"chunker parameters out of range {dict(params)!r}")
        self._chunks: Callable[[bytes | memoryview], Iterator[memoryview]]
        if self.algorithm == KEYED_GEAR:
            try:
                cdc = GearCDC(gear_table(id_key), self.min, self.avg, self.max, self.normalization)
            except ValueError as exc:
                raise errors.RepositoryError(f"bad chunker parameters: {exc}") from None
            self._chunks = lambda buf: _views(buf, cdc.cut_buf(buf))
        elif self.algorithm == SEEDED:
            self._key = (self.min, self.avg, self.max, self.normalization, legacy_seed(id_key))
            self._chunks = lambda buf: (c.data for c in self._fastcdc().cut_buf(buf))
        else:
            raise errors.RepositoryError(
                f"unsupported chunker algorithm {self.algorithm!r} (this kubekeep knows {', '.join(ALGORITHMS)})"
            )

    def _fastcdc(self) -> pyfastcdc.FastCDC:
        """Version 1's pyfastcdc instance for this thread (one per thread: not safe to share)."""
        cache = getattr(_local, "chunkers", None)
        if cache is None:
            cache = _local.chunkers = {}
        cdc = cache.get(self._key)
        if cdc is None:
            import pyfastcdc  # version 1 only; it loads typing_extensions (~15 ms a start-up)

            mn, avg, mx, nc, seed = self._key
            # pyfastcdc refuses a level outside 0..3 itself (ValueError), as it always has
            level = cast(Literal[0, 1, 2, 3], nc)
            cdc = cache[self._key] = pyfastcdc.FastCDC(
                avg, min_size=mn, max_size=mx, normalized_chunking=level, seed=seed
            )
        return cdc

    def stream(self, stream: IO[bytes], size_hint: int | None = None) -> Iterator[memoryview]:
        """Chunks of ``stream``; each view is valid only until the next one is produced.

        Reads blocks of ``READ_BLOCK`` bytes and cuts them whole, holding back the last chunk
        of a block (its end is the block's, not a content boundary) to prepend to the next.
        FastCDC decides each cut from the chunk's own bytes only, so the result equals cutting
        the whole stream at once. (pyfastcdc's own ``cut_stream`` costs ~0.7 ms a call and runs
        at a fifth of ``cut_buf``'s speed.)
        """
        readinto = getattr(stream, "readinto", None)
        if readinto is None or size_hint is None or size_hint < READ_BLOCK:
            yield from self._stream_blocks(stream, size_hint)
            return
        # a stream expected to be large: one buffer for the whole stream, the held-back chunk
        # moved to its front and the next block read in behind it (no per-block allocation or
        # join); not for streams of unknown size, which are mostly small files
        buf = bytearray(READ_BLOCK + self.max)
        view = memoryview(buf)
        held = 0
        while True:
            end = held + _fill(readinto, view[held : held + READ_BLOCK])
            if end == held:
                if held:
                    yield view[:held]
                return
            last = yield from _all_but_last(self._chunks(view[:end]))
            assert last is not None
            held = len(last)
            del last
            buf[:held] = buf[end - held : end]

    def _stream_blocks(self, stream: IO[bytes], size_hint: int | None) -> Iterator[memoryview]:
        carry = b""
        # read(n) allocates n bytes up front: size small files' reads by their expected size
        want = READ_BLOCK if size_hint is None else max(4096, min(READ_BLOCK, size_hint + 1))
        while True:
            block = stream.read(want)
            # read(n) allocates n bytes before it knows there are none left: after a short read
            # (a file read to its size, usually) ask for a little, not a whole block (allocating
            # 32 MiB per file just to see the end cost a sixth of a first backup's read time)
            want = READ_BLOCK if len(block) == want else PROBE
            if not block:
                if carry:
                    yield memoryview(carry)
                return
            buf = carry + block if carry else block
            last = yield from _all_but_last(self._chunks(buf))
            carry = bytes(last) if last is not None else b""

    def buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        if not data:
            return iter(())
        return self._chunks(data)


class PageChunker:
    """Cuts content made of fixed-size pages (a bbolt database) into chunks of ``pages`` whole
    pages, at multiples of the chunk size from offset 0 (docs/format.md, "Paged content").

    bbolt never moves a page: page ``n`` is at ``n * page_size`` and a transaction rewrites
    (copy-on-write) whole pages where its freelist puts them, so a changed page changes exactly
    the one chunk around it and every other chunk keeps its bytes. Content-defined cuts would add
    nothing (nothing shifts) and could only spread a change over a neighbour. Every chunk but the
    last has the same length, so chunk lengths say nothing about the content.
    """

    #: bytes read per call (a multiple of every chunk size: page sizes are powers of two)
    BLOCK = 4 * 1024 * 1024

    def __init__(self, chunking: fmt.PageChunking) -> None:
        self.chunking = chunking
        self.size = chunking.chunk_size
        self._block = max(self.BLOCK, self.size)

    def stream(self, stream: IO[bytes], size_hint: int | None = None) -> Iterator[memoryview]:
        """Chunks of ``stream``; each view is valid only until the next one is produced."""
        del size_hint  # one fixed block buffer whatever the size
        readinto = getattr(stream, "readinto", None)
        buf = bytearray(self._block)
        view = memoryview(buf)
        while True:
            if readinto is not None:
                got = _fill(readinto, view)
            else:
                got = _fill_read(stream, view)
            yield from self.buffer(view[:got])
            if got < len(view):
                return

    def buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        view = memoryview(data).cast("B")
        size = self.size
        for start in range(0, len(view), size):
            yield view[start : start + size]


def _fill_read(stream: IO[bytes], view: memoryview) -> int:
    got = 0
    while got < len(view):
        data = stream.read(len(view) - got)
        if not data:
            break
        view[got : got + len(data)] = data
        got += len(data)
    return got


def _views(buf: bytes | memoryview, ends: list[int]) -> Iterator[memoryview]:
    view = memoryview(buf)
    start = 0
    for end in ends:
        yield view[start:end]
        start = end


def _all_but_last(chunks: Iterator[memoryview]) -> Generator[memoryview, None, memoryview | None]:
    """Yield ``chunks`` but the last, which is returned (its end is the buffer's, not a content
    boundary); None for an empty buffer."""
    last: memoryview | None = None
    for chunk in chunks:
        if last is not None:
            yield last
        last = chunk
    return last


def _fill(readinto: Callable[[memoryview], int | None], view: memoryview) -> int:
    """Read into ``view`` until it is full or the stream ends; the number of bytes read."""
    got = 0
    while got < len(view):
        n = readinto(view[got:])
        if not n:
            break
        got += n
    return got
