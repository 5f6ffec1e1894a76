"""Removing data no snapshot needs. Runs under an exclusive lock.

Order of operations, chosen so that a prune killed at any step loses nothing a snapshot needs:
1. find the blobs every snapshot references (refuse to go on if any is missing: run check);
2. copy the still-used blobs out of packs that are mostly garbage into new packs, and index them;
3. write one index file describing every pack that is kept;
4. delete the old index files;
5. delete the packs nothing references any more (including packs left by killed backups).
A crash before 4 leaves duplicate index entries (harmless); between 4 and 5, unreferenced packs
(removed by the next prune).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from kubekeep import errors
from kubekeep.engine import format as fmt
from kubekeep.engine import objects
from kubekeep.engine.index import Index, index_body
from kubekeep.engine.pack import BlobEntry, pack_name
from kubekeep.engine.repository import Repository
from kubekeep.engine.tree import DIR, FILE
from kubekeep.engine.writer import BlobWriter


@dataclass
class PruneReport:
    snapshots: int = 0
    blobs_used: int = 0
    blobs_removed: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_kept: int = 0
    bytes_freed: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def used_blobs(repo: Repository) -> set[bytes]:
    used: set[bytes] = set()
    index = repo.index
    for snap in repo.snapshots():
        stack = [bytes.fromhex(snap.tree)]
        while stack:
            tree_id = stack.pop()
            if tree_id in used:
                continue
            if tree_id not in index:
                raise errors.IntegrityError(
                    f"snapshot {snap.short_id} needs tree {tree_id.hex()[:16]}, which is missing; "
                    "run 'kubekeep check' (nothing was deleted)"
                )
            used.add(tree_id)
            for node in repo.load_tree(tree_id):
                if node.type == DIR and node.subtree is not None:
                    stack.append(node.subtree)
                elif node.type == FILE:
                    for blob_id in node.content:
                        if blob_id not in index:
                            raise errors.IntegrityError(
                                f"snapshot {snap.short_id} needs data blob {blob_id.hex()[:16]}, which is missing; "
                                "run 'kubekeep check' (nothing was deleted)"
                            )
                    used.update(node.content)
    return used


def run_prune(
    repo: Repository, *, max_unused: float = 0.1, dry_run: bool = False, progress: Callable[[str], None] | None = None
) -> PruneReport:
    report = PruneReport(dry_run=dry_run)
    say = progress or (lambda _msg: None)
    index = repo.reload_index()
    old_index_files = repo.index_files()
    say("finding used data")
    used = used_blobs(repo)
    report.snapshots = len(repo.snapshot_ids())
    report.blobs_used = len(used)
    stored = {o.name: o.size for o in repo.backend.list("data/")}
    by_pack = index.by_pack()

    keep: dict[bytes, list[BlobEntry]] = {}
    repack: dict[bytes, list[BlobEntry]] = {}
    drop: list[str] = [name for name in stored if name not in {pack_name(p) for p in by_pack}]
    claimed: set[bytes] = set()  # each used blob is kept in exactly one pack
    for pack_id, entries in by_pack.items():
        name = pack_name(pack_id)
        if name not in stored:
            continue  # check reports it; nothing to delete
        live = []
        for e in entries:
            if e.id in used and e.id not in claimed:
                claimed.add(e.id)
                live.append(e)
        dead = len(entries) - len(live)
        report.blobs_removed += dead
        if not live:
            drop.append(name)
        elif dead and sum(e.length for e in entries) - sum(e.length for e in live) > max_unused * stored[name]:
            repack[pack_id] = live
        else:
            keep[pack_id] = entries if not dead else live
    report.packs_deleted = len(drop)
    report.packs_repacked = len(repack)
    report.packs_kept = len(keep)
    report.bytes_freed = sum(stored[n] for n in drop) + sum(stored[pack_name(p)] for p in repack)
    if dry_run:
        return report

    kept_index = Index()
    kept_index.add_bulk(
        (pid, [[e.type, e.id, e.offset, e.length, e.raw_length] for e in ents]) for pid, ents in keep.items()
    )
    new_index_files: set[str] = set()
    if repack:
        say(f"repacking {len(repack)} pack(s)")
        with BlobWriter(repo, index=kept_index) as writer:
            for pack_id, live in repack.items():
                data = repo.backend.load(pack_name(pack_id))
                for e in live:
                    plain = repo.decode_blob(e.id, e.type, data[e.offset : e.offset + e.length], e.raw_length)
                    writer.save(e.type, plain, e.id)
            writer.flush()
            new_index_files.update(writer.index_files)
            report.bytes_freed -= writer.stats.bytes_stored
    say("writing the new index")
    if keep:
        sealed = objects.seal(repo.cipher, index_body(keep.items()), fmt.AAD_INDEX)
        name = f"index/{objects.content_name(sealed)}"
        repo.backend.store(name, sealed)
        new_index_files.add(name)
    for name in sorted(old_index_files - new_index_files):
        repo.backend.delete(name)
    say(f"deleting {len(drop) + len(repack)} pack(s)")
    for name in drop + [pack_name(p) for p in repack]:
        repo.backend.delete(name)
        if repo.cache is not None:
            repo.cache.discard(name)
    # temp files of stores that were interrupted (a killed backup) are garbage too; only old
    # ones, in case a writer on another host still holds a lock we judged stale
    cleanup_temp = getattr(repo.backend, "cleanup_temp", None)
    if cleanup_temp is not None:
        cleanup_temp()
    repo.reload_index()
    return report
