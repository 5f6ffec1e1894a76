"""Verifying a repository: structure always, and every byte with ``read_data``.

Structure: every index file and snapshot decrypts and matches its name; every pack the index
names exists; every tree of every snapshot decodes and names only entries a directory can
hold (``tree.unsafe_names``: no ``..``, ``/``, NUL or name twice); every blob a tree references is indexed.
``read_data`` also downloads every pack, checks its name against its content hash, its header
against the index, and every blob against its keyed id; a :class:`DataSubset` does that for a
part of the packs (a different part each run spreads the reading over several runs, as restic's
``--read-data-subset``), the others getting the header check of a run without ``read_data``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.engine import format as fmt
from kubekeep.engine import objectlock, objects
from kubekeep.engine.crypto import OVERHEAD
from kubekeep.engine.index import Index, decode_index_body
from kubekeep.engine.pack import DATA, LENGTH_SIZE, BlobEntry, pack_name, read_header, verify_pack_id
from kubekeep.engine.pack_headers import read_stored_header
from kubekeep.engine.repository import PARALLEL_READS, Repository
from kubekeep.engine.tree import DIR, FILE

#: whole packs downloaded and verified at once (``--read-data``)
PACKS_READ_AT_ONCE = 2


@dataclass(frozen=True)
class DataSubset:
    """The packs ``--read-data-subset`` reads: group ``group`` of ``groups`` (by the first byte of
    the pack id, so that running 1/5 .. 5/5 reads every pack once), or ``percent`` of them at
    random."""

    group: int = 0
    groups: int = 0
    percent: float = 0.0

    @classmethod
    def parse(cls, text: str) -> DataSubset:
        """``N/T`` (1 <= N <= T <= 256) or ``P%`` (0 < P <= 100)."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m:
            group, groups = int(m.group(1)), int(m.group(2))
            if not 1 <= group <= groups <= 256:
                raise errors.UsageError(f"--read-data-subset {text!r}: N/T needs 1 <= N <= T <= 256")
            return cls(group=group, groups=groups)
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text)
        if m and 0 < float(m.group(1)) <= 100:
            return cls(percent=float(m.group(1)))
        raise errors.UsageError(f"--read-data-subset {text!r}: expected N/T (e.g. 2/5) or a percentage (e.g. 10%)")

    def choose(self, pack_ids: list[bytes]) -> set[bytes]:
        if self.groups:
            return {p for p in pack_ids if p[0] % self.groups == self.group - 1}
        count = min(len(pack_ids), math.ceil(len(pack_ids) * self.percent / 100))
        return set(random.sample(sorted(pack_ids), count))

    def __str__(self) -> str:
        return f"{self.group}/{self.groups}" if self.groups else f"{self.percent:g}%"


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0
    #: names written over after kubekeep stored them (versioned buckets: S3 with Object Lock)
    overwritten: list[str] = field(default_factory=list)
    #: Object Lock: objects whose retention date was checked, and the earliest of those dates
    locked_objects: int = 0
    locked_until_earliest: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def run_check(
    repo: Repository,
    *,
    read_data: bool = False,
    subset: DataSubset | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> CheckReport:
    report = CheckReport()
    # verify what is stored, not what was cached on disk or is held in memory from earlier use
    # of this Repository object (the API keeps one open across calls)
    with repo.bypassing_caches():
        index = _check_index(repo, report)
        repo.use_index(index)  # the index as checked drives the rest
        stored = {o.name: o.size for o in repo.backend.list("data/")}
        indexed = index.by_pack()
        report.packs = len(stored)
        for pack_id in indexed:
            if pack_name(pack_id) not in stored:
                report.errors.append(f"pack {pack_id.hex()[:16]} is in the index but missing from storage")
        orphans = set(stored) - {pack_name(p) for p in indexed}
        if orphans:
            report.notes.append(
                f"{len(orphans)} pack(s) not referenced by the index "
                "(left by an interrupted backup; 'kubekeep prune' removes them)"
            )
        _check_snapshots(repo, index, report)
        if read_data and subset is None:
            _read_packs(repo, indexed, stored, report, progress)
        elif subset is not None:
            chosen = subset.choose(list(indexed))
            _read_packs(repo, {p: e for p, e in indexed.items() if p in chosen}, stored, report, progress)
            _check_pack_ends(repo, {p: e for p, e in indexed.items() if p not in chosen}, stored, report)
        else:
            _check_pack_ends(repo, indexed, stored, report)
        overwritten = repo.backend.overwritten()
        if overwritten:
            shown = ", ".join(overwritten[:5]) + (", ..." if len(overwritten) > 5 else "")
            report.notes.append(
                f"warning: {len(overwritten)} object(s) written over after kubekeep stored them ({shown}): "
                "kubekeep reads the versions it wrote, so nothing is lost, but someone with write access "
                "to the bucket changed them (docs/immutability.md)"
            )
            report.overwritten = list(overwritten)
        if repo.object_lock is not None:
            locks = objectlock.check_locks(repo, objectlock.lockable_names(repo))
            report.errors.extend(locks.errors)
            report.locked_objects = locks.objects
            report.locked_until_earliest = locks.earliest
    return report


def _check_index(repo: Repository, report: CheckReport) -> Index:
    index = Index()
    for info in sorted(repo.backend.list("index/"), key=lambda o: o.name):
        name = info.name
        try:
            data = repo.backend.load(name)
            if objects.content_name(data) != name.split("/", 1)[1]:
                raise errors.IntegrityError(f"{name}: content does not match its name")
            index.add_bulk(decode_index_body(objects.unseal(repo.cipher, data, fmt.AAD_INDEX, name), name))
        except errors.IntegrityError as exc:
            report.errors.append(str(exc))
    return index


def _check_snapshots(repo: Repository, index: Index, report: CheckReport) -> None:
    seen_trees: set[bytes] = set()
    for snap_id in repo.snapshot_ids():
        try:
            data = repo.backend.load(f"snapshots/{snap_id}")
            if objects.content_name(data) != snap_id:
                raise errors.IntegrityError(f"snapshot {snap_id[:8]}: content does not match its name")
            snap = repo.load_snapshot(snap_id)
        except errors.IntegrityError as exc:
            report.errors.append(str(exc))
            continue
        report.snapshots += 1
        stack = [(bytes.fromhex(snap.tree), "/")]
        while stack:
            tree_id, path = stack.pop()
            if tree_id in seen_trees:
                continue
            seen_trees.add(tree_id)
            try:
                nodes = repo.load_tree(tree_id)
            except errors.IntegrityError as exc:
                report.errors.append(f"snapshot {snap.short_id} {path}: {exc}")
                continue
            report.trees += 1
            for node in nodes:
                child = f"{path.rstrip('/')}/{node.name}"
                if node.type == DIR and node.subtree is not None:
                    stack.append((node.subtree, child))
                elif node.type == FILE:
                    missing = sum(1 for c in node.content if c not in index)
                    if missing:
                        report.errors.append(
                            f"snapshot {snap.short_id} {child}: {missing} data blob(s) missing from the index"
                        )


def _read_packs(
    repo: Repository,
    indexed: dict[bytes, list[BlobEntry]],
    stored: dict[str, int],
    report: CheckReport,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    todo = [(pid, ents) for pid, ents in indexed.items() if pack_name(pid) in stored]

    def verify(item: tuple[bytes, list[BlobEntry]]) -> tuple[list[str], int]:
        pack_id, expected = item
        name = pack_name(pack_id)
        problems: list[str] = []
        try:
            data = repo.backend.load(name)
        except errors.StorageError as exc:
            return [f"pack {pack_id.hex()[:16]}: cannot read: {exc}"], 0
        if not verify_pack_id(pack_id, data):
            problems.append(f"pack {pack_id.hex()[:16]}: content does not match its name (corrupted)")
        try:
            header = {(e.id, e.offset): e for e in read_header(data, repo.cipher, f"pack {pack_id.hex()[:16]}")}
        except errors.IntegrityError as exc:
            problems.append(str(exc))
            header = {}
        blobs = 0
        for e in expected:
            if header and (e.id, e.offset) not in header:
                problems.append(
                    f"pack {pack_id.hex()[:16]}: blob {e.id.hex()[:16]} is in the index but not in the pack header"
                )
        for e, plain in repo.decoded(data, expected):
            if isinstance(plain, errors.IntegrityError):
                kind = "data" if e.type == DATA else "tree"
                problems.append(f"pack {pack_id.hex()[:16]}: {kind} {plain}")
            else:
                blobs += 1
        return problems, blobs

    with ThreadPoolExecutor(PACKS_READ_AT_ONCE) as pool:
        for i, (problems, blobs) in enumerate(pool.map(verify, todo), 1):
            report.errors.extend(problems)
            report.packs_read += 1
            report.blobs_read += blobs
            if progress:
                progress("read", i, len(todo))


def _check_pack_ends(
    repo: Repository, indexed: dict[bytes, list[BlobEntry]], stored: dict[str, int], report: CheckReport
) -> None:
    """Without reading data: a pack shorter than the index implies, or whose header (read alone
    from its end, the listed size telling where that is) fails, is truncated or damaged; and
    every blob the index places in it must be in its header."""
    todo = [(pid, ents) for pid, ents in indexed.items() if pack_name(pid) in stored]

    def verify(item: tuple[bytes, list[BlobEntry]]) -> list[str]:
        pack_id, expected = item
        name, what = pack_name(pack_id), f"pack {pack_id.hex()[:16]}"
        size = stored[name]
        end = max(e.offset + e.length for e in expected)
        if size < end + OVERHEAD + LENGTH_SIZE:  # the blobs, then at least the sealed header's length
            return [f"{what}: truncated: storage holds {size} bytes, its indexed blobs end at byte {end}"]
        try:
            header = {
                (e.id, e.offset, e.length) for e in read_stored_header(repo.backend, name, size, repo.cipher, what)
            }
        except errors.IntegrityError as exc:
            return [f"{exc} (the pack is truncated or damaged; {size} bytes stored)"]
        except errors.StorageError as exc:
            return [f"{what}: cannot read its header: {exc}"]
        return [
            f"{what}: blob {e.id.hex()[:16]} is in the index but not in the pack header"
            for e in expected
            if (e.id, e.offset, e.length) not in header
        ]

    with ThreadPoolExecutor(PARALLEL_READS) as pool:
        for problems in pool.map(verify, todo):
            report.errors.extend(problems)
