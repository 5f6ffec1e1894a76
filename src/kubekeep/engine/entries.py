"""The connector interface: importers produce entries, exporters receive them.

A snapshot is a tree of entries. An *importer* (``fs:``, ``k8s://``, ``etcd://``, ``pvc://``)
walks its source and yields :class:`Entry` objects; the engine chunks, deduplicates, encrypts
and stores their content and builds the tree. An *exporter* (``fs:``, ``k8s://``, ``pvc://``,
``s3://``) is handed the entries of a snapshot (or of a part of it) with their content, in
tree order, and writes them to a destination.

Connectors know nothing of packs, chunks or keys; the engine knows nothing of Kubernetes.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from kubekeep import errors
from kubekeep.engine.format import ChunkerParams


class EntryType(str, enum.Enum):
    DIR = "dir"
    FILE = "file"
    SYMLINK = "symlink"


class SnapshotKind(str, enum.Enum):
    """What a snapshot holds, by the layer it was taken from (``SourceInfo.kind``; stored as the
    value). Compare a snapshot's ``kind`` with these, never with bare strings."""

    FS = "fs"
    MANIFESTS = "manifests"
    ETCD = "etcd"
    #: watch events between etcd full snapshots (``kubekeep etcd follow``)
    ETCD_DELTA = "etcd-delta"
    VOLUME = "volume"


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """How the repository cuts and names content: its chunker parameters, and the identity key
    (the keyed-BLAKE3 key of blob ids, from which the chunker's secret gear table is derived).
    Given to importers that chunk at the source; whoever holds it can compute (and so test for)
    chunk ids, but cannot decrypt the repository."""

    params: ChunkerParams
    id_key: bytes
    #: whether the repository already holds a blob (lets a source skip asking about it)
    known: Callable[[bytes], bool] | None = None


@dataclass(frozen=True, slots=True)
class ChunkHint:
    """What an importer knows about a file's layout, for choosing how to chunk it.

    ``page_size``: the content is a sequence of fixed-size pages of that many bytes from offset
    0 (a bbolt database), rewritten a page at a time: the engine cuts it into groups of whole
    pages (engine/format.py, ``PageChunking``) instead of content-defined chunks. A hint only:
    a wrong one costs deduplication, never correctness, and the engine ignores a page size it
    does not accept."""

    page_size: int | None = None


class PreChunked(abc.ABC):
    """A file's content as chunk ids computed at its source with the run's :class:`ChunkSpec`.

    ``reusable``: the source has not read the content yet (it found the file unchanged since the
    parent snapshot, see :class:`ParentFiles`). If the entry's ``reuse_key`` and size match the
    parent's file, the engine reuses the parent's chunks and calls :meth:`skip` instead of
    :meth:`batches`; otherwise it reads the content through :meth:`batches` as usual, which
    then reads the file at its source after all."""

    reusable: ClassVar[bool] = False

    @abc.abstractmethod
    def batches(self) -> Iterator[list[tuple[bytes, int]]]:
        """``(blob id, length)`` of every chunk in order, a batch at a time; raises ``OSError``
        if the source could not read the file."""

    @abc.abstractmethod
    def fetch(self, ids: list[bytes]) -> Iterator[bytes]:
        """The data of ``ids`` (chunks of the latest batch), in that order."""

    def skip(self) -> None:  # noqa: B027 - optional hook
        """The engine reused the parent's content (only for ``reusable`` content): neither
        :meth:`batches` nor :meth:`fetch` will be called."""


class ParentFiles(abc.ABC):
    """The files of the parent snapshot a backup reuses unchanged files from, for an importer
    that decides at its source which files are unchanged (``Importer.use_parent``)."""

    @abc.abstractmethod
    def files(self, under: str = "") -> Iterator[tuple[str, bytes, int]]:
        """``(path relative to under, reuse key, size)`` of each file below the directory
        ``under`` whose content the engine can reuse (a reuse key recorded, every chunk in the
        index); nothing if the parent has no such directory."""


@dataclass(slots=True)
class Entry:
    """One node of a snapshot tree.

    ``path`` is relative and slash-separated (``"namespaces/web/apps/deployments/api.yaml"``),
    without a leading slash, ``.`` or ``..`` components.

    A file's content comes from ``data`` (small, in memory) or from ``opener`` (a callable
    returning a binary stream, read once, sequentially). ``reuse_key`` is an importer-defined
    identity of the content (the fs importer uses inode, size, mtime and ctime): when the parent
    snapshot holds a file at the same path with the same ``reuse_key``, the engine reuses its
    chunk list without reading the content again.

    ``attrs`` carries connector metadata (a Kubernetes object's kind, namespace, ...); it must be
    msgpack-serialisable (str keys; str, int, float, bool, None, bytes, lists and dicts of those).

    ``chunks`` replaces ``data``/``opener`` for content that was chunked and hashed where it lives
    (the pvc agent, with the :class:`ChunkSpec` the engine gave the importer): the engine asks
    only for the chunks the repository lacks.

    ``chunking`` is the importer's hint on the content's layout (:class:`ChunkHint`); the
    chunking chosen from it is recorded in the snapshot's tree.

    ``local_path``: the file's path on this machine when ``opener`` opens a local file. The
    engine then reads a small file itself, in a batch of such files (engine/_seal), instead of
    calling ``opener``; the file's path on this machine is all it learns.
    """

    path: str
    type: EntryType
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0
    target: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    opener: Callable[[], IO[bytes]] | None = None
    reuse_key: bytes | None = None
    chunks: PreChunked | None = None
    chunking: ChunkHint | None = None
    local_path: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(slots=True)
class SourceInfo:
    """What a snapshot was taken from; stored in the snapshot's metadata."""

    uri: str  # normalised source URI, e.g. "fs:/srv/data", "k8s://prod", "etcd://10.0.0.1:2379"
    kind: str  # layer: a SnapshotKind value
    host: str = ""  # host name or cluster name the data came from
    extra: dict[str, Any] = field(default_factory=dict)


class Importer(abc.ABC):
    """A source of entries. Used as a context manager: ``with imp: for e in imp.entries(): ...``.

    ``entries()`` yields each directory before anything under it, and everything under one
    directory as one contiguous run (a depth-first pre-order walk; siblings in any order).
    Parent directories that are never yielded are created with default metadata.
    """

    scheme: ClassVar[str]

    @abc.abstractmethod
    def source(self) -> SourceInfo: ...

    @abc.abstractmethod
    def entries(self) -> Iterator[Entry]: ...

    def use_chunking(self, spec: ChunkSpec) -> None:  # noqa: B027 - optional hook
        """Called before ``entries()`` with the repository's chunking; an importer that chunks
        at the source (``Entry.chunks``) keeps it, others ignore it."""

    def use_parent(self, parent: ParentFiles) -> None:  # noqa: B027 - optional hook
        """Called before ``entries()`` when the backup reuses unchanged files from a parent
        snapshot; an importer that finds unchanged files at its source (without reading them)
        asks ``parent`` what it holds, others ignore it."""

    def metadata(self) -> dict[str, Any]:
        """Extra snapshot metadata known only after ``entries()`` is exhausted (e.g. etcd revision)."""
        return {}

    def warnings(self) -> list[str]:
        """Problems that did not fail the backup (an unlistable resource, a skipped file)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and temporary resources; called on success, failure and interrupt."""

    def __enter__(self) -> Importer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Exporter(abc.ABC):
    """A destination for entries. Used as a context manager.

    The engine calls ``directory`` for a path before ``file``/``symlink`` for anything under it.
    ``file`` may be called from several threads at once (for different paths); ``data`` yields the
    content's pieces in order and raises ``errors.IntegrityError`` if stored data fails
    verification, in which case the exporter must not leave a silently wrong file behind.
    An entry that cannot be written (a directory in the way, a full disk, a path that would leave
    the destination) raises ``errors.EntryFailed``: the engine records it and goes on (skipping
    what is below a failed directory). ``finish`` runs once after everything was written, failures
    included (the fs exporter sets directory times there).

    Entry paths come from snapshots, which anyone holding a key can write: an exporter writing
    to a file system must keep every path inside its destination and never follow a symlink
    it finds there.
    """

    scheme: ClassVar[str]

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:  # noqa: B027
        """Called once before any entry, with the snapshot's source, metadata and short id."""

    @abc.abstractmethod
    def directory(self, entry: Entry) -> None: ...

    @abc.abstractmethod
    def file(self, entry: Entry, data: Iterable[bytes]) -> None: ...

    @abc.abstractmethod
    def symlink(self, entry: Entry) -> None: ...

    def files(self, items: list[tuple[Entry, list[bytes]]]) -> list[errors.EntryFailed | None]:
        """Write a run of small files whose content the engine already read and verified, each
        as ``file`` would; per file None, or the ``EntryFailed`` it raised (the others are still
        written). Exporters that can write a run at once (the fs exporter: one call without
        the GIL) override it."""
        out: list[errors.EntryFailed | None] = []
        for entry, data in items:
            try:
                self.file(entry, data)
                out.append(None)
            except errors.EntryFailed as exc:
                out.append(exc)
        return out

    def finish(self) -> list[str]:
        """Complete the restore; return warnings for the report."""
        return []

    def results(self) -> list[dict[str, Any]]:
        """Per-item outcomes for the restore report, after ``finish`` (the Kubernetes exporter
        reports each object as created / updated / skipped / failed with a reason)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called on success, failure and interrupt."""

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def with_directories(files: Iterable[Entry], *, mode: int = 0o755) -> Iterator[Entry]:
    """``files`` (sorted by path) preceded by each of their directories, in pre-order: for
    importers whose sources have no directories of their own (API objects, object keys)."""
    opened: set[str] = set()
    for f in files:
        parts = f.path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in opened:
                opened.add(d)
                yield Entry(d, EntryType.DIR, mode=mode)
        yield f
