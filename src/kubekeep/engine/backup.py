"""The backup pipeline: an importer's entries in, a snapshot out.

The importer walks its source on the calling thread (depth-first pre-order, see
``engine.entries.Importer``); file contents are chunked, hashed, deduplicated, compressed and
encrypted by a small pool of workers (the heavy libraries release the GIL); a directory's tree
blob is written when the walk leaves it. Files whose ``reuse_key`` matches the parent
snapshot's are not read again. The snapshot file is written last, after every pack and index
file it needs is stored: a run killed at any point leaves no snapshot and a valid repository.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from kubekeep import __version__, errors
from kubekeep.engine import host
from kubekeep.engine.chunker import Chunker, PageChunker
from kubekeep.engine.entries import ChunkSpec, Entry, EntryType, Importer, ParentFiles
from kubekeep.engine.format import PageChunking
from kubekeep.engine.pack import DATA, TREE
from kubekeep.engine.prechunked import store_prechunked
from kubekeep.engine.repository import Repository
from kubekeep.engine.sealing import compiled
from kubekeep.engine.snapshot import Snapshot, now_rfc3339
from kubekeep.engine.tree import DIR, FILE, Node, chunking_of, encode_tree, is_text, name_printable, wire_nodes
from kubekeep.engine.writer import BlobWriter


@dataclass
class BackupStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    files_unchanged: int = 0
    bytes_total: int = 0  # logical size of all files
    bytes_read: int = 0  # bytes actually read and chunked
    bytes_new: int = 0  # plaintext bytes of blobs the repository did not have
    bytes_stored: int = 0  # bytes added to the repository
    blobs_new: int = 0
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Progress:
    """Counters the CLI and UI render while a backup runs (read without locking)."""

    files: int = 0
    bytes_done: int = 0
    bytes_new: int = 0
    current: str = ""


ProgressCallback = Callable[[Progress], None]


#: files below this size are read in batches, one task per batch: per-file thread hand-offs
#: (futures, semaphores, the GIL) cost more than reading a small file
SMALL_FILE = 256 * 1024
BATCH_FILES = 128
BATCH_BYTES = 8 * 1024 * 1024
#: small local files are read, named and sealed by engine/_seal in runs of this many bytes: a
#: run is held as read, as sealed by Rust and as Python bytes at once (8 MiB runs: peak RSS of
#: the engine benchmark's first backup 165 MB against 146 MB; bench/README.md)
LOCAL_RUN_BYTES = 1 << 20
#: files from this size on have their new chunks compressed and encrypted by the sealing pool
#: while the reading worker goes on chunking and hashing, so one large stream (an etcd
#: database, a volume image) uses every core
LARGE_STREAM = 64 * 1024 * 1024

_FileResult = tuple[list[bytes], int] | None

#: files and chunk ids of the parent's directories an importer's listing (``use_parent``) keeps
#: for the backup's walk, which then does not load them again (~100 bytes each)
PRELOADED = 500_000


@dataclass
class _OpenDir:
    path: str
    node: Node  # the directory's own node (in its parent)
    children: list[Node] = field(default_factory=list)
    # (node, task, position of the node's result in the task's list)
    pending: list[tuple[Node, Future[list[_FileResult]], int]] = field(default_factory=list)
    batch: list[tuple[Node, Entry]] = field(default_factory=list)
    batch_bytes: int = 0


class _ParentTree:
    """Looks up nodes of the parent snapshot by directory, loading trees on demand.

    Trees are kept as decoded (:func:`wire_nodes`), not as checked :class:`Node` objects: a
    re-backup looks at a handful of fields of every node, and checks just those (a node with a
    field of the wrong type is not reused; its file is read again)."""

    def __init__(self, repo: Repository, root: bytes | None) -> None:
        self.repo = repo
        #: directories a :class:`_ParentView` loaded first, by tree id, each taken once
        self.preloaded: dict[bytes, _ParentDir] = {}
        self.dirs: dict[str, _ParentDir | None] = {"": self._load(root)}

    def _load(self, tree_id: bytes | None) -> _ParentDir | None:
        if tree_id is not None:
            found = self.preloaded.pop(tree_id, None)
            if found is not None:
                return found
        return _load_parent_dir(self.repo, tree_id)

    def dir(self, path: str) -> dict[str, _Reusable] | None:
        """The reusable files of the parent's directory ``path``, None if it has none there."""
        loaded = self._dir(path)
        return loaded.files if loaded is not None else None

    def _dir(self, path: str) -> _ParentDir | None:
        if path in self.dirs:
            return self.dirs[path]
        parent_path, _, name = path.rpartition("/")
        parent = self._dir(parent_path)
        subtree = parent.subdirs.get(name) if parent is not None else None
        loaded = self._load(subtree) if subtree is not None else None
        self.dirs[path] = loaded
        return loaded

    def forget(self, path: str) -> None:
        self.dirs.pop(path, None)


def _load_parent_dir(repo: Repository, tree_id: bytes | None) -> _ParentDir | None:
    """The directory's reusable files, leaving out those whose data is not all in the index
    (a damaged or pruned parent), checked with one vectorised lookup per directory, and its
    subdirectories' trees."""
    index = repo.index
    if tree_id is None or index.lookup(tree_id) is None:
        return None
    loaded = _ParentDir()
    for d in wire_nodes(repo.load_blob(tree_id), f"tree {tree_id.hex()[:16]}"):
        name, kind = d.get("n"), d.get("t")
        if type(name) is bytes:  # not UTF-8: as the walk names it, with surrogate escapes
            name = name.decode("utf-8", "surrogateescape")
        elif type(name) is not str:
            continue
        if kind == FILE:
            content, size, key = d.get("c"), d.get("s"), d.get("rk")
            if (
                type(content) is list
                and type(size) is int
                and type(key) is bytes
                and all(type(c) is bytes for c in content)
            ):
                loaded.files[name] = _Reusable(key, size, content, chunking_of(d.get("ck")))
        elif kind == DIR and type(d.get("st")) is bytes:
            loaded.subdirs[name] = d["st"]
    ids = [c for f in loaded.files.values() for c in f.content]
    present = index.contains_all(ids) if ids else None
    if present is not None and not present.all():  # the usual case is one check per directory
        at = 0
        for name, f in list(loaded.files.items()):
            if not present[at : at + len(f.content)].all():
                del loaded.files[name]
            at += len(f.content)
    return loaded


class _ParentView(ParentFiles):
    """The parent snapshot's reusable files, for an importer that skips unchanged files at its
    source (``Importer.use_parent``). Each call walks the trees anew (with their own cache, so
    it may run on another thread than the backup's walk) and keeps one directory at a time."""

    def __init__(self, repo: Repository, root: bytes, keep: dict[bytes, _ParentDir] | None = None) -> None:
        self.repo = repo
        self.root = root
        #: where directories loaded here are left for the backup's own walk (up to PRELOADED)
        self.keep = keep
        self.kept = 0

    def files(self, under: str = "") -> Iterator[tuple[str, bytes, int]]:
        start = _ParentTree(self.repo, self.root)._dir(under.strip("/"))
        if start is None:
            return
        pending: list[tuple[str, bytes]] = []  # directories still to load: (path, tree id)
        path, loaded = "", start
        while True:
            for name, f in loaded.files.items():
                yield (f"{path}/{name}" if path else name), f.reuse_key, f.size
            pending.extend((f"{path}/{name}" if path else name, sub) for name, sub in reversed(loaded.subdirs.items()))
            while pending:
                path, tree_id = pending.pop()
                found = _load_parent_dir(self.repo, tree_id)
                if found is not None:
                    if self.keep is not None and self.kept < PRELOADED:
                        self.keep[tree_id] = found
                        self.kept += len(found.files) + sum(len(f.content) for f in found.files.values())
                    loaded = found
                    break
            else:
                return


@dataclass(slots=True)
class _ParentDir:
    """One directory of the parent snapshot, as much of it as a re-backup looks at."""

    files: dict[str, _Reusable] = field(default_factory=dict)
    subdirs: dict[str, bytes] = field(default_factory=dict)  # name -> subtree id


@dataclass(slots=True)
class _Reusable:
    """A file of the parent snapshot: what a file of the source must match to reuse its data."""

    reuse_key: bytes
    size: int
    content: list[bytes]
    chunking: PageChunking | None  # how its data was cut (a file cut another way is read again)


def default_workers() -> int:
    """A worker per core: compression, hashing and encryption release the GIL (2 cores: 3 or 4
    workers were no faster than 2 and used more memory)."""
    return max(2, min(8, os.cpu_count() or 2))


def find_parent(repo: Repository, uri: str, host: str) -> Snapshot | None:
    """The latest snapshot of the same source, used to skip unchanged files."""
    candidates = [
        s
        for s in repo.snapshots(skip_damaged=True)
        if s.uri == uri and s.source.get("host", "") == host and s.extends is None
    ]
    return candidates[-1] if candidates else None


def run_backup(
    repo: Repository,
    importer: Importer,
    *,
    tags: list[str] | None = None,
    parent: Snapshot | None = None,
    use_parent: bool = True,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    extra_metadata: dict[str, Any] | None = None,
    chain: str | None = None,
    extends: str | None = None,
) -> Snapshot:
    """Back up everything ``importer`` yields into a new snapshot and return it. ``chain`` and
    ``extends`` are the snapshot's chain keys (:class:`Snapshot`).

    The caller holds a (shared) repository lock.
    """
    started = time.monotonic()
    source = importer.source()
    if parent is None and use_parent:
        parent = find_parent(repo, source.uri, source.host)
    reuse_from = parent if use_parent else None  # use_parent=False: read everything, even with a parent
    run = _BackupRun(repo, reuse_from, default_workers() if workers is None else workers, progress)
    try:
        importer.use_chunking(ChunkSpec(repo.config["chunker"].copy(), repo.master.identity, known=run.writer.has))
        if reuse_from is not None:
            importer.use_parent(_ParentView(repo, bytes.fromhex(reuse_from.tree), run.parent.preloaded))
        root_id = run.ingest(importer)
        run.writer.flush()
    finally:
        run.close()
    stats = run.stats
    stats.bytes_new = run.writer.stats.bytes_raw_new
    stats.bytes_stored = run.writer.stats.bytes_stored
    stats.blobs_new = run.writer.stats.blobs_new
    metadata = dict(importer.metadata())
    metadata.update(extra_metadata or {})
    snap = Snapshot(
        time=now_rfc3339(),
        tree=root_id.hex(),
        source={"uri": source.uri, "kind": source.kind, "host": source.host, "extra": source.extra},
        hostname=host.hostname(),
        username=host.username(),
        tags=sorted(set(tags or [])),
        parent=parent.id if parent else None,
        metadata=metadata,
        warnings=list(importer.warnings()) + run.warnings,
        program_version=__version__,
        chain=chain,
        extends=extends,
    )
    stats.duration_s = round(time.monotonic() - started, 3)
    snap.stats = stats.to_dict()
    # the snapshot file itself is counted in bytes_stored after it is written
    repo.save_snapshot(snap)
    return snap


class _BackupRun:
    def __init__(
        self, repo: Repository, parent: Snapshot | None, workers: int, progress: ProgressCallback | None
    ) -> None:
        self.repo = repo
        self.writer: BlobWriter = repo.writer()
        self.chunker = Chunker(repo.config["chunker"], repo.master.identity)
        self.parent = _ParentTree(repo, bytes.fromhex(parent.tree) if parent else None)
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="kubekeep-backup")
        self.slots = threading.BoundedSemaphore(max(1, workers) * 4)
        self.sealers = ThreadPoolExecutor(max(1, workers), thread_name_prefix="kubekeep-seal")
        # chunks copied for the sealing pool and not yet sealed: at most this many x 8 MiB
        self.seal_slots = threading.BoundedSemaphore(max(1, workers) * 2)
        self.stats = BackupStats()
        self.progress = Progress()
        self.callback = progress
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._last_report = 0.0
        # closed directories whose files are still being read, in closing order (children
        # before their parents), finished as their reads complete
        self._closing: deque[_OpenDir] = deque()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.sealers.shutdown(wait=True, cancel_futures=True)
        self.writer.close()

    # -- tree building ------------------------------------------------------------------------
    def ingest(self, importer: Importer) -> bytes:
        root = _OpenDir("", Node(name="", type=DIR, mode=0o755))
        stack = [root]
        for entry in importer.entries():
            path = _check_path(entry.path)
            parent_path, _, name = path.rpartition("/")
            while stack[-1].path != parent_path and not _is_ancestor(stack[-1].path, parent_path):
                self._close_dir(stack)
            while stack[-1].path != parent_path:  # implicit parent directories
                top = stack[-1].path
                rest = parent_path[len(top) + 1 :] if top else parent_path
                implicit = rest.split("/", 1)[0]
                self._open_dir(stack, Entry(f"{top}/{implicit}" if top else implicit, EntryType.DIR, mode=0o755))
            if entry.type == EntryType.DIR:
                self._open_dir(stack, entry)
            elif entry.type == EntryType.SYMLINK:
                stack[-1].children.append(Node.from_entry(entry, name))
                self.stats.symlinks += 1
            else:
                self._add_file(stack[-1], entry, name)
            self._report(path)
        while len(stack) > 1:
            self._close_dir(stack)
        self._finish_ready(wait=True)
        self._submit_batch(root)
        return self._finish_dir(root)

    def _open_dir(self, stack: list[_OpenDir], entry: Entry) -> None:
        path = entry.path.strip("/")
        node = Node.from_entry(entry, path.rpartition("/")[2])
        stack[-1].children.append(node)
        stack.append(_OpenDir(path, node))
        self.stats.dirs += 1

    def _close_dir(self, stack: list[_OpenDir]) -> None:
        d = stack.pop()
        self._submit_batch(d)
        self.parent.forget(d.path)
        self._closing.append(d)
        self._finish_ready()

    def _finish_ready(self, *, wait: bool = False) -> None:
        """Write the tree blobs of closed directories whose files are all read (all of them when
        ``wait``), in closing order, so a parent always follows its subdirectories."""
        while self._closing:
            d = self._closing[0]
            if not wait and not all(fut.done() for _, fut, _ in d.pending):
                return
            self._closing.popleft()
            d.node.subtree = self._finish_dir(d)

    def _finish_dir(self, d: _OpenDir) -> bytes:
        for node, fut, at in d.pending:
            result = fut.result()[at]
            if result is None:
                d.children.remove(node)
                continue
            node.content, node.size = result
        if self.repo.format_version < 2:  # version-1 trees hold text only (docs/format.md)
            for child in [c for c in d.children if not is_text(c.name) or not is_text(c.target)]:
                d.children.remove(child)
                self._warn(
                    f"{name_printable(d.path, child.name)}: name or symlink target is not valid UTF-8, "
                    "which a version-1 repository cannot hold; skipped"
                )
        names: set[str] = set()
        for child in d.children:
            if child.name in names:
                raise errors.ConnectorError(f"the source yielded {d.path}/{child.name} twice")
            names.add(child.name)
        return self.writer.save(TREE, encode_tree(d.children))

    # -- files --------------------------------------------------------------------------------
    def _add_file(self, d: _OpenDir, entry: Entry, name: str) -> None:
        node = Node.from_entry(entry, name)
        d.children.append(node)
        self.stats.files += 1
        reused = self._reusable(d.path, name, entry)
        if reused is not None:
            if entry.chunks is not None:
                entry.chunks.skip()
            node.content, node.size, node.chunking = reused.content, reused.size, reused.chunking
            self.stats.files_unchanged += 1
            self.stats.bytes_total += reused.size
            self.progress.bytes_done += reused.size
            return
        if entry.chunks is None:
            node.chunking = page_chunking(entry)
        if entry.size < SMALL_FILE and entry.chunks is None:
            d.batch.append((node, entry))
            d.batch_bytes += entry.size
            if len(d.batch) >= BATCH_FILES or d.batch_bytes >= BATCH_BYTES:
                self._submit_batch(d)
        else:
            self._submit(d, [(node, entry)])

    def _submit_batch(self, d: _OpenDir) -> None:
        if d.batch:
            batch, d.batch, d.batch_bytes = d.batch, [], 0
            self._submit(d, batch)

    def _submit(self, d: _OpenDir, items: list[tuple[Node, Entry]]) -> None:
        self.slots.acquire()
        try:
            fut = self.pool.submit(self._read_files, [entry for _, entry in items])
        except BaseException:
            self.slots.release()
            raise
        d.pending.extend((node, fut, i) for i, (node, _) in enumerate(items))

    def _read_files(self, entries: list[Entry]) -> list[_FileResult]:
        try:
            results: list[_FileResult] = []
            local: list[int] = []  # small local files, read by _seal: their places in results
            for entry in entries:
                if (
                    entry.local_path is not None
                    and entry.size < self.chunker.min
                    and entry.data is None
                    and entry.chunks is None
                    and page_chunking(entry) is None
                ):
                    local.append(len(results))
                    results.append(None)
                else:
                    results.append(self._read_file(entry))
            start = 0
            while start < len(local):  # runs of up to LOCAL_RUN_BYTES: a run is in memory 3 times
                end, size = start, 0
                while end < len(local) and (end == start or size + entries[local[end]].size <= LOCAL_RUN_BYTES):
                    size += entries[local[end]].size
                    end += 1
                self._read_local([entries[i] for i in local[start:end]], local[start:end], results)
                start = end
            return results
        finally:
            self.slots.release()

    def _read_local(self, entries: list[Entry], places: list[int], results: list[_FileResult]) -> None:
        """Read small local files whole and store their new content, three compiled calls for
        the batch (engine/_seal): a file smaller than the chunker's minimum is one chunk."""
        read = compiled.read_files(
            [cast(str, e.local_path) for e in entries], [e.size for e in entries], self.repo.master.identity
        )
        writer = self.writer
        new_ids: list[bytes] = []
        new_data: list[bytes] = []
        done = 0
        for entry, place, (first, second) in zip(entries, places, read, strict=True):
            if type(first) is int:  # (errno, opened)
                failed = "read failed: " if second else ""
                self._warn(f"{entry.path}: {failed}{os.strerror(first)}; skipped")
                continue
            blob_id, data = cast(bytes, first), cast(bytes, second)
            content: list[bytes] = []
            if len(data) >= self.chunker.min:  # grew while it was read: cut as any file
                self._store_chunks(self.chunker.buffer(data), content)
            elif data:
                content.append(blob_id)
                new_ids.append(blob_id)
                new_data.append(data)
                self.progress.bytes_done += len(data)
            results[place] = (content, len(data))
            done += len(data)
        if new_ids:
            claimed = writer.claim(new_ids)
            ids = [i for i, new in zip(new_ids, claimed, strict=True) if new]
            datas = [d for d, new in zip(new_data, claimed, strict=True) if new]
            if ids:
                sealed = writer.seal(DATA, datas, ids)
                writer.add_sealed(DATA, [(i, b, len(d)) for i, b, d in zip(ids, sealed, datas, strict=True)])
        with self._lock:
            self.stats.bytes_total += done
            self.stats.bytes_read += done
            self.progress.files += sum(1 for place in places if results[place] is not None)

    def _reusable(self, dir_path: str, name: str, entry: Entry) -> _Reusable | None:
        if entry.reuse_key is None or (entry.chunks is not None and not entry.chunks.reusable):
            return None
        files = self.parent.dir(dir_path)
        old = files.get(name) if files else None
        if old is None or old.reuse_key != entry.reuse_key or old.size != entry.size:
            return None
        if entry.chunks is None and old.chunking != page_chunking(entry):
            return None  # cut another way than this run would: read again, so chunks match
        return old  # its data is in the index: _ParentTree checked that when loading the directory

    def _read_file(self, entry: Entry) -> _FileResult:
        try:
            content: list[bytes] = []
            size = 0
            paged = page_chunking(entry)
            chunker: Chunker | PageChunker = PageChunker(paged) if paged is not None else self.chunker
            if entry.data is not None:
                chunks = chunker.buffer(entry.data)
                size = self._store_chunks(chunks, content)
            elif entry.chunks is not None:
                size = store_prechunked(entry.chunks, self.writer, self.repo.master, content, self._add_done)
            elif entry.opener is not None:
                try:
                    stream = entry.opener()
                except OSError as exc:
                    self._warn(f"{entry.path}: {exc.strerror or exc}; skipped")
                    return None
                large = entry.size >= LARGE_STREAM
                with stream:
                    size = self._store_chunks(chunker.stream(stream, entry.size), content, parallel=large)
            with self._lock:
                self.stats.bytes_total += size
                self.stats.bytes_read += size
                self.progress.files += 1
            return content, size
        except OSError as exc:
            self._warn(f"{entry.path}: read failed: {exc.strerror or exc}; skipped")
            return None

    def _store_chunks(self, chunks: Iterable[memoryview], content: list[bytes], *, parallel: bool = False) -> int:
        size = 0
        writer = self.writer
        master = self.repo.master
        sealing: list[Future[bytes]] = []
        try:
            for chunk in chunks:
                blob_id = master.blob_id(chunk)
                if not writer.has(blob_id):
                    if parallel:
                        # the view is only valid until the next chunk: the sealer gets a copy
                        self.seal_slots.acquire()
                        try:
                            sealing.append(self.sealers.submit(self._seal, bytes(chunk), blob_id))
                        except BaseException:
                            self.seal_slots.release()
                            raise
                        while sealing and sealing[0].done():  # surface a failed seal early
                            sealing.pop(0).result()
                    else:
                        writer.save(DATA, chunk, blob_id)
                content.append(blob_id)
                size += len(chunk)
                self.progress.bytes_done += len(chunk)
        except BaseException:
            wait(sealing)  # never leave a sealer running behind a failed read
            raise
        for fut in sealing:
            fut.result()
        return size

    def _seal(self, data: bytes, blob_id: bytes) -> bytes:
        try:
            return self.writer.save(DATA, data, blob_id)
        finally:
            self.seal_slots.release()

    def _add_done(self, n: int) -> None:
        self.progress.bytes_done += n

    def _warn(self, message: str) -> None:
        with self._lock:
            self.warnings.append(message)

    def _report(self, path: str) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._last_report >= 0.1:
            self._last_report = now
            self.progress.current = path
            self.progress.bytes_new = self.writer.stats.bytes_raw_new
            self.callback(self.progress)


def page_chunking(entry: Entry) -> PageChunking | None:
    """The chunking of a file the importer says is made of pages (``Entry.chunking``); None
    (the repository's content-defined chunker) without a hint or for a page size not accepted."""
    hint = entry.chunking
    if hint is None or hint.page_size is None:
        return None
    try:
        return PageChunking.for_page_size(hint.page_size)
    except ValueError:
        return None


def _check_path(path: str) -> str:
    path = path.strip("/")
    framed = f"/{path}/"
    if not path or "//" in path or "/./" in framed or "/../" in framed:
        raise errors.ConnectorError(f"the source yielded an invalid path {path!r}")
    return path


def _is_ancestor(ancestor: str, path: str) -> bool:
    return ancestor == "" or path.startswith(ancestor + "/")
