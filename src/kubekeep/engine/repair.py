"""Repairing a damaged repository (``kubekeep repair index|snapshots``), under an exclusive lock.

``repair_index`` rebuilds the index from the packs' own headers (ranged reads of each pack's
end): it stores the new index files first and only then deletes the old ones, so an
interruption leaves at worst duplicate entries. A pack whose header cannot be read keeps the
entries a readable old index file gave it.

``repair_snapshots`` rewrites snapshots whose trees name data that is gone, as restic's
``repair snapshots`` does, except that a file missing any of its blobs is dropped rather than
kept short (no repaired snapshot restores a file with wrong content): a directory whose tree
cannot be read becomes an empty directory; a snapshot whose root tree cannot be read cannot be
repaired and is left alone. The new snapshot keeps the original's time and metadata, adds the
tag ``repaired`` and ``metadata["repaired"]`` naming the original; originals are removed only
with ``forget``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from kubekeep import errors
from kubekeep.engine import format as fmt
from kubekeep.engine.index import Index, index_body
from kubekeep.engine.pack import TREE, BlobEntry, pack_name
from kubekeep.engine.pack_headers import pack_id_of, read_stored_header
from kubekeep.engine.repository import PARALLEL_READS, Repository
from kubekeep.engine.snapshot import Snapshot, now_rfc3339
from kubekeep.engine.tree import DIR, FILE, Node, encode_tree
from kubekeep.engine.writer import BlobWriter

#: a new index file is started after this many blobs (a few MB of index file)
BLOBS_PER_INDEX_FILE = 50_000
REPAIRED_TAG = "repaired"

Progress = Callable[[str], None]
RepairStatus = Literal["intact", "repaired", "would repair", "already repaired", "unrepairable"]


@dataclass
class IndexRepairReport:
    packs: int = 0  # packs in storage
    packs_read: int = 0  # whose header was read
    packs_unreadable: list[str] = field(default_factory=list)  # header truncated or damaged
    packs_from_old_index: list[str] = field(default_factory=list)  # of those, kept as an old index had them
    packs_missing: list[str] = field(default_factory=list)  # in the old index, not in storage
    blobs: int = 0
    damaged_index_files: list[str] = field(default_factory=list)
    index_files_written: int = 0
    index_files_deleted: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repair_index(repo: Repository, *, dry_run: bool = False, progress: Progress | None = None) -> IndexRepairReport:
    say = progress or (lambda _msg: None)
    report = IndexRepairReport(dry_run=dry_run)
    with repo.bypassing_caches():  # what storage holds, not intact copies in the cache
        old_index = repo.reload_index()
        old_files = repo.index_files()
        report.damaged_index_files = sorted(repo.damaged_index_files)
    stored = {o.name: o.size for o in repo.backend.list("data/") if pack_id_of(o.name) is not None}
    report.packs = len(stored)
    report.packs_missing = sorted(n for n in (pack_name(p) for p in old_index.pack_ids()) if n not in stored)
    new_files: set[str] = set()
    batch: list[tuple[bytes, list[BlobEntry]]] = []
    in_batch = 0

    def add(pack_id: bytes, entries: list[BlobEntry]) -> None:
        """Index a pack; written out a file's worth at a time, so memory stays bounded."""
        nonlocal batch, in_batch
        report.blobs += len(entries)
        if dry_run:
            return
        batch.append((pack_id, entries))
        in_batch += len(entries)
        if in_batch >= BLOBS_PER_INDEX_FILE:
            new_files.add("index/" + repo.save_object("index", index_body(batch), fmt.AAD_INDEX))
            batch, in_batch = [], 0

    def read(name: str) -> tuple[bytes, list[BlobEntry] | None]:
        pack_id = pack_id_of(name)
        assert pack_id is not None
        try:
            return pack_id, read_stored_header(
                repo.backend, name, stored[name], repo.cipher, f"pack {pack_id.hex()[:16]}"
            )
        except (errors.IntegrityError, errors.ObjectNotFound):
            return pack_id, None

    say(f"reading the headers of {len(stored)} pack(s)")
    unreadable: set[bytes] = set()
    with ThreadPoolExecutor(PARALLEL_READS) as pool:
        for pack_id, entries in pool.map(read, sorted(stored)):
            if entries is None:
                unreadable.add(pack_id)
            else:
                report.packs_read += 1
                add(pack_id, entries)
    report.packs_unreadable = sorted(pack_name(p) for p in unreadable)
    # a pack whose header cannot be read keeps what a readable old index file says of it
    from_old: dict[bytes, list[BlobEntry]] = {}
    if unreadable:
        for blob_id, loc in old_index.entries():
            if loc.pack_id in unreadable:
                from_old.setdefault(loc.pack_id, []).append(
                    BlobEntry(loc.type, blob_id, loc.offset, loc.length, loc.raw_length)
                )
    for pack_id, entries in sorted(from_old.items()):
        add(pack_id, sorted(entries, key=lambda e: e.offset))
    report.packs_from_old_index = sorted(pack_name(p) for p in from_old)
    if dry_run:
        return report
    if batch:
        new_files.add("index/" + repo.save_object("index", index_body(batch), fmt.AAD_INDEX))
    report.index_files_written = len(new_files)
    # only now, with every new file stored, do the old ones go
    for name in sorted(old_files - new_files):
        repo.backend.delete(name)
        report.index_files_deleted += 1
    repo.reload_index()
    return report


@dataclass
class SnapshotRepair:
    id: str
    status: RepairStatus
    removed_files: list[str] = field(default_factory=list)
    emptied_dirs: list[str] = field(default_factory=list)
    error: str = ""  # why an unrepairable snapshot is so
    new_id: str | None = None
    forgotten: bool = False


@dataclass
class SnapshotsRepairReport:
    snapshots: list[SnapshotRepair] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # snapshot files that cannot be read
    damaged_index_files: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Rewritten:
    tree: bytes  # the new tree id (the old one if unchanged)
    removed_files: list[str] = field(default_factory=list)  # relative to this tree
    emptied_dirs: list[str] = field(default_factory=list)


class _Rewriter:
    """Rewrites trees bottom-up without what is gone, each distinct tree once."""

    def __init__(self, repo: Repository, writer: BlobWriter | None) -> None:
        self.repo, self.writer = repo, writer
        self.done: dict[bytes, _Rewritten] = {}

    def _save(self, nodes: list[Node]) -> bytes:
        data = encode_tree(nodes)
        return self.writer.save(TREE, data) if self.writer is not None else self.repo.master.blob_id(data)

    def tree(self, tree_id: bytes) -> _Rewritten:
        """Raises IntegrityError or StorageError if the tree itself cannot be read."""
        known = self.done.get(tree_id)
        if known is not None:
            return known
        out = _Rewritten(tree_id)
        nodes: list[Node] = []
        changed = False
        for node in self.repo.load_tree(tree_id):
            if node.type == DIR and node.subtree is not None:
                try:
                    sub = self.tree(node.subtree)
                except (errors.IntegrityError, errors.StorageError):
                    node = replace(node, subtree=self._save([]))
                    out.emptied_dirs.append(node.name)
                    changed = True
                else:
                    if sub.tree != node.subtree:
                        node = replace(node, subtree=sub.tree)
                        changed = True
                    out.removed_files += [f"{node.name}/{p}" for p in sub.removed_files]
                    out.emptied_dirs += [f"{node.name}/{p}" for p in sub.emptied_dirs]
            elif node.type == FILE and node.content and not self.repo.index.contains_all(node.content).all():
                out.removed_files.append(node.name)
                changed = True
                continue
            nodes.append(node)
        if changed:
            out.tree = self._save(nodes)
        self.done[tree_id] = out
        return out


def _present_packs_index(repo: Repository) -> Index:
    """The index without the packs storage no longer holds (so neither the walk nor the writer's
    dedup counts on them), including packs only their headers describe."""
    current = repo.reload_index()
    repo.read_uncovered_pack_headers()
    stored = {o.name for o in repo.backend.list("data/")}
    if all(pack_name(p) in stored for p in current.pack_ids()):
        return current  # the usual case after 'repair index'
    index = Index()
    index.add_bulk(
        (pid, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in entries])
        for pid, entries in repo.index.by_pack().items()
        if pack_name(pid) in stored
    )
    return index


def repair_snapshots(
    repo: Repository,
    snaps: list[Snapshot] | None = None,
    *,
    forget: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> SnapshotsRepairReport:
    """Repair ``snaps`` (default: every readable snapshot; damaged snapshot files are listed in
    the report, for ``forget``)."""
    say = progress or (lambda _msg: None)
    report = SnapshotsRepairReport(dry_run=dry_run)
    repo.use_index(_present_packs_index(repo))
    report.damaged_index_files = sorted(repo.damaged_index_files)
    everything = repo.snapshots(skip_damaged=True)
    report.damaged = sorted(repo.damaged_snapshots)
    repaired_as = {
        str(s.metadata["repaired"].get("original")): s.id
        for s in everything
        if isinstance(s.metadata.get("repaired"), dict)
    }
    writer = None if dry_run else BlobWriter(repo)
    try:
        rewriter = _Rewriter(repo, writer)
        for snap in everything if snaps is None else snaps:
            entry = SnapshotRepair(snap.id, "intact")
            report.snapshots.append(entry)
            if snap.id in repaired_as:
                entry.status, entry.new_id = "already repaired", repaired_as[snap.id]
            else:
                try:
                    result = rewriter.tree(bytes.fromhex(snap.tree))
                except (errors.IntegrityError, errors.StorageError) as exc:
                    entry.status, entry.error = "unrepairable", f"root tree unreadable: {exc}"
                    continue
                entry.removed_files = [f"/{p}" for p in result.removed_files]
                entry.emptied_dirs = [f"/{p}" for p in result.emptied_dirs]
                if result.tree.hex() == snap.tree:
                    continue
                for path in entry.removed_files:
                    say(f"snapshot {snap.short_id}: {path}: data missing, file removed")
                for path in entry.emptied_dirs:
                    say(f"snapshot {snap.short_id}: {path}: directory unreadable, now empty")
                entry.status = "would repair" if dry_run else "repaired"
                if writer is not None:
                    writer.flush()  # trees stored and indexed before the snapshot naming them
                    new = replace(
                        snap,
                        tree=result.tree.hex(),
                        id="",
                        tags=[*snap.tags, REPAIRED_TAG] if REPAIRED_TAG not in snap.tags else list(snap.tags),
                        metadata={
                            **snap.metadata,
                            "repaired": {
                                "original": snap.id,
                                "time": now_rfc3339(),
                                "removed_files": len(entry.removed_files),
                                "emptied_dirs": len(entry.emptied_dirs),
                            },
                        },
                    )
                    entry.new_id = repo.save_snapshot(new)
                    say(f"snapshot {snap.short_id}: saved as {new.short_id}")
            if forget and entry.new_id is not None and not dry_run:
                repo.delete_snapshot(snap.id)
                entry.forgotten = True
        if writer is not None:
            writer.flush()
    finally:
        if writer is not None:
            writer.close()
        repo.reload_index()
    return report
