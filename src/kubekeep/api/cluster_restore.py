"""A cluster restore with its data, in one command, data first (docs/volumes.md, "Restoring a
namespace or a cluster with its data").

``restore SNAP --to k8s://`` of a snapshot holding ``volumes/`` (``backup k8s:// --volumes``), or
given ``--volumes-from`` snapshots of claims:

1. the objects that come before the workloads are created (``K8sExporter.phased``): namespaces,
   classes, claims, config, RBAC, services;
2. each restored claim gets its files through a helper pod (the ``pvc://`` exporter, one engine
   restore of its ``volumes/<namespace>/<claim>`` subtree or of its ``--volumes-from``
   snapshot), ``parallel`` claims at a time; a claim whose data is in is annotated
   ``kubekeep.io/data-restored: <snapshot id>``;
3. the workloads and everything after them are created, except those whose pods mount a claim
   whose data failed (pod template volumes naming it, StatefulSet claim templates making it):
   reported as not created, with the reason.

Why data first rather than workloads created at zero replicas and scaled up afterwards: it
changes no object of the user's (a scaled-down StatefulSet that a crash leaves at zero stays
broken), it works for what has no replicas (Jobs, CronJobs, DaemonSets, bare Pods), and it never
fights an autoscaler that would scale the workload up under the restore.

Run again with ``--existing skip`` (the default), an interrupted restore finishes: objects that
exist are skipped, a claim carrying this restore's ``restored-from`` label but not the data mark
gets its data written again, a marked claim is left as it is, and a claim that existed before
and is not this restore's is left alone (reported).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubekeep import errors
from kubekeep.connectors.k8s.options import ManifestsDestinationOptions, RestoreVolumeOptions
from kubekeep.engine.entries import Entry, Exporter, SnapshotKind, SourceInfo
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import NodeFilter, RestoreStats, run_restore
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import DIR, FILE
from kubekeep.manifests import claims as claim_refs
from kubekeep.manifests import layout
from kubekeep.manifests.cleaning import DATA_RESTORED_ANNOTATION, RESTORED_FROM_LABEL
from kubekeep.units import human_size

if TYPE_CHECKING:
    from kubekeep.connectors.k8s.exporter import K8sExporter
    from kubekeep.connectors.pvc.options import VolumeOptions
    from kubekeep.manifests.planning import PlannedObject

VOLUMES_DIR = "volumes"
PVC = ("", "persistentvolumeclaims")


@dataclass
class ClusterRestoreProgress:
    """How far a data-first restore is: objects, then claims' data, then workloads."""

    phase: str = "objects"  # objects | data | workloads
    objects_done: int = 0
    claims_total: int = 0
    claims_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    current: str = ""


ClusterProgressCallback = Callable[[ClusterRestoreProgress], None]


@dataclass
class ClaimResult:
    """One claim of a data-first restore: the claim object, its data and what became of it."""

    namespace: str
    name: str
    #: where the data comes from: ``SNAP:/volumes/<ns>/<claim>``, ``SNAP`` (--volumes-from), or ""
    source: str = ""
    #: the claim object: created, existing, failed (or would create ... in a dry run)
    claim: str = ""
    #: written, would write, skipped, left alone, no data, failed, would fail
    action: str = ""
    reason: str = ""
    bytes_planned: int = 0
    files_planned: int = 0
    bytes_written: int = 0
    files_written: int = 0
    seconds: float = 0.0
    #: workloads not created (or, in a dry run, created only after this claim's data)
    workloads: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def failed(self) -> bool:
        return self.action in ("failed", "would fail")


@dataclass
class ClusterRestoreStats(RestoreStats):
    """A restore's figures (the manifests part's), every object's line in ``results``, and each
    claim's data in ``claims``."""

    claims: list[ClaimResult] = field(default_factory=list)

    def problem(self) -> str | None:
        """One line saying what did not come back (claims' data, workloads held), or None."""
        failed = [c for c in self.claims if c.failed]
        held = [r for r in self.results if r.get("action") == "not created"]
        if not failed and not held:
            return None
        parts = []
        if failed:
            first = failed[0]
            parts.append(
                f"{len(failed)} of {len(self.claims)} claims' data not restored ({first.label}: {first.reason}"
                + (f"; and {len(failed) - 1} more)" if len(failed) > 1 else ")")
            )
        if held:
            names = ", ".join(f"{r['kind']} {r['namespace']}/{r['name']}" for r in held[:3])
            parts.append(f"{len(held)} workload(s) not created ({names}{', ...' if len(held) > 3 else ''})")
        return "; ".join(parts)


@dataclass
class _Claim:
    """A claim of the plan: target identity, where it was in the snapshot, where its data is."""

    namespace: str
    name: str
    source_namespace: str
    path: str
    data: Snapshot | None = None
    data_path: str = ""
    result: ClaimResult = field(default_factory=lambda: ClaimResult("", ""))


def wanted(repo: Repository, snap: Snapshot, path: str, options: ManifestsDestinationOptions) -> bool:
    """Whether a restore of ``snap`` into a cluster restores the claims' data too: the whole
    snapshot, holding ``volumes/`` (or ``--volumes-from`` given), unless ``--no-volumes``."""
    volumes = options.volumes or RestoreVolumeOptions()
    whole = not path.strip("/")
    if volumes.volumes_from and (not volumes.enabled or not whole):
        raise errors.UsageError(
            "--volumes-from applies to a restore of a whole manifests snapshot with its data (no :PATH, no --no-volumes)"
        )
    if not volumes.enabled or not whole:
        return False
    if volumes.volumes_from:
        return True
    try:
        node = repo.resolve(snap, VOLUMES_DIR)
    except errors.PathNotFound:
        return False
    return node.type == DIR


def without_volumes(include: NodeFilter | None) -> NodeFilter:
    """``include``, leaving out the snapshot's ``volumes/`` (files no manifests exporter takes)."""

    def keep(rel: str, node: Any) -> bool:
        if rel == VOLUMES_DIR or rel.startswith(VOLUMES_DIR + "/"):
            return False
        return include is None or include(rel, node)

    return keep


def restore_with_data(
    repo: Repository,
    snap: Snapshot,
    exporter: K8sExporter,
    *,
    include: NodeFilter | None,
    options: ManifestsDestinationOptions,
    context: str | None = None,
    progress: ClusterProgressCallback | None = None,
) -> ClusterRestoreStats:
    """Objects up to the workloads, each claim's data, then the workloads (module docstring).
    The caller holds the repository lock and closes ``exporter``."""
    from kubekeep.connectors.pvc.interrupts import terminate_as_interrupt

    started = time.monotonic()
    volumes = options.volumes or RestoreVolumeOptions()
    claims = _snapshot_claims(repo, snap, include, options.namespace_map)
    _attach_data(repo, snap, claims, volumes.volumes_from)
    state = ClusterRestoreProgress()
    lock = threading.Lock()

    def tell(**changes: Any) -> None:
        if progress is None:
            return
        with lock:
            for key, value in changes.items():
                setattr(state, key, getattr(state, key) + value if key.endswith(("_done",)) else value)
            snapshot = dataclasses.replace(state)
        progress(snapshot)

    exporter.phased = True
    exporter.on_result = lambda _result: tell(objects_done=1)
    with terminate_as_interrupt():
        first = run_restore(repo, snap, exporter, include=without_volumes(include))
        results = {r["path"]: r for r in exporter.results()}
        writes = _decide(claims, results, exporter, snap)
        tell(
            phase="data",
            claims_total=len(writes),
            bytes_total=sum(c.result.bytes_planned for c in writes),
        )
        warnings = list(first.warnings)
        if not exporter.dry_run:
            warnings += _write_all(repo, writes, exporter, _volume_options(options, volumes, context), volumes, tell)
        tell(phase="workloads", current="")
        hold, waits = _holds(claims, exporter.later())
        later = exporter.release(hold)
    for r in later:
        wait = waits.get(r["path"])
        if wait and r["action"] not in ("not created", "would hold", "failed", "would fail"):
            r["reason"] = "; ".join(x for x in (r.get("reason", ""), f"after the data of {wait}") if x)
    stats = ClusterRestoreStats(
        files=first.files,
        dirs=first.dirs,
        symlinks=first.symlinks,
        bytes=first.bytes,
        warnings=warnings,
        results=exporter.results(),
        claims=[c.result for c in claims],
    )
    stats.duration_s = round(time.monotonic() - started, 3)
    return stats


# -- planning ---------------------------------------------------------------------------------


def _snapshot_claims(repo: Repository, snap: Snapshot, include: NodeFilter | None, namespace_map: Any) -> list[_Claim]:
    """The claims the restore selects (tree blobs only), with their target namespace."""
    try:
        root = repo.resolve(snap, layout.NAMESPACES_DIR)
    except errors.PathNotFound:
        return []
    if root.type != DIR or root.subtree is None:
        return []
    found = []
    for ns_node in repo.load_tree(root.subtree):
        if ns_node.type != DIR:
            continue
        directory = f"{layout.NAMESPACES_DIR}/{ns_node.name}/{layout.CORE_GROUP}/persistentvolumeclaims"
        try:
            node = repo.resolve(snap, directory)
        except errors.PathNotFound:
            continue
        if node.type != DIR or node.subtree is None:
            continue
        for f in repo.load_tree(node.subtree):
            rel = f"{directory}/{f.name}"
            ref = layout.parse_path(rel)
            if f.type != FILE or ref is None or (include is not None and not include(rel, f)):
                continue
            target = namespace_map.get(ref.namespace, ref.namespace)
            claim = _Claim(target, ref.name, ref.namespace, rel)
            claim.result = ClaimResult(target, ref.name)
            found.append(claim)
    return found


def _volume_snapshots(repo: Repository, refs: Iterable[str]) -> dict[tuple[str, str], Snapshot]:
    """``--volumes-from``: the claim (namespace, name) each ``pvc://`` snapshot was taken from."""
    out: dict[tuple[str, str], Snapshot] = {}
    for ref in refs:
        snap = repo.find_snapshot(ref)
        extra = snap.source.get("extra") or {}
        ns, name = extra.get("namespace"), extra.get("name")
        if (
            snap.kind != SnapshotKind.VOLUME
            or not isinstance(ns, str)
            or not isinstance(name, str)
            or not ns
            or not name
        ):
            raise errors.UsageError(
                f"--volumes-from {ref}: snapshot {snap.short_id} is a {snap.kind or 'unknown'} snapshot, "
                "not a volume snapshot of one claim (backup pvc://NAMESPACE/NAME)"
            )
        if (ns, name) in out:
            raise errors.UsageError(
                f"--volumes-from: snapshots {out[(ns, name)].short_id} and {snap.short_id} both hold claim {ns}/{name}"
            )
        out[(ns, name)] = snap
    return out


def _attach_data(repo: Repository, snap: Snapshot, claims: list[_Claim], volumes_from: Iterable[str]) -> None:
    """Where each claim's data is (a ``--volumes-from`` snapshot of it first, else ``volumes/``),
    and how much of it there is; a ``--volumes-from`` snapshot of a claim not restored is an error."""
    separate = _volume_snapshots(repo, volumes_from)
    by_source = {(c.source_namespace, c.name): c for c in claims}
    unknown = sorted(set(separate) - set(by_source))
    if unknown:
        ns, name = unknown[0]
        raise errors.UsageError(
            f"--volumes-from {separate[(ns, name)].short_id} holds claim {ns}/{name}, which this restore "
            "does not restore (not in the snapshot, or not selected)"
        )
    for c in claims:
        data = separate.get((c.source_namespace, c.name))
        if data is not None:
            c.data, c.data_path, c.result.source = data, "", data.short_id
        else:
            path = f"{VOLUMES_DIR}/{c.source_namespace}/{c.name}"
            try:
                node = repo.resolve(snap, path)
            except errors.PathNotFound:
                c.result.action, c.result.reason = "no data", "the snapshot holds no data for this claim"
                continue
            c.data, c.data_path, c.result.source = snap, path, f"{snap.short_id}:/{path}"
            if node.type != DIR:
                c.result.action, c.result.reason = "failed", f"{path} in the snapshot is a {node.type}, not a directory"
                c.data = None
                continue
        node = repo.resolve(c.data, c.data_path)
        if node.subtree is not None:
            for _, child in repo.walk(node.subtree):
                if child.type == FILE:
                    c.result.files_planned += 1
                    c.result.bytes_planned += child.size


_CLAIM_STATE = {
    "created": "created",
    "skipped": "existing",
    "updated": "existing",
    "failed": "failed",
    "would create": "would create",
    "would skip": "existing",
    "would update": "existing",
    "would fail": "would fail",
}


def _decide(
    claims: list[_Claim], results: dict[str, dict[str, Any]], exporter: K8sExporter, snap: Snapshot
) -> list[_Claim]:
    """After the claims are created: which get their data written (see the module docstring)."""
    from kubekeep.kube import applying

    dry = exporter.dry_run
    writes = []
    for c in claims:
        line = results.get(c.path)
        r = c.result
        if line is None:
            r.claim, r.action, r.reason = "not restored", "skipped", "the claim object was not restored"
            continue
        r.claim = _CLAIM_STATE.get(line["action"], line["action"])
        if line["action"] in ("failed", "would fail"):
            r.action, r.reason = line["action"], f"the claim could not be created: {line.get('reason', '')}"
            continue
        if r.action in ("no data", "failed") or c.data is None:
            continue
        mark = c.data.short_id
        if r.claim == "existing":
            live = applying.get(exporter.session, "", "v1", "persistentvolumeclaims", c.name, namespace=c.namespace)
            meta = (live or {}).get("metadata") or {}
            annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
            labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
            ours = (labels or {}).get(RESTORED_FROM_LABEL) == snap.short_id
            if (annotations or {}).get(DATA_RESTORED_ANNOTATION) == mark:
                r.action = "would skip" if dry else "skipped"
                r.reason = f"its data was restored from {mark} already"
                continue
            if line["action"] in ("skipped", "would skip") and not ours:
                r.action = "left alone"
                r.reason = "the claim existed before this restore: its data is left as it is"
                continue
            r.reason = (
                "restored by an earlier run of this restore; its data is written again"
                if ours and line["action"] in ("skipped", "would skip")
                else "existing claim: the snapshot's files are written over its own"
            )
        r.action = "would write" if dry else "written"
        writes.append(c)
    return writes


def _holds(
    claims: list[_Claim], later: list[PlannedObject]
) -> tuple[Callable[[PlannedObject], str | None], dict[str, str]]:
    """What the workload phase holds back (objects mounting a claim whose data failed), and
    for the others, the claims whose data they come after (path -> "ns/a, ns/b")."""
    by_ns: dict[str, dict[str, _Claim]] = {}
    for c in claims:
        by_ns.setdefault(c.namespace, {})[c.name] = c
    reasons: dict[int, str] = {}
    waits: dict[str, str] = {}
    for p in later:
        if p.skip is not None or not claim_refs.makes_pods(p.group, p.resource):
            continue
        mine = by_ns.get(p.namespace, {})
        needed = sorted(claim_refs.claims_needed(p.obj, p.group, p.resource, mine))
        failed = [mine[n] for n in needed if mine[n].result.failed]
        with_data = [mine[n] for n in needed if mine[n].result.action in ("written", "would write")]
        if failed:
            first = failed[0].result
            reasons[id(p)] = f"claim {first.label} has no data: {first.reason}" + (
                f" (and {len(failed) - 1} more claims)" if len(failed) > 1 else ""
            )
            for c in failed:
                c.result.workloads.append(p.describe())
        elif with_data:
            waits[p.path] = ", ".join(c.result.label for c in with_data)
            for c in with_data:
                c.result.workloads.append(p.describe())
    return (lambda p: reasons.get(id(p))), waits


# -- writing ----------------------------------------------------------------------------------


class _Interrupted(errors.ConnectorError):
    pass


class _Counting(Exporter):
    """An exporter that passes everything on, counting the bytes of files as they are written,
    and stops when the restore is interrupted."""

    scheme = "pvc"

    def __init__(self, inner: Exporter, count: Callable[[int], None], stop: threading.Event) -> None:
        self.inner = inner
        self.count = count
        self.stop = stop

    def _check(self) -> None:
        if self.stop.is_set():
            raise _Interrupted("interrupted")

    def begin(self, source: SourceInfo, metadata: dict[str, Any], *, snapshot_id: str = "") -> None:
        self._check()
        self.inner.begin(source, metadata, snapshot_id=snapshot_id)

    def directory(self, entry: Entry) -> None:
        self._check()
        self.inner.directory(entry)

    def symlink(self, entry: Entry) -> None:
        self._check()
        self.inner.symlink(entry)

    def file(self, entry: Entry, data: Iterable[bytes]) -> None:
        self._check()

        def counted() -> Iterator[bytes]:
            for piece in data:
                self._check()
                self.count(len(piece))
                yield piece

        self.inner.file(entry, counted())

    def finish(self) -> list[str]:
        return self.inner.finish()

    def results(self) -> list[dict[str, Any]]:
        return self.inner.results()

    def close(self) -> None:
        self.inner.close()


def _volume_options(
    options: ManifestsDestinationOptions, volumes: RestoreVolumeOptions, context: str | None
) -> VolumeOptions:
    from kubekeep.connectors.pvc.options import VolumeOptions

    base = volumes.volume or VolumeOptions()
    return dataclasses.replace(
        base, context=context, kubeconfig=options.kubeconfig if options.kubeconfig is not None else base.kubeconfig
    )


def _write_all(
    repo: Repository,
    writes: list[_Claim],
    exporter: K8sExporter,
    vopts: VolumeOptions,
    volumes: RestoreVolumeOptions,
    tell: Callable[..., None],
) -> list[str]:
    """Write each claim's data, ``volumes.parallel`` at a time; a claim that fails fails alone."""
    if not writes:
        return []
    from kubekeep.connectors.pvc.claim_restore import PvcExporter

    stop = threading.Event()
    warnings: list[str] = []
    lock = threading.Lock()

    def write(c: _Claim) -> None:
        r = c.result
        assert c.data is not None
        started = time.monotonic()
        tell(current=r.label)
        vopts.status(f"{r.label}: writing {r.files_planned} files ({human_size(r.bytes_planned)}) from {r.source}")

        def count(n: int) -> None:
            with lock:
                r.bytes_written += n
            tell(bytes_done=n)

        try:
            with _Counting(PvcExporter(f"pvc://{c.namespace}/{c.name}", vopts), count, stop) as counting:
                done = run_restore(repo, c.data, counting, path=c.data_path)
            r.files_written = done.files
            with lock:
                warnings.extend(done.warnings)
            _mark(exporter, c)
        except errors.KubekeepError as exc:
            r.action, r.reason = "failed", str(exc)
        finally:
            r.seconds = round(time.monotonic() - started, 3)
            tell(claims_done=1)
        if not r.failed:
            vopts.status(
                f"{r.label}: {r.files_written} files, {human_size(r.bytes_written)} written in {r.seconds:.1f} s"
            )
        else:
            vopts.status(f"{r.label}: data not restored: {r.reason}")

    total = sum(c.result.bytes_planned for c in writes)
    vopts.status(f"writing the data of {len(writes)} claim(s), {human_size(total)}, {volumes.parallel} at a time")
    with ThreadPoolExecutor(max(1, volumes.parallel), thread_name_prefix="kubekeep-claim") as pool:
        futures: list[Future[None]] = [pool.submit(write, c) for c in writes]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            stop.set()
            for fut in futures:
                fut.cancel()
            raise
    return warnings


def _mark(exporter: K8sExporter, c: _Claim) -> None:
    """Annotate the claim: its data is in (what a re-run of the restore skips)."""
    from kubekeep.kube import applying

    assert c.data is not None
    body = {"metadata": {"annotations": {DATA_RESTORED_ANNOTATION: c.data.short_id}}}
    r = applying.patch(exporter.session, "", "v1", "persistentvolumeclaims", c.name, body, namespace=c.namespace)
    if not r.ok:
        c.result.reason = f"written, but the claim could not be marked (a re-run writes it again): HTTP {r.status}"
