"""Format constants shared by the engine modules. Changing any of these is a format change:
bump ``REPOSITORY_VERSION`` and document it in docs/format.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict

#: the version new repositories are created with
REPOSITORY_VERSION = 2
#: the version of repositories created with Object Lock (version 2 plus ``object_lock`` in the
#: config and retention records): older programs refuse them rather than write without dates
OBJECT_LOCK_VERSION = 3
#: versions this program opens; a version-1 repository keeps its own chunker (see docs/format.md,
#: "Changes") and is read and written without conversion
SUPPORTED_VERSIONS = (1, 2, 3)

#: the chunker new repositories record (engine/chunker.py; version 1 wrote "fastcdc2020")
CHUNKER_ALGORITHM = "fastcdc2020-keyed-gear"
#: FastCDC parameters (bytes). FastCDC 2020's real mean is avg + min, so these give ~1 MiB chunks:
#: large enough that a 10 TB repository indexes ~10 M chunks, small enough to dedup well.
CHUNK_MIN = 256 * 1024
CHUNK_AVG = 768 * 1024
CHUNK_MAX = 8 * 1024 * 1024

#: the per-file chunking of paged content (a file made of fixed-size pages, such as a bbolt
#: database): chunks of whole pages, a fixed number of them, cut at multiples of the chunk size
#: from the start of the file (docs/format.md, "Paged content"); recorded in the file's tree node
PAGES_ALGORITHM = "pages"
#: the chunk size aimed at for paged content: small enough that the scattered page rewrites
#: of an etcd compaction touch few chunks, large enough to keep the index small (bench/README.md)
PAGE_CHUNK_TARGET = 16 * 1024
#: page sizes accepted (powers of two in this range)
PAGE_SIZE_MIN = 512
PAGE_SIZE_MAX = 1024 * 1024

#: target pack size: few enough objects for S3 listings and request costs, small enough that a
#: bounded number of packs in flight keeps memory low.
PACK_SIZE = 16 * 1024 * 1024
#: tree packs are cached locally whole, so they are kept smaller.
TREE_PACK_SIZE = 4 * 1024 * 1024

#: zstd level of new repositories (stored in config; older ones keep 3): level 2 took 15 %
#: less CPU than 3 on the engine benchmark, for a repository 0.3 % larger (bench/README.md)
DEFAULT_COMPRESSION_LEVEL = 2

# additional data binding metadata ciphertexts to their role
AAD_CONFIG = b"config"
AAD_INDEX = b"index"
AAD_SNAPSHOT = b"snapshot"
AAD_LOCK = b"lock"
AAD_RUN = b"run"
AAD_DRILL = b"drill"
AAD_RETENTION = b"retention"


class ChunkerParams(TypedDict):
    """The config's ``chunker``: the design (``CHUNKER_ALGORITHM``, or version 1's) and its sizes."""

    algorithm: str
    min: int
    avg: int
    max: int
    #: FastCDC normalisation level (1 when absent)
    normalization: NotRequired[int]


class CompressionParams(TypedDict):
    algorithm: str  # "zstd"
    level: int


class ObjectLockParams(TypedDict):
    """The config's ``object_lock`` (version 3): seconds and a mode."""

    period: int
    mode: str  # "governance" | "compliance"
    margin: int


class RepositoryConfig(TypedDict):
    """The body of the ``config`` object (docs/format.md)."""

    version: int
    id: str
    chunker: ChunkerParams
    compression: CompressionParams
    created_by: str
    object_lock: NotRequired[ObjectLockParams]


@dataclass(frozen=True, slots=True)
class PageChunking:
    """How a file of fixed-size pages was cut: chunks of ``pages`` whole pages of ``page_size``
    bytes each, starting at offset 0 (the last chunk holds what is left). Stored in the file's
    tree node as ``ck`` (docs/format.md, "Trees"); readers need it for nothing but reporting."""

    page_size: int
    pages: int

    def __post_init__(self) -> None:
        ok_page = (
            type(self.page_size) is int
            and PAGE_SIZE_MIN <= self.page_size <= PAGE_SIZE_MAX
            and self.page_size & (self.page_size - 1) == 0
        )
        if not ok_page:
            raise ValueError(f"page size {self.page_size!r} is not a power of two in {PAGE_SIZE_MIN}..{PAGE_SIZE_MAX}")
        if type(self.pages) is not int or not 1 <= self.pages <= 1 << 16:
            raise ValueError(f"pages per chunk {self.pages!r} is not in 1..65536")

    @classmethod
    def for_page_size(cls, page_size: int) -> PageChunking:
        """The chunking new backups use for pages of ``page_size`` (``PAGE_CHUNK_TARGET``)."""
        ok = type(page_size) is int and page_size > 0
        return cls(page_size, max(1, PAGE_CHUNK_TARGET // page_size) if ok else 0)

    @property
    def chunk_size(self) -> int:
        return self.page_size * self.pages

    def to_wire(self) -> dict[str, int | str]:
        return {"a": PAGES_ALGORITHM, "p": self.page_size, "n": self.pages}

    @classmethod
    def from_wire(cls, d: object) -> PageChunking:
        """Raises ``ValueError``/``TypeError`` for a malformed or unknown record."""
        if not isinstance(d, dict) or d.get("a") != PAGES_ALGORITHM:
            raise ValueError(f"unknown chunking record {d!r}")
        return cls(d.get("p"), d.get("n"))  # type: ignore[arg-type]  # checked in __post_init__
