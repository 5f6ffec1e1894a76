"""Removing data no snapshot needs. Runs under an exclusive lock.

Order of operations, chosen so that a prune killed at any step loses nothing a snapshot needs:
1. find the blobs every snapshot references (refuse to go on if any is missing: run check);
2. copy the still-used blobs out of packs that are mostly garbage into new packs, and index them;
3. write one index file describing every pack that is kept;
4. delete the old index files;
5. delete the packs nothing references any more (including packs left by killed backups).
A crash before 4 leaves duplicate index entries (harmless); between 4 and 5, unreferenced packs
(removed by the next prune).

With Object Lock (docs/immutability.md), objects whose retention date is not reached are left:
an old index file still locked stays, and so does every pack it lists (kept in the new index
whole, never repacked); a locked pack nothing needs stays unindexed; each is counted in
``objects_locked`` and removed by a later prune. A deletion the storage refuses anyway (clock
skew, append-only credentials) is counted the same way; what it would have freed stays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.engine import format as fmt
from kubekeep.engine import objectlock, objects
from kubekeep.engine.index import Index, decode_index_body, index_body
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
    #: objects left because their retention date is not reached (Object Lock), or their deletion was refused
    objects_locked: int = 0
    #: the latest of those dates, when known
    locked_until: str | None = None
    refusals: list[str] = field(default_factory=list)
    #: where the storage frees deleted objects' space only later (an OCI registry's garbage
    #: collection), what it says about that: ``bytes_freed`` is then what it will reclaim
    reclaimed_later: str | None = None

    def locked(self, until: dt.datetime | None) -> None:
        self.objects_locked += 1
        if until is not None:
            shown = objectlock.show(until)
            if self.locked_until is None or shown > self.locked_until:
                self.locked_until = shown

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
    report = PruneReport(dry_run=dry_run, reclaimed_later=repo.backend.deferred_reclaim)
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
    old_index_kept: set[str] = set()
    if repo.retaining is not None:
        old_index_kept = _hold_locked(repo, report, old_index_files, by_pack, drop, repack, keep)
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
                for e, plain in repo.decoded(data, live):
                    if isinstance(plain, errors.IntegrityError):
                        raise plain
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
    refused_index: set[str] = set()
    for name in sorted(old_index_files - new_index_files - old_index_kept):
        try:
            repo.backend.delete(name)
        except errors.DeleteRefused as exc:
            refused_index.add(name)
            report.locked(exc.until)
            report.refusals.append(str(exc))
    # packs an index file that could not be deleted lists stay, so that it names no missing pack
    pinned = _listed_packs(repo, refused_index)
    say(f"deleting {len(drop) + len(repack)} pack(s)")
    for name in drop + [pack_name(p) for p in repack]:
        if name in pinned:
            report.locked(None)
            continue
        try:
            repo.backend.delete(name)
        except errors.DeleteRefused as exc:
            report.locked(exc.until)
            report.refusals.append(str(exc))
            continue
        if repo.cache is not None:
            repo.cache.discard(name)
    # temp files of stores that were interrupted (a killed backup) are garbage too; only old
    # ones, in case a writer on another host still holds a lock we judged stale
    cleanup_temp = getattr(repo.backend, "cleanup_temp", None)
    if cleanup_temp is not None:
        cleanup_temp()
    if repo.ledger is not None:
        say("consolidating the retention records")
        repo.ledger.consolidate()  # records still locked stay until a later prune (not counted)
    repo.reload_index()
    return report


def _listed_packs(repo: Repository, index_files: set[str]) -> set[str]:
    """The names of the packs the index files ``index_files`` list."""
    out: set[str] = set()
    for name in index_files:
        data = repo.load_cached(name)
        for pack_id, _ in decode_index_body(objects.unseal(repo.cipher, data, fmt.AAD_INDEX, name), name):
            out.add(pack_name(pack_id))
    return out


def _hold_locked(
    repo: Repository,
    report: PruneReport,
    old_index_files: set[str],
    by_pack: dict[bytes, list[BlobEntry]],
    drop: list[str],
    repack: dict[bytes, list[BlobEntry]],
    keep: dict[bytes, list[BlobEntry]],
) -> set[str]:
    """With Object Lock: take out of ``drop`` and ``repack`` what must stay (locked, or listed by
    an old index file that is locked), keeping listed packs whole in ``keep``; returns the old
    index files that stay. Asks the server once per candidate (HEAD)."""
    retaining = repo.retaining
    assert retaining is not None
    candidates = sorted(old_index_files) + drop + [pack_name(p) for p in repack]
    with ThreadPoolExecutor(objectlock.PARALLEL_REQUESTS) as pool:
        until = dict(zip(candidates, pool.map(retaining.locked_until, candidates), strict=True))
    kept_index = {n for n in old_index_files if until[n] is not None}
    for name in kept_index:
        report.locked(until[name])
    pinned = _listed_packs(repo, kept_index)
    names = {pack_name(p): p for p in by_pack}
    for name in list(drop):
        if until[name] is not None or name in pinned:
            drop.remove(name)
            report.locked(until[name])
            if name in pinned and name in names:
                keep[names[name]] = by_pack[names[name]]
    for pack_id in list(repack):
        name = pack_name(pack_id)
        if until[name] is not None or name in pinned:
            del repack[pack_id]
            keep[pack_id] = by_pack[pack_id]
            report.locked(until[name])
    report.blobs_removed = (
        sum(len(by_pack[p]) - len(keep[p]) for p in keep)
        + sum(len(by_pack[names[n]]) for n in drop if n in names)
        + sum(len(by_pack[p]) - len(live) for p, live in repack.items())
    )
    return kept_index
