"""The restore pipeline: a snapshot (or part of it) out to an exporter.

Directories and symlinks are handed over on the calling thread in pre-order; files go to a
pool of workers, each streaming its blobs (verified on load) to the exporter. What cannot be
restored fails alone and the rest goes on: a blob that fails verification fails its file, a
tree that fails (damaged, or naming entries no directory can hold) everything below it, an
entry the exporter could not write (``errors.EntryFailed``: a directory in the way, a full
disk) that entry (and a directory everything below it). The exporter still finishes (the fs
exporter sets directory metadata then), and the run ends with an ``IntegrityError`` (if
anything stored was damaged) or a ``ConnectorError`` naming what could not be restored.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.engine.entries import Entry, Exporter, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import DIR, FILE, SYMLINK, Node, name_printable


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)  # the exporter's per-item report
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NodeFilter = Callable[[str, Node], bool]

#: files below this size are restored in runs, one task per run, their blobs read (and the
#: files written, ``Exporter.files``) together
SMALL_FILE = 1024 * 1024
BATCH_FILES = 128
BATCH_BYTES = 8 * 1024 * 1024
#: tasks queued ahead of the workers
QUEUED = 64
#: entries that failed named in the message of the error ending an incomplete restore
FAILURES_NAMED = 3


def default_workers() -> int:
    """One more than the cores: a worker waiting on a read or a write leaves its core to another
    (2 cores: 3 workers restored the benchmark set 5-15 % faster than 2 or 4)."""
    return max(2, min(8, (os.cpu_count() or 2) + 1))


def selection(repo: Repository, snap: Snapshot, path: str) -> Iterator[tuple[str, Node]]:
    """``(relative path, node)`` for everything selected by ``path``: a directory's contents
    relative to it, or a single file or symlink under its own name."""
    node = repo.resolve(snap, path)
    if node.type == DIR:
        if node.subtree is not None:
            yield from repo.walk(node.subtree)
    else:
        yield node.name, node


def run_restore(
    repo: Repository,
    snap: Snapshot,
    exporter: Exporter,
    *,
    path: str = "",
    include: NodeFilter | None = None,
    workers: int | None = None,
) -> RestoreStats:
    started = time.monotonic()
    workers = default_workers() if workers is None else workers
    stats = RestoreStats()
    lock = threading.Lock()
    damaged: list[bool] = []
    exporter.begin(
        SourceInfo(snap.uri, snap.kind, str(snap.source.get("host", "")), dict(snap.source.get("extra") or {})),
        dict(snap.metadata),
        snapshot_id=snap.short_id,
    )

    def fail(rel: str, exc: errors.KubekeepError) -> None:
        shown, message = name_printable(rel), str(exc)
        with lock:
            stats.failed.append(message if message.startswith(shown) else f"{shown}: {message}")
            if isinstance(exc, errors.IntegrityError | errors.ObjectNotFound):
                damaged.append(True)

    def restore_file(rel: str, node: Node) -> None:
        """Restore one large file, its blobs streamed to the exporter as they are read."""
        refused = False
        try:
            try:
                exporter.file(node.to_entry(rel), repo.read_blobs(node.content))
            except errors.EntryFailed as exc:
                fail(rel, exc)
                refused = True
        except (errors.IntegrityError, errors.ObjectNotFound) as exc:  # damaged, or a pack is gone
            if not refused:
                fail(rel, exc)
            return
        if not refused:
            with lock:
                stats.files += 1
                stats.bytes += node.size

    def restore_files(items: list[tuple[str, Node]]) -> None:
        """Restore a run of small files: their blobs read together (``Repository.read_blob_results``),
        then written together (``Exporter.files``). A file whose data cannot be read is reported
        and the others are still written."""
        results = repo.read_blob_results([b for _, node in items for b in node.content])
        todo: list[tuple[str, Node]] = []
        contents: list[tuple[Entry, list[bytes]]] = []
        for rel, node in items:
            pieces: list[bytes] = []
            damage: errors.KubekeepError | None = None
            for plain in itertools.islice(results, len(node.content)):
                if isinstance(plain, bytes):
                    pieces.append(plain)
                elif damage is None:
                    damage = plain
            if damage is not None:
                fail(rel, damage)
                continue
            todo.append((rel, node))
            contents.append((node.to_entry(rel), pieces))
        written = size = 0
        for (rel, node), refused in zip(todo, exporter.files(contents), strict=True):
            if refused is None:
                written += 1
                size += node.size
            else:
                fail(rel, refused)
        with lock:
            stats.files += written
            stats.bytes += size

    futures: list[Future[None]] = []
    batch: list[tuple[str, Node]] = []
    batch_bytes = 0
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="kubekeep-restore") as pool:
        try:
            skip_under: str | None = None  # a directory left out takes everything below it along
            for rel, node in _selection(repo, snap, path, fail):
                if skip_under is not None and rel.startswith(skip_under):
                    continue
                skip_under = None
                if include is not None and not include(rel, node):
                    if node.type == DIR:
                        skip_under = rel + "/"
                    continue
                if node.type == DIR:
                    try:
                        exporter.directory(node.to_entry(rel))
                        stats.dirs += 1
                    except errors.EntryFailed as exc:
                        fail(rel, exc)
                        skip_under = rel + "/"
                elif node.type == SYMLINK:
                    try:
                        exporter.symlink(node.to_entry(rel))
                        stats.symlinks += 1
                    except errors.EntryFailed as exc:
                        fail(rel, exc)
                elif node.type == FILE:
                    if node.size >= SMALL_FILE:
                        futures.append(pool.submit(restore_file, rel, node))
                    else:
                        batch.append((rel, node))
                        batch_bytes += node.size
                        if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                            futures.append(pool.submit(restore_files, batch))
                            batch, batch_bytes = [], 0
                    if len(futures) > 2 * QUEUED:
                        _drain(futures)
            if batch:
                futures.append(pool.submit(restore_files, batch))
            _drain(futures, everything=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    stats.warnings.extend(exporter.finish())
    stats.results = exporter.results()
    stats.duration_s = round(time.monotonic() - started, 3)
    if stats.failed:
        n = len(stats.failed)
        shown = "; ".join(stats.failed[:FAILURES_NAMED]) + (
            f"; and {n - FAILURES_NAMED} more" if n > FAILURES_NAMED else ""
        )
        error = errors.IntegrityError if damaged else errors.ConnectorError
        incomplete = error(
            f"restore incomplete: {n} {'entry' if n == 1 else 'entries'} could not be restored "
            f"({stats.files} files, {stats.dirs} dirs, {stats.symlinks} symlinks were): {shown}"
        )
        if n > FAILURES_NAMED:  # the rest goes on the lines under the message
            incomplete.details = tuple(stats.failed)
        raise incomplete
    return stats


def _selection(
    repo: Repository, snap: Snapshot, path: str, fail: Callable[[str, errors.KubekeepError], None]
) -> Iterator[tuple[str, Node]]:
    """:func:`selection`, where a tree that cannot be read is reported to ``fail`` and the walk
    goes on without what is below it."""
    node = repo.resolve(snap, path)
    if node.type != DIR:
        yield node.name, node
    elif node.subtree is not None:
        yield from _walk(repo, node.subtree, "", fail)


def _walk(
    repo: Repository, tree_id: bytes, prefix: str, fail: Callable[[str, errors.KubekeepError], None]
) -> Iterator[tuple[str, Node]]:
    try:
        nodes = repo.load_tree(tree_id)
    except (errors.IntegrityError, errors.ObjectNotFound) as exc:
        fail(prefix or ".", exc)
        return
    for node in nodes:
        rel = f"{prefix}/{node.name}" if prefix else node.name
        yield rel, node
        if node.type == DIR and node.subtree is not None:
            yield from _walk(repo, node.subtree, rel, fail)


def _drain(futures: list[Future[None]], everything: bool = False) -> None:
    keep = 0 if everything else QUEUED
    while len(futures) > keep:
        futures.pop(0).result()
