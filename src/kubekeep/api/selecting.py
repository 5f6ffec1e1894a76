"""Which objects of a manifests snapshot a restore takes (``--namespace``, ``--kind``, ...)."""

from __future__ import annotations

from typing import Any

from kubekeep import errors
from kubekeep.engine.repository import Repository
from kubekeep.engine.restore import NodeFilter, selection
from kubekeep.engine.snapshot import Snapshot
from kubekeep.engine.tree import FILE, Node
from kubekeep.manifests import layout, serialization
from kubekeep.manifests.selection import ObjectSelector, resource_names, with_crds


def all_of(a: NodeFilter | None, b: NodeFilter | None) -> NodeFilter | None:
    if a is None or b is None:
        return a or b
    return lambda rel, node: a(rel, node) and b(rel, node)


def select_objects(repo: Repository, snap: Snapshot, path: str, select: ObjectSelector | None) -> NodeFilter | None:
    """A filter taking the objects ``select`` matches (reads tree blobs only), the CRDs of
    selected custom objects, and the directories above them."""
    if select is None or select.empty():
        return None
    nodes = [(rel, node) for rel, node in selection(repo, snap, path) if node.type == FILE]
    try:
        names = resource_names(read_object(repo, repo.resolve(snap, layout.DISCOVERY_FILE)))
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


def read_object(repo: Repository, node: Node) -> Any:
    return serialization.load(b"".join(repo.read_file(node)))
