"""Comparing two snapshot trees without reading file contents.

Identical subtrees have identical ids and are skipped at once, so a diff costs time in
proportion to what changed, not to the size of the snapshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubekeep.engine.repository import Repository
from kubekeep.engine.tree import DIR, Node

ADDED = "+"
REMOVED = "-"
MODIFIED = "M"  # content changed
TYPE_CHANGED = "T"  # e.g. a file became a directory
METADATA = "U"  # only mode, owner, mtime or attributes changed


@dataclass(frozen=True, slots=True)
class Change:
    status: str
    path: str
    old: Node | None
    new: Node | None


def _same_content(a: Node, b: Node) -> bool:
    return a.content == b.content and a.size == b.size and a.target == b.target


def _same_metadata(a: Node, b: Node) -> bool:
    return (a.mode, a.uid, a.gid, a.mtime_ns, a.attrs) == (b.mode, b.uid, b.gid, b.mtime_ns, b.attrs)


def _all_under(repo: Repository, node: Node, path: str, status: str) -> Iterator[Change]:
    yield Change(status, path, node if status == REMOVED else None, node if status == ADDED else None)
    if node.type == DIR and node.subtree is not None:
        for sub_path, sub in repo.walk(node.subtree, path):
            yield Change(status, sub_path, sub if status == REMOVED else None, sub if status == ADDED else None)


def diff_trees(
    repo_a: Repository,
    tree_a: bytes | None,
    repo_b: Repository,
    tree_b: bytes | None,
    prefix: str = "",
    *,
    metadata: bool = True,
) -> Iterator[Change]:
    """Changes from tree ``a`` to tree ``b``, in path order."""
    if tree_a == tree_b and repo_a is repo_b:
        return
    old = {n.name: n for n in repo_a.load_tree(tree_a)} if tree_a else {}
    new = {n.name: n for n in repo_b.load_tree(tree_b)} if tree_b else {}
    for name in sorted(old.keys() | new.keys()):
        path = f"{prefix}/{name}" if prefix else name
        a, b = old.get(name), new.get(name)
        if a is None:
            assert b is not None  # the name is in one of the two trees
            yield from _all_under(repo_b, b, path, ADDED)
        elif b is None:
            yield from _all_under(repo_a, a, path, REMOVED)
        elif a.type != b.type:
            yield Change(TYPE_CHANGED, path, a, b)
        elif a.type == DIR:
            if metadata and not _same_metadata(a, b):
                yield Change(METADATA, path, a, b)
            yield from diff_trees(repo_a, a.subtree, repo_b, b.subtree, path, metadata=metadata)
        elif not _same_content(a, b):
            yield Change(MODIFIED, path, a, b)
        elif metadata and not _same_metadata(a, b):
            yield Change(METADATA, path, a, b)
