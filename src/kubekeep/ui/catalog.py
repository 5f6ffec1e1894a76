"""What the UI's pages read from the repository, through ``kubekeep.api``, cached in memory.

A snapshot never changes, so whatever is decoded from one (a directory listing, the cluster
summary, the diff between two) is kept by snapshot id in LRU caches; concurrent requests for the
same item wait for one computation. The snapshot list is re-read at most every
``REFRESH_SECONDS``, and the index is reloaded when other processes have added snapshots.
Cluster summaries of a whole 10,000-object snapshot take seconds to build, so they are built
ahead, on one background thread, for the snapshots a user is about to look at.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kubekeep import api, errors

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

REFRESH_SECONDS = 2.0
DIR_TYPE = "dir"


class LRU(Generic[K, V]):
    """A thread-safe LRU map whose ``get`` computes a missing value once, however many ask."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._pending: dict[K, Future[V]] = {}
        self._lock = threading.Lock()

    def peek(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._pending[key]
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        pending.set_result(value)
        return value


@dataclass(frozen=True, slots=True)
class Row:
    """One entry of a directory listing; object files carry their kind, namespace and name."""

    name: str
    path: str  # relative to the snapshot root, no leading slash
    type: str  # dir, file, symlink
    size: int
    mtime_ns: int
    target: str = ""
    kind: str = ""
    namespace: str = ""
    object_name: str = ""


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One difference between two snapshots: an object (manifests) or a file."""

    status: str  # + added, - removed, M modified, T type changed, U metadata only
    path: str  # relative, no leading slash
    type: str = "file"
    kind: str = ""
    namespace: str = ""
    name: str = ""
    fields: tuple[api.FieldChange, ...] = ()


@dataclass
class Diff:
    older: api.Snapshot
    newer: api.Snapshot
    manifests: bool
    rows: list[DiffRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"+": 0, "-": 0, "M": 0, "T": 0, "U": 0}
        for r in self.rows:
            out[r.status] += 1
        return out


class Catalog:
    """Cached, thread-safe reads of one open repository for the UI."""

    def __init__(self, repo: api.Repository, *, listings: int = 512, summaries: int = 48, diffs: int = 32) -> None:
        self.repo = repo
        self._listings: LRU[tuple[str, str], list[Row]] = LRU(listings)
        self._summaries: LRU[tuple[str, str], api.ClusterSummary] = LRU(summaries)
        self._diffs: LRU[tuple[str, str, bool], Diff] = LRU(diffs)
        self._drills: LRU[str, api.DrillRecord] = LRU(64)
        self._snapshots: list[api.Snapshot] = []
        self._by_id: dict[str, api.Snapshot] = {}
        self._read_at = 0.0
        self._stale = True
        self._windows: tuple[tuple[str, ...], list[api.RecoveryWindow]] | None = None
        self._lock = threading.Lock()
        self._background = ThreadPoolExecutor(1, thread_name_prefix="kubekeep-ui-warm")

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)

    # -- snapshots ------------------------------------------------------------------------------
    def snapshots(self) -> list[api.Snapshot]:
        """Every snapshot, oldest first (re-read at most every REFRESH_SECONDS)."""
        with self._lock:
            if self._stale or time.monotonic() - self._read_at > REFRESH_SECONDS:
                snaps = api.snapshots(self.repo)
                if self._read_at and {s.id for s in snaps} - self._by_id.keys():
                    api.refresh(self.repo)  # other processes backed up: read their index files
                self._snapshots = snaps
                self._by_id = {s.id: s for s in snaps}
                self._read_at = time.monotonic()
                self._stale = False
            return self._snapshots

    def snapshot(self, ref: str) -> api.Snapshot:
        """The snapshot with id (or unique id prefix) ``ref``."""
        snap = self._by_id.get(ref)
        if snap is not None:
            return snap
        snap = api.find_snapshot(self.repo, ref)
        if snap.id not in self._by_id:
            with self._lock:
                self._stale = True  # newer than the list: read the list (and the index) again
            self.snapshots()
        return snap

    def recovery_windows(self) -> list[api.RecoveryWindow]:
        """The etcd recovery window of each cluster (empty without etcd snapshots), recomputed
        only when the snapshot list changed."""
        snaps = self.snapshots()
        if not any(s.kind == api.SnapshotKind.ETCD or s.extends is not None for s in snaps):
            return []
        key = tuple(s.id for s in snaps)
        with self._lock:
            if self._windows is not None and self._windows[0] == key:
                return self._windows[1]
        windows = api.recovery_windows(self.repo)
        with self._lock:
            self._windows = (key, windows)
        return windows

    def chain_start(self, snap: api.Snapshot) -> api.Snapshot | None:
        """The snapshot starting the chain ``snap`` is attached to (an etcd delta segment's full
        snapshot), if it is still in the repository."""
        if snap.extends is None:
            return None
        return next((s for s in reversed(self.snapshots()) if s.chain == snap.extends), None)

    def history(self, snap: api.Snapshot) -> list[api.Snapshot]:
        """Snapshots of the same source and layer as ``snap``, oldest first."""
        return [s for s in self.snapshots() if s.uri == snap.uri and s.kind == snap.kind]

    # -- trees ----------------------------------------------------------------------------------
    def listing(self, snap: api.Snapshot, path: str) -> list[Row]:
        """The entries of directory ``path``: directories first, then by name."""
        path = path.strip("/")
        return self._listings.get((snap.id, path), lambda: _rows(self.repo, snap.id, path))

    def stat(self, snap: api.Snapshot, path: str) -> Row:
        """The entry at ``path`` (the root is a directory)."""
        path = path.strip("/")
        if not path:
            return Row("", "", DIR_TYPE, 0, 0)
        parent, _, name = path.rpartition("/")
        for row in self.listing(snap, parent):
            if row.name == name:
                return row
        raise errors.PathNotFound(f"no /{path} in snapshot {snap.short_id}")

    def read(self, snap: api.Snapshot, path: str, limit: int) -> bytes:
        """The first ``limit`` bytes of file ``path``."""
        out = bytearray()
        for piece in api.cat(self.repo, f"{snap.id}:{path}"):
            out += piece
            if len(out) >= limit:
                break
        return bytes(out[:limit])

    # -- manifests --------------------------------------------------------------------------------
    def summary(self, snap: api.Snapshot, namespace: str = "") -> api.ClusterSummary:
        """The cluster at the time of ``snap`` (one namespace only if given; cheap), cached."""
        if namespace:
            whole = self._summaries.peek((snap.id, ""))
            if whole is not None:
                return whole
        return self._summaries.get(
            (snap.id, namespace), lambda: api.summary(self.repo, snap.id, namespaces=[namespace] if namespace else ())
        )

    def summary_ready(self, snap: api.Snapshot) -> bool:
        return self._summaries.peek((snap.id, "")) is not None

    def warm(self, *snaps: api.Snapshot) -> None:
        """Build the whole-cluster summaries of ``snaps`` in the background (manifests only)."""
        for snap in snaps:
            if snap.kind == api.SnapshotKind.MANIFESTS and not self.summary_ready(snap):
                self._background.submit(self._quietly, snap)

    def warm_latest(self, per_source: int = 1, sources: int = 4) -> None:
        """Build, in the background, the summaries of the newest manifests snapshots of the
        ``sources`` most recently backed up sources (what a user opens first)."""
        self._background.submit(self._warm_latest, per_source, sources)

    def _warm_latest(self, per_source: int, sources: int) -> None:
        try:
            snaps = self.snapshots()
        except errors.KubekeepError:
            return  # the snapshot list page will show the error
        newest: dict[str, list[api.Snapshot]] = {}
        for snap in reversed(snaps):
            if snap.kind == api.SnapshotKind.MANIFESTS and len(newest.setdefault(snap.uri, [])) < per_source:
                newest[snap.uri].append(snap)
        self.warm(*(s for group in list(newest.values())[:sources] for s in group))

    def _quietly(self, snap: api.Snapshot) -> None:
        try:
            self.summary(snap)
        except errors.KubekeepError:
            pass  # the page that needs it will show the error

    def diff(self, older: api.Snapshot, newer: api.Snapshot, *, churn: bool = False) -> Diff:
        """What changed from ``older`` to ``newer``: objects with their field changes when both
        are manifests snapshots, files otherwise."""
        return self._diffs.get((older.id, newer.id, churn), lambda: self._diff(older, newer, churn))

    # -- restore drills ---------------------------------------------------------------------------
    def drills(self) -> tuple[list[api.DrillRecord], list[str]]:
        """The stored drill reports, oldest first, and a line for each damaged one (read anew
        each time: there are at most 50 per source, and new ones arrive while the UI runs)."""
        return api.drills(self.repo)

    def drill(self, ref: str) -> api.DrillRecord:
        """The drill report with id (or unique prefix) ``ref``; reports never change, so kept."""
        cached = self._drills.peek(ref)
        if cached is not None:
            return cached
        d = api.drill_report(self.repo, ref)
        return self._drills.get(d.id, lambda: d)

    def _diff(self, older: api.Snapshot, newer: api.Snapshot, churn: bool) -> Diff:
        if older.kind == api.SnapshotKind.MANIFESTS and newer.kind == api.SnapshotKind.MANIFESTS:
            changes = api.diff_manifests(self.repo, older.id, newer.id, churn=churn)
            rows = [DiffRow(c.status, c.path, "file", c.kind, c.namespace, c.name, tuple(c.fields)) for c in changes]
            return Diff(older, newer, True, rows)
        rows = []
        for c in api.diff(self.repo, older.id, newer.id):
            node = c.new or c.old
            rows.append(DiffRow(c.status, c.path, node.type if node is not None else "file"))
        return Diff(older, newer, False, rows)


def _rows(repo: api.Repository, snap_id: str, path: str) -> list[Row]:
    node = api.stat(repo, f"{snap_id}:{path}")
    if node.type != DIR_TYPE:
        raise errors.UsageError(f"/{path} is a {node.type}, not a directory")
    rows = []
    for full, child in api.ls(repo, f"{snap_id}:{path}"):
        a = child.attrs
        rows.append(
            Row(
                child.name,
                full.lstrip("/"),
                child.type,
                child.size,
                child.mtime_ns,
                child.target,
                str(a.get("kind", "")),
                str(a.get("namespace", "")),
                str(a.get("name", "")),
            )
        )
    rows.sort(key=lambda r: (r.type != DIR_TYPE, r.name))
    return rows
