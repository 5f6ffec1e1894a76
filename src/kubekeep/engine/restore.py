"""The restore pipeline: a snapshot (or part of it) out to an exporter.

Directories and symlinks are handed over on the calling thread in pre-order; files go to a
pool of workers, each streaming its blobs (verified on load) to the exporter. A blob that fails
verification fails that file loudly; the other files are still restored and the run ends with
an ``IntegrityError`` naming the files that could not be restored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.connectors.base import Exporter, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import DIR, FILE, SYMLINK, Node


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)   # the exporter's per-item report
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NodeFilter = Callable[[str, Node], bool]


def selection(repo: Repository, snap: Snapshot, path: str) -> Iterator[tuple[str, Node]]:
    """``(relative path, node)`` for everything selected by ``path``: a directory's contents
    relative to it, or a single file or symlink under its own name."""
    node = repo.resolve(snap, path)
    if node.type == DIR:
        if node.subtree is not None:
            yield from repo.walk(node.subtree)
    else:
        yield node.name, node


def run_restore(repo: Repository, snap: Snapshot, exporter: Exporter, *, path: str = "",
                include: NodeFilter | None = None, workers: int = 4) -> RestoreStats:
    started = time.monotonic()
    stats = RestoreStats()
    lock = threading.Lock()
    exporter.begin(SourceInfo(snap.uri, snap.kind, str(snap.source.get("host", "")),
                              dict(snap.source.get("extra") or {})), dict(snap.metadata))

    def restore_file(rel: str, node: Node) -> None:
        try:
            exporter.file(node.to_entry(rel), repo.read_file(node))
            with lock:
                stats.files += 1
                stats.bytes += node.size
        except (errors.IntegrityError, errors.ObjectNotFound) as exc:  # damaged, or a pack is gone
            with lock:
                stats.failed.append(f"{rel}: {exc}")

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="kubekeep-restore") as pool:
        try:
            skip_under: str | None = None  # a directory left out takes everything below it along
            for rel, node in selection(repo, snap, path):
                if skip_under is not None and rel.startswith(skip_under):
                    continue
                skip_under = None
                if include is not None and not include(rel, node):
                    if node.type == DIR:
                        skip_under = rel + "/"
                    continue
                if node.type == DIR:
                    exporter.directory(node.to_entry(rel))
                    stats.dirs += 1
                elif node.type == SYMLINK:
                    exporter.symlink(node.to_entry(rel))
                    stats.symlinks += 1
                elif node.type == FILE:
                    futures.append(pool.submit(restore_file, rel, node))
                    if len(futures) > 256:
                        _drain(futures)
            _drain(futures, everything=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    stats.warnings.extend(exporter.finish())
    stats.results = exporter.results()
    stats.duration_s = round(time.monotonic() - started, 3)
    if stats.failed:
        shown = "; ".join(stats.failed[:3]) + (f"; and {len(stats.failed) - 3} more" if len(stats.failed) > 3 else "")
        raise errors.IntegrityError(f"{len(stats.failed)} file(s) could not be restored: {shown}")
    return stats


def _drain(futures: list[Future[None]], everything: bool = False) -> None:
    keep = 0 if everything else 128
    while len(futures) > keep:
        futures.pop(0).result()


