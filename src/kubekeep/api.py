"""kubekeep's Python API: the one surface the CLI and the web UI are shells over.

Every function takes plain values, raises ``kubekeep.errors`` exceptions with one-line
messages, and takes the repository lock its work needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from kubekeep import connectors, errors
from kubekeep.engine import repair as _repair
from kubekeep.engine.backup import ProgressCallback, run_backup
from kubekeep.engine.check import CheckReport, run_check
from kubekeep.engine.diff import Change, diff_trees
from kubekeep.engine.locks import remove_stale_locks
from kubekeep.engine.prune import PruneReport, run_prune
from kubekeep.engine.repair import IndexRepairReport, SnapshotsRepairReport
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import NodeFilter, RestoreStats, run_restore, selection
from kubekeep.engine.retention import Decision, Policy, apply_policy, group_key
from kubekeep.engine.snapshot import DamagedSnapshot, Snapshot
from kubekeep.engine.snapshot_copy import run_copy
from kubekeep.engine.tree import DIR, FILE, Node
from kubekeep.manifests import fielddiff, layout, serialization
from kubekeep.manifests.fielddiff import FieldChange
from kubekeep.manifests.selection import ObjectSelector, resource_names, with_crds
from kubekeep.manifests.summary import RESOURCES as SUMMARY_RESOURCES
from kubekeep.manifests.summary import ClusterSummary, SummaryBuilder
from kubekeep.storage import open_backend

__all__ = [
    "RepositoryOptions",
    "read_password",
    "open_repository",
    "init_repository",
    "split_ref",
    "backup",
    "restore",
    "snapshots",
    "find_snapshot",
    "ls",
    "cat",
    "diff",
    "check",
    "forget",
    "prune",
    "copy",
    "unlock",
    "etcd_status",
    "etcd_restore_dir",
    "ObjectSelector",
    "ObjectChange",
    "summary",
    "diff_manifests",
    "is_manifests",
    "stat",
    "refresh",
    "ForgetReport",
    "repair_index",
    "repair_snapshots",
]


@dataclass
class RepositoryOptions:
    """Where a repository is and how to reach it."""

    location: str
    password: str
    cache_dir: Path | None = None
    no_cache: bool = False
    backend_options: dict[str, Any] = field(default_factory=dict)


def read_password(password: str | None = None, password_file: str | None = None) -> str | None:
    """The password from an explicit value, a file, ``KUBEKEEP_PASSWORD`` or
    ``KUBEKEEP_PASSWORD_FILE``, in that order; None if none is given."""
    if password:
        return password
    path = password_file or os.environ.get("KUBEKEEP_PASSWORD_FILE")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise errors.UsageError(f"cannot read password file {path}: {exc.strerror}") from None
        pw = text.splitlines()[0] if text else ""
        if not pw:
            raise errors.UsageError(f"password file {path} is empty")
        return pw
    return os.environ.get("KUBEKEEP_PASSWORD") or None


def open_repository(opts: RepositoryOptions) -> Repository:
    backend = open_backend(opts.location, **opts.backend_options)
    return Repository.open(backend, opts.password, cache_root=opts.cache_dir, no_cache=opts.no_cache)


def init_repository(opts: RepositoryOptions, *, kdf: dict[str, int | str] | None = None) -> Repository:
    backend = open_backend(opts.location, **opts.backend_options)
    return Repository.init(backend, opts.password, kdf=kdf, cache_root=opts.cache_dir, no_cache=opts.no_cache)


def split_ref(ref: str) -> tuple[str, str]:
    """``SNAP[:PATH]`` -> ``(SNAP, PATH)``."""
    snap, _, path = ref.partition(":")
    if not snap:
        raise errors.UsageError(f"{ref!r}: expected SNAPSHOT[:PATH] (an id prefix or 'latest')")
    return snap, path


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


def backup(
    repo: Repository,
    source: str,
    *,
    tags: Iterable[str] = (),
    parent: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    options: dict[str, Any] | None = None,
) -> Snapshot:
    """Back up ``source`` (a connector URI or a path) into a new snapshot."""
    importer = connectors.open_importer(source, **(options or {}))
    with repo.lock(), importer:
        parent_snap = repo.find_snapshot(parent) if parent else None
        return run_backup(repo, importer, tags=list(tags), parent=parent_snap, use_parent=not force, progress=progress)


def restore(
    repo: Repository,
    ref: str,
    destination: str,
    *,
    include: NodeFilter | None = None,
    options: dict[str, Any] | None = None,
    select: ObjectSelector | None = None,
) -> RestoreStats:
    """Restore ``SNAP[:PATH]`` to ``destination``. For manifests snapshots ``select`` picks
    objects (namespaces, kinds, names, labels) and ``options`` carries the restore options of the
    k8s:// exporter (docs/manifests.md); restored to fs: they become clean YAML unless
    ``options["raw"]``."""
    snap_ref, path = split_ref(ref)
    options = dict(options or {})
    with repo.lock():
        snap = repo.find_snapshot(snap_ref)
        if snap.kind == "manifests":
            exporter = _manifests_exporter(snap, destination, options)
            include = _all_of(include, _select_objects(repo, snap, path, select))
        elif select is not None and not select.empty():
            raise errors.UsageError(
                f"snapshot {snap.short_id} is a {snap.kind} snapshot: object selection "
                "(--namespace, --kind, --name, --selector) applies to manifests snapshots"
            )
        else:
            exporter = connectors.open_exporter(destination, **options)
        with exporter:
            return run_restore(repo, snap, exporter, path=path, include=include)


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


def refresh(repo: Repository) -> bool:
    """Reload the index if the repository's index files are not those ``repo`` last read (other
    processes backed up or pruned since), so that a long-lived reader such as the web UI can
    read the snapshots later backups add; True if it reloaded."""
    names = {o.name for o in repo.backend.list("index/")}
    if names == repo.index_files():
        return False
    repo.reload_index()
    return True


def diff(repo: Repository, ref_a: str, ref_b: str, *, path: str = "", metadata: bool = True) -> list[Change]:
    a = repo.find_snapshot(ref_a)
    b = repo.find_snapshot(ref_b)
    prefix = path.strip("/")
    tree_a = _subtree(repo, a, prefix)
    tree_b = _subtree(repo, b, prefix)
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
    repo: Repository, *, read_data: bool = False, progress: Callable[[str, int, int], None] | None = None
) -> CheckReport:
    with repo.lock():
        return run_check(repo, read_data=read_data, progress=progress)


@dataclass
class ForgetReport:
    """What ``forget`` decided: readable snapshots kept or removed, and damaged snapshot files,
    removed when named by id and otherwise left alone (a policy never removes what it cannot read)."""

    decisions: list[Decision] = field(default_factory=list)
    damaged_removed: list[DamagedSnapshot] = field(default_factory=list)
    damaged_kept: list[DamagedSnapshot] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(1 for d in self.decisions if not d.keep) + len(self.damaged_removed)

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
) -> ForgetReport:
    """Remove snapshots named in ``ids`` or not kept by ``policy`` (within the ``tags`` filter).
    A damaged snapshot file named by id (a unique prefix of its name) is removed unread."""
    ids = list(ids)
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
        else:
            assert policy is not None
            groups: dict[tuple[str, ...], list[Snapshot]] = {}
            for snap in snapshots(repo, tags=tags):
                groups.setdefault(group_key(snap, group_by), []).append(snap)
            for group in groups.values():
                report.decisions.extend(apply_policy(group, policy))
            report.damaged_kept = list(repo.damaged_snapshots.values())
        if not dry_run:
            for d in report.decisions:
                if not d.keep:
                    repo.delete_snapshot(d.snapshot.id)
            for damaged in report.damaged_removed:
                repo.delete_snapshot(damaged.id)
        return report


def prune(
    repo: Repository, *, max_unused: float = 0.1, dry_run: bool = False, progress: Callable[[str], None] | None = None
) -> PruneReport:
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
        return run_prune(repo, max_unused=max_unused, dry_run=dry_run, progress=progress)


def repair_index(
    repo: Repository, *, dry_run: bool = False, progress: Callable[[str], None] | None = None
) -> IndexRepairReport:
    """Rebuild the index from the packs' headers: new index files first, then the old ones go."""
    with repo.lock(exclusive=True):
        return _repair.repair_index(repo, dry_run=dry_run, progress=progress)


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
    refs = list(refs)
    with repo.lock(exclusive=True):
        snaps = [repo.find_snapshot(r) for r in refs] if refs else None
        return _repair.repair_snapshots(repo, snaps, forget=forget, dry_run=dry_run, progress=progress)


def copy(
    src: Repository, dst: Repository, refs: Iterable[str] = (), progress: Callable[[Snapshot, str], None] | None = None
) -> list[tuple[Snapshot, Snapshot | None]]:
    refs = list(refs)
    with src.lock(), dst.lock():
        snaps = [src.find_snapshot(r) for r in refs] if refs else src.snapshots(skip_damaged=True)
        return run_copy(src, dst, snaps, progress=progress)


def unlock(repo: Repository, *, remove_all: bool = False) -> int:
    return remove_stale_locks(repo, everything=remove_all)


# -- etcd ---------------------------------------------------------------------------------------

#: Where the etcd:// importer stores the snapshot file inside a snapshot.
ETCD_SNAPSHOT_PATH = "etcd/snapshot.db"


def _etcd_file(repo: Repository, ref: str) -> tuple[Snapshot, str, Node]:
    """The snapshot and file node an etcd command works on: ``SNAP:PATH``, or ``SNAP`` for the
    etcd:// importer's ``etcd/snapshot.db``."""
    snap_ref, given = split_ref(ref)
    snap = repo.find_snapshot(snap_ref)
    path = given.strip("/") or ETCD_SNAPSHOT_PATH
    try:
        node = repo.resolve(snap, path)
    except errors.PathNotFound:
        if given.strip("/"):
            raise
        raise errors.PathNotFound(
            f"snapshot {snap.short_id} ({snap.kind or 'unknown'} snapshot of {snap.uri}) has no "
            f"/{ETCD_SNAPSHOT_PATH}: name the snapshot file as SNAPSHOT:PATH"
        ) from None
    if node.type != "file":
        raise errors.UsageError(f"/{path} in snapshot {snap.short_id} is a {node.type}, not an etcd snapshot file")
    return snap, "/" + path, node


def etcd_status(repo: Repository, ref: str) -> dict[str, Any]:
    """Read a stored etcd snapshot file (``SNAP[:PATH]``) in place, through a seekable view of
    its blobs (no copy on disk): SHA-256 check, revision, key counts, sizes, members, versions,
    plus what the etcd:// importer recorded at backup time (``recorded``; None for a file
    backed up by another importer). A trailer or recorded hash that does not match the data
    raises IntegrityError."""
    from kubekeep.engine.fileview import FileView
    from kubekeep.etcd.boltmeta import read_snapshot_info

    snap, path, node = _etcd_file(repo, ref)
    with FileView(repo, node) as view:
        info = read_snapshot_info(cast(IO[bytes], view), check_hash=True)
    recorded = snap.metadata.get("etcd") if snap.kind == "etcd" and path == "/" + ETCD_SNAPSHOT_PATH else None
    recorded_sha = (recorded or {}).get("sha256")
    if recorded_sha and recorded_sha != info.sha256:
        raise errors.IntegrityError(
            f"{path} in snapshot {snap.short_id} hashes to {info.sha256}, but the backup recorded {recorded_sha}"
        )
    return {
        "snapshot": snap.id,
        "short_id": snap.short_id,
        "path": path,
        "file": info.to_dict(),
        "recorded": recorded,
        "matches_recorded": (recorded_sha == info.sha256) if recorded_sha else None,
    }


def etcd_restore_dir(
    repo: Repository,
    ref: str,
    data_dir: str | os.PathLike[str],
    *,
    name: str,
    initial_cluster: str | None = None,
    initial_advertise_peer_urls: str | None = None,
    initial_cluster_token: str | None = None,
    bump_revision: int | None = None,
    mark_compacted: bool = False,
    etcdutl: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Turn a stored etcd snapshot file (``SNAP[:PATH]``) into a fresh data directory for member
    ``name`` with ``etcdutl snapshot restore`` (kubekeep.etcd.restore). Defaults as etcd's:
    peer URL ``http://localhost:2380``, initial cluster ``NAME=PEER_URLS``, token
    ``etcd-cluster``. The arguments and the tool are checked before the file is written to a
    temporary directory beside ``data_dir`` (removed afterwards)."""
    import tempfile

    from kubekeep.etcd.restore import check_request, find_restore_tool, restore_data_dir

    peer_urls = initial_advertise_peer_urls or "http://localhost:2380"
    cluster = initial_cluster or ",".join(f"{name}={u.strip()}" for u in peer_urls.split(",") if u.strip())
    token = initial_cluster_token or "etcd-cluster"
    target = Path(data_dir).absolute()
    check_request(target, name, cluster, peer_urls, token, bump_revision, mark_compacted)
    tool = find_restore_tool(etcdutl)
    with repo.lock():
        snap, path, node = _etcd_file(repo, ref)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.UsageError(f"cannot create {target.parent}: {exc.strerror}") from None
        with tempfile.TemporaryDirectory(prefix=".kubekeep-etcd-restore-", dir=target.parent) as tmp:
            snapshot_file = Path(tmp) / "snapshot.db"
            with open(snapshot_file, "wb") as out:
                for piece in repo.read_file(node):
                    out.write(piece)
            result = restore_data_dir(
                snapshot_file, target, name, cluster, peer_urls, token, bump_revision, mark_compacted, tool.path
            )
    report = result.to_dict()
    report.pop("output", None)
    # the temporary file is gone: name the stored file instead
    report["command"] = [f"{snap.short_id}:{path}" if a == str(snapshot_file) else a for a in result.command]
    return {"snapshot": snap.id, "short_id": snap.short_id, "path": path, **report}


# -- manifests snapshots (docs/manifests.md) ----------------------------------------------------

#: restore options only the k8s:// exporter takes
_CLUSTER_ONLY = ("existing", "dry_run", "snapshot_id", "concurrency", "context", "kubeconfig")
#: restore options the clean-YAML files exporter takes
_FILES_OPTIONS = ("namespace_map", "restore_status", "keep_managed_fields")


def _manifests_exporter(snap: Snapshot, destination: str, options: dict[str, Any]) -> Any:
    raw = bool(options.pop("raw", False))
    scheme = connectors.scheme_of(destination)
    if scheme == "k8s":
        options.setdefault("snapshot_id", snap.short_id)
        return connectors.open_exporter(destination, **options)
    given = [k for k, v in options.items() if v not in (None, False, {}, ())]
    wrong = [k for k in given if k in _CLUSTER_ONLY or (raw and k in _FILES_OPTIONS)]
    if wrong:
        names = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise errors.UsageError(
            f"{names} apply(ies) to restores into a cluster (k8s://)" + (", not to --raw file restores" if raw else "")
        )
    inner_options = {k: v for k, v in options.items() if k not in _FILES_OPTIONS}
    if scheme == "fs":
        inner_options["private"] = True  # the objects include Secrets: files 0600, directories 0700
    inner = connectors.open_exporter(destination, **inner_options)
    if raw or scheme != "fs":
        return inner
    from kubekeep.connectors.k8s import CleanFilesExporter  # only manifests restores need it

    return CleanFilesExporter(inner, **{k: v for k, v in options.items() if k in _FILES_OPTIONS})


def _all_of(a: NodeFilter | None, b: NodeFilter | None) -> NodeFilter | None:
    if a is None or b is None:
        return a or b
    return lambda rel, node: a(rel, node) and b(rel, node)


def _select_objects(repo: Repository, snap: Snapshot, path: str, select: ObjectSelector | None) -> NodeFilter | None:
    """A filter taking the objects ``select`` matches (reads tree blobs only), the CRDs of
    selected custom objects, and the directories above them."""
    if select is None or select.empty():
        return None
    nodes = [(rel, node) for rel, node in selection(repo, snap, path) if node.type == FILE]
    try:
        names = resource_names(_read_object(repo, repo.resolve(snap, layout.DISCOVERY_FILE)))
    except errors.PathNotFound:
        names = {}
    chosen = [(rel, node) for rel, node in nodes if select.matches(node.attrs, names)]
    crds = {a.get("name") for a in with_crds([n.attrs for _, n in chosen], [n.attrs for _, n in nodes])}
    chosen += [
        (rel, node)
        for rel, node in nodes
        if node.attrs.get("resource") == "customresourcedefinitions"
        and node.attrs.get("name") in crds
        and (rel, node) not in chosen
    ]
    allowed: set[str] = set()
    for rel, _ in chosen:
        allowed.add(rel)
        parts = rel.split("/")
        allowed.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return lambda rel, node: rel in allowed


def is_manifests(repo: Repository, *refs: str) -> bool:
    """Whether every snapshot named is a manifests snapshot (taken from k8s://)."""
    return all(repo.find_snapshot(split_ref(r)[0]).kind == "manifests" for r in refs)


def _manifests_snapshot(repo: Repository, ref: str) -> Snapshot:
    snap = repo.find_snapshot(ref)
    if snap.kind != "manifests":
        raise errors.UsageError(f"snapshot {snap.short_id} is a {snap.kind} snapshot, not a manifests snapshot")
    return snap


def _read_object(repo: Repository, node: Node) -> Any:
    return serialization.load(b"".join(repo.read_file(node)))


def summary(repo: Repository, ref: str, *, namespaces: Iterable[str] = ()) -> ClusterSummary:
    """The cluster at the time of a manifests snapshot (``manifests.summary``), optionally
    only some namespaces."""
    snap = _manifests_snapshot(repo, split_ref(ref)[0])
    only = set(namespaces) or None
    builder = SummaryBuilder(only)
    roots = ["cluster/core/nodes", "cluster/core/namespaces"]
    roots += [f"namespaces/{ns}" for ns in sorted(only)] if only else ["namespaces"]
    for root in roots:
        try:
            node = repo.resolve(snap, root)
        except errors.PathNotFound:
            continue
        for _rel, child in repo.walk(node.subtree, root) if node.subtree is not None else ():
            attrs = child.attrs
            if child.type != FILE or layout.ref_of_attrs(attrs) is None:
                continue
            if attrs.get("namespace"):
                builder.count(attrs["namespace"])
            if (attrs.get("group", ""), attrs.get("resource")) in SUMMARY_RESOURCES:
                builder.add(attrs.get("group", ""), attrs["resource"], _read_object(repo, child))
    result = builder.build()
    extra = snap.source.get("extra") or {}
    result.info = {
        "snapshot": snap.id,
        "short_id": snap.short_id,
        "time": snap.time,
        "source": snap.uri,
        "cluster": snap.source.get("host", ""),
        "server": extra.get("server", ""),
        "version": extra.get("version", ""),
        "objects": (snap.metadata.get("manifests") or {}).get("objects"),
    }
    return result


@dataclass
class ObjectChange:
    """One object (or other file) that differs between two manifests snapshots."""

    status: str  # "+" added, "-" removed, "M" modified
    path: str
    kind: str = ""
    namespace: str = ""
    name: str = ""
    fields: list[FieldChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "path": "/" + self.path,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "fields": [f.to_dict() for f in self.fields],
        }


def diff_manifests(
    repo: Repository, ref_a: str, ref_b: str, *, path: str = "", churn: bool = False
) -> list[ObjectChange]:
    """Objects added, removed and changed from snapshot ``a`` to ``b`` (below ``path``), with the
    fields that changed; objects whose only changes are churn (``manifests.fielddiff``) are left
    out unless ``churn``."""
    _manifests_snapshot(repo, ref_a)
    _manifests_snapshot(repo, ref_b)
    out: list[ObjectChange] = []
    for c in diff(repo, ref_a, ref_b, path=path, metadata=False):
        node = c.new or c.old
        if (
            node is None
            or node.type == DIR
            or (c.old is not None and c.old.type == DIR)
            or (c.new is not None and c.new.type == DIR)
        ):
            continue
        attrs = node.attrs
        change = ObjectChange(
            "M" if c.status not in ("+", "-") else c.status,
            c.path,
            attrs.get("kind", ""),
            attrs.get("namespace", ""),
            attrs.get("name", ""),
        )
        if change.status == "M":
            assert c.old is not None and c.new is not None
            old, new = _read_object(repo, c.old), _read_object(repo, c.new)
            if isinstance(old, dict) and isinstance(new, dict):
                change.fields = fielddiff.diff_objects(old, new, churn=churn)
                if not change.fields:
                    continue
        out.append(change)
    return out
