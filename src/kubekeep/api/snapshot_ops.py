"""Snapshots: back up, restore, list, read, compare, check, forget, prune, repair, copy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubekeep import connectors, errors
from kubekeep.api.backups import _recording
from kubekeep.api.refs import split_ref
from kubekeep.connectors import DestinationOptions
from kubekeep.connectors.k8s.options import ManifestsDestinationOptions
from kubekeep.engine import objectlock, runs
from kubekeep.engine.entries import Exporter, SnapshotKind
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import NodeFilter, RestoreStats, run_restore
from kubekeep.engine.snapshot import DamagedSnapshot, Snapshot
from kubekeep.engine.tree import Node

# what only some operations need is imported by them: a restore of files (the common command,
# whose start-up counts: bench/README.md, issue 16) imports neither checks, repairs, drills nor
# the manifests selectors and their YAML
if TYPE_CHECKING:
    from kubekeep.api.cluster_restore import ClusterProgressCallback
    from kubekeep.engine.check import CheckReport, DataSubset
    from kubekeep.engine.diff import Change
    from kubekeep.engine.objectlock import ExtendReport
    from kubekeep.engine.prune import PruneReport
    from kubekeep.engine.repair import IndexRepairReport, SnapshotsRepairReport
    from kubekeep.engine.retention import Decision, Policy
    from kubekeep.manifests.selection import ObjectSelector


def find_snapshot(repo: Repository, ref: str) -> Snapshot:
    return repo.find_snapshot(ref)


def snapshots(
    repo: Repository,
    *,
    tags: Iterable[str] = (),
    source: str | None = None,
    kind: str | None = None,
    host: str | None = None,
) -> list[Snapshot]:
    """Snapshots, oldest first, filtered: every tag in ``tags``, the source URI, the kind, the host.
    Damaged snapshot files are left out (``repo.damaged_snapshots`` names them, and
    ``repo.on_warning`` hears of each)."""
    wanted = set(tags)
    return [
        s
        for s in repo.snapshots(skip_damaged=True)
        if wanted <= set(s.tags)
        and (source is None or s.uri == source or s.uri == f"fs:{source}")
        and (kind is None or s.kind == kind)
        and (host is None or s.source.get("host") == host or s.hostname == host)
    ]


def restore(
    repo: Repository,
    ref: str,
    destination: str,
    *,
    include: NodeFilter | None = None,
    options: DestinationOptions | None = None,
    select: ObjectSelector | None = None,
    progress: ClusterProgressCallback | None = None,
) -> RestoreStats:
    """Restore ``SNAP[:PATH]`` to ``destination``. ``options`` are the destination connector's
    (``FsDestinationOptions``, ``VolumeOptions``, ...; its defaults if None), or for a manifests
    snapshot ``ManifestsDestinationOptions`` (docs/manifests.md): into a cluster, or to fs: as
    clean YAML unless ``raw``. For manifests snapshots ``select`` picks objects (namespaces,
    kinds, names, labels). A whole snapshot with volumes restored into a cluster brings the
    claims' data too, before the workloads (``cluster_restore``; a ``ClusterRestoreStats``
    with its claims, ``progress`` hears of objects, claims and bytes)."""
    snap_ref, path = split_ref(ref)
    with repo.lock():
        snap = repo.find_snapshot(snap_ref)
        exporter = _exporter(snap, destination, options)
        if snap.kind == SnapshotKind.MANIFESTS:
            from kubekeep.api.selecting import all_of, select_objects

            include = all_of(include, select_objects(repo, snap, path, select))
        elif select is not None and not select.empty():
            raise errors.UsageError(
                f"snapshot {snap.short_id} is a {snap.kind} snapshot: object selection "
                "(--namespace, --kind, --name, --selector) applies to manifests snapshots"
            )
        with exporter:
            if snap.kind == SnapshotKind.MANIFESTS and connectors.scheme_of(destination) == "k8s":
                from kubekeep.api import cluster_restore as _cluster_restore

                if not isinstance(options, ManifestsDestinationOptions):
                    options = ManifestsDestinationOptions()
                if _cluster_restore.wanted(repo, snap, path, options):
                    from kubekeep.connectors.k8s import parse_uri
                    from kubekeep.connectors.k8s.exporter import K8sExporter

                    assert isinstance(exporter, K8sExporter)
                    return _cluster_restore.restore_with_data(
                        repo,
                        snap,
                        exporter,
                        include=include,
                        options=options,
                        context=options.context or parse_uri(destination),
                        progress=progress,
                    )
                if not path.strip("/"):  # the volumes' files are no objects: not read for nothing
                    include = _cluster_restore.without_volumes(include)
            return run_restore(repo, snap, exporter, path=path, include=include)


def _exporter(snap: Snapshot, destination: str, options: DestinationOptions | None) -> Exporter:
    if snap.kind == SnapshotKind.MANIFESTS:
        from kubekeep.connectors import k8s  # the Kubernetes client: only for manifests restores

        if not isinstance(options, ManifestsDestinationOptions):
            options = ManifestsDestinationOptions(destination=options)
        return k8s.open_manifests_exporter(destination, options)
    if isinstance(options, ManifestsDestinationOptions) and connectors.scheme_of(destination) != "k8s":
        given = options.given() + (["raw"] if options.raw else [])
        if given:
            names = ", ".join("--" + n.replace("_", "-") for n in given)
            raise errors.UsageError(
                f"snapshot {snap.short_id} is a {snap.kind} snapshot: {names} apply(ies) to manifests snapshots"
            )
        options = options.destination
    return connectors.open_exporter(destination, options)


def ls(repo: Repository, ref: str, *, recursive: bool = False) -> Iterator[tuple[str, Node]]:
    """Entries under ``SNAP[:PATH]``: the directory's children (all descendants if recursive),
    or the single entry when PATH is a file. Paths are absolute within the snapshot."""
    snap_ref, path = split_ref(ref)
    snap = repo.find_snapshot(snap_ref)
    node = repo.resolve(snap, path)
    base = "/" + path.strip("/") if path.strip("/") else ""
    if node.type != "dir":
        yield base or "/", node
        return
    if node.subtree is None:
        return
    if recursive:
        for rel, child in repo.walk(node.subtree):
            yield f"{base}/{rel}", child
    else:
        for child in repo.load_tree(node.subtree):
            yield f"{base}/{child.name}", child


def cat(repo: Repository, ref: str) -> Iterator[bytes]:
    snap_ref, path = split_ref(ref)
    if not path.strip("/"):
        raise errors.UsageError(f"{ref!r}: name a file, as SNAPSHOT:PATH")
    snap = repo.find_snapshot(snap_ref)
    node = repo.resolve(snap, path)
    if node.type != "file":
        raise errors.UsageError(f"{path} is a {node.type}, not a file")
    return repo.read_file(node)


def stat(repo: Repository, ref: str) -> Node:
    """The entry at ``SNAP[:PATH]`` (the root is a directory node)."""
    snap_ref, path = split_ref(ref)
    return repo.resolve(repo.find_snapshot(snap_ref), path)


def diff(repo: Repository, ref_a: str, ref_b: str, *, path: str = "", metadata: bool = True) -> list[Change]:
    a = repo.find_snapshot(ref_a)
    b = repo.find_snapshot(ref_b)
    prefix = path.strip("/")
    tree_a = _subtree(repo, a, prefix)
    tree_b = _subtree(repo, b, prefix)
    from kubekeep.engine.diff import diff_trees

    return list(diff_trees(repo, tree_a, repo, tree_b, prefix, metadata=metadata))


def _subtree(repo: Repository, snap: Snapshot, path: str) -> bytes | None:
    if not path:
        return bytes.fromhex(snap.tree)
    try:
        node = repo.resolve(snap, path)
    except errors.PathNotFound:
        return None
    if node.type != "dir":
        raise errors.UsageError(f"{path} is not a directory")
    return node.subtree


def check(
    repo: Repository,
    *,
    read_data: bool = False,
    subset: DataSubset | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    record: bool = False,
) -> CheckReport:
    """Verify the repository's structure; with ``read_data`` every pack's data, with ``subset``
    a part of the packs' data (``DataSubset.parse("2/5")``, ``DataSubset.parse("10%")``).
    ``record`` leaves a run record."""
    from kubekeep.engine.check import run_check

    run = runs.RunRecord("check")
    with _recording(repo, run, record):
        with repo.lock():
            report = run_check(repo, read_data=read_data, subset=subset, progress=progress)
        run.stats = {
            "errors": len(report.errors),
            "snapshots": report.snapshots,
            "packs": report.packs,
            "packs_read": report.packs_read,
        }
        if not report.ok:
            run.outcome, run.error = "failure", f"{len(report.errors)} problem(s), the first: {report.errors[0]}"
        return report


@dataclass
class ForgetReport:
    """What ``forget`` decided: readable snapshots kept or removed, and damaged snapshot files,
    removed when named by id and otherwise left alone (a policy never removes what it cannot read)."""

    decisions: list[Decision] = field(default_factory=list)
    damaged_removed: list[DamagedSnapshot] = field(default_factory=list)
    damaged_kept: list[DamagedSnapshot] = field(default_factory=list)
    #: snapshots to remove whose file is still locked (Object Lock): id -> the date, when known;
    #: they stay, and a later forget removes them
    locked: dict[str, str | None] = field(default_factory=dict)
    #: Object Lock and ``--keep-within`` longer than the lock period: the retention dates the
    #: kept snapshots need were extended to cover it
    extended: ExtendReport | None = None

    @property
    def removed(self) -> int:
        return sum(1 for d in self.decisions if not d.keep) + len(self.damaged_removed) - len(self.locked)

    @property
    def kept(self) -> int:
        return sum(1 for d in self.decisions if d.keep) + len(self.damaged_kept)


def forget(
    repo: Repository,
    policy: Policy | None = None,
    *,
    ids: Iterable[str] = (),
    group_by: tuple[str, ...] = ("host", "source"),
    tags: Iterable[str] = (),
    dry_run: bool = False,
    record: bool = False,
) -> ForgetReport:
    """Remove snapshots named in ``ids`` or not kept by ``policy`` (within the ``tags`` filter).
    A damaged snapshot file named by id (a unique prefix of its name) is removed unread.
    ``record`` leaves a run record (not for a dry run)."""
    run = runs.RunRecord("forget")
    with _recording(repo, run, record and not dry_run):
        report = _forget(repo, policy, list(ids), group_by, tags, dry_run)
        run.stats = {"removed": report.removed, "kept": report.kept}
        return report


def _forget(
    repo: Repository,
    policy: Policy | None,
    ids: list[str],
    group_by: tuple[str, ...],
    tags: Iterable[str],
    dry_run: bool,
) -> ForgetReport:
    from kubekeep.engine.retention import Decision, apply_policy, attached_decisions, group_key

    if not ids and (policy is None or policy.empty()):
        raise errors.UsageError("nothing to forget: give snapshot ids or a --keep-* policy")
    with repo.lock(exclusive=True):
        report = ForgetReport()
        if ids:
            for ref in ids:
                if ref == "latest":
                    report.decisions.append(Decision(repo.find_snapshot(ref), False, ["named"]))
                    continue
                name = repo.snapshot_name(ref)
                try:
                    report.decisions.append(Decision(repo.load_snapshot(name), False, ["named"]))
                except errors.IntegrityError as exc:
                    report.damaged_removed.append(
                        DamagedSnapshot(name, str(exc).removeprefix(f"snapshot {name[:8]}: "))
                    )
            # a named chain start takes the snapshots attached to it along
            named = {d.snapshot.id for d in report.decisions}
            chains = {d.snapshot.chain for d in report.decisions if d.snapshot.chain}
            if chains:
                report.decisions.extend(
                    Decision(s, False, ["with its chain"])
                    for s in repo.snapshots(skip_damaged=True)
                    if s.extends in chains and s.id not in named
                )
        else:
            assert policy is not None
            groups: dict[tuple[str, ...], list[Snapshot]] = {}
            every = snapshots(repo)
            starters = {s.chain for s in every if s.chain}
            wanted = set(tags)
            chosen = [s for s in every if wanted <= set(s.tags)]
            for snap in chosen:
                if snap.extends is None:
                    groups.setdefault(group_key(snap, group_by), []).append(snap)
            for group in groups.values():
                report.decisions.extend(apply_policy(group, policy))
            # attached snapshots follow their chain; with a tag filter, only chains judged here
            judged = {d.snapshot.chain for d in report.decisions if d.snapshot.chain}
            attached = [s for s in every if s.extends is not None and (not wanted or s.extends in judged)]
            report.decisions.extend(attached_decisions(report.decisions, attached, starters))
            report.damaged_kept = list(repo.damaged_snapshots.values())
        if not dry_run:
            doomed = [d.snapshot.id for d in report.decisions if not d.keep]
            for snap_id in doomed + [damaged.id for damaged in report.damaged_removed]:
                try:
                    repo.delete_snapshot(snap_id)
                except errors.DeleteRefused as exc:
                    report.locked[snap_id] = None if exc.until is None else f"{exc.until:%Y-%m-%d %H:%M:%S} UTC"
            if repo.object_lock is not None and policy is not None and policy.within is not None:
                kept = [(d.snapshot.id, d.snapshot.tree, d.snapshot.time) for d in report.decisions if d.keep]
                report.extended = objectlock.extend_for_keep_within(repo, kept, policy.within)
        return report


def prune(
    repo: Repository,
    *,
    max_unused: float = 0.1,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    record: bool = False,
) -> PruneReport:
    """Delete what no snapshot needs (packs, run records beyond the newest ``RUNS_KEPT`` of
    each command and source, drill reports beyond the newest ``DRILLS_KEPT`` per source). ``record`` leaves a run record (not for a dry run)."""
    run = runs.RunRecord("prune")
    with _recording(repo, run, record and not dry_run):
        report = _prune(repo, max_unused, dry_run, progress)
        run.stats = {"packs_deleted": report.packs_deleted, "bytes_freed": report.bytes_freed}
        return report


def _prune(repo: Repository, max_unused: float, dry_run: bool, progress: Callable[[str], None] | None) -> PruneReport:
    with repo.lock(exclusive=True):
        repo.snapshots(skip_damaged=True)
        if repo.damaged_snapshots:
            names = ", ".join(d.short_id for d in repo.damaged_snapshots.values())
            raise errors.IntegrityError(
                f"{len(repo.damaged_snapshots)} snapshot file(s) are damaged ({names}): prune cannot tell what "
                "they need; remove them with 'kubekeep forget ID' first (nothing was deleted)"
            )
        repo.reload_index()
        if repo.damaged_index_files:
            # prune deletes packs no index file lists and replaces the index files: with one
            # unreadable it would lose what that file described
            raise errors.IntegrityError(
                f"{len(repo.damaged_index_files)} index file(s) are damaged; run 'kubekeep repair index' "
                "before pruning (nothing was deleted)"
            )
        from kubekeep.engine import drills
        from kubekeep.engine.prune import run_prune

        report = run_prune(repo, max_unused=max_unused, dry_run=dry_run, progress=progress)
        runs.prune(repo, dry_run=dry_run)
        drills.prune(repo, dry_run=dry_run)
        return report


def repair_index(
    repo: Repository, *, dry_run: bool = False, progress: Callable[[str], None] | None = None
) -> IndexRepairReport:
    """Rebuild the index from the packs' headers: new index files first, then the old ones go."""
    from kubekeep.engine import repair

    with repo.lock(exclusive=True):
        return repair.repair_index(repo, dry_run=dry_run, progress=progress)


def repair_snapshots(
    repo: Repository,
    refs: Iterable[str] = (),
    *,
    forget: bool = False,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> SnapshotsRepairReport:
    """Rewrite the snapshots ``refs`` (default: all) whose trees name data that is gone, dropping
    only that; ``forget`` removes the originals of repaired snapshots."""
    from kubekeep.engine import repair

    refs = list(refs)
    with repo.lock(exclusive=True):
        snaps = [repo.find_snapshot(r) for r in refs] if refs else None
        return repair.repair_snapshots(repo, snaps, forget=forget, dry_run=dry_run, progress=progress)


def copy(
    src: Repository, dst: Repository, refs: Iterable[str] = (), progress: Callable[[Snapshot, str], None] | None = None
) -> list[tuple[Snapshot, Snapshot | None]]:
    refs = list(refs)
    with src.lock(), dst.lock():
        snaps = [src.find_snapshot(r) for r in refs] if refs else src.snapshots(skip_damaged=True)
        from kubekeep.engine.snapshot_copy import run_copy

        return run_copy(src, dst, snaps, progress=progress)
