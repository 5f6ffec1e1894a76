"""The compiled per-blob path (engine/_seal, rust/seal): the same ids, the same blob format and
compression choice as the Python definitions, and small local files read by it in a backup."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubekeep.engine import _seal, backup, compression
from kubekeep.engine.backup import run_backup
from kubekeep.engine.chunker import Chunker
from kubekeep.engine.entries import Entry, EntryType, Importer, SourceInfo
from kubekeep.engine.pack import DATA, TREE, blob_aad
from kubekeep.engine.repository import Repository
from kubekeep.engine.tree import DIR, FILE, Node
from kubekeep.files.walk import FsImporter
from tests.engine.conftest import reopen

SAMPLES = {
    "empty": b"",
    "short text": b"apiVersion: v1\nkind: ConfigMap\n",  # below 64 bytes: never compressed
    "63 zeros": bytes(63),
    "64 zeros": bytes(64),
    "text": b"kind: Deployment\nmetadata:\n  name: web\n" * 900,
    "random": os.urandom(40_000),
    "random, 1 % zeros": os.urandom(9_900) + bytes(100),  # saves < 3 %: stored as-is
    "random, 10 % zeros": os.urandom(9_000) + bytes(1_000),
}


@pytest.mark.parametrize("level", [0, 3, 19])
@pytest.mark.parametrize("blob_type", [DATA, TREE])
def test_sealed_blobs_decode_with_the_python_reader(repo: Repository, level: int, blob_type: int) -> None:
    datas = list(SAMPLES.values())
    ids = [repo.master.blob_id(d) for d in datas]
    sealed = _seal.seal([memoryview(d) for d in datas], ids, blob_type, repo.master.encryption, level)
    again = _seal.seal(datas, ids, blob_type, repo.master.encryption, level)
    for name, data, blob_id, blob, other in zip(SAMPLES, datas, ids, sealed, again, strict=True):
        assert repo.decode_blob(blob_id, blob_type, blob, len(data)) == data, name
        assert blob[:12] != other[:12], f"{name}: a nonce was reused"
        payload = repo.cipher.decrypt(blob, blob_aad(blob_type, blob_id), name)
        python = compression.pack_payload(data, level)
        assert payload[0] == python[0], f"{name}: compression method differs from pack_payload's"
        if payload[0] == compression.NONE:
            assert payload == python, name
        # bound to its type and id: the other type's aad does not open it
        with pytest.raises(Exception, match="cannot be decrypted|authentication|Integrity|decrypt"):
            repo.decode_blob(blob_id, DATA + TREE - blob_type, blob, len(data))
    methods = {n: p[0] for n, p in zip(SAMPLES, (compression.pack_payload(d, level) for d in datas), strict=True)}
    if level:
        assert methods["text"] == methods["64 zeros"] == methods["random, 10 % zeros"] == compression.ZSTD
    assert methods["short text"] == methods["63 zeros"] == methods["random"] == methods["random, 1 % zeros"] == 0


def test_seal_refuses_bad_arguments(repo: Repository) -> None:
    with pytest.raises(ValueError, match="enc_key must be 32 bytes"):
        _seal.seal([b"x"], [b"i" * 32], DATA, b"short", 3)
    with pytest.raises(ValueError, match="differ in length"):
        _seal.seal([b"x", b"y"], [b"i" * 32], DATA, repo.master.encryption, 3)
    with pytest.raises(ValueError, match="id_key must be 32 bytes"):
        _seal.read_files([], [], b"")


def test_read_files_names_content_and_reports_errors(repo: Repository, tmp_path: Path) -> None:
    small, big, gone = tmp_path / "small", tmp_path / "big", tmp_path / "gone"
    small.write_bytes(b"abc")
    big.write_bytes(os.urandom(300_000))
    name_not_utf8 = os.fsdecode(bytes(tmp_path) + b"/caf\xe9")
    Path(name_not_utf8).write_bytes(b"latin-1 name")
    # sizes are hints: a file larger or smaller than its hint is read to its end
    got = _seal.read_files(
        [str(small), str(big), str(gone), str(tmp_path), name_not_utf8],
        [1_000, 10, 5, 0, 12],
        repo.master.identity,
    )
    assert got[0] == (repo.master.blob_id(b"abc"), b"abc")
    assert got[1] == (repo.master.blob_id(big.read_bytes()), big.read_bytes())
    assert got[2] == (errno.ENOENT, False)  # not opened
    assert got[3] == (errno.EISDIR, True)  # opened, not read
    assert got[4] == (repo.master.blob_id(b"latin-1 name"), b"latin-1 name")


class _Changing(Importer):
    """The fs walk of ``root``, with each file named in ``after_stat`` changed by its function
    once the walk has stat()ed it (before the engine reads it); optionally without local paths
    (the Python path: ``opener`` only)."""

    def __init__(self, root: Path, after_stat: dict[str, object] | None = None, *, local: bool = True) -> None:
        self.walk = FsImporter(root)
        self.after_stat = after_stat or {}
        self.local = local

    def source(self) -> SourceInfo:
        return self.walk.source()

    def entries(self) -> Iterator[Entry]:
        for entry in self.walk.entries():
            if not self.local:
                entry.local_path = None
            change = self.after_stat.get(entry.path)
            if callable(change):
                change()
            yield entry

    def warnings(self) -> list[str]:
        return list(self.walk.warnings())


def _files(repo: Repository, tree_id: bytes, prefix: str = "") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for node in repo.load_tree(tree_id):
        path = f"{prefix}{node.name}"
        if node.type == DIR:
            assert node.subtree is not None
            out.update(_files(repo, node.subtree, path + "/"))
        elif node.type == FILE:
            out[path] = b"".join(repo.load_blob(c) for c in _content(node))
    return out


def _content(node: Node) -> list[bytes]:
    return list(node.content or [])


def test_small_files_read_by_seal_make_the_same_snapshot_as_the_python_path(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_by_seal: list[str] = []
    read_files = _seal.read_files

    def counting(paths: list[str], sizes: list[int], id_key: bytes) -> list[tuple[bytes, bytes] | tuple[int, bool]]:
        read_by_seal.extend(paths)
        return read_files(paths, sizes, id_key)

    monkeypatch.setattr(_seal, "read_files", counting)
    monkeypatch.setattr(backup, "LOCAL_RUN_BYTES", 1000)  # a batch's files in several runs
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(300):  # more than a batch
        (src / "d" / f"f{i}").write_bytes(f"file {i}\n".encode() * (i % 40))
    (src / "same1").write_bytes(b"duplicate content")
    (src / "same2").write_bytes(b"duplicate content")
    (src / "empty").write_bytes(b"")
    (src / "large").write_bytes(os.urandom(700_000))  # chunked, sealed by _seal too
    compiled = run_backup(repo, _Changing(src), use_parent=False)
    assert len(read_by_seal) == 303  # all but the large file
    python = run_backup(repo, _Changing(src, local=False), use_parent=False)
    assert len(read_by_seal) == 303  # none: no local paths
    assert compiled.tree == python.tree  # the same content ids and the same trees
    fresh = reopen(repo, tmp_path)
    files = _files(fresh, bytes.fromhex(compiled.tree))
    assert files["same1"] == b"duplicate content" and files["empty"] == b""
    assert files["d/f39"] == b"file 39\n" * 39 and files["large"] == (src / "large").read_bytes()
    assert compiled.stats["files"] == 304 and compiled.stats["bytes_read"] == python.stats["bytes_read"]
    fresh.close()


def test_a_small_file_that_changes_while_read_is_read_to_its_end(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    chunker_min = int(repo.config["chunker"]["min"])
    for name in ("grows", "grows past the chunker minimum", "shrinks", "vanishes", "unreadable"):
        (src / name).write_bytes(b"0123456789" * 10)
    more = os.urandom(int(repo.config["chunker"]["max"]) + chunker_min)  # two chunks at least
    changes = {
        "grows": lambda: (src / "grows").write_bytes(b"0123456789" * 20),
        "grows past the chunker minimum": lambda: (src / "grows past the chunker minimum").write_bytes(more),
        "shrinks": lambda: (src / "shrinks").write_bytes(b"01234"),
        "vanishes": lambda: (src / "vanishes").unlink(),
        "unreadable": lambda: ((src / "unreadable").unlink(), (src / "unreadable").mkdir()),
    }
    snap = run_backup(repo, _Changing(src, dict(changes)), use_parent=False)
    files = _files(repo, bytes.fromhex(snap.tree))
    assert files["grows"] == b"0123456789" * 20
    assert files["grows past the chunker minimum"] == more
    assert files["shrinks"] == b"01234"
    assert "vanishes" not in files and "unreadable" not in files
    assert f"vanishes: {os.strerror(errno.ENOENT)}; skipped" in snap.warnings
    assert f"unreadable: read failed: {os.strerror(errno.EISDIR)}; skipped" in snap.warnings
    # the file that grew past the minimum was cut as any file is
    node = next(n for n in repo.load_tree(bytes.fromhex(snap.tree)) if n.name == "grows past the chunker minimum")
    chunker = Chunker(repo.config["chunker"], repo.master.identity)
    assert _content(node) == [repo.master.blob_id(c) for c in chunker.buffer(more)]
    assert snap.stats["files"] == 5 and snap.stats["bytes_read"] == 200 + len(more) + 5


def test_writer_claims_each_new_blob_once(repo: Repository) -> None:
    writer = repo.writer()
    try:
        a, b = repo.master.blob_id(b"a"), repo.master.blob_id(b"b")
        assert writer.claim([a, b, a]) == [True, True, False]
        writer.add_sealed(
            DATA, [(i, s, 1) for i, s in zip([a, b], writer.seal(DATA, [b"a", b"b"], [a, b]), strict=True)]
        )
        assert writer.claim([b]) == [False]
        writer.flush()
    finally:
        writer.close()
    assert repo.load_blob(a) == b"a" and repo.load_blob(b) == b"b"
    assert writer.stats.blobs_new == 2 and writer.stats.blobs_known == 2


def test_entry_type_is_unchanged() -> None:
    assert Entry("x", EntryType.FILE).local_path is None
