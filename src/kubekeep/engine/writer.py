"""Adding blobs to a repository: dedup, compress, encrypt, pack, upload, index.

Thread-safe: backup workers call :meth:`BlobWriter.save` concurrently. Full packs are uploaded
by a small pool with a bounded number in flight, so memory stays at about
``Backend.parallel_stores x PACK_SIZE`` plus the packs being filled. An index file is written for
every batch of uploaded packs and at :meth:`flush`, always after the packs it lists exist, so
a run killed at any moment leaves only complete packs, some of them not yet indexed (``check``
reports those as unreferenced, ``prune`` removes them).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubekeep.engine import compression, objects
from kubekeep.engine import format as fmt
from kubekeep.engine.index import Index, index_body
from kubekeep.engine.pack import DATA, TREE, BlobEntry, PackWriter, blob_aad, pack_name

if TYPE_CHECKING:
    from kubekeep.engine.repository import Repository

#: write an index file after this many packs, so a killed backup's data is reused next time
INDEX_EVERY_PACKS = 64


@dataclass
class WriterStats:
    blobs_new: int = 0
    blobs_known: int = 0
    bytes_raw_new: int = 0  # plaintext bytes of new blobs
    bytes_stored: int = 0  # bytes added to the repository (packs + index files)
    packs: int = 0


class BlobWriter:
    def __init__(
        self,
        repo: Repository,
        *,
        pack_size: int = fmt.PACK_SIZE,
        tree_pack_size: int = fmt.TREE_PACK_SIZE,
        uploads: int | None = None,
        index: Index | None = None,
    ) -> None:
        self.repo = repo
        # prune passes the index of the packs it keeps, so it never dedups against doomed packs
        self.index = repo.index if index is None else index
        self._cipher = repo.cipher
        self._level = repo.compression_level
        self._limits = {DATA: pack_size, TREE: tree_pack_size}
        self._lock = threading.Lock()
        self._packs = {DATA: PackWriter(DATA), TREE: PackWriter(TREE)}
        self._pending: set[bytes] = set()  # in a pack not yet indexed
        if uploads is None:
            uploads = repo.backend.parallel_stores
        self._slots = threading.BoundedSemaphore(uploads)
        self._pool = ThreadPoolExecutor(uploads, thread_name_prefix="kubekeep-upload")
        self._futures: list[Future[None]] = []
        self._unindexed: list[tuple[bytes, list[BlobEntry]]] = []
        self.index_files: list[str] = []
        self.stats = WriterStats()

    def has(self, blob_id: bytes) -> bool:
        return blob_id in self._pending or blob_id in self.index

    def save(self, blob_type: int, data: bytes | memoryview, blob_id: bytes | None = None) -> bytes:
        """Store ``data`` unless the repository has it already; return its id."""
        if blob_id is None:
            blob_id = self.repo.master.blob_id(data)
        with self._lock:
            if blob_id in self._pending or blob_id in self.index:
                self.stats.blobs_known += 1
                return blob_id
            self._pending.add(blob_id)
        encrypted = self._cipher.encrypt(compression.pack_payload(data, self._level), blob_aad(blob_type, blob_id))
        full = None
        with self._lock:
            pack = self._packs[blob_type]
            pack.add(blob_id, encrypted, len(data))
            self.stats.blobs_new += 1
            self.stats.bytes_raw_new += len(data)
            if pack.size >= self._limits[blob_type]:
                full = pack
                self._packs[blob_type] = PackWriter(blob_type)
        if full is not None:
            self._upload(full)
        return blob_id

    def _upload(self, pack: PackWriter) -> None:
        self._raise_failed_upload()
        self._slots.acquire()
        try:
            pack_id, data = pack.finish(self._cipher, pad_header=self.repo.format_version >= 2)
        except BaseException:
            self._slots.release()
            raise
        future = self._pool.submit(self._store_pack, pack_id, data, pack.entries, pack.blob_type)
        with self._lock:
            self._futures.append(future)

    def _store_pack(self, pack_id: bytes, data: bytes, entries: list[BlobEntry], blob_type: int) -> None:
        try:
            name = pack_name(pack_id)
            self.repo.backend.store(name, data)
            if blob_type == TREE and self.repo.cache is not None:
                self.repo.cache.put(name, data)
            with self._lock:
                self.stats.bytes_stored += len(data)
                self.stats.packs += 1
                self._unindexed.append((pack_id, entries))
                batch = self._take_unindexed(INDEX_EVERY_PACKS)
            if batch:
                self._write_index(batch)
        finally:
            self._slots.release()

    def _take_unindexed(self, at_least: int) -> list[tuple[bytes, list[BlobEntry]]]:
        if len(self._unindexed) < at_least:
            return []
        batch, self._unindexed = self._unindexed, []
        return batch

    def _write_index(self, batch: list[tuple[bytes, list[BlobEntry]]]) -> None:
        body = index_body(batch)
        data = objects.seal(self._cipher, body, fmt.AAD_INDEX)
        name = f"index/{objects.content_name(data)}"
        self.repo.backend.store(name, data)
        if self.repo.cache is not None:
            self.repo.cache.put(name, data)
        with self._lock:
            for pack_id, entries in batch:
                self.index.add_pack(pack_id, entries)
                for e in entries:
                    self._pending.discard(e.id)
            self.index_files.append(name)
            self.stats.bytes_stored += len(data)

    def _raise_failed_upload(self) -> None:
        # backup workers and the tree-building thread upload concurrently: take each finished
        # future exactly once, under the lock (list.remove raced here)
        with self._lock:
            done = [f for f in self._futures if f.done()]
            self._futures = [f for f in self._futures if f not in done]
        for f in done:
            f.result()

    def flush(self) -> None:
        """Upload partial packs, wait for every upload, and index everything written."""
        for blob_type in (DATA, TREE):
            with self._lock:
                pack = self._packs[blob_type]
                self._packs[blob_type] = PackWriter(blob_type)
            if len(pack):
                self._upload(pack)
        with self._lock:
            futures, self._futures = self._futures, []
        errors = []
        for f in futures:
            try:
                f.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
        if errors:
            raise errors[0]
        with self._lock:
            batch = self._take_unindexed(1)
        if batch:
            self._write_index(batch)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
