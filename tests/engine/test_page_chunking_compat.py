"""Trees and page-group chunking across versions (issue #16, docs/format.md "Paged content").

A file node without ``ck`` is what every kubekeep before page chunking wrote (and what it still
writes for files without a page hint): it reads as before, and a later backup of the same file
with a page hint reads the file again rather than reusing chunks cut another way. A ``ck`` this
program does not know (a later chunking, or a malformed record) reads as none: the file still
reads, ``check`` accepts the tree, and the next backup re-reads the file.
"""

from __future__ import annotations

import dataclasses
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kubekeep import api
from kubekeep.engine.backup import run_backup
from kubekeep.engine.entries import ChunkHint, Entry, EntryType, Importer, SourceInfo
from kubekeep.engine.format import PageChunking
from kubekeep.engine.pack import TREE
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import wire_nodes
from tests.engine.conftest import reopen

PAGE = 4096
DATA = random.Random(16).randbytes(PAGE * 300 + 32)  # 300 pages and a trailer, like an etcd snapshot


class _Paged(Importer):
    """One file, ``db/snapshot.db``, with a stable reuse key and an optional page-size hint."""

    scheme = "test"

    def __init__(self, data: bytes, page_size: int | None) -> None:
        self.data = data
        self.hint = ChunkHint(page_size=page_size) if page_size is not None else None

    def source(self) -> SourceInfo:
        return SourceInfo(uri="test://paged", kind="fs", host="here")

    def entries(self) -> Iterator[Entry]:
        yield Entry(path="db", type=EntryType.DIR, mode=0o700)
        yield Entry(
            path="db/snapshot.db",
            type=EntryType.FILE,
            mode=0o600,
            mtime_ns=1,
            size=len(self.data),
            reuse_key=b"same file",
            opener=lambda: io.BytesIO(self.data),
            chunking=self.hint,
        )


def _file_wire(repo: Repository, snap: Snapshot) -> dict[str, Any]:
    subtree = repo.resolve(snap, "db").subtree
    assert subtree is not None
    (node,) = wire_nodes(repo.load_blob(subtree), "db")
    return dict(node)


def _read(repo: Repository, snap: Snapshot) -> bytes:
    return b"".join(repo.read_file(repo.resolve(snap, "db/snapshot.db")))


def _with_ck(repo: Repository, snap: Snapshot, ck: object) -> Snapshot:
    """A copy of ``snap`` whose file node carries ``ck`` (as a later or broken writer's would)."""
    node = _file_wire(repo, snap)
    node["ck"] = ck  # type: ignore[assignment]
    dir_node = dict(wire_nodes(repo.load_blob(bytes.fromhex(snap.tree)), "root")[0])
    writer = repo.writer()
    dir_node["st"] = writer.save(TREE, msgpack.packb({"v": 1, "nodes": [node]}, use_bin_type=True))
    root = writer.save(TREE, msgpack.packb({"v": 1, "nodes": [dir_node]}, use_bin_type=True))
    writer.flush()
    writer.close()
    made = dataclasses.replace(snap, tree=root.hex(), id="")
    return repo.find_snapshot(repo.save_snapshot(made))


def test_tree_without_ck_reads_and_rebacks_up_with_pages(repo: Repository, tmp_path: Path) -> None:
    old = run_backup(repo, _Paged(DATA, None))  # what kubekeep wrote before page chunking
    assert "ck" not in _file_wire(repo, old)
    assert repo.resolve(old, "db/snapshot.db").chunking is None
    old_chunks = repo.resolve(old, "db/snapshot.db").content
    assert len(old_chunks) < 10  # content-defined, ~1 MiB

    repo = reopen(repo, tmp_path)  # a later program opens the repository
    old = repo.find_snapshot(old.id)
    assert _read(repo, old) == DATA

    paged = run_backup(repo, _Paged(DATA, PAGE), parent=old)
    assert paged.stats["files_unchanged"] == 0  # same reuse key, but cut another way: read again
    assert paged.stats["bytes_read"] == len(DATA)
    assert _file_wire(repo, paged)["ck"] == {"a": "pages", "p": PAGE, "n": 4}
    node = repo.resolve(paged, "db/snapshot.db")
    assert node.chunking == PageChunking(PAGE, 4)
    assert len(node.content) == -(-len(DATA) // (4 * PAGE)) and not set(node.content) & set(old_chunks)
    assert _read(repo, paged) == DATA

    again = run_backup(repo, _Paged(DATA, PAGE), parent=paged)
    assert again.stats["files_unchanged"] == 1 and again.stats["bytes_read"] == 0
    assert repo.resolve(again, "db/snapshot.db").chunking == PageChunking(PAGE, 4)

    plain = run_backup(repo, _Paged(DATA, None), parent=again)  # the hint gone: back to the repository's chunker
    assert plain.stats["files_unchanged"] == 0 and plain.stats["blobs_new"] == 0
    assert plain.tree == old.tree  # the old chunks and the old trees, byte for byte

    api.restore(repo, paged.id, str(tmp_path / "out"))
    assert (tmp_path / "out" / "db" / "snapshot.db").read_bytes() == DATA
    assert api.check(repo, read_data=True).ok


@pytest.mark.parametrize(
    "ck",
    [
        {"a": "pages-v2", "p": PAGE, "n": 4, "x": [1]},  # a chunking from a later version
        {"a": "pages", "p": 3000, "n": 4},  # not a power of two
        {"a": "pages", "p": PAGE, "n": 0},
        {"a": "pages", "p": "4096", "n": 4},
        {"p": PAGE},
        "pages",
        [PAGE, 4],
        7,
    ],
)
def test_unknown_ck_reads_as_none(repo: Repository, tmp_path: Path, ck: object) -> None:
    paged = run_backup(repo, _Paged(DATA, PAGE))
    later = _with_ck(repo, paged, ck)
    assert _file_wire(repo, later)["ck"] == ck
    node = repo.resolve(later, "db/snapshot.db")
    assert node.chunking is None
    assert node.content == repo.resolve(paged, "db/snapshot.db").content
    assert _read(repo, later) == DATA
    assert api.check(repo).ok

    # the next backup does not trust a cut it cannot name: it reads the file again, cuts it
    # the same way as the first backup did, so it stores no data
    nxt = run_backup(repo, _Paged(DATA, PAGE), parent=later)
    assert nxt.stats["files_unchanged"] == 0 and nxt.stats["bytes_read"] == len(DATA)
    assert nxt.stats["blobs_new"] == 0
    assert nxt.tree == paged.tree  # the file node's ck is back: the first backup's trees
