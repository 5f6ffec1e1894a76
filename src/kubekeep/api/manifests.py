"""Manifests snapshots: the cluster at a point in time, and what changed between two (docs/manifests.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubekeep import errors
from kubekeep.api.refs import split_ref
from kubekeep.api.selecting import read_object
from kubekeep.api.snapshot_ops import diff
from kubekeep.engine.entries import SnapshotKind
from kubekeep.engine.repository import Repository
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import DIR, FILE
from kubekeep.manifests import fielddiff, layout
from kubekeep.manifests.fielddiff import FieldChange
from kubekeep.manifests.summary import RESOURCES as SUMMARY_RESOURCES
from kubekeep.manifests.summary import ClusterSummary, SummaryBuilder


def is_manifests(repo: Repository, *refs: str) -> bool:
    """Whether every snapshot named is a manifests snapshot (taken from k8s://)."""
    return all(repo.find_snapshot(split_ref(r)[0]).kind == SnapshotKind.MANIFESTS for r in refs)


def _manifests_snapshot(repo: Repository, ref: str) -> Snapshot:
    snap = repo.find_snapshot(ref)
    if snap.kind != SnapshotKind.MANIFESTS:
        raise errors.UsageError(f"snapshot {snap.short_id} is a {snap.kind} snapshot, not a manifests snapshot")
    return snap


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
                builder.add(attrs.get("group", ""), attrs["resource"], read_object(repo, child))
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
            old, new = read_object(repo, c.old), read_object(repo, c.new)
            if isinstance(old, dict) and isinstance(new, dict):
                change.fields = fielddiff.diff_objects(old, new, churn=churn)
                if not change.fields:
                    continue
        out.append(change)
    return out
