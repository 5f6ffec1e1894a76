"""Damaged index files: readers fall back on pack headers (read alone, by ranged reads);
``repair index`` rebuilds the index from them and never deletes before it has stored."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from kubekeep import api, errors
from kubekeep.engine import format as fmt
from kubekeep.engine import objects
from kubekeep.engine.pack import pack_name
from kubekeep.engine.pack_headers import FIRST_READ
from kubekeep.engine.repair import repair_index, repair_snapshots
from kubekeep.engine.repository import Repository
from kubekeep.storage.local import LocalBackend
from tests.engine.conftest import PASSWORD


class RecordingBackend(LocalBackend):
    """A local backend that records every load (name, offset, length) and store/delete order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.loads: list[tuple[str, int, int | None]] = []
        self.ops: list[tuple[str, str]] = []
        self.fail_index_stores = False
        self.delay = 0.0

    def load(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self.loads.append((name, offset, length))
        if self.delay:
            time.sleep(self.delay)
        return super().load(name, offset, length)

    def store(self, name: str, data: bytes | memoryview, *, exclusive: bool = False) -> None:
        if self.fail_index_stores and name.startswith("index/"):
            raise errors.StorageError(f"cannot write {name}: disk full (simulated)")
        self.ops.append(("store", name))
        super().store(name, data, exclusive=exclusive)

    def delete(self, name: str) -> None:
        self.ops.append(("delete", name))
        super().delete(name)


def _setup(repo: Repository, tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    rnd = random.Random(11)
    (src / "d").mkdir(parents=True)
    for i in range(6):
        (src / "d" / f"f{i}.bin").write_bytes(rnd.randbytes(400_000))
    snap = api.backup(repo, str(src))
    return src, snap.id


def _open(tmp_path: Path) -> tuple[Repository, RecordingBackend]:
    backend = RecordingBackend(tmp_path / "repo")
    return Repository.open(backend, PASSWORD, no_cache=True), backend


def test_missing_blobs_are_found_from_pack_headers_alone(repo: Repository, tmp_path: Path) -> None:
    src, snap_id = _setup(repo, tmp_path)
    (src / "other.bin").write_bytes(random.Random(12).randbytes(300_000))
    api.backup(repo, str(src))  # packs the read below does not need
    for info in list(repo.backend.list("index/")):
        repo.backend.delete(info.name)
    fresh, backend = _open(tmp_path)
    warnings: list[str] = []
    fresh.on_warning = warnings.append
    node = fresh.resolve(fresh.find_snapshot(snap_id), "/d/f3.bin")
    assert b"".join(fresh.read_file(node)) == (src / "d" / "f3.bin").read_bytes()
    sizes = {o.name: o.size for o in backend.list("data/")}
    header_reads = [(n, off, ln) for n, off, ln in backend.loads if n.startswith("data/")]
    # every pack's header was read from its end, never the whole pack
    snap = fresh.find_snapshot(snap_id)
    needed = set()
    for blob in [*node.content, bytes.fromhex(snap.tree), fresh.resolve(snap, "/d").subtree]:
        loc = fresh.index.lookup(blob)  # type: ignore[arg-type]
        assert loc is not None
        needed.add(pack_name(loc.pack_id))
    assert set(sizes) - needed  # some packs held nothing we read
    for name, size in sizes.items():
        reads = [(off, ln) for n, off, ln in header_reads if n == name]
        assert reads and all(ln is not None for _, ln in reads), (name, reads)
        off, ln = reads[0]
        assert ln is not None and off + ln == size and ln <= FIRST_READ  # the end, first
        if name not in needed:
            assert len(reads) == 1, (name, reads)  # and nothing else
    assert any("repair index" in w for w in warnings), warnings
    fresh.close()


def test_repair_index_stores_before_it_deletes(repo: Repository, tmp_path: Path) -> None:
    _setup(repo, tmp_path)
    old = {o.name for o in repo.backend.list("index/")}
    fresh, backend = _open(tmp_path)
    backend.fail_index_stores = True
    with pytest.raises(errors.StorageError):
        repair_index(fresh, dry_run=False)
    assert {o.name for o in backend.list("index/")} == old  # nothing deleted
    backend.fail_index_stores = False
    backend.ops.clear()
    report = repair_index(fresh, dry_run=False)
    new = {o.name for o in backend.list("index/")}
    assert new and not new & old and report.index_files_deleted == len(old)
    first_delete = next(i for i, (op, _) in enumerate(backend.ops) if op == "delete")
    assert {n for op, n in backend.ops[:first_delete] if op == "store"} == new
    assert api.check(fresh, read_data=True).ok
    fresh.close()


def test_repair_index_keeps_what_an_old_index_knows_of_a_pack_whose_header_is_damaged(
    repo: Repository, tmp_path: Path
) -> None:
    src, snap_id = _setup(repo, tmp_path)
    fresh, backend = _open(tmp_path)
    node = fresh.resolve(fresh.find_snapshot(snap_id), "/d/f0.bin")
    loc = fresh.index.lookup(node.content[0])
    assert loc is not None
    path = tmp_path / "repo" / pack_name(loc.pack_id)
    data = bytearray(path.read_bytes())
    data[-10] ^= 1  # inside the encrypted header
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    report = repair_index(fresh, dry_run=False)
    assert report.packs_unreadable == [pack_name(loc.pack_id)]
    assert report.packs_from_old_index == [pack_name(loc.pack_id)]
    again, _ = _open(tmp_path)
    assert b"".join(again.read_file(node)) == (src / "d" / "f0.bin").read_bytes()
    again.close()
    fresh.close()


def test_prune_refuses_while_an_index_file_is_damaged(repo: Repository, tmp_path: Path) -> None:
    _setup(repo, tmp_path)
    _damage_the_index(repo, tmp_path)
    fresh, backend = _open(tmp_path)

    def stored() -> set[str]:
        return {o.name for o in backend.list("") if not o.name.startswith("locks/")}

    before = stored()
    with pytest.raises(errors.IntegrityError, match="repair index"):
        api.prune(fresh)
    assert stored() == before
    fresh.close()


def test_a_version_1_repository_with_a_damaged_index_is_read_and_repaired(repo: Repository, tmp_path: Path) -> None:
    src, snap_id = _setup(repo, tmp_path)
    config = dict(repo.config, version=1)
    (tmp_path / "repo" / "config").chmod(0o644)
    repo.backend.store("config", objects.seal(repo.cipher, config, fmt.AAD_CONFIG))
    name = _damage_the_index(repo, tmp_path)
    fresh, _ = _open(tmp_path)
    assert fresh.format_version == 1
    node = fresh.resolve(fresh.find_snapshot(snap_id), "/d/f5.bin")
    assert b"".join(fresh.read_file(node)) == (src / "d" / "f5.bin").read_bytes()
    report = api.repair_index(fresh)
    assert report.damaged_index_files == [name] and report.index_files_written == 1
    assert api.check(fresh, read_data=True).ok
    fresh.close()


def test_check_judges_the_index_files_alone(repo: Repository, tmp_path: Path) -> None:
    """check reports blobs a damaged index file no longer lists, instead of quietly finding them
    in pack headers as readers do."""
    _setup(repo, tmp_path)
    [name] = [o.name for o in repo.backend.list("index/")]
    repo.backend.delete(name)
    fresh, _ = _open(tmp_path)
    warnings: list[str] = []
    fresh.on_warning = warnings.append
    report = api.check(fresh)
    assert not report.ok and any("missing from the index" in e or "not in the index" in e for e in report.errors)
    assert not warnings
    fresh.close()


def test_prune_refuses_while_a_snapshot_file_is_damaged(repo: Repository, tmp_path: Path) -> None:
    _, snap_id = _setup(repo, tmp_path)
    path = tmp_path / "repo" / "snapshots" / snap_id
    data = bytearray(path.read_bytes())
    data[30] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    fresh, backend = _open(tmp_path)
    before = {o.name for o in backend.list("") if not o.name.startswith("locks/")}
    with pytest.raises(errors.IntegrityError, match="forget"):
        api.prune(fresh)
    assert {o.name for o in backend.list("") if not o.name.startswith("locks/")} == before
    fresh.close()


def test_a_snapshot_whose_root_tree_is_gone_is_left_alone(repo: Repository, tmp_path: Path) -> None:
    _, snap_id = _setup(repo, tmp_path)
    fresh, backend = _open(tmp_path)
    loc = fresh.index.lookup(bytes.fromhex(fresh.find_snapshot(snap_id).tree))
    assert loc is not None
    backend.delete(pack_name(loc.pack_id))  # the tree pack
    fresh.close()
    fresh, backend = _open(tmp_path)
    before = {o.name for o in backend.list("snapshots/")}
    report = repair_snapshots(fresh, forget=True)
    [entry] = report.snapshots
    assert entry.status == "unrepairable" and "root tree" in entry.error and not entry.forgotten
    assert {o.name for o in backend.list("snapshots/")} == before
    fresh.close()


def test_threads_that_miss_while_headers_are_read_find_their_blobs(repo: Repository, tmp_path: Path) -> None:
    """Restore workers miss at once: one reads the pack headers, the others wait for it and then
    find their blobs (they must not take "already read" for "not there")."""
    src, snap_id = _setup(repo, tmp_path)
    for info in list(repo.backend.list("index/")):
        repo.backend.delete(info.name)
    fresh, backend = _open(tmp_path)
    snap = fresh.find_snapshot(snap_id)
    nodes = [fresh.resolve(snap, f"/d/f{i}.bin") for i in range(6)]  # trees found from headers
    fresh.close()
    fresh, backend = _open(tmp_path)
    backend.delay = 0.05  # slow storage: the reads overlap
    start = threading.Barrier(len(nodes))
    results: dict[int, bytes | Exception] = {}

    def read(i: int) -> None:
        start.wait()
        try:
            first = fresh.load_blob(nodes[i].content[0])  # one lookup, then the headers
            results[i] = first + b"".join(fresh.read_blobs(nodes[i].content[1:]))
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(len(nodes)):
        assert results[i] == (src / "d" / f"f{i}.bin").read_bytes(), results[i]
    fresh.close()


def _damage_the_index(repo: Repository, tmp_path: Path) -> str:
    """Flip one bit of the repository's only index file; its name."""
    [name] = [o.name for o in repo.backend.list("index/")]
    path = tmp_path / "repo" / name
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return name
