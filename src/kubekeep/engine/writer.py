"""Adding blobs to a repository: dedup, compress, encrypt, pack, upload, index.

Thread-safe: backup workers call :meth:`BlobWriter.save` (or :meth:`~BlobWriter.claim`,
:meth:`~BlobWriter.seal` and :meth:`~BlobWriter.add_sealed` for a batch) concurrently. Blobs
are compressed and encrypted by the compiled module ``_seal`` (rust/seal). Packs are assembled in
buffers (:class:`PackBuffer`) that go back to a free list once their pack is stored; at most
``Backend.parallel_stores + SPARE_PACK_BUFFERS`` buffers of a blob type are in use, so memory
for packs stays at that many times ``PACK_SIZE`` however slow the store is (savers wait). An
index file is written for every batch of uploaded packs and at :meth:`flush`, always after the
packs it lists exist, so a run killed at any moment leaves only complete packs, some of them
not yet indexed (``check`` reports those as unreferenced, ``prune`` removes them).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubekeep.engine import format as fmt
from kubekeep.engine import objects
from kubekeep.engine.index import Index, index_body
from kubekeep.engine.pack import DATA, TREE, BlobEntry, PackBuffer, PackWriter, pack_name
from kubekeep.engine.sealing import compiled

if TYPE_CHECKING:
    from kubekeep.engine.repository import Repository

#: pack buffers of a type beyond one per upload slot: one filling while others are stored
SPARE_PACK_BUFFERS = 2

#: write an index file after this many packs, so a killed backup's data is reused next time
INDEX_EVERY_PACKS = 64
#: ... or after this many blobs, whichever comes first: until their index file is written, a
#: pack's blobs are Python objects (~300 bytes each), and 64 packs of small files are 30,000+
#: of them (first backup at scale 4: 8 MB of the peak)
INDEX_EVERY_BLOBS = 8192


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
        self._enc_key = repo.master.encryption
        self._level = repo.compression_level
        self._limits = {DATA: pack_size, TREE: tree_pack_size}
        self._lock = threading.Lock()
        self._free: dict[int, list[PackBuffer]] = {DATA: [], TREE: []}  # buffers of stored packs
        if uploads is None:
            uploads = repo.backend.parallel_stores
        self._buffer_slots = {t: threading.BoundedSemaphore(uploads + SPARE_PACK_BUFFERS) for t in (DATA, TREE)}
        self._packs: dict[int, PackWriter | None] = {DATA: None, TREE: None}  # started on first save
        self._pending: set[bytes] = set()  # in a pack not yet indexed
        self._slots = threading.BoundedSemaphore(uploads)
        self._pool = ThreadPoolExecutor(uploads, thread_name_prefix="kubekeep-upload")
        self._futures: list[Future[None]] = []
        self._unindexed: list[tuple[bytes, list[BlobEntry]]] = []
        self._unindexed_blobs = 0
        self.index_files: list[str] = []
        self.stats = WriterStats()

    def has(self, blob_id: bytes) -> bool:
        return blob_id in self._pending or blob_id in self.index

    def save(self, blob_type: int, data: bytes | memoryview, blob_id: bytes | None = None) -> bytes:
        """Store ``data`` unless the repository has it already; return its id."""
        if blob_id is None:
            blob_id = self.repo.master.blob_id(data)
        if self.claim([blob_id])[0]:
            (encrypted,) = compiled.seal([data], [blob_id], blob_type, self._enc_key, self._level)
            self._add(blob_type, blob_id, encrypted, len(data))
        return blob_id

    def claim(self, blob_ids: list[bytes]) -> list[bool]:
        """Which of ``blob_ids`` this writer is to store: True for each the repository lacks
        (and no earlier id of the list is), which the caller must then :meth:`add_sealed` (or
        fail the backup). Counts the others as known."""
        claimed = []
        with self._lock:
            for blob_id in blob_ids:
                new = blob_id not in self._pending and blob_id not in self.index
                if new:
                    self._pending.add(blob_id)
                else:
                    self.stats.blobs_known += 1
                claimed.append(new)
        return claimed

    def seal(self, blob_type: int, datas: list[bytes], blob_ids: list[bytes]) -> list[bytes]:
        """Compress and encrypt blobs for :meth:`add_sealed` (one call, the GIL released)."""
        return compiled.seal(datas, blob_ids, blob_type, self._enc_key, self._level)

    def add_sealed(self, blob_type: int, blobs: list[tuple[bytes, bytes, int]]) -> None:
        """Add blobs :meth:`claim` gave this caller, sealed by :meth:`seal`: ``(blob id,
        encrypted blob, plaintext length)``."""
        for blob_id, encrypted, raw_length in blobs:
            self._add(blob_type, blob_id, encrypted, raw_length)

    def _add(self, blob_type: int, blob_id: bytes, encrypted: bytes, raw_length: int) -> None:
        limit = self._limits[blob_type]
        while True:
            full, added = None, False
            with self._lock:
                pack = self._packs[blob_type]
                if pack is not None and len(pack) and pack.size + len(encrypted) > limit:
                    full, self._packs[blob_type] = pack, None  # packs end before the limit
                elif pack is not None:
                    pack.add(blob_id, encrypted, raw_length)
                    self.stats.blobs_new += 1
                    self.stats.bytes_raw_new += raw_length
                    added = True
                    if pack.size >= limit:  # a blob as large as a pack
                        full, self._packs[blob_type] = pack, None
            if full is not None:
                self._upload(full)  # before waiting for a buffer: a waiting saver holds none
            if added:
                return
            if full is None:
                self._start_pack(blob_type)

    def _start_pack(self, blob_type: int) -> None:
        """Give ``blob_type`` a pack to fill, in a free buffer or a new one. At most ``uploads +
        SPARE_PACK_BUFFERS`` buffers of a type are in use (filling, finishing, being stored):
        a saver that would need another waits for a pack to be stored, as it would for an upload
        slot, so a slow store holds back the savers rather than piling up full packs."""
        self._buffer_slots[blob_type].acquire()  # the lock is not held: stores free buffers
        with self._lock:
            if self._packs[blob_type] is None:
                free = self._free[blob_type]
                limit = self._limits[blob_type]
                buffer = free.pop() if free else PackBuffer(limit + limit // 8 + (64 << 10))  # and a header
                self._packs[blob_type] = PackWriter(blob_type, buffer)
                return
        self._buffer_slots[blob_type].release()  # another saver started one meanwhile

    def _free_buffer(self, pack: PackWriter) -> None:
        """The buffer of a stored (or failed) pack, kept for the next pack."""
        with self._lock:
            self._free[pack.blob_type].append(pack.buffer)
        self._buffer_slots[pack.blob_type].release()

    def _upload(self, pack: PackWriter) -> None:
        try:
            self._raise_failed_upload()
            self._slots.acquire()
        except BaseException:
            self._free_buffer(pack)  # savers may be waiting for it
            raise
        try:
            pack_id, data = pack.finish(self._cipher, pad_header=self.repo.format_version >= 2)
            future = self._pool.submit(self._store_pack, pack_id, data, pack)
        except BaseException:
            self._slots.release()
            self._free_buffer(pack)
            raise
        with self._lock:
            self._futures.append(future)

    def _store_pack(self, pack_id: bytes, data: memoryview, pack: PackWriter) -> None:
        entries, blob_type, size = pack.entries, pack.blob_type, len(data)
        try:
            name = pack_name(pack_id)
            try:
                self.repo.backend.store(name, data)
                if blob_type == TREE and self.repo.cache is not None:
                    self.repo.cache.put(name, data)
            finally:
                data.release()
                self._free_buffer(pack)
            with self._lock:
                self.stats.bytes_stored += size
                self.stats.packs += 1
                self._unindexed.append((pack_id, entries))
                self._unindexed_blobs += len(entries)
                due = len(self._unindexed) >= INDEX_EVERY_PACKS or self._unindexed_blobs >= INDEX_EVERY_BLOBS
                batch = self._take_unindexed(1 if due else INDEX_EVERY_PACKS)
            if batch:
                self._write_index(batch)
        finally:
            self._slots.release()

    def _take_unindexed(self, at_least: int) -> list[tuple[bytes, list[BlobEntry]]]:
        if len(self._unindexed) < at_least:
            return []
        batch, self._unindexed, self._unindexed_blobs = self._unindexed, [], 0
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
                pack, self._packs[blob_type] = self._packs[blob_type], None
            if pack is not None and len(pack):
                self._upload(pack)
            elif pack is not None:
                self._free_buffer(pack)
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
        with self._lock:
            buffers = [b for free in self._free.values() for b in free]
            buffers += [p.buffer for p in self._packs.values() if p is not None]
            self._free = {DATA: [], TREE: []}
        for buffer in buffers:
            try:
                buffer.close()
            except BufferError:  # a view of it is still held somewhere: the mapping goes with it
                pass

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
