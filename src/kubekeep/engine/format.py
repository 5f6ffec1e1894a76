"""Format constants shared by the engine modules. Changing any of these is a format change:
bump ``REPOSITORY_VERSION`` and document it in docs/format.md."""

from __future__ import annotations

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
