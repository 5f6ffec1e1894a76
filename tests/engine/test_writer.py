"""BlobWriter under concurrency: many threads saving blobs of both types while packs fill and
upload all the time."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from kubekeep.engine.pack import DATA, TREE
from kubekeep.engine.repository import Repository
from kubekeep.engine.writer import BlobWriter
from tests.engine.conftest import reopen


def test_concurrent_saves_with_constant_uploads(repo: Repository, tmp_path: Path) -> None:
    # every save fills a pack, so every save also uploads and reaps finished uploads; a tiny
    # switch interval makes the threads interleave inside those steps
    saved: dict[bytes, tuple[int, bytes]] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()
    writer = BlobWriter(repo, pack_size=1, tree_pack_size=1, uploads=4)

    def work(k: int) -> None:
        blob_type = TREE if k % 2 else DATA
        try:
            for _ in range(150):
                data = os.urandom(100)
                blob_id = writer.save(blob_type, data)
                with lock:
                    saved[blob_id] = (blob_type, data)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    writer.flush()
    writer.close()
    assert failures == []
    assert writer.stats.blobs_new == len(saved) == 1200

    fresh = reopen(repo, tmp_path)
    for blob_id, (blob_type, data) in saved.items():
        loc = fresh.index.lookup(blob_id)
        assert loc is not None and loc.type == blob_type
        assert fresh.load_blob(blob_id) == data
    fresh.close()
